// AutoRec (Sedhain et al., WWW 2015): r → f(W · g(V · r + μ) + b), user-based (rows are users,
// inputs items) or item-based (the trainer feeds the transposed matrix).
//  loss "masked" (the paper): Σ over observed ratings (out − r)² + λ/2 (‖W‖² + ‖V‖²)
//  loss "dense" (the reference notebook): Σ over all entries, zeros included, + ½λ Σ_p ‖p‖₂
#pragma once
#include "models/model.h"

namespace vae {

template <typename T>
class AutoRec final : public Model<T> {
 public:
  AutoRec(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch);
  std::string kind() const override { return this->cfg_.kind; }
  void init(uint64_t seed) override;
  void forward_backward(const Batch<T>& b, int64_t step, bool train, Mat<T> loss_acc) override;
  void predict(const Batch<T>& b, Mat<T> out) override;

 protected:
  const T* forward_output() const override { return out_.data(); }

 private:
  void forward(const Batch<T>& b, int64_t n);
  bool dense_ = false;
  Act g_ = Act::sigmoid, f_ = Act::identity;
  double lambda_ = 0;
  int64_t hidden_ = 0;
  Tensor<T> x_, h_, out_, dout_, dh_;
};

}  // namespace vae
