// The sparse first layer: the CSR batch multiplied without densifying it (backend.h's CsrBatch;
// the CPU oracle is cpu_backend.cpp). Deterministic by construction, no atomics: every output
// element is summed by one thread in the oracle's order — y[r][h] over row r's entries by
// ascending column, dW[h][c] over the batch rows ascending — with the product and the sum each
// rounded as the oracle rounds them (_rn: no FMA contraction; in double under exact precision,
// rounded to float once at the end), so without norms the results equal the oracle's bit for
// bit (the norms' block-tree sum may differ from its serial sum in the last bit).
#include <cmath>

#include "launch.cuh"
#include "sparse_entry.cuh"

namespace vae::cuda {

namespace {

// First position in a[lo, hi) whose value is ≥ key (a ascending).
__device__ __forceinline__ int64_t lower_bound_col(const int32_t* a, int64_t lo, int64_t hi, int64_t key) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// The sums' arithmetic: Acc = double under exact precision (each product of two floats exact),
// float otherwise.
__device__ __forceinline__ float mul_add(float acc, float a, float b) { return __fadd_rn(acc, __fmul_rn(a, b)); }
__device__ __forceinline__ double mul_add(double acc, float a, float b) {
  return __dadd_rn(acc, __dmul_rn(static_cast<double>(a), static_cast<double>(b)));
}

// One block per batch row (grid-stride); norms[r] = sqrt(Σ v²) over the row's stored values.
__global__ void csr_row_norms_kernel(CsrView<float> csr, const int32_t* rows, int64_t n, double* norms, int* err) {
  __shared__ double sh[kThreads];
  const int tid = threadIdx.x;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const int32_t s = rows[r];
    const bool ok = s >= 0 && s < csr.rows;
    double sq = 0.0;
    if (ok) {
      for (int64_t q = csr.indptr[s] + tid; q < csr.indptr[s + 1]; q += kThreads) {
        const double v = csr.values[q];
        sq += v * v;
      }
    } else if (tid == 0) {
      record_error(err, kErrSparseRowRange);
    }
    sq = block_sum(sq, sh);  // every thread of the block takes part (ok is block-uniform)
    if (tid == 0) norms[r] = ok ? sqrt(sq) : 0.0;
  }
}

// y = X · wᵀ. Block (row r, h-tile): the row's entries are transformed once per chunk of
// kThreads into shared memory, then every thread (one h each) walks them in order, reading
// w[h][c] — column c of W, i.e. row c of the transposed view.
template <typename Acc>
__global__ void __launch_bounds__(kThreads) csr_linear_forward_kernel(CsrBatchArgs x, const float* w, int64_t H,
                                                                       float* y, int* err) {
  __shared__ int32_t s_col[kThreads];
  __shared__ float s_val[kThreads];
  const int tid = threadIdx.x;
  const int64_t I = x.csr.cols;
  const int64_t h = static_cast<int64_t>(blockIdx.y) * kThreads + tid;
  const float* wh = w + (h < H ? h : 0) * I;
  for (int64_t r = blockIdx.x; r < x.n; r += gridDim.x) {
    const int32_t s = x.rows[r];
    Acc acc = 0;
    if (row_ok(x, s)) {  // block-uniform: the __syncthreads below are reached by all or none
      const int64_t b = x.csr.indptr[s], e = x.csr.indptr[s + 1];
      for (int64_t e0 = b; e0 < e; e0 += kThreads) {
        const int cnt = static_cast<int>(e - e0 < kThreads ? e - e0 : kThreads);
        if (tid < cnt) {
          const int32_t c = x.csr.indices[e0 + tid];
          const bool in = c >= 0 && c < I;
          s_col[tid] = in ? c : -1;
          s_val[tid] = in ? sparse_value(x, r, c, x.csr.values[e0 + tid]) : 0.0f;
        }
        __syncthreads();
        if (h < H)
          for (int k = 0; k < cnt; ++k) {
            const int32_t c = s_col[k];
            if (c >= 0) acc = mul_add(acc, s_val[k], __ldg(wh + c));
          }
        __syncthreads();  // before the next chunk overwrites s_col / s_val
      }
    } else if (tid == 0 && blockIdx.y == 0) {
      record_error(err, kErrSparseRowRange);
    }
    if (h < H) y[r * H + h] = static_cast<float>(acc);
  }
}

// dW = dyᵀ · X. Block (32-column tile, 128-h tile), one thread per h. For each chunk of 128
// batch rows, thread t finds row t's entries inside the column tile (binary search), a block
// scan places them in shared memory in (row, column) order, and every thread adds them to its
// 32 accumulators acc[j][h] in that order — so each dW[h][c] sums the rows ascending. A
// column tile holding more than kGradCap of a chunk's entries is staged in several windows.
constexpr int kGradCols = 32;   // dW columns per block: one warp writes 32 consecutive floats
constexpr int kGradH = 128;     // threads per block = h per block = batch rows per chunk
constexpr int kGradCap = 1024;  // entries staged per window

__device__ int block_exclusive_scan(int v, int* sh, int* total) {
  const int t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
  for (int d = 1; d < kGradH; d <<= 1) {
    const int add = t >= d ? sh[t - d] : 0;
    __syncthreads();
    sh[t] += add;
    __syncthreads();
  }
  const int inclusive = sh[t];
  *total = sh[kGradH - 1];
  __syncthreads();  // sh is free again on return
  return inclusive - v;
}

template <typename Acc>
__global__ void __launch_bounds__(kGradH) csr_linear_weight_grad_kernel(CsrBatchArgs x, const float* dy, int64_t H,
                                                                       float* dw, int* err) {
  // +1: the write-out reads columns without bank conflicts. Double: 33 024 bytes, with the
  // staging arrays 41 728 (ptxas), inside the 48 KB of static shared memory.
  __shared__ Acc acc[kGradCols][kGradH + 1];
  __shared__ int s_scan[kGradH];
  __shared__ int s_key[kGradCap];  // (row within chunk) · kGradCols + (column within tile)
  __shared__ float s_val[kGradCap];
  const int tid = threadIdx.x;
  const int64_t I = x.csr.cols;
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kGradCols;
  const int64_t c_end = c0 + kGradCols < I ? c0 + kGradCols : I;
  const int64_t h0 = static_cast<int64_t>(blockIdx.y) * kGradH;
  const int64_t h = h0 + tid;
  for (int j = 0; j < kGradCols; ++j) acc[j][tid] = 0;

  for (int64_t r0 = 0; r0 < x.n; r0 += kGradH) {
    const int64_t r = r0 + tid;
    int64_t lo = 0;
    int cnt = 0;
    if (r < x.n) {
      const int32_t s = x.rows[r];
      if (row_ok(x, s)) {
        const int64_t b = x.csr.indptr[s], e = x.csr.indptr[s + 1];
        lo = lower_bound_col(x.csr.indices, b, e, c0);
        cnt = static_cast<int>(lower_bound_col(x.csr.indices, lo, e, c_end) - lo);
      } else if (blockIdx.x == 0 && blockIdx.y == 0) {
        record_error(err, kErrSparseRowRange);
      }
    }
    int total = 0;
    const int off = block_exclusive_scan(cnt, s_scan, &total);
    for (int w0 = 0; w0 < total; w0 += kGradCap) {
      const int k_begin = off > w0 ? off : w0;
      const int k_end = off + cnt < w0 + kGradCap ? off + cnt : w0 + kGradCap;
      for (int k = k_begin; k < k_end; ++k) {
        const int64_t q = lo + (k - off);
        const int32_t c = x.csr.indices[q];
        s_key[k - w0] = tid * kGradCols + static_cast<int>(c - c0);
        s_val[k - w0] = sparse_value(x, r, c, x.csr.values[q]);
      }
      __syncthreads();
      const int m = total - w0 < kGradCap ? total - w0 : kGradCap;
      if (h < H)
        for (int k = 0; k < m; ++k) {
          const int key = s_key[k];
          const float g = dy[(r0 + key / kGradCols) * H + h];
          Acc& a = acc[key % kGradCols][tid];
          a = mul_add(a, g, s_val[k]);
        }
      __syncthreads();  // before the next window or chunk overwrites s_key / s_val
    }
  }
  __syncthreads();
  // Every (h, c) of the tile is written, zeros included (dW is overwritten).
  for (int idx = tid; idx < kGradCols * kGradH; idx += kGradH) {
    const int j = idx % kGradCols, hl = idx / kGradCols;
    const int64_t hh = h0 + hl, c = c0 + j;
    if (hh < H && c < I) dw[hh * I + c] = static_cast<float>(acc[j][hl]);
  }
}

}  // namespace

void csr_row_norms(const OpContext& c, CsrView<float> csr, const int32_t* rows, int64_t n, double* norms) {
  if (n == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>(n, kMaxGrid));
  csr_row_norms_kernel<<<blocks, kThreads, 0, c.stream>>>(csr, rows, n, norms, c.error);
  CUDA_CHECK_LAUNCH();
}

void csr_linear_forward(const OpContext& c, const CsrBatchArgs& x, const float* w, int64_t h, float* y, bool exact) {
  if (x.n == 0 || h == 0) return;
  const int64_t h_tiles = (h + kThreads - 1) / kThreads;
  VAE_CHECK(h_tiles <= 65535, "csr_linear_forward: too many output columns for one launch");
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(x.n, kMaxGrid)), static_cast<unsigned>(h_tiles));
  if (exact) csr_linear_forward_kernel<double><<<grid, kThreads, 0, c.stream>>>(x, w, h, y, c.error);
  else csr_linear_forward_kernel<float><<<grid, kThreads, 0, c.stream>>>(x, w, h, y, c.error);
  CUDA_CHECK_LAUNCH();
}

void csr_linear_weight_grad(const OpContext& c, const CsrBatchArgs& x, const float* dy, int64_t h, float* dw,
                            bool exact) {
  const int64_t I = x.csr.cols;
  if (I == 0 || h == 0) return;  // n == 0 still runs: dW is overwritten with zeros
  const int64_t c_tiles = (I + kGradCols - 1) / kGradCols, h_tiles = (h + kGradH - 1) / kGradH;
  VAE_CHECK(c_tiles <= 0x7fffffff && h_tiles <= 65535, "csr_linear_weight_grad: weight too large for one launch");
  const dim3 grid(static_cast<unsigned>(c_tiles), static_cast<unsigned>(h_tiles));
  if (exact) csr_linear_weight_grad_kernel<double><<<grid, kGradH, 0, c.stream>>>(x, dy, h, dw, c.error);
  else csr_linear_weight_grad_kernel<float><<<grid, kGradH, 0, c.stream>>>(x, dy, h, dw, c.error);
  CUDA_CHECK_LAUNCH();
}

const char* sparse_error_message() {
  return "sparse input (csr_row_norms / csr_linear_forward / csr_linear_weight_grad): row index out of range";
}

}  // namespace vae::cuda
