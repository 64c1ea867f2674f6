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

// Given dy (gradient w.r.t. the layer's output y, overwritten with the pre-activation
// gradient), writes dW, db and, when dx is non-empty, dx = dpre · W.
template <typename T>
void linear_backward(Backend<T>& be, const LinearView<T>& l, CMat<T> x, CMat<T> y, Act act, Mat<T> dy,
                     Mat<T> dx) {
  be.bias_act_backward(dy, y, act, dy, l.db);
  {
    const SideBranch<T> side(be);  // dW is needed only by the optimizer
    be.gemm(true, false, T(1), dy, x, T(0), l.dw);
  }
  if (!dx.empty()) be.gemm(false, false, T(1), dy, l.w, T(0), dx);
}

// The first layer on a CsrBatch (the batch's CSR rows, never densified): y = act(X · Wᵀ + b).
template <typename T>
void sparse_linear_forward(Backend<T>& be, const LinearView<T>& l, const CsrBatch<T>& x, Act act, Mat<T> y) {
  be.csr_linear_forward(x, l.w, y);
  be.bias_act(y, l.b, act, y);
}

// Its backward: dy is overwritten with the pre-activation gradient, dW and db are written;
// the input has no gradient.
template <typename T>
void sparse_linear_backward(Backend<T>& be, const LinearView<T>& l, const CsrBatch<T>& x, CMat<T> y, Act act,
                            Mat<T> dy) {
  be.bias_act_backward(dy, y, act, dy, l.db);
  const SideBranch<T> side(be);
  be.csr_linear_weight_grad(x, dy, l.dw);
}

}  // namespace vae
