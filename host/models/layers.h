// Fully connected layer over the backend op set, with PyTorch's nn.Linear layout: weight is
// out × in, y = act(x · Wᵀ + b). Keeping torch's layout lets the parity tests load the same
// tensors into both implementations, and model files read naturally from Python.
#pragma once
#include "backend/backend.h"

namespace vae {

// Ops issued while one lives form a side branch (Backend::begin_side): the weight gradients.
template <typename T>
class SideBranch {
 public:
  explicit SideBranch(Backend<T>& be) : be_(be) { be_.begin_side(); }
  ~SideBranch() { be_.end_side(); }
  SideBranch(const SideBranch&) = delete;
  SideBranch& operator=(const SideBranch&) = delete;

 private:
  Backend<T>& be_;
};

template <typename T>
struct LinearView {
  CMat<T> w, b;    // out × in, 1 × out
  Mat<T> dw, db;   // gradients (empty when not training)
};

// y = act(x · Wᵀ + b)
template <typename T>
void linear_forward(Backend<T>& be, const LinearView<T>& l, CMat<T> x, Act act, Mat<T> y) {
  be.linear(x, l.w, l.b, act, y);
}

// The backward pass runs on dz, each layer's gradient w.r.t. its pre-activation x · Wᵀ + b:
// the layer above hands it down already through this layer's activation (linear_backward's
// x_act), and a loss's gradient w.r.t. a network output is turned into it by
// activation_backward (nothing to do for an identity output).

// dy → dz in place for the output y = act(·) of a layer.
template <typename T>
void activation_backward(Backend<T>& be, CMat<T> y, Act act, Mat<T> dy) {
  if (act != Act::identity) be.bias_act_backward(dy, y, act, dy, Mat<T>{});
}

// Given dz, writes dW and db and, when dx is non-empty, the gradient for the layer below:
// dx = (dz · W) ⊙ x_act'(x), x_act being the activation whose output x is (identity when x is
// not one), so dx is the lower layer's dz.
template <typename T>
void linear_backward(Backend<T>& be, const LinearView<T>& l, CMat<T> x, Act x_act, CMat<T> dz, Mat<T> dx) {
  {
    const SideBranch<T> side(be);  // dW and db are needed only by the optimizer
    be.linear_backward_weight(dz, x, l.dw, l.db);
  }
  if (!dx.empty()) be.linear_backward_input(dz, l.w, x, x_act, dx);
}

// The first layer on a CsrBatch (the batch's CSR rows, never densified): y = act(X · Wᵀ + b).
template <typename T>
void sparse_linear_forward(Backend<T>& be, const LinearView<T>& l, const CsrBatch<T>& x, Act act, Mat<T> y) {
  be.csr_linear_forward(x, l.w, y);
  be.bias_act(y, l.b, act, y);
}

// Its backward from dz: dW and db (the input has no gradient).
template <typename T>
void sparse_linear_backward(Backend<T>& be, const LinearView<T>& l, const CsrBatch<T>& x, CMat<T> dz) {
  const SideBranch<T> side(be);
  be.csr_linear_weight_grad(x, dz, l.dw);
  if (!l.db.empty()) be.bias_gradient(dz, l.db);
}

}  // namespace vae
