// Launch helpers and block-level building blocks shared by the kernel files. Everything here is
// deterministic: reductions use a fixed grid (a function of the problem size only) and a fixed
// shared-memory tree, never float atomics, so the same inputs give bit-identical outputs.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_check.h"
#include "ops.h"

namespace vae::cuda {

constexpr int kThreads = 256;  // every 1-D kernel; block_sum below relies on it
constexpr int64_t kMaxGrid = 8192;  // grid-stride loops cover larger problems

// Records the first device-side contract violation; the host reports it at the next sync.
// A plain store is enough: any non-zero value means "failed", which code wins is irrelevant.
__device__ __forceinline__ void record_error(int* flag, int code) {
  if (*flag == 0) *flag = code;
}

// Grid-stride elementwise kernel: f(i) for every i in [0, n).
template <typename F>
__global__ void elementwise_kernel(int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

// The one launch helper for elementwise work (functor F has `__device__ void operator()(int64_t)`).
template <typename F>
void launch_elementwise(cudaStream_t s, int64_t n, const F& f) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxGrid);
  elementwise_kernel<F><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(n, f);
  CUDA_CHECK_LAUNCH();
}

// Sum of v over the block in a fixed tree order; every thread gets the result. blockDim.x must
// be kThreads. sh is kThreads doubles of shared memory, reusable right after the call.
__device__ __forceinline__ double block_sum(double v, double* sh) {
  const int t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] += sh[t + s];
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

// Maximum ignoring NaN (std::max(acc, v) semantics of the CPU loop: NaN never enters).
__device__ __forceinline__ double nan_skipping_max(double acc, double v) { return acc < v ? v : acc; }

__device__ __forceinline__ double block_max(double v, double* sh) {
  const int t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] = nan_skipping_max(sh[t], sh[t + s]);
    __syncthreads();
  }
  const double r = sh[0];
  __syncthreads();
  return r;
}

// Per-block partial sums of f(i) over [0, n) (f may also write gradients as a side effect).
template <typename F>
__global__ void reduce_kernel(int64_t n, F f, double* partials) {
  __shared__ double sh[kThreads];
  double acc = 0.0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    acc += f(i);
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// Grid size of a partial-sum pass: depends on n only, so the summation order (and the result)
// is the same on every run and every GPU model.
inline int reduce_grid(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxPartials));
}

// Launches reduce_kernel; returns the number of partials written (0 when n == 0).
template <typename F>
int launch_reduce(cudaStream_t s, int64_t n, const F& f, double* partials) {
  if (n <= 0) return 0;
  const int blocks = reduce_grid(n);
  reduce_kernel<F><<<blocks, kThreads, 0, s>>>(n, f, partials);
  CUDA_CHECK_LAUNCH();
  return blocks;
}

// Second pass of every loss: one block sums the partials in a fixed order, then
//   total_out (optional) = Σ;  loss (optional) = float(double(loss) + outer · (inner · g(Σ)))
// with g = sqrt when take_sqrt, else identity — the CPU's add_loss, term for term.
// outer may be a step's live argument (reparam_kl_backward's kl_scale).
void finalize_loss(const OpContext& ctx, int nparts, Live<double> outer, double inner, bool take_sqrt,
                   float* loss, double* total_out);

}  // namespace vae::cuda
