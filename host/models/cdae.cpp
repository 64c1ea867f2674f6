#include "models/cdae.h"

#include <cmath>

#include "core/philox.h"
#include "models/layers.h"

namespace vae {

template <typename T>
Cdae<T>::Cdae(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch) : Model<T>(be, cfg, max_batch) {
  ModelConfig& c = this->cfg_;
  if (c.hidden <= 0) c.hidden = 50;
  if (c.dropout < 0) c.dropout = 0.5;
  if (c.lambda < 0) c.lambda = 0.01;
  if (c.loss.empty()) c.loss = "bce";
  if (c.loss != "bce" && c.loss != "mse") throw UsageError("CDAE loss must be bce or mse, not '" + c.loss + "'");
  VAE_CHECK(c.num_rows > 0, "CDAE needs the number of training users");
  bce_ = c.loss == "bce";
  dropout_ = c.dropout;
  lambda_ = c.lambda;
  const int64_t I = c.num_inputs, H = c.hidden, B = max_batch;
  this->add_param("encoder.weight", H, I);
  this->add_param("encoder.bias", 1, H);
  this->add_param("user.embedding", c.num_rows, H);
  this->add_param("decoder.weight", I, H);
  this->add_param("decoder.bias", 1, I);
  this->allocate_params();
  auto a = [&](int64_t cols) { return be.template alloc<T>(B, cols); };
  x_ = a(I), h_ = a(H), out_ = a(I), g_out_ = a(I), g_h_ = a(H);
  if (!this->sparse_) xin_ = a(I);
}

template <typename T>
void Cdae<T>::init(uint64_t seed) {
  seed_ = seed;
  std::vector<T> host(static_cast<size_t>(this->num_params()));
  const int64_t I = this->cfg_.num_inputs, H = this->cfg_.hidden;
  const double a_enc = 1.0 / std::sqrt(static_cast<double>(I)), a_dec = 1.0 / std::sqrt(static_cast<double>(H));
  this->init_uniform(host, "encoder.weight", a_enc, seed);
  this->init_uniform(host, "encoder.bias", a_enc, seed);
  this->init_uniform(host, "user.embedding", a_enc, seed);
  this->init_uniform(host, "decoder.weight", a_dec, seed);
  this->init_uniform(host, "decoder.bias", a_dec, seed);
  this->be_.upload_into(host, this->param_buffer());
}

template <typename T>
void Cdae<T>::forward(const Batch<T>& b, int64_t n, bool train, int64_t step) {
  VAE_CHECK(n <= this->max_batch_, "CDAE: batch larger than max_batch");
  VAE_CHECK(b.input.cols == this->cfg_.num_inputs, "CDAE: input width differs from the model's");
  VAE_CHECK(b.users.empty() || b.users.size() == n, "CDAE: one user id per batch row");
  Backend<T>& be = this->be_;
  Mat<T> h = h_.mat().rows_slice(0, n), out = out_.mat().rows_slice(0, n);
  if (this->sparse_) {
    be.csr_linear_forward(input_batch(b, train, step), this->param("encoder.weight"), h);
  } else {
    Mat<T> x = x_.mat().rows_slice(0, n), xin = xin_.mat().rows_slice(0, n);
    be.csr_rows_to_dense(b.input, b.rows, x);
    CMat<T> enc_in = x;
    if (train && dropout_ > 0) {
      be.dropout(x, static_cast<T>(dropout_), seed_, rng_stream(RngStream::dropout, static_cast<uint64_t>(step)), xin);
      enc_in = xin;
    }
    be.gemm(false, true, T(1), enc_in, this->param("encoder.weight"), T(0), h);
  }
  if (!b.users.empty()) be.gather_rows_add(this->param("user.embedding"), b.users, h);
  be.bias_act(h, this->param("encoder.bias"), Act::sigmoid, h);
  linear_forward<T>(be, {this->param("decoder.weight"), this->param("decoder.bias"), {}, {}}, h, Act::identity, out);
}

template <typename T>
CsrBatch<T> Cdae<T>::input_batch(const Batch<T>& b, bool train, int64_t step) const {
  CsrBatch<T> x;
  x.csr = b.input;
  x.rows = b.rows;
  if (train && dropout_ > 0) {
    x.dropout = static_cast<T>(dropout_);
    x.seed = seed_;
    x.stream = rng_stream(RngStream::dropout, static_cast<uint64_t>(step));
  }
  return x;
}

template <typename T>
void Cdae<T>::forward_backward(const Batch<T>& b, int64_t step, bool train, Mat<T> loss_acc) {
  const int64_t n = b.n;
  if (n == 0) return;
  forward(b, n, train, step);
  Backend<T>& be = this->be_;
  Mat<T> x = x_.mat().rows_slice(0, n);
  Mat<T> h = h_.mat().rows_slice(0, n), out = out_.mat().rows_slice(0, n);
  if (this->sparse_) be.csr_rows_to_dense(b.input, b.rows, x);  // the loss's target
  Mat<T> g_out = train ? g_out_.mat().rows_slice(0, n) : Mat<T>{};
  const T inv_n = T(1) / static_cast<T>(n);
  if (bce_) be.bce_logits(out, x, inv_n, g_out, loss_acc);
  else be.mse_loss(out, x, false, inv_n, g_out, loss_acc);
  if (train) {
    Mat<T> g_h = g_h_.mat().rows_slice(0, n);
    // The output is linear (logits): g_out is the decoder's dz; g_h the encoder's (through sigmoid).
    linear_backward<T>(be, {this->param("decoder.weight"), this->param("decoder.bias"),
                            this->grad("decoder.weight"), this->grad("decoder.bias")},
                       h, Act::sigmoid, g_out, g_h);
    const LinearView<T> enc{this->param("encoder.weight"), this->param("encoder.bias"),
                            this->grad("encoder.weight"), this->grad("encoder.bias")};
    if (this->sparse_) {
      sparse_linear_backward<T>(be, enc, input_batch(b, true, step), g_h);
    } else {
      CMat<T> enc_in = dropout_ > 0 ? CMat<T>(xin_.mat().rows_slice(0, n)) : CMat<T>(x);
      linear_backward<T>(be, enc, enc_in, Act::identity, g_h, Mat<T>{});
    }
    Mat<T> g_user = this->grad("user.embedding");
    be.fill(g_user, T(0));
    if (!b.users.empty()) be.scatter_rows_add(g_h, b.users, g_user);
  }
  if (lambda_ > 0)
    for (const ParamInfo& p : this->params())
      be.regularize(this->param(p.name), static_cast<T>(lambda_), Reg::l2_squared,
                    train ? this->grad(p.name) : Mat<T>{}, loss_acc);
}

template <typename T>
void Cdae<T>::predict(const Batch<T>& b, Mat<T> out) {
  VAE_CHECK(out.rows == b.n && out.cols == this->cfg_.num_inputs, "CDAE predict: bad output shape");
  if (b.n == 0) return;
  forward(b, b.n, false, 0);
  this->be_.copy_within(out.data, out_.data(), static_cast<size_t>(out.size()) * sizeof(T));
}

template class Cdae<float>;
template class Cdae<double>;

}  // namespace vae
