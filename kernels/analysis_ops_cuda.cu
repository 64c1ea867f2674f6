// CUDA twin of the analysis hot loops (AnalysisOps), same semantics as the CPU reference
// (host/analysis/analysis_ops_cpu.cpp).
//
// K-Means: x and its row norms stay on the device for a session. The assignment is a cuBLAS
// SGEMM (−2·x·cᵀ, plain FP32, no TF32) followed by a kernel that adds ‖x‖² + ‖c‖² in the CPU's
// float order and takes the argmin (lower index on ties, distance clamped at 0). A Lloyd step
// fuses that argmin with the per-cluster sums: each block owns a fixed range of rows, every
// (lane, cluster, column) accumulator is written by exactly one thread in row order, lanes and
// blocks are folded in a fixed order — no float atomics, so the sums depend on the sizes only.
// Only k × d + k + 1 doubles come back per step.
//
// t-SNE: P (n × n) stays on the device between tsne_begin and tsne_end. One warp per row sums
// the Student-t kernel (then Z over rows in a fixed order), a second pass the gradient and, when
// asked, the KL terms; all pair terms in double, like the CPU.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "analysis/analysis_ops.h"
#include "backend/backend.h"
#include "core/error.h"
#include "cuda_check.h"

namespace vae {
namespace {

constexpr int kBlock = 256;
constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = kBlock / kWarp;

// Lloyd step: each block's shared accumulators (lanes × k × columns doubles) plus its label and
// count arrays stay under the 48 KiB of shared memory every device grants without opt-in.
constexpr int kAccDoubles = 4096;
constexpr int kMaxDeviceK = 2048;                          // larger k: the step runs on the CPU
constexpr int64_t kMaxStepBlocks = 4096;                   // row blocks (= partial rows) per step
constexpr int64_t kMaxPartialDoubles = int64_t{1} << 23;   // 64 MiB of per-block partial sums
constexpr int64_t kMaxCrossFloats = int64_t{1} << 26;      // 256 MiB of x·cᵀ at once
constexpr int kColRows = 64;                               // partial rows folded per block
constexpr int kTsneTile = 1024;                            // y points staged in shared memory
constexpr double kEps = DBL_EPSILON;                       // sklearn's MACHINE_EPSILON

// ---- buffers -----------------------------------------------------------------------------

// Device array that only grows (contents not kept on growth). cudaFree synchronises the device,
// so releasing never races with queued work.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { release(); }
  void reserve(size_t n) {
    if (n <= cap_ && p_) return;
    release();
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
    cap_ = std::max<size_t>(n, 1);
  }
  void release() {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    cap_ = 0;
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
  size_t cap_ = 0;
};

// Page-locked host staging for the small per-step results (a pageable copy costs an extra hop).
template <typename T>
class PinnedArray {
 public:
  PinnedArray() = default;
  PinnedArray(const PinnedArray&) = delete;
  PinnedArray& operator=(const PinnedArray&) = delete;
  ~PinnedArray() {
    if (p_) cudaFreeHost(p_);
  }
  void reserve(size_t n) {
    if (n <= cap_ && p_) return;
    if (p_) cudaFreeHost(p_);
    p_ = nullptr;
    cap_ = 0;
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
    cap_ = std::max<size_t>(n, 1);
  }
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
  size_t cap_ = 0;
};

// ---- kernels -----------------------------------------------------------------------------

// Fixed shuffle tree: the same order on every run; the total lands in lane 0.
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// The CPU's argmin: (‖x‖² + ‖c_j‖²) + cross_j in float, strict < so ties keep the lower index.
__device__ __forceinline__ int argmin_row(const float* __restrict__ cross_row, float xn,
                                          const float* __restrict__ cnorm, int k, float* best_v) {
  int best = 0;
  float bv = __fadd_rn(__fadd_rn(xn, cnorm[0]), cross_row[0]);
  for (int j = 1; j < k; ++j) {
    const float v = __fadd_rn(__fadd_rn(xn, cnorm[j]), cross_row[j]);
    if (v < bv) {
      bv = v;
      best = j;
    }
  }
  *best_v = bv;
  return best;
}

// labels/dist2 of `rows` rows whose cross products (rows × k) and norms start at the pointers.
__global__ void assign_kernel(const float* __restrict__ cross, const float* __restrict__ xnorm,
                              const float* __restrict__ cnorm, int64_t rows, int k,
                              int32_t* __restrict__ labels, float* __restrict__ dist2) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < rows; i += stride) {
    float v;
    labels[i] = argmin_row(cross + i * k, xnorm[i], cnorm, k, &v);
    if (dist2) dist2[i] = v > 0.0f ? v : 0.0f;  // NaN → 0 as on the CPU
  }
}

// One Lloyd step over rows [row_begin, row_end) (a GEMM chunk; cross holds its rows × k values).
// Block (bx, by) owns rows row_begin + bx·rows_per_block … (+rows_per_block) and columns
// by·dt … (+dt) and writes them into partial row p = row_begin / rows_per_block + bx (width
// k·d + k + 1: sums [j·d + t], counts [k·d + j], changed [k·d + k]); the by = 0 blocks also
// write the labels and count clusters and changes (integer shared atomics: order-free).
__global__ void kmeans_step_kernel(const float* __restrict__ x, const float* __restrict__ xnorm,
                                   const float* __restrict__ cross, const float* __restrict__ cnorm,
                                   int64_t row_begin, int64_t row_end, int64_t d, int k,
                                   int64_t rows_per_block, int dt, int lanes, int64_t width,
                                   int32_t* __restrict__ labels, double* __restrict__ partial) {
  extern __shared__ double step_smem[];
  double* acc = step_smem;  // [lane][cluster][column]
  int* s_lab = reinterpret_cast<int*>(acc + static_cast<size_t>(lanes) * k * dt);  // kBlock
  int* s_cnt = s_lab + kBlock;                                                     // k
  __shared__ int s_changed;
  const int tid = threadIdx.x;
  const int64_t p = row_begin / rows_per_block + blockIdx.x;
  const int64_t b0 = row_begin + static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t b1 = min(b0 + rows_per_block, row_end);
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * dt;
  const int dcols = static_cast<int>(min(static_cast<int64_t>(dt), d - t0));
  const bool lead = blockIdx.y == 0;

  for (int e = tid; e < lanes * k * dt; e += kBlock) acc[e] = 0.0;
  for (int j = tid; j < k; j += kBlock) s_cnt[j] = 0;
  if (tid == 0) s_changed = 0;
  __syncthreads();

  const int lane = tid / dt, col = tid % dt;
  const bool summer = lane < lanes && col < dcols;
  for (int64_t q0 = b0; q0 < b1; q0 += kBlock) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(kBlock), b1 - q0));
    if (tid < rows) {
      const int64_t i = q0 + tid;
      float v;
      const int lab = argmin_row(cross + (i - row_begin) * k, xnorm[i], cnorm, k, &v);
      s_lab[tid] = lab;
      if (lead) {
        if (labels[i] != lab) atomicAdd(&s_changed, 1);
        labels[i] = lab;
        atomicAdd(&s_cnt[lab], 1);
      }
    }
    __syncthreads();
    if (summer) {
      // Lane `lane` adds rows lane, lane + lanes, … of the chunk, in order, to its own
      // accumulators; consecutive columns make the loads of x coalesced.
      double* a = acc + static_cast<size_t>(lane) * k * dt + col;
      const float* xc = x + q0 * d + t0 + col;
#pragma unroll 4
      for (int r = lane; r < rows; r += lanes)
        a[static_cast<size_t>(s_lab[r]) * dt] += static_cast<double>(xc[static_cast<int64_t>(r) * d]);
    }
    __syncthreads();  // s_lab is refilled by the next chunk
  }

  double* out = partial + p * width;
  for (int e = tid; e < k * dcols; e += kBlock) {
    const int j = e / dcols, c = e % dcols;
    double s = 0.0;
    for (int l = 0; l < lanes; ++l) s += acc[(static_cast<size_t>(l) * k + j) * dt + c];
    out[static_cast<int64_t>(j) * d + t0 + c] = s;
  }
  if (lead) {
    for (int j = tid; j < k; j += kBlock) out[static_cast<int64_t>(k) * d + j] = s_cnt[j];
    if (tid == 0) out[static_cast<int64_t>(k) * d + k] = s_changed;
  }
}

// out (⌈rows / kColRows⌉ × width) = the column sums of each band of kColRows rows of in; warp w
// adds rows w, w + 8, … of the band, then the 8 warps are added in order. in ≠ out.
__global__ void column_sum_kernel(const double* __restrict__ in, int64_t rows, int64_t width,
                                  double* __restrict__ out) {
  __shared__ double sh[kWarpsPerBlock][kWarp + 1];
  const int tx = threadIdx.x % kWarp, ty = threadIdx.x / kWarp;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarp + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kColRows;
  const int64_t r1 = min(rows, r0 + kColRows);
  double s = 0.0;
  if (col < width)
    for (int64_t r = r0 + ty; r < r1; r += kWarpsPerBlock) s += in[r * width + col];
  sh[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && col < width) {
    double t = 0.0;
    for (int w = 0; w < kWarpsPerBlock; ++w) t += sh[w][tx];
    out[static_cast<int64_t>(blockIdx.y) * width + col] = t;
  }
}

// *out = Σ v[0 … n) by one block: thread-strided partial sums, then a fixed shared-memory tree.
__global__ void ordered_sum_kernel(const double* __restrict__ v, int64_t n, double* __restrict__ out) {
  __shared__ double sh[kBlock];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kBlock) s += v[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int h = kBlock / 2; h > 0; h >>= 1) {
    if (static_cast<int>(threadIdx.x) < h) sh[threadIdx.x] += sh[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sh[0];
}

// 1 / (1 + a² + b²) with the CPU's roundings (no contraction), correctly rounded reciprocal.
__device__ __forceinline__ double student_t(double a, double b) {
  return __drcp_rn(__dadd_rn(__dadd_rn(1.0, __dmul_rn(a, a)), __dmul_rn(b, b)));
}

// One warp per row i, lanes striding over j, y staged through shared memory in tiles.
//   kGrad = false: row_out[i] = Σ_{j≠i} w_ij.
//   kGrad = true:  grad[i] = 4 Σ_j (ex·p_ij − q_ij) w_ij (y_i − y_j), q = max(w / Z, eps) with
//                  Z = *z_total; with kKl also row_out[i] = Σ_j ex·p_ij log(max(ex·p_ij, eps) / q).
template <bool kGrad, bool kKl>
__global__ void tsne_rows_kernel(const float* __restrict__ p, const float2* __restrict__ y, int64_t n,
                                 double ex, const double* __restrict__ z_total,
                                 double* __restrict__ row_out, float* __restrict__ grad) {
  __shared__ double2 tile[kTsneTile];
  const int lane = threadIdx.x % kWarp;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const bool active = i < n;  // uniform over the warp
  double yi0 = 0.0, yi1 = 0.0;
  if (active) {
    const float2 yi = y[i];
    yi0 = yi.x;
    yi1 = yi.y;
  }
  const double inv_z = kGrad ? 1.0 / *z_total : 0.0;
  const float* prow = p + (active ? i : 0) * n;
  double s0 = 0.0, s1 = 0.0, s2 = 0.0;
  for (int64_t j0 = 0; j0 < n; j0 += kTsneTile) {
    const int cnt = static_cast<int>(min(static_cast<int64_t>(kTsneTile), n - j0));
    __syncthreads();  // the previous tile is consumed
    for (int t = threadIdx.x; t < cnt; t += kBlock) {
      const float2 v = y[j0 + t];
      tile[t] = make_double2(v.x, v.y);
    }
    __syncthreads();
    if (!active) continue;
    for (int jj = lane; jj < cnt; jj += kWarp) {
      const int64_t j = j0 + jj;
      if (j == i) continue;
      const double a = yi0 - tile[jj].x, b = yi1 - tile[jj].y;
      const double w = student_t(a, b);
      if (!kGrad) {
        s0 += w;
        continue;
      }
      const double wq = w * inv_z;
      const double q = wq < kEps ? kEps : wq;  // std::max(wq, eps)
      const double pij = ex * static_cast<double>(prow[j]);
      const double f = (pij - q) * w;
      s0 += f * a;
      s1 += f * b;
      if (kKl) s2 += pij * log((pij < kEps ? kEps : pij) / q);
    }
  }
  if (!active) return;
  s0 = warp_sum(s0);
  if (kGrad) s1 = warp_sum(s1);
  if (kKl) s2 = warp_sum(s2);
  if (lane == 0) {
    if (kGrad) {
      grad[2 * i] = static_cast<float>(4.0 * s0);
      grad[2 * i + 1] = static_cast<float>(4.0 * s1);
      if (kKl) row_out[i] = s2;
    } else {
      row_out[i] = s0;
    }
  }
}

inline unsigned grid_for(int64_t items, int64_t per_block) {
  return static_cast<unsigned>((items + per_block - 1) / per_block);
}

// ---- the ops -----------------------------------------------------------------------------

class CudaAnalysisOps final : public AnalysisOps {
 public:
  CudaAnalysisOps() {
    try {
      CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      CUBLAS_CHECK(cublasCreate(&blas_));
      CUBLAS_CHECK(cublasSetStream(blas_, stream_));
      // Plain FP32 even under NVIDIA_TF32_OVERRIDE: distances must track the CPU's.
      CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_PEDANTIC_MATH));
    } catch (...) {
      destroy();
      throw;
    }
  }
  ~CudaAnalysisOps() override { destroy(); }
  CudaAnalysisOps(const CudaAnalysisOps&) = delete;
  CudaAnalysisOps& operator=(const CudaAnalysisOps&) = delete;

  std::string name() const override { return "cuda"; }

  void kmeans_assign(const float* x, int64_t n, int64_t d, const float* c, int k, int32_t* labels,
                     float* dist2) override {
    VAE_CHECK(n >= 0 && d >= 1 && k >= 1, "kmeans_assign: bad sizes");
    if (n == 0) return;
    check_blas_sizes(n, d, k);
    const float* dx;
    const float* dxn;
    if (resident(x, n, d)) {
      dx = x_.get();
      dxn = xnorm_.get();
    } else {
      upload_rows(x, n, d, xs_, xsnorm_);
      dx = xs_.get();
      dxn = xsnorm_.get();
    }
    upload_centres(c, k, d);
    const int64_t cap = cross_rows(n, k, 1);
    cross_.reserve(static_cast<size_t>(cap * k));
    alabels_.reserve(static_cast<size_t>(n));
    if (dist2) adist_.reserve(static_cast<size_t>(n));
    for (int64_t r0 = 0; r0 < n; r0 += cap) {
      const int64_t m = std::min(cap, n - r0);
      gemm_cross(dx + r0 * d, m, d, k);
      const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(grid_for(m, kBlock), 8192));
      assign_kernel<<<blocks, kBlock, 0, stream_>>>(cross_.get(), dxn + r0, cnorm_, m, k,
                                                    alabels_.get() + r0,
                                                    dist2 ? adist_.get() + r0 : nullptr);
      CUDA_CHECK_LAUNCH();
    }
    CUDA_CHECK(cudaMemcpyAsync(labels, alabels_.get(), static_cast<size_t>(n) * sizeof(int32_t),
                               cudaMemcpyDeviceToHost, stream_));
    if (dist2)
      CUDA_CHECK(cudaMemcpyAsync(dist2, adist_.get(), static_cast<size_t>(n) * sizeof(float),
                                 cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void kmeans_begin(const float* x, int64_t n, int64_t d) override {
    VAE_CHECK(!km_open_, "kmeans_begin: a K-Means session is already open");
    VAE_CHECK(n >= 0 && d >= 1 && (x != nullptr || n == 0), "kmeans_begin: bad data");
    VAE_CHECK(n <= INT_MAX && d <= INT_MAX, "kmeans_begin: more rows or columns than cuBLAS takes");
    cpu_->kmeans_begin(x, n, d);  // for steps with k > kMaxDeviceK
    try {
      if (n > 0) {
        upload_rows(x, n, d, x_, xnorm_);
        step_labels_.reserve(static_cast<size_t>(n));
        // −1: the first step counts every label as changed.
        CUDA_CHECK(cudaMemsetAsync(step_labels_.get(), 0xff, static_cast<size_t>(n) * sizeof(int32_t), stream_));
        CUDA_CHECK(cudaStreamSynchronize(stream_));
      }
    } catch (...) {
      cpu_->kmeans_end();
      throw;
    }
    km_x_ = x;
    km_n_ = n;
    km_d_ = d;
    km_open_ = true;
    km_stepped_ = false;
  }

  void kmeans_end() override {
    if (!km_open_) return;
    km_open_ = false;
    km_x_ = nullptr;
    cpu_->kmeans_end();
  }

  int64_t kmeans_step(const float* c, int k, double* sums, int64_t* counts) override {
    VAE_CHECK(km_open_, "kmeans_step outside a kmeans_begin/kmeans_end session");
    VAE_CHECK(k >= 1, "kmeans_step: k must be at least 1");
    const int64_t n = km_n_, d = km_d_;
    km_stepped_ = true;
    // The shared-memory layout holds k ≤ kMaxDeviceK; beyond that the CPU twin takes the step
    // (its "changed" count is then against its own previous step, like ours).
    step_on_host_ = k > kMaxDeviceK;
    if (step_on_host_) return cpu_->kmeans_step(c, k, sums, counts);
    if (n == 0) {
      std::fill(sums, sums + static_cast<int64_t>(k) * d, 0.0);
      std::fill(counts, counts + k, int64_t{0});
      return 0;
    }
    const int dt = static_cast<int>(std::min<int64_t>({d, int64_t{kBlock}, int64_t{kAccDoubles / k}}));
    const int lanes = std::max(1, std::min(kBlock / dt, kAccDoubles / (k * dt)));
    const int64_t tiles = (d + dt - 1) / dt;
    VAE_CHECK(tiles <= 65535, "kmeans_step: too many columns for the device step");
    const int64_t width = static_cast<int64_t>(k) * d + k + 1;
    // Row blocks: a function of n, k, d only, so the summation order never depends on the GPU.
    const int64_t chunks = (n + kBlock - 1) / kBlock;
    const int64_t max_blocks = std::clamp<int64_t>(kMaxPartialDoubles / width, 1, kMaxStepBlocks);
    const int64_t per_block = (chunks + std::min(chunks, max_blocks) - 1) / std::min(chunks, max_blocks);
    const int64_t rows_per_block = per_block * kBlock;
    const int64_t blocks = (n + rows_per_block - 1) / rows_per_block;
    const int64_t cap = cross_rows(n, k, rows_per_block);
    const size_t smem = static_cast<size_t>(lanes) * k * dt * sizeof(double) +
                        static_cast<size_t>(kBlock + k) * sizeof(int);

    upload_centres(c, k, d);
    cross_.reserve(static_cast<size_t>(cap * k));
    partial_.reserve(static_cast<size_t>(blocks * width));
    band_.reserve(static_cast<size_t>(((blocks + kColRows - 1) / kColRows) * width));
    for (int64_t r0 = 0; r0 < n; r0 += cap) {
      const int64_t m = std::min(cap, n - r0);
      gemm_cross(x_.get() + r0 * d, m, d, k);
      const dim3 grid(grid_for(m, rows_per_block), static_cast<unsigned>(tiles));
      kmeans_step_kernel<<<grid, kBlock, smem, stream_>>>(
          x_.get(), xnorm_.get(), cross_.get(), cnorm_, r0, r0 + m, d, k, rows_per_block, dt,
          lanes, width, step_labels_.get(), partial_.get());
      CUDA_CHECK_LAUNCH();
    }
    // Fold the per-block rows in bands of kColRows until one row is left.
    double* in = partial_.get();
    double* other = band_.get();
    for (int64_t rows = blocks; rows > 1;) {
      const int64_t bands = (rows + kColRows - 1) / kColRows;
      const dim3 grid(grid_for(width, kWarp), static_cast<unsigned>(bands));
      column_sum_kernel<<<grid, kBlock, 0, stream_>>>(in, rows, width, other);
      CUDA_CHECK_LAUNCH();
      std::swap(in, other);
      rows = bands;
    }
    result_.reserve(static_cast<size_t>(width));
    CUDA_CHECK(cudaMemcpyAsync(result_.get(), in, static_cast<size_t>(width) * sizeof(double),
                               cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    const double* r = result_.get();
    std::copy(r, r + static_cast<int64_t>(k) * d, sums);
    for (int j = 0; j < k; ++j) counts[j] = static_cast<int64_t>(r[static_cast<int64_t>(k) * d + j]);
    return static_cast<int64_t>(r[static_cast<int64_t>(k) * d + k]);
  }

  void kmeans_step_labels(int32_t* labels) override {
    VAE_CHECK(km_open_ && km_stepped_, "kmeans_step_labels: no kmeans_step in this session");
    if (step_on_host_) return cpu_->kmeans_step_labels(labels);
    if (km_n_ == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(labels, step_labels_.get(), static_cast<size_t>(km_n_) * sizeof(int32_t),
                               cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  double tsne_gradient(const float* p, const float* y, int64_t n, float exaggeration, float* grad,
                       bool compute_kl) override {
    VAE_CHECK(n >= 2, "tsne_gradient: need at least two points");
    const float* dp;
    const bool res = ts_open_ && p == ts_p_ && n == ts_n_;
    if (res) {
      dp = p_.get();
    } else {
      ptmp_.reserve(static_cast<size_t>(n * n));
      CUDA_CHECK(cudaMemcpyAsync(ptmp_.get(), p, static_cast<size_t>(n * n) * sizeof(float),
                                 cudaMemcpyHostToDevice, stream_));
      dp = ptmp_.get();
    }
    y_.reserve(static_cast<size_t>(2 * n));
    grad_.reserve(static_cast<size_t>(2 * n));
    rows_.reserve(static_cast<size_t>(n));
    scalars_.reserve(2);
    kl_host_.reserve(1);
    CUDA_CHECK(cudaMemcpyAsync(y_.get(), y, static_cast<size_t>(2 * n) * sizeof(float),
                               cudaMemcpyHostToDevice, stream_));
    const float2* y2 = reinterpret_cast<const float2*>(y_.get());
    const unsigned blocks = grid_for(n, kWarpsPerBlock);
    const double ex = exaggeration;
    double* z = scalars_.get();
    double* kl = scalars_.get() + 1;
    tsne_rows_kernel<false, false><<<blocks, kBlock, 0, stream_>>>(dp, y2, n, ex, nullptr, rows_.get(), nullptr);
    CUDA_CHECK_LAUNCH();
    ordered_sum_kernel<<<1, kBlock, 0, stream_>>>(rows_.get(), n, z);
    CUDA_CHECK_LAUNCH();
    if (compute_kl) {
      tsne_rows_kernel<true, true><<<blocks, kBlock, 0, stream_>>>(dp, y2, n, ex, z, rows_.get(), grad_.get());
      CUDA_CHECK_LAUNCH();
      ordered_sum_kernel<<<1, kBlock, 0, stream_>>>(rows_.get(), n, kl);
      CUDA_CHECK_LAUNCH();
      CUDA_CHECK(cudaMemcpyAsync(kl_host_.get(), kl, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    } else {
      tsne_rows_kernel<true, false><<<blocks, kBlock, 0, stream_>>>(dp, y2, n, ex, z, nullptr, grad_.get());
      CUDA_CHECK_LAUNCH();
    }
    CUDA_CHECK(cudaMemcpyAsync(grad, grad_.get(), static_cast<size_t>(2 * n) * sizeof(float),
                               cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (!res) ptmp_.release();  // an n² scratch is not worth keeping between stray calls
    return compute_kl ? *kl_host_.get() : std::numeric_limits<double>::quiet_NaN();
  }

  void tsne_begin(const float* p, int64_t n) override {
    VAE_CHECK(!ts_open_, "tsne_begin: a t-SNE session is already open");
    VAE_CHECK(n >= 2 && p != nullptr, "tsne_begin: need at least two points");
    p_.reserve(static_cast<size_t>(n * n));
    CUDA_CHECK(cudaMemcpyAsync(p_.get(), p, static_cast<size_t>(n * n) * sizeof(float),
                               cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    ts_p_ = p;
    ts_n_ = n;
    ts_open_ = true;
  }

  void tsne_end() override {
    ts_open_ = false;
    ts_p_ = nullptr;
    ts_n_ = 0;
    p_.release();  // n² floats: give them back
  }

 private:
  void destroy() {
    if (blas_) cublasDestroy(blas_);
    blas_ = nullptr;
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }

  bool resident(const float* x, int64_t n, int64_t d) const {
    return km_open_ && x == km_x_ && n == km_n_ && d == km_d_;
  }

  static void check_blas_sizes(int64_t n, int64_t d, int k) {
    VAE_CHECK(n <= INT_MAX && d <= INT_MAX && k >= 1, "kmeans: sizes beyond cuBLAS's int range");
  }

  // Rows of x·cᵀ computed at once: a multiple of `align` (the step's rows per block), at most
  // kMaxCrossFloats values unless a single block needs more, and no more than n needs.
  static int64_t cross_rows(int64_t n, int k, int64_t align) {
    const int64_t fit = std::max<int64_t>(align, (kMaxCrossFloats / k) / align * align);
    const int64_t need = (n + align - 1) / align * align;
    return std::min(fit, need);
  }

  // ‖v_r‖² exactly as the CPU's row_norm2 (double, in column order, rounded to float), so the
  // two backends' distances differ only through the GEMM's rounding.
  static void host_row_norms(const float* v, int64_t rows, int64_t d, float* out) {
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0.0;
      for (int64_t t = 0; t < d; ++t) s += static_cast<double>(v[r * d + t]) * v[r * d + t];
      out[r] = static_cast<float>(s);
    }
  }

  void upload_rows(const float* x, int64_t n, int64_t d, DeviceArray<float>& buf, DeviceArray<float>& norms) {
    std::vector<float> xn(static_cast<size_t>(n));
    host_row_norms(x, n, d, xn.data());
    buf.reserve(static_cast<size_t>(n * d));
    norms.reserve(static_cast<size_t>(n));
    CUDA_CHECK(cudaMemcpyAsync(buf.get(), x, static_cast<size_t>(n * d) * sizeof(float),
                               cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaMemcpyAsync(norms.get(), xn.data(), static_cast<size_t>(n) * sizeof(float),
                               cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // xn dies here
  }

  // c_ = [centres (k × d) | ‖c_j‖² (k)], one copy through pinned staging; cnorm_ points into it.
  void upload_centres(const float* c, int k, int64_t d) {
    const size_t count = static_cast<size_t>(k) * static_cast<size_t>(d);
    // The copy engine reads the pinned staging asynchronously: the previous upload must have left
    // it before it is overwritten (every op ends synchronised, so this wait is normally free).
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    c_.reserve(count + k);
    chost_.reserve(count + k);
    std::memcpy(chost_.get(), c, count * sizeof(float));
    host_row_norms(c, k, d, chost_.get() + count);
    CUDA_CHECK(cudaMemcpyAsync(c_.get(), chost_.get(), (count + k) * sizeof(float), cudaMemcpyHostToDevice, stream_));
    cnorm_ = c_.get() + count;
  }

  // cross_ (m × k, row-major) = −2 · x (m × d) · c_ᵀ. Column-major view: cross is k × m, c is d × k,
  // x is d × m, so cross = cᵀ · x.
  void gemm_cross(const float* dx, int64_t m, int64_t d, int k) {
    const float alpha = -2.0f, beta = 0.0f;
    CUBLAS_CHECK(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, k, static_cast<int>(m), static_cast<int>(d),
                             &alpha, c_.get(), static_cast<int>(d), dx, static_cast<int>(d), &beta,
                             cross_.get(), k));
  }

  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::unique_ptr<AnalysisOps> cpu_ = make_cpu_analysis_ops();

  // K-Means session.
  const float* km_x_ = nullptr;
  int64_t km_n_ = 0, km_d_ = 0;
  bool km_open_ = false, km_stepped_ = false, step_on_host_ = false;
  DeviceArray<float> x_, xnorm_;           // the session's x and ‖x_i‖²
  DeviceArray<float> xs_, xsnorm_;         // a non-session x, uploaded per call
  DeviceArray<float> c_, cross_;           // centres and their ‖c_j‖², −2·x·cᵀ
  const float* cnorm_ = nullptr;           // inside c_
  DeviceArray<int32_t> step_labels_;       // labels of the last step (−1 before the first)
  DeviceArray<int32_t> alabels_;           // kmeans_assign's labels
  DeviceArray<float> adist_;               // kmeans_assign's distances
  DeviceArray<double> partial_, band_;     // per-block sums and their folds
  PinnedArray<float> chost_;
  PinnedArray<double> result_;

  // t-SNE session.
  const float* ts_p_ = nullptr;
  int64_t ts_n_ = 0;
  bool ts_open_ = false;
  DeviceArray<float> p_, ptmp_, y_, grad_;
  DeviceArray<double> rows_, scalars_;
  PinnedArray<double> kl_host_;
};

}  // namespace

std::unique_ptr<AnalysisOps> make_cuda_analysis_ops() {
  if (!cuda_device_available())
    throw VaeError("CUDA analysis ops: no usable CUDA device (use the CPU analysis instead)");
  return std::make_unique<CudaAnalysisOps>();
}

}  // namespace vae
