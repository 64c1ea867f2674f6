// Kernel variants of the row log-softmax + multinomial NLL + gradient op, timed and checked side
// by side (the llm.c habit: variants live here; only a winner moves to kernels/).
//
//   v1  kernels/ops_rows.cu as shipped (through the CUDA backend): one block of 256 threads per
//       row, four passes over the logits (max, Σexp and Σt, the loss, the gradient) and three
//       over the targets.
//   v2  one pass for an online (max, Σexp) pair plus Σt and Σt·x, one pass for the gradient:
//       logits and targets are read twice, the gradient written once (5 of v1's 8 accesses
//       per element); block size a template parameter (256, 512, 1024).
//
// Each variant is checked against the CPU oracle (Backend<float> "cpu") on the same inputs:
// gradient |got − ref| ≤ atol + |ref|·eps elementwise (first mismatches printed) and the loss
// to a relative 1e-5. The floor printed is the bytes v1 and v2 must move at the copy ceiling.
//
//   vae_kernel_variants [--reps N]     (without a CUDA device it says so and exits 0)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "variants_common.cuh"

namespace {

using namespace vae;

// (max, Σ exp(x − max)) pairs merge exactly as the oracle's two passes would sum them; a NaN
// anywhere in the row (or +inf, whose exp(inf − inf) is NaN in the oracle) makes the sum NaN.
struct MaxSum {
  double m, s;
};

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  if (isnan(a.s) || isnan(b.s)) return {a.m, NAN};
  const double m = a.m > b.m ? a.m : b.m;
  const double sa = a.s == 0.0 ? 0.0 : a.s * exp(a.m - m);
  const double sb = b.s == 0.0 ? 0.0 : b.s * exp(b.m - m);
  return {m, sa + sb};
}

template <int B>
__device__ double block_sum_d(double v, double* sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) sh[w] = v;
  __syncthreads();
  double r = 0.0;
  if (threadIdx.x == 0)
    for (int i = 0; i < B / 32; ++i) r += sh[i];  // fixed order: deterministic
  __syncthreads();
  return r;
}

template <int B>
__device__ MaxSum block_maxsum(MaxSum v, double* shm, double* shs, MaxSum* out) {
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum u{__shfl_down_sync(0xffffffffu, v.m, o), __shfl_down_sync(0xffffffffu, v.s, o)};
    v = merge(v, u);
  }
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) {
    shm[w] = v.m;
    shs[w] = v.s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    MaxSum r{-INFINITY, 0.0};
    for (int i = 0; i < B / 32; ++i) r = merge(r, MaxSum{shm[i], shs[i]});
    *out = r;
  }
  __syncthreads();
  const MaxSum r = *out;
  __syncthreads();
  return r;
}

template <int B>
__global__ void __launch_bounds__(B) multinomial_v2(const float* x, const float* t, int64_t rows, int64_t cols,
                                                    double scale, float* g, double* row_loss) {
  __shared__ double shm[B / 32], shs[B / 32];
  __shared__ MaxSum bcast;
  const int tid = threadIdx.x;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * cols;
    const float* tr = t + r * cols;
    MaxSum ms{-INFINITY, 0.0};
    double ts = 0.0, tx = 0.0;
    for (int64_t j = tid; j < cols; j += B) {
      const double xv = xr[j];
      const float tv = tr[j];
      if (isnan(xv) || xv == INFINITY) {
        ms.s = NAN;
      } else if (xv != -INFINITY && !isnan(ms.s)) {
        if (xv > ms.m) {
          ms.s = ms.s * exp(ms.m - xv) + 1.0;
          ms.m = xv;
        } else {
          ms.s += exp(xv - ms.m);
        }
      }
      ts += tv;
      if (tv != 0.0f) tx += static_cast<double>(tv) * xv;
    }
    ms = block_maxsum<B>(ms, shm, shs, &bcast);
    ts = block_sum_d<B>(ts, shm);
    tx = block_sum_d<B>(tx, shm);
    __shared__ double bc[2];
    if (tid == 0) {
      const double lse = ms.m + log(ms.s);
      bc[0] = lse;
      bc[1] = ts;
      if (row_loss) row_loss[r] = -(tx - ts * lse);
    }
    __syncthreads();
    const double lse = bc[0], tsum = bc[1];
    if (g) {
      float* gr = g + r * cols;
      for (int64_t j = tid; j < cols; j += B) {
        const double p = exp(static_cast<double>(xr[j]) - lse);
        gr[j] = static_cast<float>(scale * (p * tsum - static_cast<double>(tr[j])));
      }
    }
    __syncthreads();
  }
}

struct Case {
  const char* name;
  int64_t rows, cols;
  double density;  // share of non-zero targets
};

std::vector<float> logits(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(g);
  return v;
}

std::vector<float> targets(int64_t n, double density, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = u(g) < density ? 1.0f : 0.0f;
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 50;
  if (const int rc = parse_reps(argc, argv, "vae_kernel_variants", 3, reps)) return rc < 0 ? 0 : rc;
  if (!cuda_device_available()) {
    std::printf("vae_kernel_variants: no CUDA device: nothing to time\n");
    return 0;
  }
  auto cpu = make_cpu_backend<float>();
  auto gpu = make_cuda_backend();
  std::printf("vae_kernel_variants on %s: multinomial NLL + gradient, median of %d\n", cuda_device_name().c_str(), reps);

  // Copy ceiling for the floors: a large device-to-device copy.
  const double ceiling = copy_ceiling(size_t{512} << 20);
  std::printf("copy ceiling %.1f GB/s\n", ceiling / 1e9);

  bool all_ok = true;
  for (const Case& c : {Case{"ml-100k shape, VAE batch", 64, 1682, 0.06}, Case{"ml-20m shape, Mult-VAE batch", 500, 20108, 0.005},
                        Case{"ml-20m shape, dense targets", 500, 20108, 0.5}}) {
    const int64_t n = c.rows * c.cols;
    const std::vector<float> hx = logits(n, 11), ht = targets(n, c.density, 12);
    const float scale = 1.0f / static_cast<float>(c.rows);
    // Oracle.
    Tensor<float> cx = cpu->upload(hx, c.rows, c.cols), ct = cpu->upload(ht, c.rows, c.cols);
    Tensor<float> cg = cpu->alloc<float>(c.rows, c.cols), closs = cpu->zeros(1, 1);
    cpu->multinomial_nll(cx.cmat(), ct.cmat(), scale, cg.mat(), closs.mat());
    const std::vector<float> ref_g = cpu->download(cg.cmat());
    const double ref_loss = cpu->read_scalar(closs.cmat());
    // Device inputs (the backend's memory; v2 runs on the default stream after a sync).
    Tensor<float> gx = gpu->upload(hx, c.rows, c.cols), gt = gpu->upload(ht, c.rows, c.cols);
    Tensor<float> gg = gpu->alloc<float>(c.rows, c.cols), gloss = gpu->zeros(1, 1);
    const double floor_v1 = 4.0 * static_cast<double>(n) * 8 / ceiling, floor_v2 = 4.0 * static_cast<double>(n) * 5 / ceiling;
    std::printf("\n%s: %lld x %lld, target density %.3f (floors: v1 %.4f ms, v2 %.4f ms)\n", c.name,
                static_cast<long long>(c.rows), static_cast<long long>(c.cols), c.density, 1e3 * floor_v1, 1e3 * floor_v2);

    // v1: the shipped op.
    {
      std::vector<double> t;
      for (int i = 0; i < reps; ++i)
        t.push_back(gpu->device_seconds([&] {
          gpu->fill(gloss.mat(), 0.0f);
          gpu->multinomial_nll(gx.cmat(), gt.cmat(), scale, gg.mat(), gloss.mat());
        }));
      const bool ok = check_close("grad", gpu->download(gg.cmat()), ref_g, 1e-7, 1e-5) &&
                      std::fabs(gpu->read_scalar(gloss.cmat()) - ref_loss) <= 1e-5 * std::fabs(ref_loss);
      all_ok = all_ok && ok;
      std::printf("  v1 (shipped)      %9.4f ms  %7.1f GB/s  %s\n", 1e3 * median(t),
                  4.0 * static_cast<double>(n) * 8 / median(t) / 1e9, ok ? "ok" : "MISMATCH");
    }
    // v2 at three block sizes.
    gpu->synchronize();
    double* rl = nullptr;
    CK(cudaMalloc(&rl, static_cast<size_t>(c.rows) * sizeof(double)));
    float* out = gg.data();
    auto run_v2 = [&](int b) {
      const unsigned grid = static_cast<unsigned>(std::min<int64_t>(c.rows, 4096));
      if (b == 256) multinomial_v2<256><<<grid, 256>>>(gx.data(), gt.data(), c.rows, c.cols, scale, out, rl);
      if (b == 512) multinomial_v2<512><<<grid, 512>>>(gx.data(), gt.data(), c.rows, c.cols, scale, out, rl);
      if (b == 1024) multinomial_v2<1024><<<grid, 1024>>>(gx.data(), gt.data(), c.rows, c.cols, scale, out, rl);
      CK(cudaGetLastError());
    };
    for (int b : {256, 512, 1024}) {
      CK(cudaMemset(out, 0xff, static_cast<size_t>(n) * sizeof(float)));  // poisoned: NaN
      run_v2(b);
      CK(cudaDeviceSynchronize());
      const double t = event_median(reps, [&] { run_v2(b); });
      std::vector<float> got(static_cast<size_t>(n));
      std::vector<double> rows_loss(static_cast<size_t>(c.rows));
      CK(cudaMemcpy(got.data(), out, got.size() * sizeof(float), cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(rows_loss.data(), rl, rows_loss.size() * sizeof(double), cudaMemcpyDeviceToHost));
      double loss = 0;
      for (double v : rows_loss) loss += v;
      loss *= scale;
      const bool ok = check_close("grad", got, ref_g, 1e-7, 1e-5) && std::fabs(loss - ref_loss) <= 1e-5 * std::fabs(ref_loss);
      all_ok = all_ok && ok;
      std::printf("  v2 (%4d threads) %9.4f ms  %7.1f GB/s  %s\n", b, 1e3 * t,
                  4.0 * static_cast<double>(n) * 5 / t / 1e9, ok ? "ok" : "MISMATCH");
    }
    CK(cudaFree(rl));
  }
  std::printf("\n%s\n", all_ok ? "all variants match the oracle" : "MISMATCHES above");
  return all_ok ? 0 : 1;
}
