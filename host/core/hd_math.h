// Code written once for the host and the device (VAE_HD), and the unfused double arithmetic
// both sides must share: nvcc contracts a·b + c into an FMA unless told not to, which changes
// the last bit; the _rn intrinsics on the device and plain operators on the host (the host code
// is built with -ffp-contract=off) round every operation as written.
#pragma once

#if defined(__CUDACC__)
#define VAE_HD __host__ __device__ __forceinline__
#else
#define VAE_HD inline
#endif
// A loop the device code must unroll, e.g. one indexing a register array (else it lives in
// local memory).
#if defined(__CUDA_ARCH__)
#define VAE_UNROLL _Pragma("unroll")
#else
#define VAE_UNROLL
#endif

namespace vae {

VAE_HD double hd_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
VAE_HD double hd_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
VAE_HD double hd_sub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
VAE_HD float hd_addf(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
VAE_HD float hd_subf(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
VAE_HD float hd_mulf(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

}  // namespace vae
