// Ops that work row by row (one block per row, grid-stride over rows) or column by column (the
// bias gradient): everything whose reduction runs along one axis of a matrix.
#include <cmath>

#include "activation.h"
#include "launch.cuh"

namespace vae::cuda {

namespace {

struct ActGradF {
  const float* dy;
  const float* y;
  float* dx;  // may alias dy
  Act act;
  __device__ void operator()(int64_t i) const { dx[i] = act_backward(act, dy[i], y[i]); }
};

// Fused backward + bias gradient: a block owns kColTile columns and every row, so each column
// sum is formed in one fixed order (kRowThreads interleaved row partials, then summed in
// thread order) with no atomics and no second pass.
constexpr int kColTile = 32;
constexpr int kRowThreads = 32;

__global__ void __launch_bounds__(kColTile * kRowThreads) bias_act_backward_kernel(const float* dy, const float* y, Act act, float* dx, float* dbias,
                                         int64_t rows, int64_t cols) {
  __shared__ double sh[kRowThreads][kColTile];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  double acc = 0.0;
  if (c < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += kRowThreads) {
      const int64_t i = r * cols + c;
      const float d = act == Act::identity ? dy[i] : act_backward(act, dy[i], y[i]);
      if (dx) dx[i] = d;
      acc += d;
    }
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    double s = 0.0;
    for (int q = 0; q < kRowThreads; ++q) s += sh[q][threadIdx.x];
    dbias[c] = static_cast<float>(s);
  }
}

// Row log-softmax + multinomial NLL + gradient in one kernel. Each block handles rows
// blockIdx.x, blockIdx.x + gridDim.x, … and leaves Σ −row_loss of its rows in partials.
__global__ void multinomial_nll_kernel(const float* x, const float* t, int64_t rows, int64_t cols,
                                       double scale, float* g, double* partials) {
  __shared__ double sh[kThreads];
  const int tid = threadIdx.x;
  double block_total = 0.0;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    const float* tr = t + r * cols;
    double mx = -INFINITY;
    for (int64_t j = tid; j < cols; j += kThreads) mx = nan_skipping_max(mx, static_cast<double>(xr[j]));
    mx = block_max(mx, sh);
    double se = 0.0, ts = 0.0;
    for (int64_t j = tid; j < cols; j += kThreads) {
      se += exp(static_cast<double>(xr[j]) - mx);
      ts += static_cast<double>(tr[j]);
    }
    se = block_sum(se, sh);
    ts = block_sum(ts, sh);
    const double lse = mx + log(se);
    double row = 0.0;
    for (int64_t j = tid; j < cols; j += kThreads)
      if (tr[j] != 0.0f) row += __dmul_rn(static_cast<double>(tr[j]), static_cast<double>(xr[j]) - lse);  // 0·log p = 0
    row = block_sum(row, sh);
    block_total -= row;
    if (g) {
      float* gr = g + r * cols;  // may alias xr: this thread read xr[j] above, nobody else does
      for (int64_t j = tid; j < cols; j += kThreads) {
        const double p = exp(static_cast<double>(xr[j]) - lse);
        gr[j] = static_cast<float>(scale * __dsub_rn(__dmul_rn(p, ts), static_cast<double>(tr[j])));
      }
    }
  }
  if (tid == 0 && partials) partials[blockIdx.x] = block_total;
}

__global__ void l2_normalize_rows_kernel(const float* x, float* y, int64_t rows, int64_t cols) {
  __shared__ double sh[kThreads];
  const int tid = threadIdx.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;  // may alias xr: same thread-to-element map in both loops
    double sq = 0.0;
    for (int64_t j = tid; j < cols; j += kThreads) sq += static_cast<double>(xr[j]) * xr[j];
    const double nrm = sqrt(block_sum(sq, sh));
    for (int64_t j = tid; j < cols; j += kThreads)
      yr[j] = nrm > 0 ? static_cast<float>(static_cast<double>(xr[j]) / nrm) : 0.0f;
  }
}

__global__ void csr_rows_to_dense_kernel(CsrView<float> csr, const int32_t* rows, float* y, int64_t n,
                                         int* err) {
  const int tid = threadIdx.x;
  const int64_t cols = csr.cols;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    float* yr = y + r * cols;
    for (int64_t j = tid; j < cols; j += kThreads) yr[j] = 0.0f;
    __syncthreads();  // zeros land before the scatter below (other threads' columns)
    const int32_t s = rows[r];
    if (s < 0 || s >= csr.rows) {
      if (tid == 0) record_error(err, kErrCsrRowRange);
      continue;
    }
    const int64_t b = csr.indptr[s], e = csr.indptr[s + 1];
    for (int64_t q = b + tid; q < e; q += kThreads) {
      const int32_t c = csr.indices[q];
      if (c >= 0 && c < cols) yr[c] = csr.values[q];
    }
    __syncthreads();
  }
}

int row_grid(int64_t rows, int64_t cap) { return static_cast<int>(std::min<int64_t>(rows, cap)); }

}  // namespace

void bias_act_backward(const OpContext& c, const float* dy, const float* y, Act act, float* dx,
                       float* dbias, int64_t rows, int64_t cols) {
  if (act == Act::identity && dx == dy) dx = nullptr;  // dx already holds dy
  if (!dbias) {
    if (!dx) return;
    launch_elementwise(c.stream, rows * cols, ActGradF{dy, y, dx, act});
    return;
  }
  if (cols == 0) return;
  const int64_t blocks = (cols + kColTile - 1) / kColTile;
  bias_act_backward_kernel<<<static_cast<unsigned>(blocks), dim3(kColTile, kRowThreads), 0, c.stream>>>(
      dy, y, act, dx, dbias, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void multinomial_nll(const OpContext& c, const float* logits, const float* target, int64_t rows,
                     int64_t cols, float scale, float* dlogits, float* loss) {
  if ((!dlogits && !loss) || rows == 0 || cols == 0) return;  // the oracle adds 0 then
  const int blocks = row_grid(rows, kMaxPartials);  // a function of rows only: deterministic
  multinomial_nll_kernel<<<blocks, kThreads, 0, c.stream>>>(logits, target, rows, cols, scale, dlogits,
                                                            loss ? c.partials : nullptr);
  CUDA_CHECK_LAUNCH();
  if (loss) finalize_loss(c, blocks, static_cast<double>(scale), 1.0, false, loss, nullptr);
}

void l2_normalize_rows(const OpContext& c, const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows == 0 || cols == 0) return;
  l2_normalize_rows_kernel<<<row_grid(rows, kMaxGrid), kThreads, 0, c.stream>>>(x, y, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void csr_rows_to_dense(const OpContext& c, CsrView<float> csr, const int32_t* rows, float* y, int64_t n) {
  if (n == 0) return;
  csr_rows_to_dense_kernel<<<row_grid(n, kMaxGrid), kThreads, 0, c.stream>>>(csr, rows, y, n, c.error);
  CUDA_CHECK_LAUNCH();
}

}  // namespace vae::cuda
