// Mult-VAE (Liang et al., WWW 2018), the [I-600-200-600-I] architecture of the paper's code:
// input rows L2-normalised, dropout (0.5) on the input while training, tanh hidden layers,
// μ | log σ² from one layer, multinomial log-likelihood on the logits, and
//   loss = −mean_rows Σ_j x_j log softmax(logits)_j + β_t · mean_rows KL,
//   β_t = min(β_cap, step / anneal_steps)  (the paper's schedule: cap 0.2, 200 000 steps).
#pragma once
#include "models/model.h"

namespace vae {

template <typename T>
class MultVae final : public Model<T> {
 public:
  MultVae(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch);
  std::string kind() const override { return "multvae"; }
  void init(uint64_t seed) override;
  void forward_backward(const Batch<T>& b, int64_t step, bool train, Mat<T> loss_acc) override;
  void predict(const Batch<T>& b, Mat<T> out) override;

 protected:
  const T* forward_output() const override { return logits_.data(); }

 public:
  double kl_weight(int64_t step) const override;
  int64_t latent_dim() const override { return latent_; }
  void encode(const Batch<T>& b, Mat<T> mu_logvar) override;

 private:
  void encoder_forward(const Batch<T>& b, int64_t n, bool train, int64_t step);
  void decoder_forward(int64_t n);
  // The sparse path's first-layer input: this batch's rows, L2-normalised, dropout when training.
  CsrBatch<T> input_batch(const Batch<T>& b, int64_t n, bool train, int64_t step) const;
  int64_t hidden_ = 0, latent_ = 0;
  double dropout_ = 0.5;
  uint64_t seed_ = 0;
  Tensor<T> select_mu_;  // 2L × L: [I; 0]
  Tensor<T> x_, xin_, e1_, ml_, eps_, z_, d1_, logits_;  // xin_: dense path only
  Tensor<double> norms_;                                  // sparse path: row norms of the batch
  Tensor<T> g_logits_, g_d1_, g_z_, g_ml_, g_e1_;
};

}  // namespace vae
