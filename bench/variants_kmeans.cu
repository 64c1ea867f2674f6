// Variants of one K-Means Lloyd step (assign every row to its nearest centre, per-cluster sums
// and counts, the number of changed labels) at #6's case: 136 677 × 64, k = 10, x resident on
// the device. Timed per iteration as kmeans() runs it (centres up, step, sums down, host
// waits), side by side, and checked (the llm.c habit: variants live here; only a winner moves to
// kernels/). The target is 50 µs per iteration; the shipped step measured 90–100 µs.
//
//   v1  the shipped AnalysisOps::kmeans_step: centres and their norms uploaded, a cuBLAS GEMM
//       writes the n × k cross products, a step kernel reads them and x again (argmin, labels,
//       per-block double sums), column-sum kernels fold the blocks, the sums come back.
//   v2  one pass over x: each warp stages 32 rows in shared memory (coalesced), each lane
//       computes its row's k distances from that tile against the centres in shared memory
//       (the same ‖x‖² + ‖c‖² − 2x·c form in float, ‖·‖² summed in double), and the same tile
//       feeds the per-cluster sums, kept in registers (k a template parameter); no cross
//       matrix and no GEMM. The block partials fold as in v1; x is read once instead of twice.
//       Timed at two register budgets (4 and 5 blocks per SM; see the kernel).
//
// Checks, against the CPU oracle (make_cpu_analysis_ops) on the same data: labels equal except
// where the two nearest centres are within float rounding of each other (then the chosen one
// must be that close to the nearest); counts exactly those of the variant's own labels; sums
// within 1e-9 relative of naive double sums over its own labels; changed = n on the first step
// and 0 on a repeat with the same centres; two runs give the same bits.
//
//   vae_kmeans_variants [--reps N]     (without a CUDA device it says so and exits 0)
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "analysis/analysis_ops.h"
#include "analysis/kmeans.h"
#include "backend/backend.h"
#include "core/philox.h"
#include "variants_common.cuh"

namespace {

using namespace vae;

constexpr int kWarp = 32;
constexpr int kWarps = 4;                         // per block
constexpr int kRowsPerBlock = 256;                // a function of nothing but the constant: fixed sums order
constexpr int kTilesPerWarp = kRowsPerBlock / (kWarps * kWarp);
constexpr int kColRows = 64;                      // partial rows folded per reduction block

// One Lloyd step over rows [b·kRowsPerBlock, +kRowsPerBlock) per block. D is the row length
// (x is n × D), K the number of centres; c holds K × D centres then their K norms. Partial row
// b (width K·D + K + 1): sums [j·D + t], counts [K·D + j], changed [K·D + K]. MinBlocks per SM
// bounds the registers: at 4 (114 registers, no spills) 528 blocks fit at once on 132 SMs and the
// last 6 of 534 run as a second wave; at 5 (96 registers, a few spilled) all fit in one.
template <int K, int D, int MinBlocks>
__global__ void __launch_bounds__(kWarps * kWarp, MinBlocks)
kmeans_step_v2(const float* __restrict__ x, int64_t n, const float* __restrict__ c,
               int32_t* __restrict__ labels, double* __restrict__ partial) {
  static_assert(D % kWarp == 0, "D must be a multiple of the warp size");
  constexpr int kCols = D / kWarp;       // columns of x a lane stages and sums
  constexpr int kPitch = D + 1;          // tile row pitch: lane l reading row l, column t hits bank (l + t) % 32
  static_assert(kWarps * K * D * sizeof(double) <= kWarps * kWarp * kPitch * sizeof(float),
                "the per-warp sums reuse the tiles' shared memory");
  __shared__ float s_c[K * D + K];
  __shared__ __align__(16) float s_tile[kWarps][kWarp * kPitch];
  __shared__ int s_cnt[kWarps][K + 1];
  const int lane = threadIdx.x % kWarp, w = threadIdx.x / kWarp;
  for (int e = threadIdx.x; e < K * D + K; e += blockDim.x) s_c[e] = c[e];
  __syncthreads();

  double acc[K][kCols];
#pragma unroll
  for (int j = 0; j < K; ++j)
#pragma unroll
    for (int q = 0; q < kCols; ++q) acc[j][q] = 0.0;
  int cnt[K + 1];  // lane 0's: per-cluster counts, then changed
#pragma unroll
  for (int j = 0; j <= K; ++j) cnt[j] = 0;

  float* tile = s_tile[w];
  for (int s = 0; s < kTilesPerWarp; ++s) {
    const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (static_cast<int64_t>(s) * kWarps + w) * kWarp;
    const int rows = static_cast<int>(max(int64_t{0}, min(static_cast<int64_t>(kWarp), n - r0)));
    // Stage: row r's column lane + 32q from consecutive lanes (coalesced 128-byte loads).
    for (int r = 0; r < rows; ++r)
#pragma unroll
      for (int q = 0; q < kCols; ++q) tile[r * kPitch + lane + kWarp * q] = x[(r0 + r) * D + lane + kWarp * q];
    __syncwarp();
    int lab = -1, changed = 0;
    if (lane < rows) {
      const float* row = tile + lane * kPitch;
      double xn = 0.0;
      float dot[K];
#pragma unroll
      for (int j = 0; j < K; ++j) dot[j] = 0.0f;
      for (int t = 0; t < D; ++t) {
        const float v = row[t];
        xn += static_cast<double>(v) * v;
#pragma unroll
        for (int j = 0; j < K; ++j) dot[j] = __fmaf_rn(v, s_c[j * D + t], dot[j]);
      }
      const float xnf = static_cast<float>(xn);
      float best = __fadd_rn(__fadd_rn(xnf, s_c[K * D]), -2.0f * dot[0]);
      lab = 0;
#pragma unroll
      for (int j = 1; j < K; ++j) {
        const float v = __fadd_rn(__fadd_rn(xnf, s_c[K * D + j]), -2.0f * dot[j]);
        if (v < best) {  // strict: ties keep the lower centre, as the oracle
          best = v;
          lab = j;
        }
      }
      const int64_t i = r0 + lane;
      changed = labels[i] != lab;
      labels[i] = lab;
    }
    cnt[K] += __popc(__ballot_sync(0xffffffffu, changed));
#pragma unroll
    for (int j = 0; j < K; ++j) cnt[j] += __popc(__ballot_sync(0xffffffffu, lab == j));
    // Sums: lane owns columns lane + 32q; rows added in order, one cluster per row (selects,
    // not indexed registers, so acc stays in registers).
    for (int r = 0; r < rows; ++r) {
      const int lr = __shfl_sync(0xffffffffu, lab, r);
#pragma unroll
      for (int q = 0; q < kCols; ++q) {
        const double v = tile[r * kPitch + lane + kWarp * q];
#pragma unroll
        for (int j = 0; j < K; ++j) acc[j][q] += lr == j ? v : 0.0;
      }
    }
    __syncwarp();  // the tile is restaged next
  }
  __syncthreads();  // every warp is done with its tile: the tiles become the per-warp sums
  double* s_acc = reinterpret_cast<double*>(&s_tile[0][0]);  // [warp][K · D], folded in warp order
#pragma unroll
  for (int j = 0; j < K; ++j)
#pragma unroll
    for (int q = 0; q < kCols; ++q) s_acc[w * K * D + j * D + lane + kWarp * q] = acc[j][q];
  if (lane == 0)
#pragma unroll
    for (int j = 0; j <= K; ++j) s_cnt[w][j] = cnt[j];
  __syncthreads();
  constexpr int64_t width = static_cast<int64_t>(K) * D + K + 1;
  double* out = partial + static_cast<int64_t>(blockIdx.x) * width;
  for (int e = threadIdx.x; e < K * D; e += blockDim.x) {
    double sum = 0.0;
    for (int v = 0; v < kWarps; ++v) sum += s_acc[v * K * D + e];
    out[e] = sum;
  }
  for (int j = threadIdx.x; j <= K; j += blockDim.x) {
    int sum = 0;
    for (int v = 0; v < kWarps; ++v) sum += s_cnt[v][j];
    out[K * D + j] = sum;
  }
}

// out (⌈rows / kColRows⌉ × width) = the column sums of each band of kColRows rows of in, in row
// order within a warp, the 8 warps added in order (v1's column_sum_kernel).
__global__ void column_sum_v2(const double* __restrict__ in, int64_t rows, int64_t width, double* __restrict__ out) {
  __shared__ double sh[8][kWarp + 1];
  const int tx = threadIdx.x % kWarp, ty = threadIdx.x / kWarp;
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kWarp + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kColRows;
  const int64_t r1 = min(rows, r0 + kColRows);
  double s = 0.0;
  if (col < width)
    for (int64_t r = r0 + ty; r < r1; r += 8) s += in[r * width + col];
  sh[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && col < width) {
    double t = 0.0;
    for (int v = 0; v < 8; ++v) t += sh[v][tx];
    out[static_cast<int64_t>(blockIdx.y) * width + col] = t;
  }
}

// v2 with its buffers: centres staged through pinned memory, one stream, one wait per step.
template <int K, int D, int MinBlocks>
class StepV2 {
 public:
  explicit StepV2(const float* x_device, int64_t n) : x_(x_device), n_(n) {
    blocks_ = (n + kRowsPerBlock - 1) / kRowsPerBlock;
    CK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CK(cudaMalloc(&labels_, static_cast<size_t>(n) * sizeof(int32_t)));
    CK(cudaMemset(labels_, 0xff, static_cast<size_t>(n) * sizeof(int32_t)));  // −1: nothing assigned yet
    CK(cudaMalloc(&c_, (K * D + K) * sizeof(float)));
    CK(cudaMalloc(&partial_, static_cast<size_t>(blocks_ * kWidth) * sizeof(double)));
    CK(cudaMalloc(&band_, static_cast<size_t>(((blocks_ + kColRows - 1) / kColRows) * kWidth) * sizeof(double)));
    CK(cudaMallocHost(&c_host_, (K * D + K) * sizeof(float)));
    CK(cudaMallocHost(&result_, kWidth * sizeof(double)));
    // The memset above and the caller's upload of x ran on the legacy stream, which a
    // non-blocking stream does not wait for.
    CK(cudaDeviceSynchronize());
  }
  ~StepV2() {
    cudaFree(labels_);
    cudaFree(c_);
    cudaFree(partial_);
    cudaFree(band_);
    cudaFreeHost(c_host_);
    cudaFreeHost(result_);
    cudaStreamDestroy(stream_);
  }
  StepV2(const StepV2&) = delete;
  StepV2& operator=(const StepV2&) = delete;

  // The AnalysisOps::kmeans_step contract: sums (K × D), counts (K); returns labels changed.
  int64_t step(const float* c, double* sums, int64_t* counts) {
    std::memcpy(c_host_, c, K * D * sizeof(float));
    for (int j = 0; j < K; ++j) {  // norms as the oracle: double, rounded once
      double s = 0.0;
      for (int t = 0; t < D; ++t) s += static_cast<double>(c[j * D + t]) * c[j * D + t];
      c_host_[K * D + j] = static_cast<float>(s);
    }
    CK(cudaMemcpyAsync(c_, c_host_, (K * D + K) * sizeof(float), cudaMemcpyHostToDevice, stream_));
    kmeans_step_v2<K, D, MinBlocks><<<static_cast<unsigned>(blocks_), kWarps * kWarp, 0, stream_>>>(x_, n_, c_, labels_, partial_);
    CK(cudaGetLastError());
    double* in = partial_;
    double* other = band_;
    for (int64_t rows = blocks_; rows > 1;) {
      const int64_t bands = (rows + kColRows - 1) / kColRows;
      const dim3 grid(static_cast<unsigned>((kWidth + kWarp - 1) / kWarp), static_cast<unsigned>(bands));
      column_sum_v2<<<grid, 256, 0, stream_>>>(in, rows, kWidth, other);
      CK(cudaGetLastError());
      std::swap(in, other);
      rows = bands;
    }
    CK(cudaMemcpyAsync(result_, in, kWidth * sizeof(double), cudaMemcpyDeviceToHost, stream_));
    CK(cudaStreamSynchronize(stream_));  // also keeps c_host_ alive until the copy engine read it
    std::memcpy(sums, result_, K * D * sizeof(double));
    for (int j = 0; j < K; ++j) counts[j] = static_cast<int64_t>(result_[K * D + j]);
    return static_cast<int64_t>(result_[K * D + K]);
  }

  // The step kernel alone (CUDA events around back-to-back launches, so launch latency is
  // hidden): the part a device-side loop could not hide.
  double kernel_seconds(int reps) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0, stream_));
    for (int i = 0; i < reps; ++i)
      kmeans_step_v2<K, D, MinBlocks><<<static_cast<unsigned>(blocks_), kWarps * kWarp, 0, stream_>>>(x_, n_, c_, labels_, partial_);
    CK(cudaGetLastError());
    CK(cudaEventRecord(e1, stream_));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return 1e-3 * ms / reps;
  }

  std::vector<int32_t> labels() const {
    std::vector<int32_t> l(static_cast<size_t>(n_));
    CK(cudaMemcpy(l.data(), labels_, l.size() * sizeof(int32_t), cudaMemcpyDeviceToHost));
    return l;
  }

 private:
  static constexpr int64_t kWidth = static_cast<int64_t>(K) * D + K + 1;
  const float* x_;
  int64_t n_, blocks_ = 0;
  cudaStream_t stream_ = nullptr;
  int32_t* labels_ = nullptr;
  float* c_ = nullptr;
  float* c_host_ = nullptr;
  double* partial_ = nullptr;
  double* band_ = nullptr;
  double* result_ = nullptr;
};

const auto dist2 = row_dist2;  // analysis/kmeans.h

double norm2(const float* a, int64_t d) {
  double s = 0.0;
  for (int64_t t = 0; t < d; ++t) s += static_cast<double>(a[t]) * a[t];
  return s;
}

// The step's outputs against the oracle's labels (ambiguity-aware) and the variant's own labels;
// prints the first mismatches.
bool check_step(const char* name, const std::vector<float>& x, int64_t n, int64_t d, const std::vector<float>& c,
                int k, const std::vector<int32_t>& got, const std::vector<int32_t>& ref, const std::vector<double>& sums,
                const std::vector<int64_t>& counts) {
  double cmax = 0;
  for (int j = 0; j < k; ++j) cmax = std::max(cmax, norm2(&c[j * d], d));
  int64_t bad = 0, ambiguous = 0;
  std::vector<double> want(static_cast<size_t>(k * d), 0.0);
  std::vector<int64_t> count(k, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (got[i] < 0 || got[i] >= k) {
      if (bad++ < 5) std::printf("    %s: row %lld label %d out of range\n", name, static_cast<long long>(i), got[i]);
      continue;
    }
    ++count[got[i]];
    for (int64_t t = 0; t < d; ++t) want[got[i] * d + t] += x[i * d + t];
    if (got[i] == ref[i]) continue;
    const double tol = 1e-5 * (1.0 + norm2(&x[i * d], d) + cmax);
    double best = std::numeric_limits<double>::max();
    for (int j = 0; j < k; ++j) best = std::min(best, dist2(&x[i * d], &c[j * d], d));
    const double mine = dist2(&x[i * d], &c[got[i] * d], d), theirs = dist2(&x[i * d], &c[ref[i] * d], d);
    if (mine - best <= 2 * tol && theirs - best <= 2 * tol) {
      ++ambiguous;
    } else if (bad++ < 5) {
      std::printf("    %s: row %lld label %d, oracle %d (distances %.9g vs %.9g, nearest %.9g)\n", name,
                  static_cast<long long>(i), got[i], ref[i], mine, theirs, best);
    }
  }
  if (ambiguous > n / 100 + 1) {
    std::printf("    %s: %lld near-tie label differences (more than 1%%)\n", name, static_cast<long long>(ambiguous));
    ++bad;
  }
  for (int j = 0; j < k; ++j)
    if (counts[j] != count[j] && bad++ < 5)
      std::printf("    %s: count[%d] %lld, own labels give %lld\n", name, j, static_cast<long long>(counts[j]),
                  static_cast<long long>(count[j]));
  for (int64_t e = 0; e < k * d; ++e)
    if (!(std::fabs(sums[e] - want[e]) <= 1e-9 * (1.0 + std::fabs(want[e]))) && bad++ < 5)
      std::printf("    %s: sum[%lld] %.17g, naive %.17g\n", name, static_cast<long long>(e), sums[e], want[e]);
  return bad == 0;
}

template <typename F>
double wall_median(int reps, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

int run(int argc, char** argv) {
  int reps = 200;
  if (const int rc = parse_reps(argc, argv, "vae_kmeans_variants", 1, reps)) return rc < 0 ? 0 : rc;
  if (!cuda_device_available()) {
    std::printf("vae_kmeans_variants: no CUDA device: nothing to time\n");
    return 0;
  }
  constexpr int64_t n = 136677;
  constexpr int d = 64, k = 10;
  // vae_gpu_bench's K-Means case: ten interleaved blobs, one point of each as the centres.
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < d; ++t)
      x[i * d + t] = (t == i % k ? 4.0f : 0.0f) + philox_normal(42, 90, static_cast<uint64_t>(i * d + t));
  const std::vector<float> c(x.begin(), x.begin() + k * d);
  std::printf("vae_kmeans_variants on %s: one Lloyd step, %lld x %d, k = %d, host wall per step, median of %d\n",
              cuda_device_name().c_str(), static_cast<long long>(n), d, k, reps);
  std::printf("floor: x read once, %.1f MB\n", 4.0 * n * d / 1e6);

  // Oracle.
  auto cpu = make_cpu_analysis_ops();
  std::vector<double> ref_sums(k * d);
  std::vector<int64_t> ref_counts(k);
  std::vector<int32_t> ref_labels(n);
  cpu->kmeans_begin(x.data(), n, d);
  cpu->kmeans_step(c.data(), k, ref_sums.data(), ref_counts.data());
  cpu->kmeans_step_labels(ref_labels.data());
  cpu->kmeans_end();

  bool all_ok = true;
  std::vector<double> sums(k * d);
  std::vector<int64_t> counts(k);
  // v1: the shipped step.
  {
    auto gpu = make_cuda_analysis_ops();
    gpu->kmeans_begin(x.data(), n, d);
    const int64_t first = gpu->kmeans_step(c.data(), k, sums.data(), counts.data());
    std::vector<int32_t> labels(n);
    gpu->kmeans_step_labels(labels.data());
    bool ok = check_step("v1", x, n, d, c, k, labels, ref_labels, sums, counts) && first == n;
    if (first != n) std::printf("    v1: first step changed %lld labels, want %lld\n", static_cast<long long>(first), static_cast<long long>(n));
    for (int i = 0; i < 10; ++i) gpu->kmeans_step(c.data(), k, sums.data(), counts.data());  // clocks up
    const double t = wall_median(reps, [&] { gpu->kmeans_step(c.data(), k, sums.data(), counts.data()); });
    const int64_t repeat = gpu->kmeans_step(c.data(), k, sums.data(), counts.data());
    if (repeat != 0) std::printf("    v1: a repeat with the same centres changed %lld labels\n", static_cast<long long>(repeat));
    ok = ok && repeat == 0;
    gpu->kmeans_end();
    all_ok = all_ok && ok;
    std::printf("  v1 (shipped: GEMM + step + folds)   %8.1f us  %7.1f GB/s of x  %s\n", 1e6 * t, 4.0 * n * d / t / 1e9,
                ok ? "ok" : "MISMATCH");
  }
  // v2: one pass.
  {
    float* dx = nullptr;
    CK(cudaMalloc(&dx, x.size() * sizeof(float)));
    CK(cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
    auto run_v2 = [&](auto v2, const char* label) {
      std::vector<double> again(k * d);
      const int64_t first = v2->step(c.data(), sums.data(), counts.data());
      bool ok = check_step("v2", x, n, d, c, k, v2->labels(), ref_labels, sums, counts) && first == n;
      if (first != n) std::printf("    v2: first step changed %lld labels, want %lld\n", static_cast<long long>(first), static_cast<long long>(n));
      for (int i = 0; i < 10; ++i) v2->step(c.data(), again.data(), counts.data());  // clocks up
      const double t = wall_median(reps, [&] { v2->step(c.data(), again.data(), counts.data()); });
      const int64_t repeat = v2->step(c.data(), again.data(), counts.data());
      if (repeat != 0) std::printf("    v2: a repeat with the same centres changed %lld labels\n", static_cast<long long>(repeat));
      if (std::memcmp(again.data(), sums.data(), sums.size() * sizeof(double)) != 0) {
        std::printf("    v2: a repeat gave different sums (not deterministic)\n");
        ok = false;
      }
      ok = ok && repeat == 0;
      const double tk = v2->kernel_seconds(reps);
      all_ok = all_ok && ok;
      std::printf("  %s %8.1f us  %7.1f GB/s of x  %s  (step kernel alone %.1f us)\n", label, 1e6 * t,
                  4.0 * n * d / t / 1e9, ok ? "ok" : "MISMATCH", 1e6 * tk);
    };
    run_v2(std::make_unique<StepV2<k, d, 4>>(dx, n), "v2 (one pass, 4 blocks/SM)          ");
    run_v2(std::make_unique<StepV2<k, d, 5>>(dx, n), "v2 (one pass, 5 blocks/SM)          ");
    CK(cudaFree(dx));
  }
  std::printf("\n%s\n", all_ok ? "all variants match the oracle" : "MISMATCHES above");
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::printf("vae_kmeans_variants: %s\n", e.what());
    return 1;
  }
}
