// The pieces of the exact (double-accumulating) GEMM kernel, written once for the device and the
// host: ops_gemm.cu runs them as a CUDA kernel, and tests/test_gemm_exact_tile.cpp runs the very
// same code block by block and thread by thread on the CPU, so the tiling, split-K and epilogue
// are checked against the oracle on machines without a GPU too.
//
// Block (x, y, z) of 256 threads owns output tile (y, x) (64 × 64) and the k range
// [z·kslice, (z + 1)·kslice); thread tid = 16·ty + tx owns rows ty + 16i and columns tx + 16j
// (i, j < 4) of the tile. Each 16-deep k tile is staged in shared memory widened to double
// (stage), __syncthreads, multiplied in (accumulate), __syncthreads. With one k slice the
// epilogue writes C; with several (split-K) it writes double partial sums, and the last block of
// an output tile to finish (a counter per tile) adds them in slice order (finish_tile): the same
// sums whichever block that is, and no second kernel. Fused epilogues, each applied to the
// rounded output as the op it replaces would after the GEMM: a layer's forward (Epilogue::act_on)
// adds the bias and applies the activation (bias_act); a layer's input gradient (Epilogue::act_y)
// multiplies by the activation's derivative at act_y (bias_act_backward). Epilogue::a_row_sums widens
// op(B) by a column of ones, whose output column, the row sums of op(A), goes there instead of C:
// a layer's bias gradient beside its weight gradient, in the same kernel.
#pragma once
#include <algorithm>
#include <cstdint>

#include "activation.h"
#include "core/hd_math.h"

namespace vae::gemm_exact {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16;
constexpr int kThreads = 256;
constexpr int64_t kMaxGridY = 65535, kMaxGridZ = 65535;

// What the kernel does to each rounded output besides storing it (one at most), and the row sums.
struct Epilogue {
  bool act_on = false;           // C = act(C + bias): a layer's forward, as bias_act
  const float* bias = nullptr;   // 1 × n, or nullptr
  Act act = Act::identity;
  const float* act_y = nullptr;  // C = C ⊙ act'(Y), Y m × n (ldy) an activation's output, as bias_act_backward
  int64_t ldy = 0;
  float* a_row_sums = nullptr;   // m floats: Σ_k op(A)[i][k] (beta 0), or nullptr
};

struct Args {
  int64_t m = 0, n = 0, k = 0, kslice = 0;
  double alpha = 1.0, beta = 0.0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  double* partial = nullptr;  // split-K: splits × m × n doubles; nullptr: one slice
  int* tile_counters = nullptr;  // split-K: one per output tile (y · tiles_n + x), 0 between launches
  Epilogue epi;
};

// Output columns: C's, plus the row-sum column.
VAE_HD int64_t out_cols(const Args& p) { return p.epi.a_row_sums ? p.n + 1 : p.n; }

// C (m × n, ldc) = alpha · op(A) · op(B) + beta · C; kslice and partial are the launcher's.
inline Args make_args(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float beta, float* c, int64_t ldc) {
  Args p;
  p.m = m;
  p.n = n;
  p.k = k;
  p.alpha = alpha;
  p.beta = beta;
  p.a = a;
  p.lda = lda;
  p.b = b;
  p.ldb = ldb;
  p.c = c;
  p.ldc = ldc;
  return p;
}

// Shared-memory tiles. +1 column: the staging stores walk down columns; the padding spreads
// them over the banks.
using TileA = double[kTileK][kTileM + 1];
using TileB = double[kTileK][kTileN + 1];

// x·y + acc for float-valued x and y: their product is exact in double, so the fused and the
// unfused forms round alike; the device takes the one-instruction fused form.
VAE_HD double add_product(double x, double y, double acc) {
#if defined(__CUDA_ARCH__)
  return fma(x, y, acc);
#else
  return x * y + acc;
#endif
}

// How many k slices: split when the output tiles alone would leave most SMs idle (a 64 × 600
// layer output is 10 tiles on a 132-SM GPU), aiming at two blocks per SM, each slice at least
// four k tiles deep, all partial sums within the workspace and a counter for every tile.
// kslice is a multiple of kTileK.
inline void plan_splits(int64_t m, int64_t n, int64_t k, int num_sms, int64_t ws_doubles, int64_t counters,
                        int64_t& splits, int64_t& kslice) {
  const int64_t tiles = ((m + kTileM - 1) / kTileM) * ((n + kTileN - 1) / kTileN);
  const int64_t want_blocks = 2 * static_cast<int64_t>(num_sms);
  splits = 1;
  if (tiles < want_blocks && ws_doubles > 0 && tiles <= counters) {
    splits = std::min<int64_t>((want_blocks + tiles - 1) / tiles, k / (4 * kTileK));
    splits = std::min<int64_t>(splits, ws_doubles / std::max<int64_t>(1, m * n));
    splits = std::max<int64_t>(1, std::min<int64_t>(splits, kMaxGridZ));
  }
  kslice = std::max<int64_t>(kTileK, ((k + splits - 1) / splits + kTileK - 1) / kTileK * kTileK);
  splits = std::max<int64_t>(1, (k + kslice - 1) / kslice);
}

// Thread tid's share of staging op(A)[row0.., k0..] and op(B)[k0.., col0..]: consecutive threads
// read consecutive addresses of whichever layout the operand has; outside the matrix or the
// block's k range, 0.
template <bool TA, bool TB>
VAE_HD void stage(const Args& p, int tid, int64_t row0, int64_t col0, int64_t k0, int64_t k_end, TileA& as,
                  TileB& bs) {
  for (int e = 0; e < (kTileM * kTileK) / kThreads; ++e) {
    const int idx = tid + kThreads * e;
    const int i = TA ? idx % kTileM : idx / kTileK;
    const int kk = TA ? idx / kTileM : idx % kTileK;
    const int64_t gi = row0 + i, gk = k0 + kk;
    float v = 0.0f;
    if (gi < p.m && gk < k_end) v = TA ? p.a[gk * p.lda + gi] : p.a[gi * p.lda + gk];
    as[kk][i] = static_cast<double>(v);
  }
  for (int e = 0; e < (kTileN * kTileK) / kThreads; ++e) {
    const int idx = tid + kThreads * e;
    const int j = TB ? idx / kTileK : idx % kTileN;
    const int kk = TB ? idx % kTileK : idx / kTileN;
    const int64_t gj = col0 + j, gk = k0 + kk;
    float v = 0.0f;
    if (gj < p.n && gk < k_end) v = TB ? p.b[gj * p.ldb + gk] : p.b[gk * p.ldb + gj];
    else if (gj == p.n && p.epi.a_row_sums && gk < k_end) v = 1.0f;
    bs[kk][j] = static_cast<double>(v);
  }
}

// acc[i][j] += Σ_kk A[ty + 16i][kk] · B[kk][tx + 16j] in kk order.
VAE_HD void accumulate(int tid, const TileA& as, const TileB& bs, double (&acc)[4][4]) {
  const int tx = tid % 16, ty = tid / 16;
  for (int kk = 0; kk < kTileK; ++kk) {
    double ar[4], br[4];
    for (int i = 0; i < 4; ++i) ar[i] = as[kk][ty + 16 * i];
    for (int j = 0; j < 4; ++j) br[j] = bs[kk][tx + 16 * j];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) acc[i][j] = add_product(ar[i], br[j], acc[i][j]);
  }
}

// Where output (gi, gj) goes: C, or the row-sum column's entry.
VAE_HD float* out_ptr(const Args& p, int64_t gi, int64_t gj) {
  return gj < p.n ? p.c + gi * p.ldc + gj : p.epi.a_row_sums + gi;
}

// alpha and beta as the oracle applies them: in double, unfused, then one rounding; then a fused
// epilogue on C's entries (the row sums are plain sums).
VAE_HD float finish_value(const Args& p, double v, int64_t gi, int64_t gj, const float* out) {
  if (p.alpha != 1.0) v = hd_mul(p.alpha, v);
  if (p.beta != 0.0) v = hd_add(v, hd_mul(p.beta, static_cast<double>(*out)));  // beta 0: C not read
  const float c = static_cast<float>(v);
  if (gj >= p.n) return c;
  if (p.epi.act_on) return bias_activate(c, p.epi.bias != nullptr, p.epi.bias ? p.epi.bias[gj] : 0.0f, p.epi.act);
  if (p.epi.act_y) return act_backward(p.epi.act, c, p.epi.act_y[gi * p.epi.ldy + gj]);
  return c;
}

// f(i, j, gi, gj) for each of thread tid's outputs (acc[i][j], output (gi, gj)) of the tile at
// (row0, col0) that lies inside the output (C and the row-sum column).
template <typename F>
VAE_HD void for_each_output(const Args& p, int tid, int64_t row0, int64_t col0, F&& f) {
  const int tx = tid % 16, ty = tid / 16;
  const int64_t nc = out_cols(p);
  VAE_UNROLL
  for (int i = 0; i < 4; ++i) {
    const int64_t gi = row0 + ty + 16 * i;
    if (gi >= p.m) continue;
    VAE_UNROLL
    for (int j = 0; j < 4; ++j) {
      const int64_t gj = col0 + tx + 16 * j;
      if (gj < nc) f(i, j, gi, gj);
    }
  }
}

VAE_HD void epilogue(const Args& p, int tid, int64_t row0, int64_t col0, int64_t z, const double (&acc)[4][4]) {
  for_each_output(p, tid, row0, col0, [&](int i, int j, int64_t gi, int64_t gj) {
    if (p.partial) {
      p.partial[(z * p.m + gi) * out_cols(p) + gj] = acc[i][j];
    } else {
      float* out = out_ptr(p, gi, gj);
      *out = finish_value(p, acc[i][j], gi, gj, out);
    }
  });
}

// Another block's partial sum: read past the L1 cache, which is not coherent across SMs.
VAE_HD double load_partial(const double* q) {
#if defined(__CUDA_ARCH__)
  return __ldcg(q);
#else
  return *q;
#endif
}
// Thread tid's outputs of the tile at (row0, col0) of a split-K GEMM: its slices added in slice
// order, then finished as the one-slice epilogue finishes them.
VAE_HD void finish_tile(const Args& p, int64_t splits, int tid, int64_t row0, int64_t col0) {
  const int64_t nc = out_cols(p), mn = p.m * nc;
  for_each_output(p, tid, row0, col0, [&](int, int, int64_t gi, int64_t gj) {
    const int64_t idx = gi * nc + gj;
    double v = load_partial(p.partial + idx);
    for (int64_t z = 1; z < splits; ++z) v = hd_add(v, load_partial(p.partial + z * mn + idx));
    float* out = out_ptr(p, gi, gj);
    *out = finish_value(p, v, gi, gj, out);
  });
}

}  // namespace vae::gemm_exact
