// The CUDA backend against the CPU oracle, op by op: fresh random inputs of several shapes
// (sizes that are not multiples of a block, a single row, an empty batch), the GPU's outputs
// poisoned with NaN before each run so an unwritten element fails, and a relative error
// ‖gpu − cpu‖ / ‖cpu‖ below 1e-5 (FP32; 2e-3 for the TF32 GEMM). A NaN never passes unless the
// oracle has the same NaN. Every test skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <cstring>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/philox.h"
#include "data/dataset.h"

namespace vae {
namespace {

constexpr double kTol = 1e-5;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> rand_vec(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// llm.c-style comparison: passes when the relative error norm is below tol and every
// non-finite value matches the oracle's (NaN only where allowed); on failure lists the first
// elements off by more than atol + |ref|·eps.
::testing::AssertionResult rel_close(const std::vector<float>& got, const std::vector<float>& ref, double tol,
                                     bool nan_ok = false) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.size();
  const double atol = 1e-6, eps = 1e-4;
  double num = 0.0, den = 0.0;
  int nonfinite_bad = 0, shown = 0;
  std::ostringstream os;
  os.precision(9);
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    bool bad = false;
    if (std::isnan(g) || std::isnan(r)) {
      bad = !(nan_ok && std::isnan(g) && std::isnan(r));
      nonfinite_bad += bad;
    } else if (std::isinf(g) || std::isinf(r)) {
      bad = g != r;
      nonfinite_bad += bad;
    } else {
      num += (g - r) * (g - r);
      den += r * r;
      bad = std::fabs(g - r) > atol + std::fabs(r) * eps;
    }
    if (bad && shown < 8) {
      os << "  [" << i << "] gpu " << g << " cpu " << r << "\n";
      ++shown;
    }
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (nonfinite_bad == 0 && rel <= tol) return ::testing::AssertionSuccess();  // tol 0: exact
  return ::testing::AssertionFailure() << "relative error " << rel << " (tol " << tol << "), " << nonfinite_bad
                                       << " non-finite mismatches of " << got.size() << "; first:\n"
                                       << os.str();
}

template <typename T>
::testing::AssertionResult all_equal(const std::vector<T>& got, const std::vector<T>& ref) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.size();
  int bad = 0;
  std::ostringstream os;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = got[i] == ref[i] || (std::isnan(static_cast<double>(got[i])) &&
                                           std::isnan(static_cast<double>(ref[i])));
    if (!same && bad++ < 8) os << "  [" << i << "] gpu " << got[i] << " cpu " << ref[i] << "\n";
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << got.size() << " differ:\n" << os.str();
}

// Shapes every row/elementwise op runs on: odd sizes, one row, one column, an empty batch.
const std::vector<std::pair<int64_t, int64_t>> kShapes = {{1, 1},   {1, 1000}, {3, 257}, {37, 513},
                                                          {130, 77}, {0, 17},   {5, 1},   {64, 2049}};

std::string shape_str(int64_t r, int64_t c) { return std::to_string(r) + "x" + std::to_string(c); }

// Random CSR with ascending columns; about `density` of the entries stored, values in
// {0, 1, …, 5} (some stored zeros, so "value > 0" matters) or continuous.
Csr random_csr(int64_t rows, int64_t cols, double density, uint64_t seed, bool with_zeros = true) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Csr m;
  m.rows = rows;
  m.cols = cols;
  m.indptr.assign(1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (u(g) >= density) continue;
      m.indices.push_back(static_cast<int32_t>(c));
      const int v = static_cast<int>(u(g) * 6.0);
      m.values.push_back(with_zeros ? static_cast<float>(v) : static_cast<float>(1 + v % 5));
    }
    m.indptr.push_back(static_cast<int64_t>(m.indices.size()));
  }
  return m;
}

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    cpu = make_cpu_backend<float>();
    gpu = make_cuda_backend();
  }

  struct Pair {
    Tensor<float> c, g;
    Mat<float> cm() const { return c.mat(); }
    Mat<float> gm() const { return g.mat(); }
  };
  struct IPair {
    Tensor<int32_t> c, g;
  };
  struct CsrPair {
    CsrTensor<float> c, g;
  };

  Pair up(const std::vector<float>& h, int64_t r, int64_t c) { return {cpu->upload(h, r, c), gpu->upload(h, r, c)}; }
  // Outputs: both sides start as NaN, so an element the GPU never writes cannot pass.
  Pair poisoned(int64_t r, int64_t c) {
    return up(std::vector<float>(static_cast<size_t>(r * c), kNaN), r, c);
  }
  IPair up_idx(const std::vector<int32_t>& v, bool row_vector = false) {
    const int64_t n = static_cast<int64_t>(v.size());
    return row_vector ? IPair{cpu->upload(v, 1, n), gpu->upload(v, 1, n)}
                      : IPair{cpu->upload(v, n, 1), gpu->upload(v, n, 1)};
  }
  CsrPair up_csr(const Csr& m) { return {cpu->upload_csr(m), gpu->upload_csr(m)}; }

  std::vector<float> dc(const Tensor<float>& t) { return cpu->download(t.cmat()); }
  std::vector<float> dg(const Tensor<float>& t) { return gpu->download(t.cmat()); }
  ::testing::AssertionResult same(const Pair& p, double tol = kTol, bool nan_ok = false) {
    return rel_close(dg(p.g), dc(p.c), tol, nan_ok);
  }

  std::unique_ptr<Backend<float>> cpu, gpu;
};

TEST_F(CudaOps, MemoryRoundTripAndCopyWithin) {
  const std::vector<float> h = rand_vec(1000, 1);
  Tensor<float> t = gpu->upload(h, 10, 100);
  EXPECT_EQ(gpu->download(t.cmat()), h);
  Tensor<float> u = gpu->alloc<float>(10, 100);
  gpu->copy_within(u.data(), t.data(), 1000 * sizeof(float));
  EXPECT_EQ(gpu->download(u.cmat()), h);
  // Overlapping ranges behave as memmove.
  gpu->copy_within(t.data() + 1, t.data(), 999 * sizeof(float));
  std::vector<float> want = h;
  std::memmove(want.data() + 1, want.data(), 999 * sizeof(float));
  EXPECT_EQ(gpu->download(t.cmat()), want);
  Tensor<float> empty = gpu->alloc<float>(0, 5);  // zero bytes still allocate
  EXPECT_NE(empty.data(), nullptr);
  EXPECT_TRUE(gpu->download(empty.cmat()).empty());
  EXPECT_EQ(gpu->name(), "cuda");
  EXPECT_FALSE(cuda_device_name().empty());
}

// CUDA events around the enqueued work: the work has run when it returns, and 200 copies of
// 64 MiB take measurable device time (at least 1 µs, at most a minute).
TEST_F(CudaOps, DeviceSecondsTimesTheEnqueuedWork) {
  const int64_t n = int64_t{16} << 20;
  Tensor<float> a = gpu->alloc<float>(1, n), b = gpu->alloc<float>(1, n);
  gpu->fill(a.mat(), 1.0f);
  const double s = gpu->device_seconds([&] {
    for (int i = 0; i < 200; ++i) gpu->copy_within(b.data(), a.data(), static_cast<size_t>(n) * sizeof(float));
    gpu->fill(a.mat(), 2.0f);
  });
  EXPECT_GT(s, 1e-6);
  EXPECT_LT(s, 60.0);
  // The last 4 096 elements of each (rows_slice of a 4096-column view).
  const std::vector<float> hb = gpu->download(b.cmat().reshaped(n / 4096, 4096).rows_slice(n / 4096 - 1, 1));
  const std::vector<float> ha = gpu->download(a.cmat().reshaped(n / 4096, 4096).rows_slice(n / 4096 - 1, 1));
  EXPECT_EQ(hb, std::vector<float>(4096, 1.0f));
  EXPECT_EQ(ha, std::vector<float>(4096, 2.0f));
}

// Per-op profile: each op name with its call count and a positive device time, largest first;
// read once, then empty; no step capture while profiling.
TEST_F(CudaOps, OpProfileCountsAndTimesEachOp) {
  Tensor<float> a = gpu->upload(rand_vec(64 * 96, 301, -1.0f, 1.0f), 64, 96);
  Tensor<float> b = gpu->upload(rand_vec(96 * 48, 302, -1.0f, 1.0f), 96, 48), c = gpu->alloc<float>(64, 48);
  EXPECT_TRUE(gpu->op_profile().empty());  // nothing recorded while off
  gpu->set_op_profiling(true);
  for (int i = 0; i < 3; ++i) gpu->gemm(false, false, 1.0f, a.cmat(), b.cmat(), 0.0f, c.mat());
  gpu->fill(c.mat(), 0.5f);
  gpu->fill(c.mat(), 1.5f);
  EXPECT_THROW(gpu->begin_step(1, false), VaeError);
  const std::vector<OpTime> prof = gpu->op_profile();
  gpu->set_op_profiling(false);
  ASSERT_EQ(prof.size(), 2u);
  for (size_t i = 0; i < prof.size(); ++i) {
    EXPECT_GT(prof[i].seconds, 0.0) << prof[i].op;
    if (i > 0) {
      EXPECT_GE(prof[i - 1].seconds, prof[i].seconds);
    }
    EXPECT_EQ(prof[i].calls, prof[i].op == "gemm" ? 3 : 2) << prof[i].op;
    EXPECT_TRUE(prof[i].op == "gemm" || prof[i].op == "fill") << prof[i].op;
  }
  EXPECT_TRUE(gpu->op_profile().empty());
  EXPECT_EQ(gpu->download(c.cmat()), std::vector<float>(64 * 48, 1.5f));
  EXPECT_TRUE(cpu->op_profile().empty());
}

TEST_F(CudaOps, OutOfMemoryNamesTheRequest) {
  try {
    gpu->alloc_bytes(size_t{1} << 50);
    FAIL() << "no exception";
  } catch (const VaeError& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(size_t{1} << 50)), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--batch-size"), std::string::npos) << e.what();
  }
  Tensor<float> ok = gpu->zeros(2, 2);  // still usable
  EXPECT_EQ(gpu->download(ok.cmat()), std::vector<float>(4, 0.0f));
}

TEST_F(CudaOps, FillAndAxpy) {
  for (auto [r, c] : kShapes) {
    SCOPED_TRACE(shape_str(r, c));
    Pair x = up(rand_vec(r * c, 2), r, c), y = up(rand_vec(r * c, 3), r, c);
    cpu->axpy(0.37f, x.cm(), y.cm());
    gpu->axpy(0.37f, x.gm(), y.gm());
    EXPECT_TRUE(same(y));
    Pair f = poisoned(r, c);
    cpu->fill(f.cm(), 2.5f);
    gpu->fill(f.gm(), 2.5f);
    EXPECT_TRUE(same(f, 0.0));
  }
}

TEST_F(CudaOps, GemmAllTransposesMatchCpu) {
  const int64_t dims[][3] = {{1, 1, 1}, {7, 13, 5}, {33, 65, 129}, {64, 600, 300}, {1, 257, 1682},
                             {300, 1, 77}, {0, 5, 3}, {5, 0, 3}};
  for (const auto& d : dims) {
    const int64_t m = d[0], n = d[1], k = d[2];
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      SCOPED_TRACE("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                   " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
      Pair a = ta ? up(rand_vec(k * m, 10 + t), k, m) : up(rand_vec(m * k, 10 + t), m, k);
      Pair b = tb ? up(rand_vec(n * k, 20 + t), n, k) : up(rand_vec(k * n, 20 + t), k, n);
      Pair c0 = poisoned(m, n);  // beta = 0 must not read C
      cpu->gemm(ta, tb, 1.0f, a.cm(), b.cm(), 0.0f, c0.cm());
      gpu->gemm(ta, tb, 1.0f, a.gm(), b.gm(), 0.0f, c0.gm());
      EXPECT_TRUE(same(c0));
      Pair c1 = up(rand_vec(m * n, 30 + t), m, n);
      cpu->gemm(ta, tb, 0.5f, a.cm(), b.cm(), 0.25f, c1.cm());
      gpu->gemm(ta, tb, 0.5f, a.gm(), b.gm(), 0.25f, c1.gm());
      EXPECT_TRUE(same(c1));
    }
  }
  // Empty inner dimension: C = beta · C.
  Pair a = up({}, 4, 0), b = up({}, 0, 3), c = up(rand_vec(12, 5), 4, 3);
  cpu->gemm(false, false, 1.0f, a.cm(), b.cm(), 0.5f, c.cm());
  gpu->gemm(false, false, 1.0f, a.gm(), b.gm(), 0.5f, c.gm());
  EXPECT_TRUE(same(c, 0.0));
  EXPECT_THROW(gpu->gemm(false, false, 1.0f, c.gm(), c.gm(), 0.0f, c.gm()), VaeError);
}

// x·Wᵀ at the VAE's first-layer shape (96 × 1682 by 600 × 1682) on a reduced-precision GPU
// backend and on the CPU oracle: (gpu result, cpu result).
std::pair<std::vector<float>, std::vector<float>> gemm_vs_cpu(Backend<float>& gpu_be, Backend<float>& cpu_be,
                                                              uint64_t seed) {
  const int64_t m = 96, n = 600, k = 1682;
  const std::vector<float> ha = rand_vec(m * k, seed), hb = rand_vec(n * k, seed + 1);
  Tensor<float> ac = cpu_be.upload(ha, m, k), bc = cpu_be.upload(hb, n, k), cc = cpu_be.alloc<float>(m, n);
  Tensor<float> ag = gpu_be.upload(ha, m, k), bg = gpu_be.upload(hb, n, k), cg = gpu_be.alloc<float>(m, n);
  cpu_be.gemm(false, true, 1.0f, ac.cmat(), bc.cmat(), 0.0f, cc.mat());
  gpu_be.gemm(false, true, 1.0f, ag.cmat(), bg.cmat(), 0.0f, cg.mat());
  return {gpu_be.download(cg.cmat()), cpu_be.download(cc.cmat())};
}

TEST_F(CudaOps, GemmTf32WithinLooseTolerance) {
  auto tf = make_cuda_backend(GemmPrecision::tf32);
  const auto [got, ref] = gemm_vs_cpu(*tf, *cpu, 40);
  EXPECT_TRUE(rel_close(got, ref, 2e-3));
}

// BF16 tensor cores: inputs rounded to 8 mantissa bits, so about 4e-3 relative error at this
// size (a 5x margin below), and clearly more than an FP32 GEMM's 1e-7 (the mode is really on).
TEST_F(CudaOps, GemmBf16WithinItsRoundingAndReallyBf16) {
  auto bf = make_cuda_backend(GemmPrecision::bf16);
  EXPECT_EQ(bf->gemm_precision(), GemmPrecision::bf16);
  const auto [got, ref] = gemm_vs_cpu(*bf, *cpu, 42);
  EXPECT_TRUE(rel_close(got, ref, 2e-2));
  EXPECT_FALSE(rel_close(got, ref, 1e-5)) << "BF16 GEMM as accurate as FP32: tensor-core BF16 not in use";
}

// --precision exact on both devices: double accumulation, one rounding. The GPU kernel and the
// CPU's double BLAS sum in different orders, which may flip a final rounding only where a
// result sits within double rounding noise of a float boundary: a few 1-ulp differences at
// most, against the many a float sgemm shows (GemmTf32WithinLooseTolerance's fp32 twin).
// Every shape class (tails, split-K, one row or column, empty) in both transposes and betas.
void expect_exact_gemms_match(const std::vector<std::array<int64_t, 3>>& dims) {
  auto cx = make_cpu_backend<float>(GemmPrecision::exact);
  auto gx = make_cuda_backend(GemmPrecision::exact);
  EXPECT_EQ(gx->gemm_precision(), GemmPrecision::exact);
  for (const auto& d : dims) {
    const int64_t m = d[0], n = d[1], k = d[2];
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (float beta : {0.0f, 0.25f}) {
        SCOPED_TRACE("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                     " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta));
        const float alpha = beta == 0.0f ? 1.0f : 0.5f;
        const std::vector<float> ha = rand_vec(m * k, 60 + t), hb = rand_vec(n * k, 70 + t);
        const std::vector<float> hc = beta == 0.0f ? std::vector<float>(static_cast<size_t>(m * n), kNaN)
                                                   : rand_vec(m * n, 80 + t);
        auto run = [&](Backend<float>& be) {
          Tensor<float> c = be.upload(hc, m, n);
          be.gemm(ta, tb, alpha, be.upload(ha, ta ? k : m, ta ? m : k).cmat(),
                  be.upload(hb, tb ? n : k, tb ? k : n).cmat(), beta, c.mat());
          return be.download(c.cmat());
        };
        const std::vector<float> want = run(*cx), got = run(*gx);
        ASSERT_EQ(got.size(), want.size());
        int64_t off = 0, shown = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          if (got[i] == want[i]) continue;
          ++off;
          const bool one_ulp = got[i] == std::nextafter(want[i], got[i]);
          if (!one_ulp && shown++ < 6) ADD_FAILURE() << "[" << i << "] gpu " << got[i] << " cpu " << want[i];
        }
        EXPECT_LE(off, std::max<int64_t>(1, static_cast<int64_t>(got.size()) / 10000));
      }
    }
  }
}

TEST_F(CudaOps, GemmExactMatchesTheCpuBitForBit) {
  expect_exact_gemms_match({{1, 1, 1}, {7, 13, 5}, {33, 65, 129}, {64, 600, 300}, {1, 257, 1682},
                            {300, 1, 77}, {0, 5, 3}, {5, 0, 3}, {4, 3, 0}});
}

// A layer-sized GEMM (the VAE's 1682-wide first layer at a batch of 130): about 1.2 G
// multiply-adds over the eight cases, too slow under racecheck, whose kernel paths the shapes
// above already cover.
TEST_F(CudaOps, GemmExactLayerSizedMatchesTheCpu) { expect_exact_gemms_match({{130, 700, 1682}}); }

// Backend::linear (a layer's forward): with exact GEMMs the GPU fuses the bias and activation
// into the GEMM's epilogue (and into the split-K sum), which must give the bits of its own
// gemm then bias_act, and the CPU oracle's linear within the exact GEMM's rounding; with float
// GEMMs it is cuBLAS then bias_act. Outputs start as NaN, so an unwritten one fails.
TEST_F(CudaOps, LinearFusesBiasAndActivationIntoTheExactGemm) {
  auto cx = make_cpu_backend<float>(GemmPrecision::exact);
  auto gx = make_cuda_backend(GemmPrecision::exact);
  // (rows, out, in): split-K (few output tiles, deep k), one slice (k < 64), one row, k = 0, empty.
  const std::vector<std::array<int64_t, 3>> dims = {{64, 600, 1682}, {33, 65, 100}, {7, 13, 5}, {1, 257, 300},
                                                    {130, 77, 129},  {5, 3, 0},     {0, 5, 3}};
  for (const auto& d : dims) {
    const int64_t m = d[0], n = d[1], k = d[2];
    const std::vector<float> hx = rand_vec(m * k, 90), hw = rand_vec(n * k, 91), hb = rand_vec(n, 92);
    for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE("m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + " " +
                     act_name(act) + (with_bias ? " bias" : ""));
        auto fused = [&](Backend<float>& be) {
          Tensor<float> y = be.upload(std::vector<float>(static_cast<size_t>(m * n), kNaN), m, n);
          Tensor<float> b = with_bias ? be.upload(hb, 1, n) : be.alloc<float>(0, 0);
          be.linear(be.upload(hx, m, k).cmat(), be.upload(hw, n, k).cmat(), b.cmat(), act, y.mat());
          return be.download(y.cmat());
        };
        auto composed = [&](Backend<float>& be) {
          Tensor<float> y = be.upload(std::vector<float>(static_cast<size_t>(m * n), kNaN), m, n);
          Tensor<float> b = with_bias ? be.upload(hb, 1, n) : be.alloc<float>(0, 0);
          be.gemm(false, true, 1.0f, be.upload(hx, m, k).cmat(), be.upload(hw, n, k).cmat(), 0.0f, y.mat());
          be.bias_act(y.cmat(), b.cmat(), act, y.mat());
          return be.download(y.cmat());
        };
        const std::vector<float> got = fused(*gx);
        EXPECT_TRUE(all_equal(got, composed(*gx)));
        EXPECT_TRUE(rel_close(got, fused(*cx), 1e-6));
        if (d == dims.front() && with_bias) {
          EXPECT_TRUE(rel_close(fused(*gpu), fused(*cpu), 1e-5));  // float GEMMs
        }
      }
    }
  }
}

// A layer's backward halves with exact GEMMs: one kernel each (act' in the input gradient's
// epilogue, the bias gradient as an extra column of the weight gradient), equal to their
// definition (gemm, then bias_act_backward) on the GPU and to the CPU oracle; with float GEMMs
// the definition itself runs (cuBLAS, then the kernels).
TEST_F(CudaOps, LinearBackwardFusesTheActivationAndBiasGradientsIntoTheExactGemm) {
  auto cx = make_cpu_backend<float>(GemmPrecision::exact);
  auto gx = make_cuda_backend(GemmPrecision::exact);
  // (rows, out, in): a VAE layer at batch 64 (split-K both ways), one slice, one row, a column
  // count that is a multiple of the tile (the row sums then start a tile of their own), an empty
  // batch, no inputs, no outputs.
  const std::vector<std::array<int64_t, 3>> dims = {{64, 600, 1682}, {33, 65, 100}, {7, 13, 5}, {1, 257, 300},
                                                    {130, 77, 128},  {0, 5, 3},     {5, 3, 0},  {5, 0, 3}};
  for (const auto& d : dims) {
    const int64_t rows = d[0], out = d[1], in = d[2];
    const std::vector<float> hdz = rand_vec(rows * out, 93), hw = rand_vec(out * in, 94), hx = rand_vec(rows * in, 95);
    for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " out=" + std::to_string(out) + " in=" + std::to_string(in) + " " +
                   act_name(act));
      // x as the output of `act` (relu gives exact zeros: relu'(0) = 0).
      std::vector<float> hy = hx;
      {
        Tensor<float> t = cx->upload(hx, rows, in);
        cx->bias_act(t.cmat(), CMat<float>{}, act, t.mat());
        hy = cx->download(t.cmat());
      }
      auto input_half = [&](Backend<float>& be, bool fused) {
        Tensor<float> dx = be.upload(std::vector<float>(static_cast<size_t>(rows * in), kNaN), rows, in);
        Tensor<float> dz = be.upload(hdz, rows, out), w = be.upload(hw, out, in), y = be.upload(hy, rows, in);
        if (fused) {
          be.linear_backward_input(dz.cmat(), w.cmat(), y.cmat(), act, dx.mat());
        } else {
          be.gemm(false, false, 1.0f, dz.cmat(), w.cmat(), 0.0f, dx.mat());
          be.bias_act_backward(dx.cmat(), y.cmat(), act, dx.mat(), Mat<float>{});
        }
        return be.download(dx.cmat());
      };
      const std::vector<float> got = input_half(*gx, true);
      EXPECT_TRUE(all_equal(got, input_half(*gx, false)));
      EXPECT_TRUE(rel_close(got, input_half(*cx, true), 1e-6));
      if (act == Act::tanh) {
        EXPECT_TRUE(rel_close(input_half(*gpu, true), input_half(*cpu, true), 1e-5));  // float GEMMs
      }
    }
    auto weight_half = [&](Backend<float>& be, bool fused, bool with_bias) {
      Tensor<float> dw = be.upload(std::vector<float>(static_cast<size_t>(out * in), kNaN), out, in);
      Tensor<float> db = be.upload(std::vector<float>(static_cast<size_t>(with_bias ? out : 0), kNaN), 1,
                                   with_bias ? out : 0);
      Tensor<float> dz = be.upload(hdz, rows, out), x = be.upload(hx, rows, in);
      Mat<float> dbm = with_bias ? db.mat() : Mat<float>{};
      if (fused) {
        be.linear_backward_weight(dz.cmat(), x.cmat(), dw.mat(), dbm);
      } else {
        be.gemm(true, false, 1.0f, dz.cmat(), x.cmat(), 0.0f, dw.mat());
        if (with_bias) be.bias_act_backward(dz.cmat(), dz.cmat(), Act::identity, Mat<float>{}, dbm);
      }
      std::vector<float> v = be.download(dw.cmat());
      const std::vector<float> b = be.download(db.cmat());
      v.insert(v.end(), b.begin(), b.end());
      return v;
    };
    for (bool with_bias : {true, false}) {
      SCOPED_TRACE("rows=" + std::to_string(rows) + " out=" + std::to_string(out) + " in=" + std::to_string(in) +
                   (with_bias ? " dw, db" : " dw"));
      const std::vector<float> got = weight_half(*gx, true, with_bias);
      // dw is the same GEMM; db is summed in another order than the column-sum kernel's (double
      // sums, one rounding): equal up to a rare 1-ulp flip.
      EXPECT_TRUE(rel_close(got, weight_half(*gx, false, with_bias), 1e-7));
      EXPECT_TRUE(rel_close(got, weight_half(*cx, true, with_bias), 1e-6));
      if (with_bias) {
        EXPECT_TRUE(rel_close(weight_half(*gpu, true, true), weight_half(*cpu, true, true), 1e-5));  // float GEMMs
      }
    }
  }
}

TEST_F(CudaOps, BiasActAllActivations) {
  for (auto [r, c] : kShapes) {
    for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
      for (bool with_bias : {false, true}) {
        SCOPED_TRACE(shape_str(r, c) + " " + act_name(act) + (with_bias ? " bias" : ""));
        std::vector<float> hx = rand_vec(r * c, 50, -4.0f, 4.0f);
        if (!hx.empty()) hx[0] = 0.0f;
        Pair x = up(hx, r, c), bias = with_bias ? up(rand_vec(c, 51), 1, c) : up({}, 0, 0);
        Pair y = poisoned(r, c);
        cpu->bias_act(x.cm(), bias.cm(), act, y.cm());
        gpu->bias_act(x.gm(), bias.gm(), act, y.gm());
        EXPECT_TRUE(same(y));
        // In place (y aliases x).
        cpu->bias_act(x.cm(), bias.cm(), act, x.cm());
        gpu->bias_act(x.gm(), bias.gm(), act, x.gm());
        EXPECT_TRUE(same(x));
      }
    }
  }
}

TEST_F(CudaOps, BiasActBackwardWithFusedBiasGradient) {
  for (auto [r, c] : kShapes) {
    for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
      SCOPED_TRACE(shape_str(r, c) + " " + act_name(act));
      // y from the forward pass (relu gives exact zeros: relu'(0) = 0).
      std::vector<float> hy = rand_vec(r * c, 60, -2.0f, 2.0f);
      {
        Tensor<float> t = cpu->upload(hy, r, c);
        cpu->bias_act(t.cmat(), CMat<float>{}, act, t.mat());
        hy = cpu->download(t.cmat());
      }
      const std::vector<float> hdy = rand_vec(r * c, 61);
      Pair y = up(hy, r, c), dy = up(hdy, r, c), dx = poisoned(r, c), db = poisoned(1, c);
      cpu->bias_act_backward(dy.cm(), y.cm(), act, dx.cm(), db.cm());
      gpu->bias_act_backward(dy.gm(), y.gm(), act, dx.gm(), db.gm());
      EXPECT_TRUE(same(dx));
      EXPECT_TRUE(same(db));  // overwritten, even for an empty batch (zeros)
      // The bias gradient alone (no dx).
      Pair db2 = poisoned(1, c);
      cpu->bias_act_backward(dy.cm(), y.cm(), act, Mat<float>{}, db2.cm());
      gpu->bias_act_backward(dy.gm(), y.gm(), act, Mat<float>{}, db2.gm());
      EXPECT_TRUE(same(db2));
      EXPECT_TRUE(all_equal(dg(db2.g), dg(db.g)));
      // No dbias, dx aliasing dy.
      cpu->bias_act_backward(dy.cm(), y.cm(), act, dy.cm(), Mat<float>{});
      gpu->bias_act_backward(dy.gm(), y.gm(), act, dy.gm(), Mat<float>{});
      EXPECT_TRUE(same(dy));
    }
  }
}

TEST_F(CudaOps, GatherAndScatterRows) {
  const int64_t table_rows = 300;
  for (auto [n, c] : kShapes) {
    if (n > table_rows) continue;
    for (bool row_vector : {false, true}) {
      SCOPED_TRACE(shape_str(n, c) + (row_vector ? " 1xn" : " nx1"));
      std::vector<int32_t> perm(table_rows);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), std::mt19937(static_cast<unsigned>(n + c)));
      perm.resize(static_cast<size_t>(n));
      IPair rows = up_idx(perm, row_vector);
      Pair table = up(rand_vec(table_rows * c, 70), table_rows, c);
      Pair y = up(rand_vec(n * c, 71), n, c);
      cpu->gather_rows_add(table.cm(), rows.c.cmat(), y.cm());
      gpu->gather_rows_add(table.gm(), rows.g.cmat(), y.gm());
      EXPECT_TRUE(same(y));
      // Every third row without a vector (kNoRow): left as it was.
      std::vector<int32_t> some = perm;
      for (size_t r = 0; r < some.size(); r += 3) some[r] = kNoRow;
      IPair some_rows = up_idx(some, row_vector);
      Pair y_some = up(rand_vec(n * c, 73), n, c);
      cpu->gather_rows_add(table.cm(), some_rows.c.cmat(), y_some.cm());
      gpu->gather_rows_add(table.gm(), some_rows.g.cmat(), y_some.gm());
      EXPECT_TRUE(same(y_some));
      Pair dt = up(rand_vec(table_rows * c, 72), table_rows, c);
      cpu->scatter_rows_add(y.cm(), rows.c.cmat(), dt.cm());
      gpu->scatter_rows_add(y.gm(), rows.g.cmat(), dt.gm());
      EXPECT_TRUE(same(dt));
    }
  }
}

TEST_F(CudaOps, DeviceIndexErrorsAreReportedAtTheNextSync) {
  Pair table = up(rand_vec(20, 1), 5, 4), y = up(rand_vec(8, 2), 2, 4);
  IPair bad = up_idx({1, 5});
  gpu->gather_rows_add(table.gm(), bad.g.cmat(), y.gm());
  EXPECT_THROW(gpu->download(y.g.cmat()), VaeError);
  IPair negative = up_idx({1, -2});  // only kNoRow (-1) stands for no row
  gpu->gather_rows_add(table.gm(), negative.g.cmat(), y.gm());
  EXPECT_THROW(gpu->download(y.g.cmat()), VaeError);
  IPair dup = up_idx({3, 3});
  gpu->scatter_rows_add(y.gm(), dup.g.cmat(), table.gm());
  EXPECT_THROW(gpu->synchronize(), VaeError);
  // The flag is cleared: the backend keeps working.
  IPair ok = up_idx({0, 4});
  gpu->gather_rows_add(table.gm(), ok.g.cmat(), y.gm());
  EXPECT_NO_THROW(gpu->download(y.g.cmat()));
  // Shape errors still throw at the call.
  EXPECT_THROW(gpu->gather_rows_add(table.gm(), up_idx({0, 1, 2}).g.cmat(), y.gm()), VaeError);
}

TEST_F(CudaOps, MseLossMaskedAndDense) {
  for (auto [r, c] : kShapes) {
    for (bool masked : {false, true}) {
      SCOPED_TRACE(shape_str(r, c) + (masked ? " masked" : " dense"));
      std::vector<float> ht = rand_vec(r * c, 80, 0.0f, 5.0f);
      for (size_t i = 0; i < ht.size(); i += 3) ht[i] = 0.0f;
      Pair p = up(rand_vec(r * c, 81, 0.0f, 5.0f), r, c), t = up(ht, r, c);
      Pair g = poisoned(r, c), loss = up({0.75f}, 1, 1);
      const float scale = r * c > 0 ? 1.0f / static_cast<float>(r * c) : 1.0f;
      cpu->mse_loss(p.cm(), t.cm(), masked, scale, g.cm(), loss.cm());
      gpu->mse_loss(p.gm(), t.gm(), masked, scale, g.gm(), loss.gm());
      EXPECT_TRUE(same(g));
      EXPECT_TRUE(same(loss));
      // Loss only, accumulated a second time; gradient only.
      cpu->mse_loss(p.cm(), t.cm(), masked, 2.0f, Mat<float>{}, loss.cm());
      gpu->mse_loss(p.gm(), t.gm(), masked, 2.0f, Mat<float>{}, loss.gm());
      EXPECT_TRUE(same(loss));
      Pair g2 = poisoned(r, c);
      cpu->mse_loss(p.cm(), t.cm(), masked, 0.5f, g2.cm(), Mat<float>{});
      gpu->mse_loss(p.gm(), t.gm(), masked, 0.5f, g2.gm(), Mat<float>{});
      EXPECT_TRUE(same(g2));
    }
  }
}

TEST_F(CudaOps, MultinomialNllSkipsZeroTargets) {
  for (auto [r, c] : kShapes) {
    SCOPED_TRACE(shape_str(r, c));
    std::vector<float> ht(static_cast<size_t>(r * c), 0.0f);
    std::mt19937 g(static_cast<unsigned>(r * 7 + c));
    for (float& v : ht) v = g() % 5 == 0 ? static_cast<float>(1 + g() % 3) : 0.0f;
    std::vector<float> hx = rand_vec(r * c, 90, -8.0f, 8.0f);
    // log p = −inf where t = 0: skipped, not NaN (a row needs a finite logit for a softmax).
    if (r > 0 && c > 2) hx[1] = -kInf;
    if (r > 0 && c > 2) ht[1] = 0.0f;
    Pair x = up(hx, r, c), t = up(ht, r, c), d = poisoned(r, c), loss = up({0.25f}, 1, 1);
    const float scale = 1.0f / static_cast<float>(std::max<int64_t>(r, 1));
    cpu->multinomial_nll(x.cm(), t.cm(), scale, d.cm(), loss.cm());
    gpu->multinomial_nll(x.gm(), t.gm(), scale, d.gm(), loss.gm());
    EXPECT_TRUE(same(d));
    EXPECT_TRUE(same(loss));
    // dlogits aliasing the logits.
    cpu->multinomial_nll(x.cm(), t.cm(), scale, x.cm(), loss.cm());
    gpu->multinomial_nll(x.gm(), t.gm(), scale, x.gm(), loss.gm());
    EXPECT_TRUE(same(x));
    EXPECT_TRUE(same(loss));
  }
}

TEST_F(CudaOps, BceLogits) {
  for (auto [r, c] : kShapes) {
    SCOPED_TRACE(shape_str(r, c));
    std::vector<float> ht = rand_vec(r * c, 100, 0.0f, 1.0f);
    for (float& v : ht) v = v > 0.7f ? 1.0f : 0.0f;
    Pair x = up(rand_vec(r * c, 101, -30.0f, 30.0f), r, c), t = up(ht, r, c);
    Pair d = poisoned(r, c), loss = up({1.5f}, 1, 1);
    cpu->bce_logits(x.cm(), t.cm(), 0.1f, d.cm(), loss.cm());
    gpu->bce_logits(x.gm(), t.gm(), 0.1f, d.gm(), loss.gm());
    EXPECT_TRUE(same(d));
    EXPECT_TRUE(same(loss));
  }
}

TEST_F(CudaOps, ReparameterizeDrawsTheSamePhiloxNoise) {
  for (auto [b, l] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 200}, {37, 64}, {0, 8}, {129, 33}}) {
    SCOPED_TRACE(shape_str(b, l));
    Pair ml = up(rand_vec(b * 2 * l, 110, -2.0f, 2.0f), b, 2 * l);
    Pair eps = poisoned(b, l), z = poisoned(b, l);
    cpu->reparameterize(ml.cm(), 42, 7, eps.cm(), z.cm());
    gpu->reparameterize(ml.gm(), 42, 7, eps.gm(), z.gm());
    EXPECT_TRUE(same(eps, 1e-6));
    EXPECT_TRUE(same(z));
    Pair z2 = poisoned(b, l);
    cpu->reparameterize(ml.cm(), 42, 8, Mat<float>{}, z2.cm());
    gpu->reparameterize(ml.gm(), 42, 8, Mat<float>{}, z2.gm());
    EXPECT_TRUE(same(z2));
  }
}

TEST_F(CudaOps, ReparamKlBackwardAllPaths) {
  for (auto [b, l] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 200}, {37, 64}, {0, 8}, {129, 33}}) {
    Pair ml = up(rand_vec(b * 2 * l, 120, -2.0f, 2.0f), b, 2 * l);
    Pair eps = up(rand_vec(b * l, 121), b, l), dz = up(rand_vec(b * l, 122), b, l);
    for (int path = 0; path < 3; ++path) {
      SCOPED_TRACE(shape_str(b, l) + " path " + std::to_string(path));
      const bool with_dz = path >= 1, with_eps = path == 2;
      Pair d = poisoned(b, 2 * l), loss = up({0.5f}, 1, 1);
      cpu->reparam_kl_backward(ml.cm(), with_eps ? eps.cm() : Mat<float>{}, with_dz ? dz.cm() : Mat<float>{},
                               0.3f, d.cm(), loss.cm());
      gpu->reparam_kl_backward(ml.gm(), with_eps ? eps.gm() : Mat<float>{}, with_dz ? dz.gm() : Mat<float>{},
                               0.3f, d.gm(), loss.gm());
      EXPECT_TRUE(same(d));
      EXPECT_TRUE(same(loss));
    }
    Pair loss = up({0.0f}, 1, 1);
    cpu->reparam_kl_backward(ml.cm(), Mat<float>{}, Mat<float>{}, 1.0f, Mat<float>{}, loss.cm());
    gpu->reparam_kl_backward(ml.gm(), Mat<float>{}, Mat<float>{}, 1.0f, Mat<float>{}, loss.gm());
    EXPECT_TRUE(same(loss));
  }
}

TEST_F(CudaOps, RegularizeBothKinds) {
  for (auto [r, c] : kShapes) {
    for (Reg kind : {Reg::l2_squared, Reg::l2_norm}) {
      for (bool zero : {false, true}) {
        SCOPED_TRACE(shape_str(r, c) + (kind == Reg::l2_norm ? " l2_norm" : " l2_squared") + (zero ? " zero" : ""));
        const std::vector<float> hp = zero ? std::vector<float>(static_cast<size_t>(r * c), 0.0f) : rand_vec(r * c, 130);
        Pair p = up(hp, r, c), grad = up(rand_vec(r * c, 131), r, c), loss = up({0.125f}, 1, 1);
        cpu->regularize(p.cm(), 0.01f, kind, grad.cm(), loss.cm());
        gpu->regularize(p.gm(), 0.01f, kind, grad.gm(), loss.gm());
        EXPECT_TRUE(same(grad));
        EXPECT_TRUE(same(loss));
        cpu->regularize(p.cm(), 0.5f, kind, Mat<float>{}, loss.cm());
        gpu->regularize(p.gm(), 0.5f, kind, Mat<float>{}, loss.gm());
        EXPECT_TRUE(same(loss));
        cpu->regularize(p.cm(), 0.5f, kind, grad.cm(), Mat<float>{});
        gpu->regularize(p.gm(), 0.5f, kind, grad.gm(), Mat<float>{});
        EXPECT_TRUE(same(grad));
      }
    }
  }
}

TEST_F(CudaOps, DropoutMasksAreIdentical) {
  for (auto [r, c] : kShapes) {
    for (float q : {0.0f, 0.3f, 0.5f, 1.0f}) {
      SCOPED_TRACE(shape_str(r, c) + " q=" + std::to_string(q));
      std::vector<float> hx = rand_vec(r * c, 140);
      if (!hx.empty()) hx.back() = kNaN;  // q = 1 gives NaN · 0 = NaN, as PyTorch
      Pair x = up(hx, r, c), y = poisoned(r, c);
      cpu->dropout(x.cm(), q, 9, 4, y.cm());
      gpu->dropout(x.gm(), q, 9, 4, y.gm());
      EXPECT_TRUE(all_equal(dg(y.g), dc(y.c)));
      cpu->dropout(x.cm(), q, 9, 5, x.cm());  // in place
      gpu->dropout(x.gm(), q, 9, 5, x.gm());
      EXPECT_TRUE(all_equal(dg(x.g), dc(x.c)));
    }
  }
  Pair x = up({1.0f}, 1, 1);
  EXPECT_THROW(gpu->dropout(x.gm(), 1.5f, 1, 1, x.gm()), VaeError);
}

TEST_F(CudaOps, L2NormalizeRows) {
  for (auto [r, c] : kShapes) {
    SCOPED_TRACE(shape_str(r, c));
    std::vector<float> hx = rand_vec(r * c, 150);
    if (r > 1)
      for (int64_t j = 0; j < c; ++j) hx[static_cast<size_t>(c + j)] = 0.0f;  // a zero row stays zero
    Pair x = up(hx, r, c), y = poisoned(r, c);
    cpu->l2_normalize_rows(x.cm(), y.cm());
    gpu->l2_normalize_rows(x.gm(), y.gm());
    EXPECT_TRUE(same(y));
    cpu->l2_normalize_rows(x.cm(), x.cm());
    gpu->l2_normalize_rows(x.gm(), x.gm());
    EXPECT_TRUE(same(x));
  }
}

TEST_F(CudaOps, CsrRowsToDense) {
  for (int64_t cols : {1, 17, 1000, 2049}) {
    const Csr m = random_csr(50, cols, 0.1, static_cast<uint64_t>(cols));
    CsrPair csr = up_csr(m);
    for (std::vector<int32_t> rows : {std::vector<int32_t>{}, {7}, {49, 0, 3, 3, 20, 11, 48}}) {
      SCOPED_TRACE(std::to_string(cols) + " cols, " + std::to_string(rows.size()) + " rows");
      const int64_t n = static_cast<int64_t>(rows.size());
      IPair ri = up_idx(rows, true);
      Pair y = poisoned(n, cols);
      cpu->csr_rows_to_dense(csr.c.view(), ri.c.cmat(), y.cm());
      gpu->csr_rows_to_dense(csr.g.view(), ri.g.cmat(), y.gm());
      EXPECT_TRUE(same(y, 0.0));
    }
  }
}

TEST_F(CudaOps, TakeRows) {
  std::vector<int32_t> order(1000);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(5));
  IPair src = up_idx(order);
  for (auto [offset, n] : std::vector<std::pair<int64_t, int64_t>>{{0, 64}, {960, 40}, {999, 1}, {1000, 0}, {3, 997}}) {
    SCOPED_TRACE(std::to_string(offset) + " + " + std::to_string(n));
    IPair dst = up_idx(std::vector<int32_t>(static_cast<size_t>(n), -1));
    cpu->take_rows(src.c.cmat(), offset, dst.c.mat());
    gpu->take_rows(src.g.cmat(), offset, dst.g.mat());
    EXPECT_TRUE(all_equal(gpu->download(dst.g.cmat()), cpu->download(dst.c.cmat())));
  }
  IPair dst = up_idx(std::vector<int32_t>(2, -1));
  EXPECT_THROW(gpu->take_rows(src.g.cmat(), 999, dst.g.mat()), VaeError);  // checked on the host
}

// ---- sparse first layer ----------------------------------------------------------------------

// m with row r emptied (a batch row without entries).
Csr with_empty_row(const Csr& m, int64_t r) {
  Csr o = m;
  o.indices.clear();
  o.values.clear();
  o.indptr.assign(1, 0);
  for (int64_t i = 0; i < m.rows; ++i) {
    if (i != r)
      for (int64_t e = m.indptr[i]; e < m.indptr[i + 1]; ++e) {
        o.indices.push_back(m.indices[e]);
        o.values.push_back(m.values[e]);
      }
    o.indptr.push_back(static_cast<int64_t>(o.indices.size()));
  }
  return o;
}

TEST_F(CudaOps, CsrRowNorms) {
  const Csr m = with_empty_row(random_csr(300, 2049, 0.2, 31, false), 5);
  CsrPair csr = up_csr(m);
  for (std::vector<int32_t> rows : {std::vector<int32_t>{}, {5}, {0, 5, 299, 5, 17}}) {
    std::vector<int32_t> big(257);
    std::iota(big.begin(), big.end(), 7);
    for (const auto& rv : {rows, big}) {
      SCOPED_TRACE(std::to_string(rv.size()) + " rows");
      const int64_t n = static_cast<int64_t>(rv.size());
      IPair ri = up_idx(rv);
      const std::vector<double> nan(static_cast<size_t>(n), std::nan(""));
      Tensor<double> nc = cpu->upload(nan, n, 1), ng = gpu->upload(nan, n, 1);
      cpu->csr_row_norms(csr.c.view(), ri.c.cmat(), nc.mat());
      gpu->csr_row_norms(csr.g.view(), ri.g.cmat(), ng.mat());
      // Kept in double: the GPU's block-tree sum may differ from the serial one in the last bits.
      const std::vector<double> want = cpu->download(nc.cmat()), got = gpu->download(ng.cmat());
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-13 * want[i]) << i;
    }
  }
}

// The sparse ops against the oracle on shapes off every tile size: I across the 32-column
// gradient tiles, H across the 256-wide forward and 128-wide gradient tiles, more batch rows
// than a gradient chunk, rows longer than a staging chunk (2049 columns at 20 %), column tiles
// holding more than a staging window (90 % dense), an empty batch, empty rows and repeats; every
// transform. Outputs start as NaN, so an element the GPU never writes fails. Both sides get
// the same norms (computed once on the CPU), so the products see identical values. Under exact
// precision both sum in double in the same order and round once: the same bits.
TEST_F(CudaOps, CsrLinearForwardAndWeightGrad) {
  auto cpu_exact = make_cpu_backend<float>(GemmPrecision::exact);
  auto gpu_exact = make_cuda_backend(GemmPrecision::exact);
  struct Case {
    int64_t rows, cols, H, n;
    double density;
  };
  const Case cases[] = {{1, 1, 1, 1, 1.0},         {5, 17, 3, 0, 0.3},     {60, 513, 300, 37, 0.05},
                        {300, 77, 129, 290, 0.9},  {40, 2049, 257, 40, 0.2}, {9, 33, 1, 9, 0.5}};
  const struct {
    const char* name;
    bool norms;
    float q;
  } transforms[] = {{"raw", false, 0.0f}, {"l2", true, 0.0f}, {"dropout", false, 0.5f}, {"l2+dropout", true, 0.3f},
                    {"drop-all", false, 1.0f}};
  for (const Case& k : cases) {
    const Csr m = with_empty_row(random_csr(k.rows, k.cols, k.density, static_cast<uint64_t>(k.cols), false), k.rows / 2);
    CsrPair csr = up_csr(m);
    std::vector<int32_t> rows(static_cast<size_t>(k.n));
    for (int64_t i = 0; i < k.n; ++i) rows[i] = static_cast<int32_t>((i * 7 + 3) % k.rows);
    if (k.n > 2) rows[1] = static_cast<int32_t>(k.rows / 2), rows[2] = rows[0];  // an empty row, a repeat
    IPair ri = up_idx(rows);
    Pair w = up(rand_vec(k.H * k.cols, 300), k.H, k.cols), dy = up(rand_vec(k.n * k.H, 301), k.n, k.H);
    Tensor<double> nc = cpu->alloc<double>(k.n, 1);
    cpu->csr_row_norms(csr.c.view(), ri.c.cmat(), nc.mat());
    const std::vector<double> hn = cpu->download(nc.cmat());
    Tensor<double> ng = gpu->upload(hn, k.n, 1);
    for (const auto& t : transforms) {
      SCOPED_TRACE(std::to_string(k.rows) + "x" + std::to_string(k.cols) + " H=" + std::to_string(k.H) +
                   " n=" + std::to_string(k.n) + " " + t.name);
      CsrBatch<float> xc{csr.c.view(), ri.c.cmat(), {}, t.q, 42, rng_stream(RngStream::dropout, 5)};
      CsrBatch<float> xg{csr.g.view(), ri.g.cmat(), {}, t.q, 42, rng_stream(RngStream::dropout, 5)};
      if (t.norms) {
        xc.norms = nc.cmat();
        xg.norms = ng.cmat();
      }
      Pair y = poisoned(k.n, k.H), dw = poisoned(k.H, k.cols);
      cpu->csr_linear_forward(xc, w.cm(), y.cm());
      gpu->csr_linear_forward(xg, w.gm(), y.gm());
      EXPECT_TRUE(same(y, 1e-6));
      cpu->csr_linear_weight_grad(xc, dy.cm(), dw.cm());
      gpu->csr_linear_weight_grad(xg, dy.gm(), dw.gm());
      EXPECT_TRUE(same(dw, 1e-6));
      // No atomics: a second run gives the same bits.
      Pair y2 = poisoned(k.n, k.H), dw2 = poisoned(k.H, k.cols);
      gpu->csr_linear_forward(xg, w.gm(), y2.gm());
      gpu->csr_linear_weight_grad(xg, dy.gm(), dw2.gm());
      EXPECT_TRUE(all_equal(dg(y2.g), dg(y.g)));
      EXPECT_TRUE(all_equal(dg(dw2.g), dg(dw.g)));
      // The exact backends: their own stream, so the inputs are settled first and the
      // results read through it.
      Pair ye = poisoned(k.n, k.H), dwe = poisoned(k.H, k.cols);
      gpu->synchronize();
      cpu_exact->csr_linear_forward(xc, w.cm(), ye.cm());
      gpu_exact->csr_linear_forward(xg, w.gm(), ye.gm());
      EXPECT_TRUE(all_equal(gpu_exact->download(ye.g.cmat()), dc(ye.c)));
      cpu_exact->csr_linear_weight_grad(xc, dy.cm(), dwe.cm());
      gpu_exact->csr_linear_weight_grad(xg, dy.gm(), dwe.gm());
      EXPECT_TRUE(all_equal(gpu_exact->download(dwe.g.cmat()), dc(dwe.c)));
    }
  }
}

// The sparse ops' dropout mask is dropout()'s: the GPU sparse forward equals the GPU dense
// path (densify, normalise, dropout, GEMM) on the same batch.
TEST_F(CudaOps, CsrLinearMatchesTheDensePathOnTheGpu) {
  const int64_t R = 50, I = 700, H = 70, n = 33;
  const Csr m = random_csr(R, I, 0.05, 77, false);
  CsrTensor<float> csr = gpu->upload_csr(m);
  std::vector<int32_t> rows(n);
  for (int64_t i = 0; i < n; ++i) rows[i] = static_cast<int32_t>((i * 3) % R);
  Tensor<int32_t> ri = gpu->upload(rows, n, 1);
  Tensor<float> w = gpu->upload(rand_vec(H * I, 5), H, I), dy = gpu->upload(rand_vec(n * H, 6), n, H);
  const uint64_t stream = rng_stream(RngStream::dropout, 9);
  Tensor<float> x = gpu->alloc<float>(n, I), y_ref = gpu->alloc<float>(n, H), dw_ref = gpu->alloc<float>(H, I);
  gpu->csr_rows_to_dense(csr.view(), ri.cmat(), x.mat());
  gpu->l2_normalize_rows(x.cmat(), x.mat());
  gpu->dropout(x.cmat(), 0.5f, 3, stream, x.mat());
  gpu->gemm(false, true, 1.0f, x.cmat(), w.cmat(), 0.0f, y_ref.mat());
  gpu->gemm(true, false, 1.0f, dy.cmat(), x.cmat(), 0.0f, dw_ref.mat());
  Tensor<double> norms = gpu->alloc<double>(n, 1);
  Tensor<float> y = gpu->alloc<float>(n, H), dw = gpu->alloc<float>(H, I);
  gpu->csr_row_norms(csr.view(), ri.cmat(), norms.mat());
  const CsrBatch<float> xb{csr.view(), ri.cmat(), norms.cmat(), 0.5f, 3, stream};
  gpu->csr_linear_forward(xb, w.cmat(), y.mat());
  gpu->csr_linear_weight_grad(xb, dy.cmat(), dw.mat());
  EXPECT_TRUE(rel_close(gpu->download(y.cmat()), gpu->download(y_ref.cmat()), 1e-5));
  EXPECT_TRUE(rel_close(gpu->download(dw.cmat()), gpu->download(dw_ref.cmat()), 1e-5));
}

TEST_F(CudaOps, CsrLinearBadRowsAreReportedAtTheNextSync) {
  const Csr m = random_csr(6, 40, 0.3, 3, false);
  CsrTensor<float> csr = gpu->upload_csr(m);
  Tensor<int32_t> bad = gpu->upload(std::vector<int32_t>{0, 6}, 2, 1);
  Tensor<float> w = gpu->upload(rand_vec(4 * 40, 1), 4, 40), y = gpu->alloc<float>(2, 4);
  Tensor<float> dy = gpu->zeros(2, 4), dw = gpu->alloc<float>(4, 40);
  Tensor<double> nrm = gpu->alloc<double>(2, 1);
  const CsrBatch<float> xb{csr.view(), bad.cmat(), {}, 0.0f, 0, 0};
  gpu->csr_linear_forward(xb, w.cmat(), y.mat());
  EXPECT_THROW(gpu->synchronize(), VaeError);
  gpu->csr_linear_weight_grad(xb, dy.cmat(), dw.mat());
  EXPECT_THROW(gpu->synchronize(), VaeError);
  gpu->csr_row_norms(csr.view(), bad.cmat(), nrm.mat());
  EXPECT_THROW(gpu->synchronize(), VaeError);
  EXPECT_NO_THROW(gpu->synchronize());  // the flag was cleared
  // Shape and rate errors throw at the call.
  EXPECT_THROW(gpu->csr_linear_forward(xb, w.cmat(), dw.mat()), VaeError);
  EXPECT_THROW(gpu->csr_linear_weight_grad(xb, dy.cmat(), y.mat()), VaeError);
  EXPECT_THROW(gpu->csr_linear_forward({csr.view(), bad.cmat(), {}, 2.0f, 0, 0}, w.cmat(), y.mat()), VaeError);
}

TEST_F(CudaOps, AdamStepAdamAndAdamW) {
  for (bool decoupled : {false, true}) {
    for (int64_t n : {1, 255, 257, 100003}) {
      SCOPED_TRACE(std::to_string(n) + (decoupled ? " adamw" : " adam"));
      AdamConfig cfg;
      cfg.lr = 3e-3;
      cfg.weight_decay = 0.01;
      cfg.decoupled = decoupled;
      Pair p = up(rand_vec(n, 160), 1, n);
      Pair m = up(std::vector<float>(n, 0.0f), 1, n), v = up(std::vector<float>(n, 0.0f), 1, n);
      for (int64_t step = 1; step <= 3; ++step) {
        Pair g = up(rand_vec(n, 161 + step), 1, n);
        cpu->adam_step(p.cm(), g.cm(), m.cm(), v.cm(), cfg, step);
        gpu->adam_step(p.gm(), g.gm(), m.gm(), v.gm(), cfg, step);
      }
      EXPECT_TRUE(same(p));
      EXPECT_TRUE(same(m));
      EXPECT_TRUE(same(v));
    }
  }
}

// Scores with many exact ties (values on a coarse grid), a few NaN and −inf entries.
std::vector<float> tied_scores(int64_t n, int64_t m, uint64_t seed, bool specials) {
  std::mt19937_64 g(seed);
  std::vector<float> s(static_cast<size_t>(n * m));
  for (float& v : s) {
    v = static_cast<float>(static_cast<int>(g() % 41) - 20) / 8.0f;
    if (specials) {
      const uint64_t u = g() % 97;
      if (u == 0) v = kNaN;
      else if (u == 1) v = -kInf;
      else if (u == 2) v = -0.0f;
    }
  }
  return s;
}

// Top-k: values exactly the oracle's; indices unique per row and, where they differ from the
// oracle's, carrying equal scores (the tie order itself is checked by exact index equality
// where no NaN/−0 subtleties apply).
void expect_topk_matches(const std::vector<float>& scores, int64_t m, int k, const std::vector<int32_t>& gi,
                         const std::vector<float>& gv, const std::vector<int32_t>& ci, const std::vector<float>& cv) {
  ASSERT_EQ(gi.size(), ci.size());
  EXPECT_TRUE(all_equal(gv, cv));
  const int64_t n = k ? static_cast<int64_t>(gi.size()) / k : 0;
  int differ = 0;
  for (int64_t r = 0; r < n; ++r) {
    std::set<int32_t> seen;
    for (int i = 0; i < k; ++i) {
      const int32_t a = gi[r * k + i], b = ci[r * k + i];
      if (a >= 0) {
        EXPECT_TRUE(seen.insert(a).second) << "row " << r << " repeats index " << a;
      }
      if (a == b) continue;
      ++differ;
      ASSERT_TRUE(a >= 0 && b >= 0 && a < m && b < m) << "row " << r << " rank " << i << ": " << a << " vs " << b;
      const float sa = scores[r * m + a], sb = scores[r * m + b];
      EXPECT_TRUE(sa == sb || (std::isnan(sa) && std::isnan(sb)))
          << "row " << r << " rank " << i << ": index " << a << " (" << sa << ") vs " << b << " (" << sb << ")";
    }
  }
  EXPECT_EQ(differ, 0) << "tie order differs from the oracle (lower index first)";
}

TEST_F(CudaOps, TopkWithExclusionTiesAndPadding) {
  struct Case {
    int64_t n, m;
    int k;
    bool exclude, specials;
  };
  const Case cases[] = {{1, 1, 1, false, false},    {3, 257, 1, false, true},   {5, 300, 300, false, true},
                        {4, 300, 300, true, true},  {7, 3000, 1000, true, true}, {2, 3000, 1000, false, false},
                        {33, 1682, 100, true, true}, {0, 50, 10, true, false},    {6, 20, 50, true, true},
                        {3, 5000, 7, false, true}};
  for (const Case& cs : cases) {
    SCOPED_TRACE("n=" + std::to_string(cs.n) + " m=" + std::to_string(cs.m) + " k=" + std::to_string(cs.k) +
                 (cs.exclude ? " excl" : ""));
    const std::vector<float> hs = tied_scores(cs.n, cs.m, static_cast<uint64_t>(cs.m + cs.k), cs.specials);
    Pair s = up(hs, cs.n, cs.m);
    const Csr ex = random_csr(cs.n + 3, cs.m, 0.3, 170);
    CsrPair exc = up_csr(ex);
    std::vector<int32_t> er(static_cast<size_t>(cs.n));
    for (int64_t r = 0; r < cs.n; ++r) er[r] = static_cast<int32_t>((r * 5 + 2) % (cs.n + 3));
    IPair exr = up_idx(er);
    Tensor<int32_t> ic = cpu->alloc<int32_t>(cs.n, cs.k);
    Tensor<int32_t> ig = gpu->upload(std::vector<int32_t>(static_cast<size_t>(cs.n * cs.k), -7), cs.n, cs.k);
    Pair v = poisoned(cs.n, cs.k);
    const CsrView<float> none{};
    cpu->topk(s.cm(), cs.exclude ? exc.c.view() : none, exr.c.cmat(), cs.k, ic.mat(), v.cm());
    gpu->topk(s.gm(), cs.exclude ? exc.g.view() : none, exr.g.cmat(), cs.k, ig.mat(), v.gm());
    expect_topk_matches(hs, cs.m, cs.k, gpu->download(ig.cmat()), dg(v.g), cpu->download(ic.cmat()), dc(v.c));
    // Without values.
    Tensor<int32_t> ig2 = gpu->alloc<int32_t>(cs.n, cs.k);
    gpu->topk(s.gm(), cs.exclude ? exc.g.view() : none, exr.g.cmat(), cs.k, ig2.mat(), Mat<float>{});
    EXPECT_TRUE(all_equal(gpu->download(ig2.cmat()), cpu->download(ic.cmat())));
  }
}

TEST_F(CudaOps, TopkDistinctRandomScores) {
  const int64_t n = 9, m = 4099;
  const std::vector<float> hs = rand_vec(n * m, 180);
  Pair s = up(hs, n, m);
  for (int k : {1, 10, 1000, 4099}) {
    SCOPED_TRACE("k=" + std::to_string(k));
    Tensor<int32_t> ic = cpu->alloc<int32_t>(n, k), ig = gpu->alloc<int32_t>(n, k);
    Pair v = poisoned(n, k);
    cpu->topk(s.cm(), CsrView<float>{}, CMat<int32_t>{}, k, ic.mat(), v.cm());
    gpu->topk(s.gm(), CsrView<float>{}, CMat<int32_t>{}, k, ig.mat(), v.gm());
    expect_topk_matches(hs, m, k, gpu->download(ig.cmat()), dg(v.g), cpu->download(ic.cmat()), dc(v.c));
  }
}

// Top-k's dynamic shared memory (sort keys + the row's exclusion bits) exactly 48 KiB: within
// the limit alone, over it with the kernel's own static counters, so the opt-in must be asked.
TEST_F(CudaOps, TopkWhoseSharedMemoryFillsTheDefaultBlockBudget) {
  const int64_t n = 2, m = 131072;
  const int k = 4096;  // 4096 keys · 8 B + 131072 bits = 49152 B
  const std::vector<float> hs = tied_scores(n, m, 77, true);
  Pair s = up(hs, n, m);
  const Csr ex = random_csr(n, m, 0.01, 78);
  CsrPair exc = up_csr(ex);
  IPair exr = up_idx({1, 0});
  // A small launch first: the CPU emulator learns a kernel's static shared memory as it runs
  // (a GPU reads it from the binary), and reports it from then on.
  Tensor<int32_t> i1 = gpu->alloc<int32_t>(n, 1);
  gpu->topk(s.gm(), exc.g.view(), exr.g.cmat(), 1, i1.mat(), Mat<float>{});
  Tensor<int32_t> ic = cpu->alloc<int32_t>(n, k), ig = gpu->alloc<int32_t>(n, k);
  Pair v = poisoned(n, k);
  cpu->topk(s.cm(), exc.c.view(), exr.c.cmat(), k, ic.mat(), v.cm());
  gpu->topk(s.gm(), exc.g.view(), exr.g.cmat(), k, ig.mat(), v.gm());
  expect_topk_matches(hs, m, k, gpu->download(ig.cmat()), dg(v.g), cpu->download(ic.cmat()), dc(v.c));
}

TEST_F(CudaOps, HeldoutMetrics) {
  const int64_t n = 41, m = 700;
  const int kmax = 100;
  const std::vector<float> hs = rand_vec(n * m, 190);
  const Csr target = random_csr(n + 5, m, 0.05, 191);  // stored zeros are not relevant
  CsrPair tg = up_csr(target);
  std::vector<int32_t> tr(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) tr[r] = static_cast<int32_t>((r * 3) % (n + 5));
  IPair trows = up_idx(tr, true);
  // The same ranked lists on both sides (from the oracle), with −1 padding in a few rows.
  Tensor<float> sc = cpu->upload(hs, n, m);
  Tensor<int32_t> ic = cpu->alloc<int32_t>(n, kmax);
  cpu->topk(sc.cmat(), CsrView<float>{}, CMat<int32_t>{}, kmax, ic.mat(), Mat<float>{});
  std::vector<int32_t> hidx = cpu->download(ic.cmat());
  for (int i = 50; i < kmax; ++i) hidx[static_cast<size_t>(2 * kmax + i)] = -1;
  IPair idx{cpu->upload(hidx, n, kmax), gpu->upload(hidx, n, kmax)};
  const std::vector<int> ks = {1, 5, 20, 50, 100, 20};
  Pair out = poisoned(n, 2 * static_cast<int64_t>(ks.size()));
  cpu->heldout_metrics(idx.c.cmat(), tg.c.view(), trows.c.cmat(), ks, out.cm());
  gpu->heldout_metrics(idx.g.cmat(), tg.g.view(), trows.g.cmat(), ks, out.gm());
  EXPECT_TRUE(same(out));
  // Empty batch.
  IPair e{cpu->alloc<int32_t>(0, kmax), gpu->alloc<int32_t>(0, kmax)};
  Pair out0 = poisoned(0, 2 * static_cast<int64_t>(ks.size()));
  gpu->heldout_metrics(e.g.cmat(), tg.g.view(), up_idx({}).g.cmat(), ks, out0.gm());
  EXPECT_TRUE(dg(out0.g).empty());
}

TEST_F(CudaOps, GradedMetricsWithTiedScores) {
  for (auto [n, m] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {13, 257}, {40, 1682}, {0, 10}, {5, 3}}) {
    for (int k : {1, 10, 100}) {
      SCOPED_TRACE(shape_str(n, m) + " k=" + std::to_string(k));
      const std::vector<float> hs = tied_scores(n, m, static_cast<uint64_t>(m * 3 + k), k == 10);
      std::vector<float> ht(static_cast<size_t>(n * m));
      std::mt19937 g(static_cast<unsigned>(m + k));
      for (float& v : ht) v = g() % 4 == 0 ? static_cast<float>(1 + g() % 5) : 0.0f;
      if (n > 1)
        for (int64_t j = 0; j < m; ++j) ht[static_cast<size_t>(m + j)] = 0.0f;  // IDCG = 0 row
      Pair s = up(hs, n, m), t = up(ht, n, m), out = poisoned(n, 2);
      cpu->graded_metrics(s.cm(), t.cm(), k, out.cm());
      gpu->graded_metrics(s.gm(), t.gm(), k, out.gm());
      EXPECT_TRUE(same(out));
    }
  }
}

TEST_F(CudaOps, RatingErrors) {
  const int64_t n = 37, m = 513;
  const Csr target = random_csr(n + 2, m, 0.1, 200, false);
  CsrPair tg = up_csr(target);
  std::vector<int32_t> tr(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) tr[r] = static_cast<int32_t>(n + 1 - r);
  IPair trows = up_idx(tr);
  Pair pred = up(rand_vec(n * m, 201, 0.0f, 6.0f), n, m), out = poisoned(n, 3);
  cpu->rating_errors(pred.cm(), tg.c.view(), trows.c.cmat(), 1.0f, 5.0f, out.cm());
  gpu->rating_errors(pred.gm(), tg.g.view(), trows.g.cmat(), 1.0f, 5.0f, out.gm());
  EXPECT_TRUE(same(out));
}

TEST_F(CudaOps, ReductionsAreBitReproducible) {
  const int64_t r = 257, c = 3001;
  Pair x = up(rand_vec(r * c, 210, -5.0f, 5.0f), r, c), t = up(rand_vec(r * c, 211, 0.0f, 1.0f), r, c);
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    Tensor<float> loss = gpu->zeros(1, 1), d = gpu->alloc<float>(r, c), db = gpu->alloc<float>(1, c);
    gpu->multinomial_nll(x.gm(), t.gm(), 0.01f, d.mat(), loss.mat());
    gpu->mse_loss(x.gm(), t.gm(), false, 0.001f, d.mat(), loss.mat());
    gpu->bce_logits(x.gm(), t.gm(), 0.5f, d.mat(), loss.mat());
    gpu->regularize(x.gm(), 0.1f, Reg::l2_norm, d.mat(), loss.mat());
    gpu->bias_act_backward(d.cmat(), x.gm(), Act::tanh, d.mat(), db.mat());
    std::vector<float> all = gpu->download(loss.cmat());
    const std::vector<float> hdb = gpu->download(db.cmat());
    all.insert(all.end(), hdb.begin(), hdb.end());
    if (run == 0) first = all;
    else EXPECT_EQ(all, first) << "run " << run;
  }
}

TEST_F(CudaOps, ShapeMismatchesThrowBeforeLaunch) {
  Pair a = up(rand_vec(6, 1), 2, 3), b = up(rand_vec(6, 2), 3, 2), loss = up({0.0f}, 1, 1);
  EXPECT_THROW(gpu->axpy(1.0f, a.gm(), b.gm()), VaeError);
  EXPECT_THROW(gpu->bias_act(a.gm(), b.gm(), Act::relu, a.gm()), VaeError);
  EXPECT_THROW(gpu->mse_loss(a.gm(), b.gm(), false, 1.0f, Mat<float>{}, loss.gm()), VaeError);
  EXPECT_THROW(gpu->mse_loss(a.gm(), a.gm(), false, 1.0f, Mat<float>{}, a.gm()), VaeError);
  EXPECT_THROW(gpu->reparameterize(a.gm(), 1, 1, Mat<float>{}, a.gm()), VaeError);
  Tensor<int32_t> idx = gpu->alloc<int32_t>(2, 4);
  EXPECT_THROW(gpu->topk(a.gm(), CsrView<float>{}, CMat<int32_t>{}, 3, idx.mat(), Mat<float>{}), VaeError);
  AdamConfig cfg;
  EXPECT_THROW(gpu->adam_step(a.gm(), a.gm(), a.gm(), a.gm(), cfg, 0), VaeError);
}

TEST(CudaRuntime, DeviceQueriesNeverThrow) {
  EXPECT_NO_THROW(cuda_device_available());
  EXPECT_NO_THROW(cuda_device_name());
  if (!cuda_device_available()) {
    EXPECT_EQ(cuda_device_name(), "");
    EXPECT_THROW(make_cuda_backend(), VaeError);
    GTEST_SKIP() << "no CUDA device";
  }
  EXPECT_FALSE(cuda_device_name().empty());
}

}  // namespace
}  // namespace vae
