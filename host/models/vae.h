// The reference notebooks' Gaussian VAE over user rating vectors:
//  encoder I → 512 → 256 → 2L (ReLU; μ and log σ² from one layer),
//  decoder L → 256 → 512 → I (ReLU, linear output),
//  loss = mean-squared error over the batch (F.mse_loss, mean over B·I)
//         + β_t · KLD summed over the batch, exactly the notebook's weighting at β = 1.
// The notebook's weighting lets the summed KLD dwarf the mean MSE, which collapses the
// posterior; --beta and --anneal-steps (β_t = β · min(1, step / steps)) are the way out.
#pragma once
#include "models/model.h"

namespace vae {

template <typename T>
class NotebookVae final : public Model<T> {
 public:
  NotebookVae(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch);
  std::string kind() const override { return "vae"; }
  void init(uint64_t seed) override;
  void forward_backward(const Batch<T>& b, int64_t step, bool train, Mat<T> loss_acc) override;
  void predict(const Batch<T>& b, Mat<T> out) override;

 protected:
  const T* forward_output() const override { return out_.data(); }

 public:
  double kl_weight(int64_t step) const override;
  int64_t latent_dim() const override { return latent_; }
  void encode(const Batch<T>& b, Mat<T> mu_logvar) override;

  static constexpr int64_t kH1 = 512, kH2 = 256;

 private:
  void encoder_forward(const Batch<T>& b, int64_t n);
  void decoder_forward(int64_t n);
  int64_t latent_ = 0;
  uint64_t seed_ = 0;
  Tensor<T> select_mu_;  // 2L × L: [I; 0] picks μ out of μ | logvar
  Tensor<T> x_, e1_, e2_, ml_, eps_, z_, d1_, d2_, out_;  // activations
  Tensor<T> g_out_, g_d2_, g_d1_, g_z_, g_ml_, g_e2_, g_e1_;  // their gradients
};

}  // namespace vae
