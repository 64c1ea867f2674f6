// GemmPrecision::exact on the GPU: float operands, products summed in double, one rounding to
// float. The CPU oracle widens its operands and calls a double BLAS; the two summation orders
// differ, but in double that difference sits far below a float ulp, so after the rounding both
// devices hold the same bits (see GemmPrecision in backend.h). cuBLAS has no float-in,
// double-accumulate GEMM, hence this kernel.
//
// A layer's forward (Backend::linear) runs as one such GEMM with its bias and activation applied
// to each output after the rounding, its input gradient (linear_backward_input) as one with the
// activation's derivative applied, and its weight gradient (linear_backward_weight) as one that
// also sums the bias gradient: one kernel instead of two each time.
//
// A plain shared-memory tiled kernel (64 × 64 outputs per block of 256 threads, 4 × 4 per
// thread, 16-deep k tiles widened to double once when staged), split over k for outputs too
// small to fill the GPU (the last block of each tile adds the slices: one kernel either way);
// its pieces live in gemm_exact_tile.h, which the CPU tests also run.
// FP64 FMA runs at half the FP32 rate on H100/H200; --precision fp32 / tf32 use cuBLAS.
#include <climits>

#include "gemm_exact_tile.h"
#include "launch.cuh"

namespace vae::cuda {

namespace {

namespace ge = vae::gemm_exact;

template <bool TA, bool TB>
__global__ void __launch_bounds__(ge::kThreads) gemm_exact_kernel(ge::Args p, int64_t splits) {
  __shared__ ge::TileA as;
  __shared__ ge::TileB bs;
  __shared__ int last;  // this block finishes its tile's split-K sums
  const int tid = threadIdx.x;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * ge::kTileN;
  const int64_t z = blockIdx.z;
  const int64_t k_begin = z * p.kslice;
  const int64_t k_end = k_begin + p.kslice < p.k ? k_begin + p.kslice : p.k;
  const int64_t tiles_m = (p.m + ge::kTileM - 1) / ge::kTileM;
  for (int64_t tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
    const int64_t row0 = tm * ge::kTileM;
    double acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = 0.0;
    for (int64_t k0 = k_begin; k0 < k_end; k0 += ge::kTileK) {
      ge::stage<TA, TB>(p, tid, row0, col0, k0, k_end, as, bs);
      __syncthreads();
      ge::accumulate(tid, as, bs, acc);
      __syncthreads();
    }
    ge::epilogue(p, tid, row0, col0, z, acc);
    if (p.partial) {
      // The threadFenceReduction pattern: partial sums visible device-wide before the count.
      __threadfence();
      __syncthreads();
      if (tid == 0) {
        int* count = p.tile_counters + tm * gridDim.x + blockIdx.x;
        last = atomicAdd(count, 1) == static_cast<int>(splits) - 1;
        if (last) *count = 0;  // every slice has counted: ready for the next launch
      }
      __syncthreads();
      if (last) {
        __threadfence();
        ge::finish_tile(p, splits, tid, row0, col0);
      }
    }
  }
}

template <bool TA, bool TB>
void launch_gemm_exact(const OpContext& ctx, ge::Args p) {
  const int64_t nc = ge::out_cols(p);
  int64_t splits = 1;
  ge::plan_splits(p.m, nc, p.k, ctx.num_sms, ctx.gemm_ws ? ctx.gemm_ws_doubles : 0,
                  ctx.gemm_counters ? kGemmTileCounters : 0, splits, p.kslice);
  p.partial = splits > 1 ? ctx.gemm_ws : nullptr;
  p.tile_counters = ctx.gemm_counters;
  const int64_t tiles_n = (nc + ge::kTileN - 1) / ge::kTileN, tiles_m = (p.m + ge::kTileM - 1) / ge::kTileM;
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(std::min<int64_t>(tiles_m, ge::kMaxGridY)),
                  static_cast<unsigned>(splits));
  gemm_exact_kernel<TA, TB><<<grid, ge::kThreads, 0, ctx.stream>>>(p, splits);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void gemm_exact(const OpContext& c, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                float* cm, int64_t ldc, const GemmEpilogue& epi) {
  if (m <= 0 || n <= 0) return;
  VAE_CHECK((n + ge::kTileN) / ge::kTileN <= INT_MAX, "gemm (exact): too many columns for one grid");
  VAE_CHECK(!(epi.act_on && epi.act_y), "gemm (exact): two output epilogues asked for");
  VAE_CHECK(!epi.a_row_sums || (beta == 0.0f && !epi.act_on && !epi.act_y),
            "gemm (exact): row sums go with a plain beta-0 GEMM");
  ge::Args p = ge::make_args(m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc);
  p.epi = epi;
  if (trans_a) {
    if (trans_b) launch_gemm_exact<true, true>(c, p);
    else launch_gemm_exact<true, false>(c, p);
  } else {
    if (trans_b) launch_gemm_exact<false, true>(c, p);
    else launch_gemm_exact<false, false>(c, p);
  }
}

}  // namespace vae::cuda
