#include "models/multvae.h"

#include <algorithm>
#include <cmath>

#include "core/philox.h"
#include "models/layers.h"

namespace vae {

namespace {
const char* kLayers[] = {"enc1", "enc2", "dec1", "dec2"};
}

template <typename T>
MultVae<T>::MultVae(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch) : Model<T>(be, cfg, max_batch) {
  ModelConfig& c = this->cfg_;
  if (c.hidden <= 0) c.hidden = 600;
  if (c.latent <= 0) c.latent = 200;
  if (c.dropout < 0) c.dropout = 0.5;
  // Liang et al.: β annealed to 0.2, one step of 1/200 000 per update. A given β (1 included)
  // is kept, constant unless anneal_steps is given too; a given anneal_steps of 0 is no annealing.
  if (c.beta < 0) {
    c.beta = 0.2;
    if (!this->anneal_steps_given_) c.anneal_steps = 200000;
  }
  hidden_ = c.hidden;
  latent_ = c.latent;
  dropout_ = c.dropout;
  const int64_t I = c.num_inputs, H = hidden_, L = latent_, B = max_batch;
  const int64_t shape[4][2] = {{H, I}, {2 * L, H}, {H, L}, {I, H}};
  for (int i = 0; i < 4; ++i) {
    this->add_param(std::string(kLayers[i]) + ".weight", shape[i][0], shape[i][1]);
    this->add_param(std::string(kLayers[i]) + ".bias", 1, shape[i][0]);
  }
  this->allocate_params();
  std::vector<T> sel(static_cast<size_t>(2 * L * L), T(0));
  for (int64_t j = 0; j < L; ++j) sel[j * L + j] = T(1);
  select_mu_ = be.upload(sel, 2 * L, L);
  auto a = [&](int64_t cols) { return be.template alloc<T>(B, cols); };
  x_ = a(I), e1_ = a(H), ml_ = a(2 * L), eps_ = a(L), z_ = a(L), d1_ = a(H), logits_ = a(I);
  if (this->sparse_) norms_ = be.template alloc<double>(B, 1);
  else xin_ = a(I);
  g_logits_ = a(I), g_d1_ = a(H), g_z_ = a(L), g_ml_ = a(2 * L), g_e1_ = a(H);
}

template <typename T>
void MultVae<T>::init(uint64_t seed) {
  // The paper's code: Xavier (Glorot) normal weights, biases N(0, 0.001²).
  seed_ = seed;
  std::vector<T> host(static_cast<size_t>(this->num_params()));
  for (const char* l : kLayers) {
    const std::string w = std::string(l) + ".weight";
    const Mat<T> p = this->param(w);
    this->init_normal(host, w, std::sqrt(2.0 / static_cast<double>(p.rows + p.cols)), seed);
    this->init_normal(host, std::string(l) + ".bias", 0.001, seed);
  }
  this->be_.upload_into(host, this->param_buffer());
}

template <typename T>
double MultVae<T>::kl_weight(int64_t step) const {
  const ModelConfig& c = this->cfg_;
  if (c.anneal_steps <= 0) return c.beta;
  return std::min(c.beta, static_cast<double>(step) / static_cast<double>(c.anneal_steps));
}

template <typename T>
void MultVae<T>::encoder_forward(const Batch<T>& b, int64_t n, bool train, int64_t step) {
  VAE_CHECK(n <= this->max_batch_, "Mult-VAE: batch larger than max_batch");
  VAE_CHECK(b.input.cols == this->cfg_.num_inputs, "Mult-VAE: input width differs from the model's");
  Backend<T>& be = this->be_;
  auto P = [&](const char* l, const char* s) { return CMat<T>(this->param(std::string(l) + s)); };
  Mat<T> e1 = e1_.mat().rows_slice(0, n);
  if (this->sparse_) {
    be.csr_row_norms(b.input, b.rows, norms_.mat().rows_slice(0, n));
    sparse_linear_forward<T>(be, {P("enc1", ".weight"), P("enc1", ".bias"), {}, {}}, input_batch(b, n, train, step),
                             Act::tanh, e1);
  } else {
    Mat<T> x = x_.mat().rows_slice(0, n), xin = xin_.mat().rows_slice(0, n);
    be.csr_rows_to_dense(b.input, b.rows, x);
    be.l2_normalize_rows(x, xin);
    if (train && dropout_ > 0)
      be.dropout(xin, static_cast<T>(dropout_), seed_, rng_stream(RngStream::dropout, static_cast<uint64_t>(step)), xin);
    linear_forward<T>(be, {P("enc1", ".weight"), P("enc1", ".bias"), {}, {}}, xin, Act::tanh, e1);
  }
  linear_forward<T>(be, {P("enc2", ".weight"), P("enc2", ".bias"), {}, {}}, e1, Act::identity,
                    ml_.mat().rows_slice(0, n));
}

template <typename T>
CsrBatch<T> MultVae<T>::input_batch(const Batch<T>& b, int64_t n, bool train, int64_t step) const {
  CsrBatch<T> x;
  x.csr = b.input;
  x.rows = b.rows;
  x.norms = norms_.cmat().rows_slice(0, n);
  if (train && dropout_ > 0) {
    x.dropout = static_cast<T>(dropout_);
    x.seed = seed_;
    x.stream = rng_stream(RngStream::dropout, static_cast<uint64_t>(step));
  }
  return x;
}

template <typename T>
void MultVae<T>::decoder_forward(int64_t n) {
  Backend<T>& be = this->be_;
  auto P = [&](const char* l, const char* s) { return CMat<T>(this->param(std::string(l) + s)); };
  Mat<T> z = z_.mat().rows_slice(0, n), d1 = d1_.mat().rows_slice(0, n);
  linear_forward<T>(be, {P("dec1", ".weight"), P("dec1", ".bias"), {}, {}}, z, Act::tanh, d1);
  linear_forward<T>(be, {P("dec2", ".weight"), P("dec2", ".bias"), {}, {}}, d1, Act::identity,
                    logits_.mat().rows_slice(0, n));
}

template <typename T>
void MultVae<T>::forward_backward(const Batch<T>& b, int64_t step, bool train, Mat<T> loss_acc) {
  const int64_t n = b.n;
  if (n == 0) return;
  Backend<T>& be = this->be_;
  encoder_forward(b, n, train, step);
  Mat<T> ml = ml_.mat().rows_slice(0, n), z = z_.mat().rows_slice(0, n), eps = eps_.mat().rows_slice(0, n);
  if (train) {
    be.reparameterize(ml, seed_, rng_stream(RngStream::eps, static_cast<uint64_t>(step)), eps, z);
  } else {
    be.gemm(false, false, T(1), ml, select_mu_.cmat(), T(0), z);  // z = μ
  }
  decoder_forward(n);
  Mat<T> x = x_.mat().rows_slice(0, n), logits = logits_.mat().rows_slice(0, n);
  if (this->sparse_) be.csr_rows_to_dense(b.input, b.rows, x);  // the loss's target
  const T inv_n = T(1) / static_cast<T>(n);
  const T kl = static_cast<T>((train ? kl_weight(step) : this->cfg_.beta)) * inv_n;
  if (!train) {
    be.multinomial_nll(logits, x, inv_n, Mat<T>{}, loss_acc);
    be.reparam_kl_backward(ml, CMat<T>{}, CMat<T>{}, kl, Mat<T>{}, loss_acc);
    return;
  }
  auto LV = [&](const char* l) {
    const std::string w = std::string(l) + ".weight", bs = std::string(l) + ".bias";
    return LinearView<T>{this->param(w), this->param(bs), this->grad(w), this->grad(bs)};
  };
  Mat<T> g_logits = g_logits_.mat().rows_slice(0, n), g_d1 = g_d1_.mat().rows_slice(0, n);
  Mat<T> g_z = g_z_.mat().rows_slice(0, n), g_ml = g_ml_.mat().rows_slice(0, n);
  Mat<T> g_e1 = g_e1_.mat().rows_slice(0, n);
  Mat<T> d1 = d1_.mat().rows_slice(0, n), e1 = e1_.mat().rows_slice(0, n);
  be.multinomial_nll(logits, x, inv_n, g_logits, loss_acc);
  // Logits are linear: g_logits is dec2's dz. Each g_* below is its layer's dz (through tanh).
  linear_backward<T>(be, LV("dec2"), d1, Act::tanh, g_logits, g_d1);
  linear_backward<T>(be, LV("dec1"), z, Act::identity, g_d1, g_z);
  be.reparam_kl_backward(ml, eps, g_z, kl, g_ml, loss_acc);
  linear_backward<T>(be, LV("enc2"), e1, Act::tanh, g_ml, g_e1);
  if (this->sparse_)
    sparse_linear_backward<T>(be, LV("enc1"), input_batch(b, n, true, step), g_e1);
  else
    linear_backward<T>(be, LV("enc1"), xin_.mat().rows_slice(0, n), Act::identity, g_e1, Mat<T>{});
}

template <typename T>
void MultVae<T>::predict(const Batch<T>& b, Mat<T> out) {
  VAE_CHECK(out.rows == b.n && out.cols == this->cfg_.num_inputs, "Mult-VAE predict: bad output shape");
  if (b.n == 0) return;
  forward_backward(b, 0, false, Mat<T>{});
  this->be_.copy_within(out.data, logits_.data(), static_cast<size_t>(out.size()) * sizeof(T));
}

template <typename T>
void MultVae<T>::encode(const Batch<T>& b, Mat<T> mu_logvar) {
  VAE_CHECK(mu_logvar.rows == b.n && mu_logvar.cols == 2 * latent_, "Mult-VAE encode: output must be n x 2L");
  if (b.n == 0) return;
  encoder_forward(b, b.n, false, 0);
  this->be_.copy_within(mu_logvar.data, ml_.data(), static_cast<size_t>(mu_logvar.size()) * sizeof(T));
}

template class MultVae<float>;
template class MultVae<double>;

}  // namespace vae
