#include "models/vae.h"

#include <algorithm>
#include <cmath>

#include "core/philox.h"
#include "models/layers.h"

namespace vae {

namespace {
const char* kLayers[] = {"enc1", "enc2", "enc3", "dec1", "dec2", "dec3"};
}

template <typename T>
NotebookVae<T>::NotebookVae(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch)
    : Model<T>(be, cfg, max_batch) {
  ModelConfig& c = this->cfg_;
  if (c.latent <= 0) c.latent = 64;
  if (c.beta < 0) c.beta = 1.0;  // the notebook's KL weight
  latent_ = c.latent;
  const int64_t I = c.num_inputs, L = latent_, B = max_batch;
  const int64_t shape[6][2] = {{kH1, I}, {kH2, kH1}, {2 * L, kH2}, {kH2, L}, {kH1, kH2}, {I, kH1}};
  for (int i = 0; i < 6; ++i) {
    this->add_param(std::string(kLayers[i]) + ".weight", shape[i][0], shape[i][1]);
    this->add_param(std::string(kLayers[i]) + ".bias", 1, shape[i][0]);
  }
  this->allocate_params();
  auto a = [&](int64_t cols) { return be.template alloc<T>(B, cols); };
  x_ = a(I), e1_ = a(kH1), e2_ = a(kH2), ml_ = a(2 * L), eps_ = a(L), z_ = a(L);
  d1_ = a(kH2), d2_ = a(kH1), out_ = a(I);
  std::vector<T> sel(static_cast<size_t>(2 * L * L), T(0));
  for (int64_t j = 0; j < L; ++j) sel[j * L + j] = T(1);
  select_mu_ = be.upload(sel, 2 * L, L);
  g_out_ = a(I), g_d2_ = a(kH1), g_d1_ = a(kH2), g_z_ = a(L), g_ml_ = a(2 * L), g_e2_ = a(kH2), g_e1_ = a(kH1);
}

template <typename T>
void NotebookVae<T>::init(uint64_t seed) {
  seed_ = seed;
  std::vector<T> host(static_cast<size_t>(this->num_params()));
  for (const char* l : kLayers) {
    const std::string w = std::string(l) + ".weight";
    const double a = 1.0 / std::sqrt(static_cast<double>(this->param(w).cols));  // nn.Linear
    this->init_uniform(host, w, a, seed);
    this->init_uniform(host, std::string(l) + ".bias", a, seed);
  }
  this->be_.upload_into(host, this->param_buffer());
}

template <typename T>
double NotebookVae<T>::kl_weight(int64_t step) const {
  const ModelConfig& c = this->cfg_;
  if (c.anneal_steps <= 0) return c.beta;
  return c.beta * std::min(1.0, static_cast<double>(step) / static_cast<double>(c.anneal_steps));
}

template <typename T>
void NotebookVae<T>::encoder_forward(const Batch<T>& b, int64_t n) {
  VAE_CHECK(n <= this->max_batch_, "VAE: batch larger than max_batch");
  VAE_CHECK(b.input.cols == this->cfg_.num_inputs, "VAE: input width differs from the model's");
  Backend<T>& be = this->be_;
  auto P = [&](const char* l, const char* s) { return CMat<T>(this->param(std::string(l) + s)); };
  Mat<T> e1 = e1_.mat().rows_slice(0, n), e2 = e2_.mat().rows_slice(0, n);
  if (this->sparse_) {
    sparse_linear_forward<T>(be, {P("enc1", ".weight"), P("enc1", ".bias"), {}, {}},
                             CsrBatch<T>{b.input, b.rows, {}, T(0), 0, 0}, Act::relu, e1);
  } else {
    Mat<T> x = x_.mat().rows_slice(0, n);
    be.csr_rows_to_dense(b.input, b.rows, x);
    linear_forward<T>(be, {P("enc1", ".weight"), P("enc1", ".bias"), {}, {}}, x, Act::relu, e1);
  }
  linear_forward<T>(be, {P("enc2", ".weight"), P("enc2", ".bias"), {}, {}}, e1, Act::relu, e2);
  linear_forward<T>(be, {P("enc3", ".weight"), P("enc3", ".bias"), {}, {}}, e2, Act::identity,
                    ml_.mat().rows_slice(0, n));
}

template <typename T>
void NotebookVae<T>::decoder_forward(int64_t n) {
  Backend<T>& be = this->be_;
  auto P = [&](const char* l, const char* s) { return CMat<T>(this->param(std::string(l) + s)); };
  Mat<T> z = z_.mat().rows_slice(0, n), d1 = d1_.mat().rows_slice(0, n), d2 = d2_.mat().rows_slice(0, n);
  linear_forward<T>(be, {P("dec1", ".weight"), P("dec1", ".bias"), {}, {}}, z, Act::relu, d1);
  linear_forward<T>(be, {P("dec2", ".weight"), P("dec2", ".bias"), {}, {}}, d1, Act::relu, d2);
  linear_forward<T>(be, {P("dec3", ".weight"), P("dec3", ".bias"), {}, {}}, d2, Act::identity,
                    out_.mat().rows_slice(0, n));
}

template <typename T>
void NotebookVae<T>::forward_backward(const Batch<T>& b, int64_t step, bool train, Mat<T> loss_acc) {
  const int64_t n = b.n, I = this->cfg_.num_inputs;
  if (n == 0) return;
  Backend<T>& be = this->be_;
  encoder_forward(b, n);
  Mat<T> ml = ml_.mat().rows_slice(0, n), z = z_.mat().rows_slice(0, n);
  Mat<T> eps = eps_.mat().rows_slice(0, n);
  if (train) {
    be.reparameterize(ml, seed_, rng_stream(RngStream::eps, static_cast<uint64_t>(step)), eps, z);
  } else {
    // Evaluation decodes the posterior mean (z = μ = ml · [I; 0]), so scores are deterministic.
    be.gemm(false, false, T(1), ml, select_mu_.cmat(), T(0), z);
  }
  decoder_forward(n);
  Mat<T> x = x_.mat().rows_slice(0, n), out = out_.mat().rows_slice(0, n);
  if (this->sparse_) be.csr_rows_to_dense(b.input, b.rows, x);  // the loss's target
  // Evaluation reports the loss at the final β, not the annealing schedule's current value.
  const T kl = static_cast<T>(train ? kl_weight(step) : this->cfg_.beta);
  if (!train) {
    be.mse_loss(out, x, false, T(1) / static_cast<T>(n * I), Mat<T>{}, loss_acc);
    be.reparam_kl_backward(ml, CMat<T>{}, CMat<T>{}, kl, Mat<T>{}, loss_acc);
    return;
  }
  auto LV = [&](const char* l) {
    const std::string w = std::string(l) + ".weight", bs = std::string(l) + ".bias";
    return LinearView<T>{this->param(w), this->param(bs), this->grad(w), this->grad(bs)};
  };
  Mat<T> g_out = g_out_.mat().rows_slice(0, n), g_d2 = g_d2_.mat().rows_slice(0, n);
  Mat<T> g_d1 = g_d1_.mat().rows_slice(0, n), g_z = g_z_.mat().rows_slice(0, n);
  Mat<T> g_ml = g_ml_.mat().rows_slice(0, n), g_e2 = g_e2_.mat().rows_slice(0, n);
  Mat<T> g_e1 = g_e1_.mat().rows_slice(0, n);
  Mat<T> d1 = d1_.mat().rows_slice(0, n), d2 = d2_.mat().rows_slice(0, n);
  Mat<T> e1 = e1_.mat().rows_slice(0, n), e2 = e2_.mat().rows_slice(0, n);
  be.mse_loss(out, x, false, T(1) / static_cast<T>(n * I), g_out, loss_acc);
  // The output is linear: g_out is dec3's dz. Each g_* below is its layer's dz (through relu).
  linear_backward<T>(be, LV("dec3"), d2, Act::relu, g_out, g_d2);
  linear_backward<T>(be, LV("dec2"), d1, Act::relu, g_d2, g_d1);
  linear_backward<T>(be, LV("dec1"), z, Act::identity, g_d1, g_z);
  be.reparam_kl_backward(ml, eps, g_z, kl, g_ml, loss_acc);
  linear_backward<T>(be, LV("enc3"), e2, Act::relu, g_ml, g_e2);
  linear_backward<T>(be, LV("enc2"), e1, Act::relu, g_e2, g_e1);
  if (this->sparse_)
    sparse_linear_backward<T>(be, LV("enc1"), CsrBatch<T>{b.input, b.rows, {}, T(0), 0, 0}, g_e1);
  else
    linear_backward<T>(be, LV("enc1"), x, Act::identity, g_e1, Mat<T>{});
}

template <typename T>
void NotebookVae<T>::predict(const Batch<T>& b, Mat<T> out) {
  VAE_CHECK(out.rows == b.n && out.cols == this->cfg_.num_inputs, "VAE predict: bad output shape");
  if (b.n == 0) return;
  forward_backward(b, 0, false, Mat<T>{});
  this->be_.copy_within(out.data, out_.data(), static_cast<size_t>(out.size()) * sizeof(T));
}

template <typename T>
void NotebookVae<T>::encode(const Batch<T>& b, Mat<T> mu_logvar) {
  VAE_CHECK(mu_logvar.rows == b.n && mu_logvar.cols == 2 * latent_, "VAE encode: output must be n x 2L");
  if (b.n == 0) return;
  encoder_forward(b, b.n);
  this->be_.copy_within(mu_logvar.data, ml_.data(), static_cast<size_t>(mu_logvar.size()) * sizeof(T));
}

template class NotebookVae<float>;
template class NotebookVae<double>;

}  // namespace vae
