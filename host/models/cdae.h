// CDAE (Wu et al., WSDM 2016): binary input ỹ_u corrupted by dropout q with 1/(1−q) scaling,
//   h = sigmoid(W ỹ_u + V_u + b),  logits = W' h + b',
// with a learned per-user vector V_u (rows of the training matrix; users the model never saw,
// e.g. held-out test users, get none). loss "bce" (default): Bernoulli cross-entropy on the
// logits; "mse": squared error of the linear output. Both summed over items, averaged over
// the batch's users, + λ/2 (‖W‖² + ‖W'‖² + ‖V‖² + ‖b‖² + ‖b'‖²) as in the paper.
#pragma once
#include "models/model.h"

namespace vae {

template <typename T>
class Cdae final : public Model<T> {
 public:
  Cdae(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch);
  std::string kind() const override { return "cdae"; }
  void init(uint64_t seed) override;
  void forward_backward(const Batch<T>& b, int64_t step, bool train, Mat<T> loss_acc) override;
  void predict(const Batch<T>& b, Mat<T> out) override;

 protected:
  const T* forward_output() const override { return out_.data(); }

 public:

 private:
  void forward(const Batch<T>& b, int64_t n, bool train, int64_t step);
  // The sparse path's encoder input: the batch's rows, dropout when training.
  CsrBatch<T> input_batch(const Batch<T>& b, bool train, int64_t step) const;
  bool bce_ = true;
  double dropout_ = 0.5, lambda_ = 0;
  uint64_t seed_ = 0;
  Tensor<T> x_, xin_, h_, out_, g_out_, g_h_;  // xin_: dense path only
};

}  // namespace vae
