// Variants of the sparse first layer's forward, y = X · Wᵀ for a CSR batch X (n × I) and an
// nn.Linear weight W (H × I), at the batches #6 names (the llm.c habit: variants live here; only
// a winner moves to kernels/). Each is timed with CUDA events, median of reps, side by side.
//
//   v1  kernels/ops_sparse.cu as shipped (through the CUDA backend): a block per (batch row,
//       256 h), one thread per h, walking the row's entries and reading W[h][c]. W's column c is
//       strided by I, so the 32 lanes of a warp touch 32 different 32-byte sectors for every
//       entry: n · nnz/row · H sectors, ~22 M (700 MB of sector traffic) at the ml-20m batch.
//   v2  transpose + gather: W copied into an I × H scratch (a 32 × 32 shared-memory tile
//       transpose, coalesced on both sides), then v1's walk reading Wᵀ[c][h], so a warp reads
//       128 contiguous bytes per entry. The same products and sums in the same order: v1's bits.
//   v2g v2's gather alone: what the layer would cost if it kept its weight item-major (I × H)
//       and the transpose were not needed (a layout change through models, files and Adam).
//
// For the step's profile the shipped weight gradient (dW = dyᵀ · X, every entry of dW written)
// is timed too, as a reference row.
//
// Checks: every variant's y against the CPU oracle (Backend<float> "cpu", its own row norms) to
// atol + |ref|·eps with the first mismatches printed, and v2 / v2g equal to v1 bit for bit (same
// norms buffer); the weight gradient against the oracle the same way.
//
//   vae_sparse_variants [--reps N]     (without a CUDA device it says so and exits 0)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "data/dataset.h"
#include "sparse_entry.cuh"
#include "variants_common.cuh"

namespace {

using namespace vae;

constexpr int kThreadsH = 256;  // v1's block: one thread per h
constexpr int kTile = 32, kTileRows = 8;

// wt (I × H) = wᵀ, w H × I. Block (32 columns of w, 32 rows of w), 32 × 8 threads.
__global__ void transpose_kernel(const float* w, int64_t H, int64_t I, float* wt) {
  __shared__ float tile[kTile][kTile + 1];  // +1: the column reads are conflict-free
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kTile, h0 = static_cast<int64_t>(blockIdx.y) * kTile;
  for (int j = threadIdx.y; j < kTile; j += kTileRows) {
    const int64_t h = h0 + j, c = c0 + threadIdx.x;
    if (h < H && c < I) tile[j][threadIdx.x] = w[h * I + c];
  }
  __syncthreads();
  for (int j = threadIdx.y; j < kTile; j += kTileRows) {
    const int64_t c = c0 + j, h = h0 + threadIdx.x;
    if (h < H && c < I) wt[c * H + h] = tile[threadIdx.x][j];
  }
}

// v1's walk with the weight read item-major: y[r][h] = Σ over row r's entries, ascending column,
// of value · wt[c][h], each product and sum rounded to float (the oracle's order and rounding).
__global__ void __launch_bounds__(kThreadsH) gather_kernel(cuda::CsrBatchArgs x, const float* wt, int64_t H, float* y) {
  __shared__ int32_t s_col[kThreadsH];
  __shared__ float s_val[kThreadsH];
  const int tid = threadIdx.x;
  const int64_t I = x.csr.cols;
  const int64_t h = static_cast<int64_t>(blockIdx.y) * kThreadsH + tid;
  for (int64_t r = blockIdx.x; r < x.n; r += gridDim.x) {
    const int32_t s = x.rows[r];
    float acc = 0.0f;
    if (cuda::row_ok(x, s)) {
      const int64_t b = x.csr.indptr[s], e = x.csr.indptr[s + 1];
      for (int64_t e0 = b; e0 < e; e0 += kThreadsH) {
        const int cnt = static_cast<int>(e - e0 < kThreadsH ? e - e0 : kThreadsH);
        if (tid < cnt) {
          const int32_t c = x.csr.indices[e0 + tid];
          const bool in = c >= 0 && c < I;
          s_col[tid] = in ? c : -1;
          s_val[tid] = in ? cuda::sparse_value(x, r, c, x.csr.values[e0 + tid]) : 0.0f;
        }
        __syncthreads();
        if (h < H)
          for (int k = 0; k < cnt; ++k) {
            const int32_t c = s_col[k];
            if (c >= 0) acc = __fadd_rn(acc, __fmul_rn(s_val[k], __ldg(wt + static_cast<int64_t>(c) * H + h)));
          }
        __syncthreads();
      }
    }
    if (h < H) y[r * H + h] = acc;
  }
}

void launch_transpose(const float* w, int64_t H, int64_t I, float* wt) {
  const dim3 grid(static_cast<unsigned>((I + kTile - 1) / kTile), static_cast<unsigned>((H + kTile - 1) / kTile));
  transpose_kernel<<<grid, dim3(kTile, kTileRows)>>>(w, H, I, wt);
  CK(cudaGetLastError());
}

void launch_gather(const cuda::CsrBatchArgs& x, const float* wt, int64_t H, float* y) {
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(x.n, 8192)), static_cast<unsigned>((H + kThreadsH - 1) / kThreadsH));
  gather_kernel<<<grid, kThreadsH>>>(x, wt, H, y);
  CK(cudaGetLastError());
}

// A CSR of `rows` rows over `cols` columns, about `per_row` entries each, columns drawn with a
// Zipf-like popularity (weight 1/(rank + 10)), ratings 0.5..5 in halves; fixed seed.
Csr make_csr(int64_t rows, int64_t cols, int per_row, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<double> cdf(static_cast<size_t>(cols));
  double s = 0;
  for (int64_t c = 0; c < cols; ++c) cdf[c] = s += 1.0 / (static_cast<double>(c) + 10.0);
  // Popularity rank → column: a fixed permutation, so popular columns are scattered.
  std::vector<int32_t> perm(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) perm[c] = static_cast<int32_t>(c);
  std::shuffle(perm.begin(), perm.end(), g);
  std::uniform_real_distribution<double> u(0.0, s);
  std::uniform_int_distribution<int> len(std::max(1, per_row / 4), std::max(1, per_row * 7 / 4));
  std::uniform_int_distribution<int> rating(1, 10);
  Csr csr;
  csr.rows = rows;
  csr.cols = cols;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int32_t> row;
    const int want = std::min<int64_t>(len(g), cols);
    while (static_cast<int>(row.size()) < want) {
      const auto it = std::lower_bound(cdf.begin(), cdf.end(), u(g));
      const int32_t c = perm[static_cast<size_t>(std::min<int64_t>(it - cdf.begin(), cols - 1))];
      if (std::find(row.begin(), row.end(), c) == row.end()) row.push_back(c);
    }
    std::sort(row.begin(), row.end());
    for (int32_t c : row) {
      csr.indices.push_back(c);
      csr.values.push_back(0.5f * static_cast<float>(rating(g)));
    }
    csr.indptr.push_back(static_cast<int64_t>(csr.indices.size()));
  }
  return csr;
}

bool same_bits(const char* what, const std::vector<float>& got, const std::vector<float>& want) {
  for (size_t i = 0; i < want.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      std::printf("    %s[%zu]: %.9g, v1 %.9g (not v1's bits)\n", what, i, got[i], want[i]);
      return false;
    }
  return true;
}

struct Case {
  const char* name;
  int64_t rows, cols, hidden;
  int per_row;
};

// Training's transform of the batch: dropout 0.5 (fixed draws), then the row norms.
constexpr float kDropout = 0.5f;
constexpr uint64_t kSeed = 5, kStream = 17;

// One backend's copy of a case's inputs: the CSR, the batch rows, their norms (computed there),
// W (H × I) and dy (n × H).
struct Inputs {
  CsrTensor<float> csr;
  Tensor<int32_t> rows;
  Tensor<double> norms;
  Tensor<float> w, dy;
  Inputs(Backend<float>& be, const Csr& host, const std::vector<int32_t>& pick, const std::vector<float>& hw,
         const std::vector<float>& hdy, const Case& c)
      : csr(be.upload_csr(host)), rows(be.upload(pick, c.rows, 1)), norms(be.alloc<double>(c.rows, 1)),
        w(be.upload(hw, c.hidden, c.cols)), dy(be.upload(hdy, c.rows, c.hidden)) {
    be.csr_row_norms(csr.view(), rows.cmat(), norms.mat());
  }
  CsrBatch<float> batch() const { return {csr.view(), rows.cmat(), norms.cmat(), kDropout, kSeed, kStream}; }
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 50;
  if (const int rc = parse_reps(argc, argv, "vae_sparse_variants", 1, reps)) return rc < 0 ? 0 : rc;
  if (!cuda_device_available()) {
    std::printf("vae_sparse_variants: no CUDA device: nothing to time\n");
    return 0;
  }
  auto cpu = make_cpu_backend<float>();
  auto gpu = make_cuda_backend();
  std::printf("vae_sparse_variants on %s: sparse first layer y = X * W^T (dropout 0.5, row norms), median of %d\n",
              cuda_device_name().c_str(), reps);

  const double ceiling = copy_ceiling(size_t{256} << 20);
  std::printf("copy ceiling %.1f GB/s\n", ceiling / 1e9);
  const auto backend_seconds = [&](const std::function<void()>& fn) {  // an op on the backend's stream
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) t.push_back(gpu->device_seconds(fn));
    return median(t);
  };

  bool all_ok = true;
  for (const Case& c : {Case{"ml-100k shape, VAE batch", 64, 1682, 600, 106},
                        Case{"ml-20m shape, Mult-VAE batch", 500, 20108, 600, 73}}) {
    // The batch: every other row of a CSR twice its size, in reverse (the row indirection is used).
    const Csr host = make_csr(2 * c.rows, c.cols, c.per_row, 7);
    std::vector<int32_t> pick(static_cast<size_t>(c.rows));
    for (int64_t r = 0; r < c.rows; ++r) pick[r] = static_cast<int32_t>(2 * (c.rows - 1 - r));
    int64_t nnz = 0;
    std::vector<char> seen(static_cast<size_t>(c.cols), 0);
    int64_t distinct = 0;
    for (int32_t s : pick)
      for (int64_t e = host.indptr[s]; e < host.indptr[s + 1]; ++e) {
        ++nnz;
        if (!seen[host.indices[e]]++) ++distinct;
      }
    std::vector<float> hw(static_cast<size_t>(c.hidden * c.cols));
    std::mt19937_64 g(11);
    std::uniform_real_distribution<float> uw(-0.05f, 0.05f);
    for (float& v : hw) v = uw(g);
    std::vector<float> hdy(static_cast<size_t>(c.rows * c.hidden));
    for (float& v : hdy) v = uw(g);
    const double H = static_cast<double>(c.hidden), I = static_cast<double>(c.cols), n = static_cast<double>(c.rows);
    const double floor_fwd = (12.0 * nnz + 4.0 * H * distinct + 4.0 * n * H) / ceiling;
    const double floor_t = 8.0 * H * I / ceiling;
    const double floor_grad = (12.0 * nnz + 4.0 * n * H + 4.0 * H * I) / ceiling;
    std::printf("\n%s: %lld rows x %lld items, H = %lld, %lld entries (%lld distinct items); v1 touches %.0f MB of "
                "sectors\n  floors: forward %.4f ms (entries, the batch's W columns once, y), transpose %.4f ms, "
                "weight gradient %.4f ms (entries, dy, dW written)\n",
                c.name, static_cast<long long>(c.rows), static_cast<long long>(c.cols), static_cast<long long>(c.hidden),
                static_cast<long long>(nnz), static_cast<long long>(distinct), 32.0 * nnz * H / 1e6, 1e3 * floor_fwd,
                1e3 * floor_t, 1e3 * floor_grad);

    // The same inputs on the oracle and on the GPU, each with its own row norms.
    const Inputs cin(*cpu, host, pick, hw, hdy, c), gin(*gpu, host, pick, hw, hdy, c);
    const CsrBatch<float> cx = cin.batch(), gx = gin.batch();
    Tensor<float> cy = cpu->alloc<float>(c.rows, c.hidden), cdw = cpu->alloc<float>(c.hidden, c.cols);
    cpu->csr_linear_forward(cx, cin.w.cmat(), cy.mat());
    cpu->csr_linear_weight_grad(cx, cin.dy.cmat(), cdw.mat());
    const std::vector<float> ref_y = cpu->download(cy.cmat()), ref_dw = cpu->download(cdw.cmat());
    Tensor<float> gy = gpu->alloc<float>(c.rows, c.hidden), gdw = gpu->alloc<float>(c.hidden, c.cols);
    Tensor<float> gwt = gpu->alloc<float>(c.cols, c.hidden);

    // v1: the shipped op.
    std::vector<float> v1_y;
    {
      gpu->fill(gy.mat(), std::nanf(""));
      const double t = backend_seconds([&] { gpu->csr_linear_forward(gx, gin.w.cmat(), gy.mat()); });
      v1_y = gpu->download(gy.cmat());
      const bool ok = check_close("y", v1_y, ref_y, 1e-6, 1e-5);
      all_ok = all_ok && ok;
      std::printf("  %-34s %9.4f ms  %s\n", "v1 (shipped, W[h][c] strided)", 1e3 * t, ok ? "ok" : "MISMATCH");
    }
    // The kernels' own arguments, as the backend builds them.
    cuda::CsrBatchArgs a;
    a.csr = gin.csr.view();
    a.rows = gin.rows.data();
    a.n = c.rows;
    a.norms = gin.norms.data();
    a.dropout = true;
    a.q = kDropout;
    a.keep_scale = 1.0f / (1.0f - kDropout);
    a.seed = kSeed;
    a.stream = kStream;
    gpu->synchronize();
    // v2: transpose then gather; v2g: the gather alone (wt already item-major).
    for (const bool with_transpose : {true, false}) {
      CK(cudaMemset(gy.data(), 0xff, static_cast<size_t>(c.rows * c.hidden) * sizeof(float)));  // poisoned: NaN
      CK(cudaMemset(gwt.data(), 0xff, static_cast<size_t>(c.cols * c.hidden) * sizeof(float)));
      launch_transpose(gin.w.data(), c.hidden, c.cols, gwt.data());
      const double t = event_median(reps, [&] {
        if (with_transpose) launch_transpose(gin.w.data(), c.hidden, c.cols, gwt.data());
        launch_gather(a, gwt.data(), c.hidden, gy.data());
      });
      std::vector<float> got(static_cast<size_t>(c.rows * c.hidden));
      CK(cudaMemcpy(got.data(), gy.data(), got.size() * sizeof(float), cudaMemcpyDeviceToHost));
      const bool ok = check_close("y", got, ref_y, 1e-6, 1e-5) && same_bits("y", got, v1_y);
      all_ok = all_ok && ok;
      std::printf("  %-34s %9.4f ms  %s\n", with_transpose ? "v2 (transpose + gather)" : "v2g (gather alone, W item-major)",
                  1e3 * t, ok ? "ok" : "MISMATCH");
    }
    {
      const double t = event_median(reps, [&] { launch_transpose(gin.w.data(), c.hidden, c.cols, gwt.data()); });
      std::printf("  (transpose alone %.4f ms, %.1f GB/s)\n", 1e3 * t, 8.0 * H * I / t / 1e9);
    }
    // Reference: the shipped weight gradient.
    {
      gpu->fill(gdw.mat(), std::nanf(""));
      const double t = backend_seconds([&] { gpu->csr_linear_weight_grad(gx, gin.dy.cmat(), gdw.mat()); });
      const bool ok = check_close("dW", gpu->download(gdw.cmat()), ref_dw, 1e-6, 1e-5);
      all_ok = all_ok && ok;
      std::printf("  %-34s %9.4f ms  %s\n", "weight gradient (shipped)", 1e3 * t, ok ? "ok" : "MISMATCH");
    }
  }
  std::printf("\n%s\n", all_ok ? "all variants match the oracle" : "MISMATCHES above");
  return all_ok ? 0 : 1;
}
