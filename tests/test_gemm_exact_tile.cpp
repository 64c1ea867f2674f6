// The GPU's exact GEMM kernel (kernels/ops_gemm.cu) is built from the pieces in
// kernels/gemm_exact_tile.h. This test runs those same pieces on the CPU, block by block and
// thread by thread with the kernel's two barriers as loop boundaries, and checks the result
// against the CPU oracle's exact GEMM: the tiling, the edges, split-K and the epilogue are then
// tested on every machine, not only where a GPU is lent.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "gemm_exact_tile.h"

namespace vae {
namespace {

namespace ge = gemm_exact;

std::vector<float> rand_floats(int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(g);
  return v;
}

// What one launch computes, emulated: grid (tiles_n, tiles_m, splits) of 256-thread blocks, the
// k slices in increasing or (reversed) decreasing order; a tile's last block to finish adds its
// slices, as the kernel's counter has it.
template <bool TA, bool TB>
void emulate(ge::Args p, int num_sms, int64_t ws_doubles, int64_t* splits_out, bool reversed = false) {
  const int64_t nc = ge::out_cols(p);
  int64_t splits = 1;
  ge::plan_splits(p.m, nc, p.k, num_sms, ws_doubles, 4096, splits, p.kslice);
  std::vector<double> ws(splits > 1 ? static_cast<size_t>(splits * p.m * nc) : 0, std::nan(""));
  p.partial = splits > 1 ? ws.data() : nullptr;
  std::vector<int> counters(4096, 0);
  p.tile_counters = counters.data();
  const int64_t tiles_n = (nc + ge::kTileN - 1) / ge::kTileN, tiles_m = (p.m + ge::kTileM - 1) / ge::kTileM;
  static ge::TileA as;
  static ge::TileB bs;
  std::vector<double> acc_store(static_cast<size_t>(ge::kThreads) * 16);
  auto acc_of = [&](int tid) -> double(&)[4][4] {
    return *reinterpret_cast<double(*)[4][4]>(acc_store.data() + 16 * tid);
  };
  for (int64_t zi = 0; zi < splits; ++zi) {
    const int64_t z = reversed ? splits - 1 - zi : zi;
    const int64_t k_begin = z * p.kslice, k_end = std::min(p.k, k_begin + p.kslice);
    for (int64_t tm = 0; tm < tiles_m; ++tm) {
      for (int64_t tn = 0; tn < tiles_n; ++tn) {
        const int64_t row0 = tm * ge::kTileM, col0 = tn * ge::kTileN;
        std::fill(acc_store.begin(), acc_store.end(), 0.0);
        for (int64_t k0 = k_begin; k0 < k_end; k0 += ge::kTileK) {
          for (int tid = 0; tid < ge::kThreads; ++tid) ge::stage<TA, TB>(p, tid, row0, col0, k0, k_end, as, bs);
          for (int tid = 0; tid < ge::kThreads; ++tid) ge::accumulate(tid, as, bs, acc_of(tid));
        }
        for (int tid = 0; tid < ge::kThreads; ++tid) ge::epilogue(p, tid, row0, col0, z, acc_of(tid));
        if (p.partial && ++p.tile_counters[tm * tiles_n + tn] == splits) {
          for (int tid = 0; tid < ge::kThreads; ++tid) ge::finish_tile(p, splits, tid, row0, col0);
          p.tile_counters[tm * tiles_n + tn] = 0;
        }
      }
    }
  }
  for (int c : counters) ASSERT_EQ(c, 0) << "a tile counter left for the next launch";
  *splits_out = splits;
}

// Equal bits, but for at most a handful of 1-ulp flips where double rounding noise meets a float
// rounding boundary (the GPU-vs-CPU tests' rule); max_ulps 2 where a float product follows.
void expect_equal_but_rare_flips(const std::vector<float>& got, const std::vector<float>& want, int max_ulps = 1) {
  ASSERT_EQ(got.size(), want.size());
  int64_t off = 0, shown = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    ++off;
    float near = want[i];
    for (int u = 0; u < max_ulps && near != got[i]; ++u) near = std::nextafter(near, got[i]);
    if (near != got[i] && shown++ < 6) ADD_FAILURE() << "[" << i << "] tiles " << got[i] << " cpu " << want[i];
  }
  EXPECT_LE(off, std::max<int64_t>(1, static_cast<int64_t>(got.size()) / 10000));
}

TEST(GemmExactTile, SplitPlanCoversKOnce) {
  const int64_t shapes[][2] = {{1, 1}, {64, 64}, {64, 600}, {600, 1682}, {500, 20108}};
  for (int64_t k : {1, 15, 16, 63, 64, 65, 600, 1682, 100000}) {
    for (const auto& s : shapes) {
      for (int64_t ws : {int64_t{0}, int64_t{1} << 22}) {
        const int64_t m = s[0], n = s[1];
        int64_t splits = 0, kslice = 0;
        ge::plan_splits(m, n, k, 132, ws, 4096, splits, kslice);
        SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " k=" << k << " ws=" << ws);
        EXPECT_EQ(kslice % ge::kTileK, 0);
        EXPECT_GE(splits * kslice, k);
        EXPECT_LT((splits - 1) * kslice, k);  // no empty slice
        if (ws == 0) {
          EXPECT_EQ(splits, 1);
        }
        EXPECT_LE(splits > 1 ? splits * m * n : 0, ws);
      }
    }
  }
  int64_t splits = 0, kslice = 0;
  ge::plan_splits(64, 600, 1682, 132, int64_t{1} << 22, 4096, splits, kslice);  // the VAE's dX GEMM
  EXPECT_GT(splits, 8);
  ge::plan_splits(64, 600, 1682, 132, int64_t{1} << 22, 9, splits, kslice);  // 10 tiles, 9 counters
  EXPECT_EQ(splits, 1);
}

// Same tolerance rule as the GPU-vs-CPU test: equal bits, but for at most a handful of 1-ulp
// flips where double rounding noise meets a float rounding boundary.
TEST(GemmExactTile, KernelPiecesReproduceTheCpuExactGemm) {
  auto cpu = make_cpu_backend<float>(GemmPrecision::exact);
  const int64_t dims[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 65, 129}, {64, 600, 300}, {1, 257, 1682},
                             {65, 1, 77}, {70, 130, 1682}};
  bool split_seen = false, single_seen = false;
  for (const auto& d : dims) {
    const int64_t m = d[0], n = d[1], k = d[2];
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (float beta : {0.0f, 0.25f}) {
        for (int sms : {1, 132}) {
          SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " k=" << k << " ta=" << ta << " tb=" << tb
                                            << " beta=" << beta << " sms=" << sms);
          const float alpha = beta == 0.0f ? 1.0f : 0.5f;
          const std::vector<float> a = rand_floats(m * k, 90 + t), b = rand_floats(n * k, 95 + t);
          const std::vector<float> c0 = beta == 0.0f ? std::vector<float>(static_cast<size_t>(m * n), std::nanf(""))
                                                     : rand_floats(m * n, 99);
          Tensor<float> ct = cpu->upload(c0, m, n);
          cpu->gemm(ta, tb, alpha, cpu->upload(a, ta ? k : m, ta ? m : k).cmat(),
                    cpu->upload(b, tb ? n : k, tb ? k : n).cmat(), beta, ct.mat());
          const std::vector<float> want = cpu->download(ct.cmat());

          std::vector<float> got = c0;
          const ge::Args p = ge::make_args(m, n, k, alpha, a.data(), ta ? m : k, b.data(), tb ? k : n, beta,
                                           got.data(), n);
          int64_t splits = 0;
          const int64_t ws = int64_t{1} << 22;
          const bool rev = (t + static_cast<int>(beta != 0.0f)) % 2 == 1;  // half the cases: last slice first
          if (ta && tb) emulate<true, true>(p, sms, ws, &splits, rev);
          else if (ta) emulate<true, false>(p, sms, ws, &splits, rev);
          else if (tb) emulate<false, true>(p, sms, ws, &splits, rev);
          else emulate<false, false>(p, sms, ws, &splits, rev);
          (splits > 1 ? split_seen : single_seen) = true;

          expect_equal_but_rare_flips(got, want);
        }
      }
    }
  }
  EXPECT_TRUE(split_seen);
  EXPECT_TRUE(single_seen);
}

// The fused layer epilogue (Backend::linear on the GPU): the pieces with act_on give the CPU
// oracle's gemm then bias_act, through the one-slice epilogue and the split-K sum alike.
TEST(GemmExactTile, FusedBiasAndActivationEqualGemmThenBiasAct) {
  auto cpu = make_cpu_backend<float>(GemmPrecision::exact);
  const int64_t dims[][3] = {{33, 65, 129}, {64, 600, 300}, {7, 13, 5}};
  for (const auto& d : dims) {
    const int64_t m = d[0], n = d[1], k = d[2];
    const std::vector<float> x = rand_floats(m * k, 31), w = rand_floats(n * k, 32), bias = rand_floats(n, 33);
    for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
      for (int sms : {1, 132}) {
        SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " k=" << k << " act " << static_cast<int>(act)
                                          << " sms=" << sms);
        Tensor<float> yt = cpu->alloc<float>(m, n);
        cpu->gemm(false, true, 1.0f, cpu->upload(x, m, k).cmat(), cpu->upload(w, n, k).cmat(), 0.0f, yt.mat());
        cpu->bias_act(yt.cmat(), cpu->upload(bias, 1, n).cmat(), act, yt.mat());
        const std::vector<float> want = cpu->download(yt.cmat());
        std::vector<float> got(static_cast<size_t>(m * n), std::nanf(""));
        ge::Args p = ge::make_args(m, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, got.data(), n);
        p.epi.act_on = true;
        p.epi.bias = bias.data();
        p.epi.act = act;
        int64_t splits = 0;
        emulate<false, true>(p, sms, int64_t{1} << 22, &splits);
        // A 1-ulp flip before the bias can be a few ulps after it (cancellation): absolute rule.
        int64_t off = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          if (got[i] == want[i]) continue;
          ++off;
          EXPECT_LE(std::fabs(got[i] - want[i]), 4e-7f * std::max(1.0f, std::fabs(want[i]))) << "[" << i << "]";
        }
        EXPECT_LE(off, std::max<int64_t>(1, static_cast<int64_t>(got.size()) / 10000));
      }
    }
  }
}

// A layer's backward halves (Backend::linear_backward_input / _weight on the GPU): the pieces
// with act_y give the oracle's gemm then bias_act_backward, and with a_row_sums the oracle's
// dW = dzᵀ·x and db = Σ_rows dz, through the one-slice epilogue and the split-K sum alike.
TEST(GemmExactTile, BackwardEpiloguesEqualGemmThenBiasActBackward) {
  auto cpu = make_cpu_backend<float>(GemmPrecision::exact);
  // (rows, out, in); 64 inputs: the row sums are a tile column of their own.
  const int64_t dims[][3] = {{64, 600, 300}, {33, 65, 129}, {7, 13, 5}, {130, 77, 64}};
  bool split_seen = false, single_seen = false;
  for (const auto& d : dims) {
    const int64_t rows = d[0], out = d[1], in = d[2];
    const std::vector<float> dz = rand_floats(rows * out, 41), w = rand_floats(out * in, 42),
                             x = rand_floats(rows * in, 43);
    for (int sms : {1, 132}) {
      for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
        SCOPED_TRACE(::testing::Message() << "rows=" << rows << " out=" << out << " in=" << in << " act "
                                          << static_cast<int>(act) << " sms=" << sms);
        Tensor<float> yt = cpu->upload(x, rows, in);  // x as the output of act
        cpu->bias_act(yt.cmat(), CMat<float>{}, act, yt.mat());
        const std::vector<float> y = cpu->download(yt.cmat());
        Tensor<float> dxt = cpu->alloc<float>(rows, in);
        cpu->gemm(false, false, 1.0f, cpu->upload(dz, rows, out).cmat(), cpu->upload(w, out, in).cmat(), 0.0f,
                  dxt.mat());
        cpu->bias_act_backward(dxt.cmat(), yt.cmat(), act, dxt.mat(), Mat<float>{});
        std::vector<float> got(static_cast<size_t>(rows * in), std::nanf(""));
        ge::Args p = ge::make_args(rows, in, out, 1.0f, dz.data(), out, w.data(), in, 0.0f, got.data(), in);
        p.epi.act = act;
        p.epi.act_y = y.data();
        p.epi.ldy = in;
        int64_t splits = 0;
        emulate<false, false>(p, sms, int64_t{1} << 22, &splits);
        (splits > 1 ? split_seen : single_seen) = true;
        expect_equal_but_rare_flips(got, cpu->download(dxt.cmat()), 2);
      }
      SCOPED_TRACE(::testing::Message() << "rows=" << rows << " out=" << out << " in=" << in << " dw, db sms=" << sms);
      Tensor<float> dzt = cpu->upload(dz, rows, out), dwt = cpu->alloc<float>(out, in), dbt = cpu->alloc<float>(1, out);
      cpu->gemm(true, false, 1.0f, dzt.cmat(), cpu->upload(x, rows, in).cmat(), 0.0f, dwt.mat());
      cpu->bias_act_backward(dzt.cmat(), dzt.cmat(), Act::identity, Mat<float>{}, dbt.mat());
      std::vector<float> gw(static_cast<size_t>(out * in), std::nanf("")), gb(static_cast<size_t>(out), std::nanf(""));
      ge::Args p = ge::make_args(out, in, rows, 1.0f, dz.data(), out, x.data(), in, 0.0f, gw.data(), in);
      p.epi.a_row_sums = gb.data();
      int64_t splits = 0;
      emulate<true, false>(p, sms, int64_t{1} << 22, &splits, sms == 132);
      expect_equal_but_rare_flips(gw, cpu->download(dwt.cmat()));
      expect_equal_but_rare_flips(gb, cpu->download(dbt.cmat()));
    }
  }
  EXPECT_TRUE(split_seen);
  EXPECT_TRUE(single_seen);
}

}  // namespace
}  // namespace vae
