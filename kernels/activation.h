// A layer's bias and activation on one value, and the activation's derivative, written once for
// the elementwise kernels (bias_act, bias_act_backward) and for the exact GEMM's fused epilogues
// (gemm_exact_tile.h), so that the fused and the unfused layer give the same bits, and for the
// host, where tests/test_gemm_exact_tile.cpp runs the GEMM's pieces. The arithmetic is the CPU
// oracle's: the bias added in float, sigmoid and tanh computed in double and rounded once, the
// derivatives in float operation by operation.
#pragma once
#include <cmath>

#include "backend/backend.h"  // Act
#include "core/hd_math.h"

namespace vae {

VAE_HD double hd_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  const double e = exp(x);
  return e / (1.0 + e);
}

// act(v + bias); has_bias false: act(v).
VAE_HD float bias_activate(float v, bool has_bias, float bias, Act act) {
  if (has_bias) v = hd_addf(v, bias);
  switch (act) {
    case Act::identity: return v;
    case Act::relu: return v < 0.0f ? 0.0f : v;  // NaN propagates
    case Act::sigmoid: return static_cast<float>(hd_sigmoid(v));
    case Act::tanh: return static_cast<float>(tanh(static_cast<double>(v)));
  }
  return v;
}

// dy ⊙ act'(·) written with the activation's output y, as the oracle's bias_act_backward:
// relu'(0) = 0, sigmoid' = y(1 − y), tanh' = 1 − y².
VAE_HD float act_backward(Act act, float dy, float y) {
  switch (act) {
    case Act::identity: return dy;
    case Act::relu: return y > 0.0f ? dy : 0.0f;
    case Act::sigmoid: return hd_mulf(hd_mulf(dy, y), hd_subf(1.0f, y));
    case Act::tanh: return hd_mulf(dy, hd_subf(1.0f, hd_mulf(y, y)));
  }
  return dy;
}

}  // namespace vae
