// What the kernel-variant programs (bench/variants_*.cu) share: a CUDA check that ends the
// program (a variant harness has nothing to recover) and the median of repeated timings.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define CK(expr)                                                                                    \
  do {                                                                                              \
    const cudaError_t e_ = (expr);                                                                  \
    if (e_ != cudaSuccess) {                                                                        \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The command line every variant program takes, [--reps N] (at least min_reps): 0 to go on, or
// the usage printed and what to exit with, -1 meaning 0 (--help).
inline int parse_reps(int argc, char** argv, const char* prog, int min_reps, int& reps) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) {
      reps = std::max(min_reps, std::atoi(argv[++i]));
    } else {
      std::printf("usage: %s [--reps N]\n", prog);
      return std::strcmp(argv[i], "--help") ? 2 : -1;
    }
  }
  return 0;
}

// Elementwise check, tolerance atol + |ref|·eps; prints the first mismatches (NaN never passes).
inline bool check_close(const char* what, const std::vector<float>& got, const std::vector<float>& ref, double atol,
                        double eps) {
  int bad = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double tol = atol + std::fabs(ref[i]) * eps;
    if (!(std::fabs(static_cast<double>(got[i]) - ref[i]) <= tol)) {
      if (++bad <= 5) std::printf("    mismatch %s[%zu]: got %.9g ref %.9g\n", what, i, got[i], ref[i]);
    }
  }
  if (bad > 5) std::printf("    ... %d mismatches in all\n", bad);
  return bad == 0;
}

// Median over reps of the device time of what fn enqueues on the legacy default stream (CUDA
// events around each run).
template <typename F>
double event_median(int reps, F&& fn) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(e0));
    fn();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(1e-3 * ms);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return median(t);
}

// The floors' ceiling: bytes read and written per second by a large device-to-device copy.
inline double copy_ceiling(size_t bytes) {
  void *a = nullptr, *b = nullptr;
  CK(cudaMalloc(&a, bytes));
  CK(cudaMalloc(&b, bytes));
  const double t = event_median(10, [&] { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); });
  CK(cudaFree(a));
  CK(cudaFree(b));
  return 2.0 * static_cast<double>(bytes) / t;
}
