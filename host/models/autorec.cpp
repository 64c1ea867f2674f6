#include "models/autorec.h"

#include <cmath>

#include "models/layers.h"

namespace vae {

template <typename T>
AutoRec<T>::AutoRec(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch)
    : Model<T>(be, cfg, max_batch) {
  ModelConfig& c = this->cfg_;
  if (c.loss.empty()) c.loss = "masked";
  if (c.loss != "masked" && c.loss != "dense")
    throw UsageError("AutoRec loss must be masked or dense, not '" + c.loss + "'");
  dense_ = c.loss == "dense";
  // The notebook's variant is a 10-unit sigmoid bottleneck; the paper's is 500 units.
  if (c.hidden <= 0) c.hidden = dense_ ? 10 : 500;
  if (c.act_hidden.empty()) c.act_hidden = "sigmoid";
  if (c.act_out.empty()) c.act_out = "identity";
  // Masked: tuned on ml-100k u1 (item-based RMSE ≈ 0.92–0.93 with Adam 1e-3, batch 64).
  if (c.lambda < 0) c.lambda = dense_ ? 0.001 : 10.0;
  g_ = parse_act(c.act_hidden);
  f_ = parse_act(c.act_out);
  if (f_ != Act::identity && f_ != Act::sigmoid)
    throw UsageError("AutoRec output activation must be identity or sigmoid");
  lambda_ = c.lambda;
  hidden_ = c.hidden;
  const int64_t I = c.num_inputs, H = hidden_;
  this->add_param("encoder.weight", H, I);  // V
  this->add_param("encoder.bias", 1, H);    // μ
  this->add_param("decoder.weight", I, H);  // W
  this->add_param("decoder.bias", 1, I);    // b
  this->allocate_params();
  x_ = be.template alloc<T>(max_batch, I);
  out_ = be.template alloc<T>(max_batch, I);
  dout_ = be.template alloc<T>(max_batch, I);
  h_ = be.template alloc<T>(max_batch, H);
  dh_ = be.template alloc<T>(max_batch, H);
}

template <typename T>
void AutoRec<T>::init(uint64_t seed) {
  // nn.Linear's default: U(±1/√fan_in) for weights and biases.
  std::vector<T> host(static_cast<size_t>(this->num_params()));
  const double a_enc = 1.0 / std::sqrt(static_cast<double>(this->cfg_.num_inputs));
  const double a_dec = 1.0 / std::sqrt(static_cast<double>(hidden_));
  this->init_uniform(host, "encoder.weight", a_enc, seed);
  this->init_uniform(host, "encoder.bias", a_enc, seed);
  this->init_uniform(host, "decoder.weight", a_dec, seed);
  this->init_uniform(host, "decoder.bias", a_dec, seed);
  this->be_.upload_into(host, this->param_buffer());
}

template <typename T>
void AutoRec<T>::forward(const Batch<T>& b, int64_t n) {
  VAE_CHECK(n <= this->max_batch_, "AutoRec: batch larger than max_batch");
  VAE_CHECK(b.input.cols == this->cfg_.num_inputs, "AutoRec: input width differs from the model's");
  Backend<T>& be = this->be_;
  Mat<T> h = h_.mat().rows_slice(0, n), out = out_.mat().rows_slice(0, n);
  const LinearView<T> enc{this->param("encoder.weight"), this->param("encoder.bias"), {}, {}};
  if (this->sparse_) {
    sparse_linear_forward<T>(be, enc, CsrBatch<T>{b.input, b.rows, {}, T(0), 0, 0}, g_, h);
  } else {
    Mat<T> x = x_.mat().rows_slice(0, n);
    be.csr_rows_to_dense(b.input, b.rows, x);
    linear_forward<T>(be, enc, x, g_, h);
  }
  linear_forward<T>(be, {this->param("decoder.weight"), this->param("decoder.bias"), {}, {}}, h, f_, out);
}

template <typename T>
void AutoRec<T>::forward_backward(const Batch<T>& b, int64_t /*step*/, bool train, Mat<T> loss_acc) {
  const int64_t n = b.n;
  if (n == 0) return;
  forward(b, n);
  Backend<T>& be = this->be_;
  Mat<T> x = x_.mat().rows_slice(0, n), h = h_.mat().rows_slice(0, n), out = out_.mat().rows_slice(0, n);
  if (this->sparse_) be.csr_rows_to_dense(b.input, b.rows, x);  // the loss's target
  Mat<T> dout = train ? dout_.mat().rows_slice(0, n) : Mat<T>{};
  be.mse_loss(out, x, /*masked=*/!dense_, T(1), dout, loss_acc);
  if (train) {
    LinearView<T> dec{this->param("decoder.weight"), this->param("decoder.bias"),
                      this->grad("decoder.weight"), this->grad("decoder.bias")};
    LinearView<T> enc{this->param("encoder.weight"), this->param("encoder.bias"),
                      this->grad("encoder.weight"), this->grad("encoder.bias")};
    Mat<T> dh = dh_.mat().rows_slice(0, n);
    activation_backward<T>(be, out, f_, dout);  // dout becomes the decoder's dz
    linear_backward<T>(be, dec, h, g_, dout, dh);  // dh: the encoder's dz
    if (this->sparse_) sparse_linear_backward<T>(be, enc, CsrBatch<T>{b.input, b.rows, {}, T(0), 0, 0}, dh);
    else linear_backward<T>(be, enc, x, Act::identity, dh, Mat<T>{});
  }
  const T lam = static_cast<T>(lambda_);
  if (lam == T(0)) return;
  if (dense_) {
    // The notebook: reg = Σ over every parameter tensor of its L2 norm, × ½λ.
    for (const ParamInfo& p : this->params())
      be.regularize(this->param(p.name), lam, Reg::l2_norm, train ? this->grad(p.name) : Mat<T>{}, loss_acc);
  } else {
    for (const char* name : {"encoder.weight", "decoder.weight"})
      be.regularize(this->param(name), lam, Reg::l2_squared, train ? this->grad(name) : Mat<T>{}, loss_acc);
  }
}

template <typename T>
void AutoRec<T>::predict(const Batch<T>& b, Mat<T> out) {
  VAE_CHECK(out.rows == b.n && out.cols == this->cfg_.num_inputs, "AutoRec predict: bad output shape");
  if (b.n == 0) return;
  forward(b, b.n);
  this->be_.copy_within(out.data, out_.data(), static_cast<size_t>(out.size()) * sizeof(T));
}

template class AutoRec<float>;
template class AutoRec<double>;

}  // namespace vae
