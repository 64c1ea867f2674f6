// The CPU reference backend against first principles: finite-difference gradients (double
// precision, central differences) for every differentiable op, naive loops for GEMM, and
// hand-computed cases for the rest. The CUDA backend is later checked against this backend,
// so these tests are what make it an oracle.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu_gemm.h"
#include "core/philox.h"
#include "data/dataset.h"

namespace vae {
namespace {

using Vec = std::vector<double>;

Vec rand_vec(size_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  Vec v(n);
  for (double& x : v) x = d(g);
  return v;
}

// |got − want| ≤ atol + |want|·rtol everywhere; lists the first mismatches otherwise.
template <typename G>
::testing::AssertionResult all_close(const std::vector<G>& got, const Vec& want, double atol,
                                     double rtol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  std::ostringstream os;
  os.precision(17);
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = static_cast<double>(got[i]), w = want[i];
    if (std::isnan(g) && std::isnan(w)) continue;
    if (g == w) continue;  // equal infinities
    if (std::fabs(g - w) <= atol + std::fabs(w) * rtol) continue;
    if (bad < 6) os << "  [" << i << "] got " << g << " expected " << w << "\n";
    ++bad;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << got.size() << " mismatch:\n" << os.str();
}

// Central-difference gradient of f at x.
Vec numeric_grad(const std::function<double(const Vec&)>& f, Vec x, double h = 1e-6) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i];
    x[i] = xi + h;
    const double fp = f(x);
    x[i] = xi - h;
    const double fm = f(x);
    x[i] = xi;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

constexpr double kFdAtol = 1e-8;
constexpr double kFdRtol = 1e-6;

class CpuOps : public ::testing::Test {
 protected:
  std::unique_ptr<Backend<double>> be = make_cpu_backend<double>();
  std::unique_ptr<Backend<float>> bf = make_cpu_backend<float>();

  Tensor<double> up(const Vec& v, int64_t r, int64_t c) { return be->upload(v, r, c); }
  Tensor<int32_t> up_idx(const std::vector<int32_t>& v) {
    return be->upload(v, static_cast<int64_t>(v.size()), 1);
  }
  Vec down(const Tensor<double>& t) { return be->download(t.cmat()); }
  double dot(const Vec& a, const Vec& b) {
    return std::inner_product(a.begin(), a.end(), b.begin(), 0.0);
  }
  Vec slice(const Vec& v, size_t b, size_t n) { return Vec(v.begin() + b, v.begin() + b + n); }
};

// ---- memory -------------------------------------------------------------------------------

TEST_F(CpuOps, MemoryRoundTripAndCopyWithin) {
  EXPECT_EQ(be->name(), "cpu");
  Tensor<double> t = up({1, 2, 3, 4, 5, 6}, 2, 3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data()) % 64, 0u);
  Tensor<double> u = be->alloc<double>(2, 3);
  be->copy_within(u.data(), t.data(), 6 * sizeof(double));
  EXPECT_EQ(down(u), (Vec{1, 2, 3, 4, 5, 6}));
  Tensor<double> z = be->zeros(0, 5);  // zero-size allocations are fine
  EXPECT_EQ(z.size(), 0);
  EXPECT_TRUE(down(z).empty());
  Tensor<double> s = be->zeros(1, 1);
  EXPECT_EQ(be->read_scalar(s.cmat()), 0.0);
}

// The host has no device clock: device_seconds runs the work and says so (benchmarks then
// time it with the wall clock).
TEST_F(CpuOps, DeviceSecondsRunsTheWorkWithoutADeviceClock) {
  Tensor<double> t = up({1, 2}, 1, 2);
  const double s = be->device_seconds([&] { be->fill(t.mat(), 3.0); });
  EXPECT_LT(s, 0.0);
  EXPECT_EQ(down(t), (Vec{3, 3}));
  EXPECT_FALSE(be->supports_step_capture());
}

TEST_F(CpuOps, UploadCsrConvertsValues) {
  Csr c;
  c.rows = 3;
  c.cols = 4;
  c.indptr = {0, 2, 2, 3};
  c.indices = {1, 3, 0};
  c.values = {0.5f, 2.0f, -1.25f};
  CsrTensor<double> t = be->upload_csr(c);
  CsrView<double> v = t.view();
  ASSERT_EQ(v.rows, 3);
  ASSERT_EQ(v.cols, 4);
  ASSERT_EQ(v.nnz, 3);
  EXPECT_EQ(std::vector<int64_t>(v.indptr, v.indptr + 4), c.indptr);
  EXPECT_EQ(std::vector<int32_t>(v.indices, v.indices + 3), c.indices);
  EXPECT_EQ(Vec(v.values, v.values + 3), (Vec{0.5, 2.0, -1.25}));
  Csr empty;  // 0 × 0 with indptr {0}
  CsrTensor<float> te = bf->upload_csr(empty);
  EXPECT_EQ(te.nnz, 0);
  EXPECT_EQ(te.view().indptr[0], 0);
}

TEST_F(CpuOps, ActNames) {
  for (Act a : {Act::identity, Act::relu, Act::sigmoid, Act::tanh})
    EXPECT_EQ(parse_act(act_name(a)), a);
  EXPECT_EQ(parse_act("Sigmoid"), Act::sigmoid);
  EXPECT_EQ(parse_act("linear"), Act::identity);
  EXPECT_THROW(parse_act("elu"), UsageError);
  EXPECT_THROW(parse_act(""), UsageError);
}

// ---- dense algebra --------------------------------------------------------------------------

TEST_F(CpuOps, FillAndAxpy) {
  Tensor<double> y = up({1, 2, 3, 4}, 2, 2);
  be->axpy(2.0, up({1, -1, 0.5, 0}, 2, 2).cmat(), y.mat());
  EXPECT_EQ(down(y), (Vec{3, 0, 4, 4}));
  be->fill(y.mat(), -7.0);
  EXPECT_EQ(down(y), (Vec(4, -7.0)));
}

// Naive op(A)·op(B) with explicit index arithmetic, the definition the GEMMs are checked against.
Vec naive_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const Vec& a,
               const Vec& b, double beta, const Vec& c) {
  Vec out(static_cast<size_t>(m * n));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = ta ? a[p * m + i] : a[i * k + p];
        const double bv = tb ? b[j * k + p] : b[p * n + j];
        s += av * bv;
      }
      out[i * n + j] = alpha * s + (beta == 0 ? 0.0 : beta * c[i * n + j]);
    }
  return out;
}

TEST_F(CpuOps, GemmAllTransposesMatchNaiveLoops) {
  struct Shape {
    int64_t m, n, k;
  };
  // The last shapes cross the fallback's 128 (k) and 256 (n) panel edges.
  for (Shape s : {Shape{1, 1, 1}, Shape{3, 5, 4}, Shape{17, 9, 33}, Shape{7, 300, 260},
                  Shape{64, 40, 129}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (double beta : {0.0, 1.0, -0.5}) {
          SCOPED_TRACE(::testing::Message() << "m=" << s.m << " n=" << s.n << " k=" << s.k
                                            << " ta=" << ta << " tb=" << tb << " beta=" << beta);
          const Vec a = rand_vec(s.m * s.k, 1 + s.m), b = rand_vec(s.k * s.n, 2 + s.n);
          Vec c = rand_vec(s.m * s.n, 3);
          if (beta == 0) c[0] = std::numeric_limits<double>::quiet_NaN();  // must be ignored
          const double alpha = 1.25;
          const Vec want = naive_gemm(ta, tb, s.m, s.n, s.k, alpha, a, b, beta, c);
          // Backend (OpenBLAS when built with it).
          Tensor<double> ct = up(c, s.m, s.n);
          be->gemm(ta, tb, alpha, up(a, ta ? s.k : s.m, ta ? s.m : s.k).cmat(),
                   up(b, tb ? s.n : s.k, tb ? s.k : s.n).cmat(), beta, ct.mat());
          EXPECT_TRUE(all_close(down(ct), want, 1e-12, 1e-12));
          // The portable fallback, double and float.
          Vec cr = c;
          reference_gemm<double>(ta, tb, s.m, s.n, s.k, alpha, a.data(), ta ? s.m : s.k, b.data(),
                                 tb ? s.k : s.n, beta, cr.data(), s.n);
          EXPECT_TRUE(all_close(cr, want, 1e-12, 1e-12));
          std::vector<float> af(a.begin(), a.end()), bfv(b.begin(), b.end()), cf(c.begin(), c.end());
          reference_gemm<float>(ta, tb, s.m, s.n, s.k, float(alpha), af.data(), ta ? s.m : s.k,
                                bfv.data(), tb ? s.k : s.n, float(beta), cf.data(), s.n);
          EXPECT_TRUE(all_close(cf, want, 1e-4, 1e-4));
          Tensor<float> cft = bf->upload(std::vector<float>(c.begin(), c.end()), s.m, s.n);
          bf->gemm(ta, tb, float(alpha), bf->upload(af, ta ? s.k : s.m, ta ? s.m : s.k).cmat(),
                   bf->upload(bfv, tb ? s.n : s.k, tb ? s.k : s.n).cmat(), float(beta), cft.mat());
          EXPECT_TRUE(all_close(bf->download(cft.cmat()), want, 1e-4, 1e-4));
        }
  }
}

// The fallback GEMM's documented summation order (cpu_gemm.h), element by element; the shapes
// are large enough to be shared out over the thread pool, across panel and task edges.
template <typename T>
std::vector<T> panel_order_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const std::vector<T>& a,
                                const std::vector<T>& b, T beta, std::vector<T> c) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      T& cij = c[static_cast<size_t>(i * n + j)];
      if (beta == T(0)) cij = T(0);
      else if (beta != T(1)) cij *= beta;
      for (int64_t p0 = 0; p0 < k; p0 += kReferenceGemmKc) {
        T acc = 0;
        for (int64_t p = p0; p < std::min(k, p0 + kReferenceGemmKc); ++p) {
          const T av = ta ? a[static_cast<size_t>(p * m + i)] : a[static_cast<size_t>(i * k + p)];
          const T bv = tb ? b[static_cast<size_t>(j * k + p)] : b[static_cast<size_t>(p * n + j)];
          const T prod = av * bv;
          acc += prod;
        }
        cij += alpha * acc;
      }
    }
  return c;
}

template <typename T>
void expect_reference_gemm_bits(int64_t m, int64_t n, int64_t k, bool ta, bool tb, T alpha, T beta) {
  SCOPED_TRACE(::testing::Message() << "m=" << m << " n=" << n << " k=" << k << " ta=" << ta << " tb=" << tb
                                    << " beta=" << beta << " bytes=" << sizeof(T));
  const Vec ad = rand_vec(m * k, 11 + m), bd = rand_vec(k * n, 12 + n), cd = rand_vec(m * n, 13);
  const std::vector<T> a(ad.begin(), ad.end()), b(bd.begin(), bd.end()), c0(cd.begin(), cd.end());
  const std::vector<T> want = panel_order_gemm<T>(ta, tb, m, n, k, alpha, a, b, beta, c0);
  std::vector<T> got = c0;
  reference_gemm<T>(ta, tb, m, n, k, alpha, a.data(), ta ? m : k, b.data(), tb ? k : n, beta, got.data(), n);
  int64_t bad = 0;
  for (size_t e = 0; e < got.size(); ++e)
    if (std::memcmp(&got[e], &want[e], sizeof(T)) != 0 && bad++ < 5)
      ADD_FAILURE() << "element " << e << ": " << got[e] << " vs " << want[e];
  EXPECT_EQ(bad, 0);
}

TEST_F(CpuOps, ReferenceGemmSumsInItsDocumentedOrderOnAnyThreadCount) {
  // ctest runs this again with VAE_CPU_THREADS=1 and 3 (CMakeLists.txt): the pool must have them.
  if (const char* e = std::getenv("VAE_CPU_THREADS")) {
    EXPECT_EQ(reference_gemm_threads(), std::atoi(e));
  }
  EXPECT_GE(reference_gemm_threads(), 1);
  struct Shape {
    int64_t m, n, k;
  };
  for (Shape s : {Shape{3, 5, 7}, Shape{64, 700, 300}, Shape{130, 300, 129}, Shape{200, 257, 260}, Shape{1, 2000, 900}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        expect_reference_gemm_bits<float>(s.m, s.n, s.k, ta, tb, 1.0f, 0.0f);
        expect_reference_gemm_bits<float>(s.m, s.n, s.k, ta, tb, -0.75f, 1.5f);
        expect_reference_gemm_bits<double>(s.m, s.n, s.k, ta, tb, 1.25, 1.0);
      }
  }
}

TEST_F(CpuOps, GemmEmptyInnerDimensionScalesC) {
  Tensor<double> c = up({1, 2, 3, 4}, 2, 2);
  Tensor<double> a = be->alloc<double>(2, 0), b = be->alloc<double>(0, 2);
  be->gemm(false, false, 1.0, a.cmat(), b.cmat(), 3.0, c.mat());
  EXPECT_EQ(down(c), (Vec{3, 6, 9, 12}));
  be->gemm(false, false, 1.0, a.cmat(), b.cmat(), 0.0, c.mat());
  EXPECT_EQ(down(c), (Vec{0, 0, 0, 0}));
}

// GemmPrecision::exact: each output is the double sum of exact float products, alpha and beta
// applied in double, rounded once. The reference sums in long double in index order; a
// different summation order may flip the final rounding only where the double sum sits within
// its own rounding noise of a float boundary, so at most a handful of 1-ulp differences pass.
TEST_F(CpuOps, ExactGemmRoundsTheDoubleSumOnce) {
  EXPECT_EQ(parse_precision("exact"), GemmPrecision::exact);
  EXPECT_EQ(parse_precision("TF32"), GemmPrecision::tf32);
  EXPECT_STREQ(precision_name(GemmPrecision::fp32), "fp32");
  EXPECT_THROW(parse_precision("fp16"), UsageError);
  auto ex = make_cpu_backend<float>(GemmPrecision::exact);
  EXPECT_EQ(ex->gemm_precision(), GemmPrecision::exact);
  EXPECT_EQ(make_cpu_backend<float>(GemmPrecision::tf32)->gemm_precision(), GemmPrecision::fp32);
  EXPECT_EQ(parse_precision("bf16"), GemmPrecision::bf16);
  EXPECT_STREQ(precision_name(GemmPrecision::bf16), "bf16");
  EXPECT_EQ(make_cpu_backend<float>(GemmPrecision::bf16)->gemm_precision(), GemmPrecision::fp32);
  struct Shape {
    int64_t m, n, k;
  };
  int64_t fp32_differs = 0;
  for (Shape s : {Shape{1, 1, 1}, Shape{17, 9, 33}, Shape{37, 53, 1682}, Shape{64, 300, 260}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      for (float beta : {0.0f, 0.75f}) {
        SCOPED_TRACE(::testing::Message() << "m=" << s.m << " n=" << s.n << " k=" << s.k << " ta=" << ta
                                          << " tb=" << tb << " beta=" << beta);
        const float alpha = beta == 0.0f ? 1.0f : 0.5f;
        const Vec ad = rand_vec(s.m * s.k, 5 + s.k), bd = rand_vec(s.k * s.n, 6 + s.n), cd = rand_vec(s.m * s.n, 7);
        const std::vector<float> a(ad.begin(), ad.end()), b(bd.begin(), bd.end()), c(cd.begin(), cd.end());
        std::vector<float> want(c.size());
        for (int64_t i = 0; i < s.m; ++i)
          for (int64_t j = 0; j < s.n; ++j) {
            long double acc = 0;
            for (int64_t l = 0; l < s.k; ++l) {
              const float av = ta ? a[l * s.m + i] : a[i * s.k + l];
              const float bv = tb ? b[j * s.k + l] : b[l * s.n + j];
              acc += static_cast<long double>(av) * bv;
            }
            double v = static_cast<double>(acc);
            if (alpha != 1.0f) v = static_cast<double>(alpha) * v;
            if (beta != 0.0f) v = v + static_cast<double>(beta) * c[i * s.n + j];
            want[i * s.n + j] = static_cast<float>(v);
          }
        auto run = [&](Backend<float>& bk) {
          Tensor<float> ct = bk.upload(c, s.m, s.n);
          bk.gemm(ta, tb, alpha, bk.upload(a, ta ? s.k : s.m, ta ? s.m : s.k).cmat(),
                  bk.upload(b, tb ? s.n : s.k, tb ? s.k : s.n).cmat(), beta, ct.mat());
          return bk.download(ct.cmat());
        };
        const std::vector<float> got = run(*ex), fast = run(*bf);
        int64_t off = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          if (got[i] == want[i]) continue;
          ++off;
          EXPECT_EQ(got[i], std::nextafter(want[i], got[i])) << "[" << i << "] more than 1 ulp off";
        }
        EXPECT_LE(off, std::max<int64_t>(1, static_cast<int64_t>(got.size()) / 10000));
        for (size_t i = 0; i < fast.size(); ++i) fp32_differs += fast[i] != want[i];
      }
    }
  }
  // The float BLAS path rounds along the way: the check above would catch an exact path that
  // quietly fell back to it.
  EXPECT_GT(fp32_differs, 100);
}

TEST_F(CpuOps, BiasActForwardValues) {
  const Vec x{-2, 0, 1.5, 3, -0.5, 0.25};
  const Vec bias{0.5, -1, 2};
  for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
    SCOPED_TRACE(act_name(act));
    Vec want(6);
    for (int i = 0; i < 6; ++i) {
      const double v = x[i] + bias[i % 3];
      switch (act) {
        case Act::identity: want[i] = v; break;
        case Act::relu: want[i] = std::max(v, 0.0); break;
        case Act::sigmoid: want[i] = 1 / (1 + std::exp(-v)); break;
        case Act::tanh: want[i] = std::tanh(v); break;
      }
    }
    Tensor<double> y = be->alloc<double>(2, 3);
    be->bias_act(up(x, 2, 3).cmat(), up(bias, 1, 3).cmat(), act, y.mat());
    EXPECT_TRUE(all_close(down(y), want, 1e-15, 1e-15));
    // In place, and with no bias.
    Tensor<double> xy = up(want, 2, 3);
    be->bias_act(xy.cmat(), CMat<double>{}, Act::identity, xy.mat());
    EXPECT_TRUE(all_close(down(xy), want, 0, 0));
  }
  // Saturation without overflow.
  Tensor<float> big = bf->upload(std::vector<float>{-1000.f, 1000.f, -90.f, 90.f}, 1, 4);
  bf->bias_act(big.cmat(), CMat<float>{}, Act::sigmoid, big.mat());
  EXPECT_TRUE(all_close(bf->download(big.cmat()), Vec{0, 1, 0, 1}, 1e-30, 0));
}

TEST_F(CpuOps, BiasActBackwardMatchesFiniteDifferences) {
  const int64_t R = 4, C = 5;
  for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
    SCOPED_TRACE(act_name(act));
    Vec x = rand_vec(R * C, 11, -2, 2);
    const Vec bias = rand_vec(C, 12, -0.5, 0.5);
    for (int64_t i = 0; i < R * C; ++i) {  // keep relu away from its kink
      const double v = x[i] + bias[i % C];
      if (std::fabs(v) < 0.05) x[i] += 0.2;
    }
    const Vec w = rand_vec(R * C, 13);  // loss = Σ w ⊙ act(x + b), so dy = w
    auto loss = [&](const Vec& xb) {
      Tensor<double> y = be->alloc<double>(R, C);
      be->bias_act(up(slice(xb, 0, R * C), R, C).cmat(), up(slice(xb, R * C, C), 1, C).cmat(), act,
                   y.mat());
      return dot(down(y), w);
    };
    Vec xb = x;
    xb.insert(xb.end(), bias.begin(), bias.end());
    const Vec num = numeric_grad(loss, xb);

    Tensor<double> y = be->alloc<double>(R, C);
    be->bias_act(up(x, R, C).cmat(), up(bias, 1, C).cmat(), act, y.mat());
    Tensor<double> dx = be->alloc<double>(R, C), db = up(Vec(C, 99.0), 1, C);
    be->bias_act_backward(up(w, R, C).cmat(), y.cmat(), act, dx.mat(), db.mat());
    EXPECT_TRUE(all_close(down(dx), slice(num, 0, R * C), kFdAtol, kFdRtol));
    EXPECT_TRUE(all_close(down(db), slice(num, R * C, C), kFdAtol, kFdRtol));  // overwritten

    // dx aliasing dy, no dbias.
    Tensor<double> d = up(w, R, C);
    be->bias_act_backward(d.cmat(), y.cmat(), act, d.mat(), Mat<double>{});
    EXPECT_TRUE(all_close(down(d), down(dx), 0, 0));

    // dbias alone (no dx).
    Tensor<double> db2 = up(Vec(C, 99.0), 1, C);
    be->bias_act_backward(up(w, R, C).cmat(), y.cmat(), act, Mat<double>{}, db2.mat());
    EXPECT_TRUE(all_close(down(db2), down(db), 0, 0));
  }
}

// A layer's backward halves, by what they are the gradients of: dx of Σ dz ⊙ (act(p) · Wᵀ)
// w.r.t. the lower layer's pre-activation p (the layer's input is x = act(p)); dW and db of
// Σ dz ⊙ (x · Wᵀ + b). Both outputs are overwritten.
TEST_F(CpuOps, LinearBackwardHalvesMatchFiniteDifferences) {
  const int64_t R = 3, I = 4, O = 5;
  for (Act act : {Act::identity, Act::relu, Act::sigmoid, Act::tanh}) {
    SCOPED_TRACE(act_name(act));
    Vec p = rand_vec(R * I, 21, -2, 2);
    for (double& v : p)
      if (std::fabs(v) < 0.05) v += 0.2;  // keep relu away from its kink
    const Vec w = rand_vec(O * I, 22), b = rand_vec(O, 23), dz = rand_vec(R * O, 24);
    auto act_of = [&](const Vec& pv) {
      Tensor<double> x = be->alloc<double>(R, I);
      be->bias_act(up(pv, R, I).cmat(), CMat<double>{}, act, x.mat());
      return x;
    };
    auto layer_loss = [&](const Vec& pv, const Vec& wv, const Vec& bv) {
      Tensor<double> z = be->alloc<double>(R, O);
      be->linear(act_of(pv).cmat(), up(wv, O, I).cmat(), up(bv, 1, O).cmat(), Act::identity, z.mat());
      return dot(down(z), dz);
    };
    const Tensor<double> x = act_of(p);

    Tensor<double> dx = up(Vec(R * I, 99.0), R, I);
    be->linear_backward_input(up(dz, R, O).cmat(), up(w, O, I).cmat(), x.cmat(), act, dx.mat());
    EXPECT_TRUE(all_close(down(dx), numeric_grad([&](const Vec& pv) { return layer_loss(pv, w, b); }, p), kFdAtol,
                          kFdRtol));

    Tensor<double> dw = up(Vec(O * I, 99.0), O, I), db = up(Vec(O, 99.0), 1, O);
    be->linear_backward_weight(up(dz, R, O).cmat(), x.cmat(), dw.mat(), db.mat());
    Vec wb = w;
    wb.insert(wb.end(), b.begin(), b.end());
    const Vec num = numeric_grad([&](const Vec& v) { return layer_loss(p, slice(v, 0, O * I), slice(v, O * I, O)); }, wb);
    EXPECT_TRUE(all_close(down(dw), slice(num, 0, O * I), kFdAtol, kFdRtol));
    EXPECT_TRUE(all_close(down(db), slice(num, O * I, O), kFdAtol, kFdRtol));
    // The bias gradient is optional.
    Tensor<double> dw2 = be->alloc<double>(O, I);
    be->linear_backward_weight(up(dz, R, O).cmat(), x.cmat(), dw2.mat(), Mat<double>{});
    EXPECT_TRUE(all_close(down(dw2), down(dw), 0, 0));
  }
}

TEST_F(CpuOps, GatherScatterAreAdjoint) {
  const int64_t T = 6, C = 3, N = 4;
  const Vec table = rand_vec(T * C, 21), dy = rand_vec(N * C, 22), y0 = rand_vec(N * C, 23);
  const std::vector<int32_t> rows{4, 0, 5, 2};
  Tensor<int32_t> ri = up_idx(rows);
  Tensor<double> y = up(y0, N, C);
  be->gather_rows_add(up(table, T, C).cmat(), ri.cmat(), y.mat());
  Vec want = y0;
  for (int64_t r = 0; r < N; ++r)
    for (int64_t j = 0; j < C; ++j) want[r * C + j] += table[rows[r] * C + j];
  EXPECT_TRUE(all_close(down(y), want, 0, 0));

  Tensor<double> dt = be->zeros(T, C);
  be->scatter_rows_add(up(dy, N, C).cmat(), ri.cmat(), dt.mat());
  // <G·table, dy> = <table, Gᵀ·dy>.
  Vec gy(N * C);
  for (int64_t i = 0; i < N * C; ++i) gy[i] = down(y)[i] - y0[i];
  EXPECT_NEAR(dot(gy, dy), dot(table, down(dt)), 1e-14);
  // Accumulates, untouched rows stay.
  Tensor<double> acc = up(Vec(T * C, 1.0), T, C);
  be->scatter_rows_add(up(dy, N, C).cmat(), ri.cmat(), acc.mat());
  const Vec got = down(acc);
  for (int64_t j = 0; j < C; ++j) {
    EXPECT_EQ(got[1 * C + j], 1.0);
    EXPECT_EQ(got[4 * C + j], 1.0 + dy[0 * C + j]);
  }
  EXPECT_THROW(be->scatter_rows_add(up(dy, N, C).cmat(), up_idx({1, 2, 1, 3}).cmat(), dt.mat()),
               VaeError);
  EXPECT_THROW(be->gather_rows_add(up(table, T, C).cmat(), up_idx({1, 2, 6, 3}).cmat(), y.mat()),
               VaeError);
  EXPECT_THROW(be->gather_rows_add(up(table, T, C).cmat(), up_idx({1, 2, -2, 3}).cmat(), y.mat()),
               VaeError);
  // kNoRow adds nothing to its row; the others gather as before.
  Tensor<double> some = up(y0, N, C);
  be->gather_rows_add(up(table, T, C).cmat(), up_idx({4, kNoRow, 5, kNoRow}).cmat(), some.mat());
  const Vec g = down(some);
  for (int64_t j = 0; j < C; ++j) {
    EXPECT_EQ(g[0 * C + j], y0[0 * C + j] + table[4 * C + j]);
    EXPECT_EQ(g[1 * C + j], y0[1 * C + j]);
    EXPECT_EQ(g[3 * C + j], y0[3 * C + j]);
  }
}

// ---- losses ---------------------------------------------------------------------------------

TEST_F(CpuOps, MseLossMatchesFiniteDifferences) {
  const int64_t R = 3, C = 4;
  const Vec pred = rand_vec(R * C, 31, -2, 2);
  Vec target = rand_vec(R * C, 32, 1, 5);
  for (int i : {1, 4, 5, 11}) target[i] = 0;
  for (bool masked : {false, true}) {
    SCOPED_TRACE(masked ? "masked" : "dense");
    const double scale = 0.7;
    auto loss = [&](const Vec& p) {
      Tensor<double> l = be->zeros(1, 1);
      be->mse_loss(up(p, R, C).cmat(), up(target, R, C).cmat(), masked, scale, Mat<double>{},
                   l.mat());
      return be->read_scalar(l.cmat());
    };
    double want = 0;
    for (int i = 0; i < R * C; ++i)
      if (!masked || target[i] != 0) want += scale * (pred[i] - target[i]) * (pred[i] - target[i]);
    EXPECT_NEAR(loss(pred), want, 1e-12);
    Tensor<double> g = up(Vec(R * C, 5.0), R, C);
    Tensor<double> l = be->zeros(1, 1);
    be->mse_loss(up(pred, R, C).cmat(), up(target, R, C).cmat(), masked, scale, g.mat(), l.mat());
    const Vec num = numeric_grad(loss, pred);
    EXPECT_TRUE(all_close(down(g), num, kFdAtol, kFdRtol));
    if (masked) {
      EXPECT_EQ(down(g)[1], 0.0);
    }
  }
}

TEST_F(CpuOps, MultinomialNllMatchesFiniteDifferences) {
  const int64_t R = 3, C = 6;
  const Vec logits = rand_vec(R * C, 41, -3, 3);
  Vec target(R * C, 0.0);
  for (int i : {0, 2, 7, 8, 9, 17}) target[i] = 1;
  target[3] = 2.5;  // non-binary counts are allowed
  const double scale = 0.5;
  auto loss = [&](const Vec& x) {
    Tensor<double> l = be->zeros(1, 1);
    be->multinomial_nll(up(x, R, C).cmat(), up(target, R, C).cmat(), scale, Mat<double>{}, l.mat());
    return be->read_scalar(l.cmat());
  };
  double want = 0;
  for (int64_t r = 0; r < R; ++r) {
    double se = 0;
    for (int64_t j = 0; j < C; ++j) se += std::exp(logits[r * C + j]);
    for (int64_t j = 0; j < C; ++j) want -= scale * target[r * C + j] * (logits[r * C + j] - std::log(se));
  }
  EXPECT_NEAR(loss(logits), want, 1e-12);
  Tensor<double> g = be->alloc<double>(R, C), l = be->zeros(1, 1);
  be->multinomial_nll(up(logits, R, C).cmat(), up(target, R, C).cmat(), scale, g.mat(), l.mat());
  EXPECT_TRUE(all_close(down(g), numeric_grad(loss, logits), kFdAtol, kFdRtol));
  // Gradient written over the logits themselves.
  Tensor<double> xg = up(logits, R, C);
  be->multinomial_nll(xg.cmat(), up(target, R, C).cmat(), scale, xg.mat(), Mat<double>{});
  EXPECT_TRUE(all_close(down(xg), down(g), 0, 0));
  // Huge logits stay finite (max subtraction).
  Tensor<float> big = bf->upload(std::vector<float>{1000.f, 0.f, -1000.f}, 1, 3);
  Tensor<float> lf = bf->zeros(1, 1);
  bf->multinomial_nll(big.cmat(), bf->upload(std::vector<float>{0.f, 1.f, 0.f}, 1, 3).cmat(), 1.f,
                      Mat<float>{}, lf.mat());
  EXPECT_NEAR(bf->read_scalar(lf.cmat()), 1000.0, 1e-3);
}

TEST_F(CpuOps, BceLogitsMatchesFiniteDifferences) {
  const int64_t R = 2, C = 5;
  const Vec x = rand_vec(R * C, 51, -4, 4);
  const Vec t{1, 0, 0, 1, 1, 0, 1, 0, 0.5, 1};
  const double scale = 1.5;
  auto loss = [&](const Vec& xv) {
    Tensor<double> l = be->zeros(1, 1);
    be->bce_logits(up(xv, R, C).cmat(), up(t, R, C).cmat(), scale, Mat<double>{}, l.mat());
    return be->read_scalar(l.cmat());
  };
  double want = 0;
  for (int i = 0; i < R * C; ++i) {
    const double s = 1 / (1 + std::exp(-x[i]));
    want -= scale * (t[i] * std::log(s) + (1 - t[i]) * std::log(1 - s));
  }
  EXPECT_NEAR(loss(x), want, 1e-12);
  Tensor<double> g = be->alloc<double>(R, C), l = be->zeros(1, 1);
  be->bce_logits(up(x, R, C).cmat(), up(t, R, C).cmat(), scale, g.mat(), l.mat());
  EXPECT_TRUE(all_close(down(g), numeric_grad(loss, x), kFdAtol, kFdRtol));
  // Large |x|: softplus(1000) − 0 = 1000, softplus(−1000) = 0 (finite, no cancellation).
  Tensor<float> lf = bf->zeros(1, 1);
  Tensor<float> gf = bf->alloc<float>(1, 2);
  bf->bce_logits(bf->upload(std::vector<float>{1000.f, -1000.f}, 1, 2).cmat(),
                 bf->upload(std::vector<float>{0.f, 0.f}, 1, 2).cmat(), 1.f, gf.mat(), lf.mat());
  EXPECT_NEAR(bf->read_scalar(lf.cmat()), 1000.0, 1e-3);
  EXPECT_TRUE(all_close(bf->download(gf.cmat()), Vec{1, 0}, 1e-30, 0));
}

TEST_F(CpuOps, ReparameterizeDrawsPhiloxNormals) {
  const int64_t B = 3, L = 4;
  const Vec ml = rand_vec(B * 2 * L, 61);
  const uint64_t seed = 1234, stream = rng_stream(RngStream::eps, 7);
  Tensor<double> eps = be->alloc<double>(B, L), z = be->alloc<double>(B, L);
  be->reparameterize(up(ml, B, 2 * L).cmat(), seed, stream, eps.mat(), z.mat());
  Vec want_eps(B * L), want_z(B * L);
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < L; ++j) {
      want_eps[r * L + j] = philox_normal(seed, stream, r * L + j);
      want_z[r * L + j] = ml[r * 2 * L + j] + want_eps[r * L + j] * std::exp(0.5 * ml[r * 2 * L + L + j]);
    }
  EXPECT_TRUE(all_close(down(eps), want_eps, 0, 0));
  EXPECT_TRUE(all_close(down(z), want_z, 1e-15, 1e-15));
  // Without an eps output, z is unchanged.
  Tensor<double> z2 = be->alloc<double>(B, L);
  be->reparameterize(up(ml, B, 2 * L).cmat(), seed, stream, Mat<double>{}, z2.mat());
  EXPECT_EQ(down(z2), down(z));
  EXPECT_THROW(be->reparameterize(up(ml, B, 2 * L).cmat(), seed, stream, eps.mat(),
                                  be->alloc<double>(B, L + 1).mat()),
               VaeError);
}

TEST_F(CpuOps, ReparamKlBackwardMatchesFiniteDifferences) {
  const int64_t B = 3, L = 4;
  const Vec ml = rand_vec(B * 2 * L, 71, -1.5, 1.5);
  const Vec w = rand_vec(B * L, 72);  // loss = Σ w ⊙ z + kl_scale · KL, so dz = w
  const uint64_t seed = 5, stream = 9;
  const double kl_scale = 0.3;
  Tensor<double> eps = be->alloc<double>(B, L), ztmp = be->alloc<double>(B, L);
  be->reparameterize(up(ml, B, 2 * L).cmat(), seed, stream, eps.mat(), ztmp.mat());
  const Vec eps_v = down(eps);

  // with_eps: z = μ + ε·e^{½lv} (fixed ε); !with_eps: z = μ. with_dz false: KL only.
  for (int mode = 0; mode < 3; ++mode) {
    const bool with_dz = mode != 2, with_eps = mode == 0;
    SCOPED_TRACE(::testing::Message() << "mode " << mode);
    auto loss = [&](const Vec& v) {
      Tensor<double> l = be->zeros(1, 1);
      be->reparam_kl_backward(up(v, B, 2 * L).cmat(), CMat<double>{}, CMat<double>{}, kl_scale,
                              Mat<double>{}, l.mat());
      double f = be->read_scalar(l.cmat());
      if (with_dz)
        for (int64_t r = 0; r < B; ++r)
          for (int64_t j = 0; j < L; ++j) {
            const double z = v[r * 2 * L + j] +
                             (with_eps ? eps_v[r * L + j] * std::exp(0.5 * v[r * 2 * L + L + j]) : 0.0);
            f += w[r * L + j] * z;
          }
      return f;
    };
    Tensor<double> g = be->alloc<double>(B, 2 * L), l = be->zeros(1, 1);
    Tensor<double> wt = up(w, B, L);
    be->reparam_kl_backward(up(ml, B, 2 * L).cmat(), with_eps ? eps.cmat() : CMat<double>{},
                            with_dz ? wt.cmat() : CMat<double>{}, kl_scale, g.mat(), l.mat());
    EXPECT_TRUE(all_close(down(g), numeric_grad(loss, ml), kFdAtol, kFdRtol));
  }
  // KL value by hand.
  double kl = 0;
  for (int64_t r = 0; r < B; ++r)
    for (int64_t j = 0; j < L; ++j) {
      const double m = ml[r * 2 * L + j], lv = ml[r * 2 * L + L + j];
      kl += -0.5 * (1 + lv - m * m - std::exp(lv));
    }
  Tensor<double> l = up({2.0}, 1, 1);
  be->reparam_kl_backward(up(ml, B, 2 * L).cmat(), eps.cmat(), up(w, B, L).cmat(), kl_scale,
                          Mat<double>{}, l.mat());
  EXPECT_NEAR(be->read_scalar(l.cmat()), 2.0 + kl_scale * kl, 1e-13);
}

TEST_F(CpuOps, RegularizeMatchesFiniteDifferences) {
  const Vec p = rand_vec(12, 81);
  const Vec g0 = rand_vec(12, 82);
  const double lambda = 0.8;
  for (Reg kind : {Reg::l2_squared, Reg::l2_norm}) {
    SCOPED_TRACE(kind == Reg::l2_squared ? "l2_squared" : "l2_norm");
    auto loss = [&](const Vec& v) {
      Tensor<double> l = be->zeros(1, 1);
      be->regularize(up(v, 3, 4).cmat(), lambda, kind, Mat<double>{}, l.mat());
      return be->read_scalar(l.cmat());
    };
    const double sq = dot(p, p);
    EXPECT_NEAR(loss(p), kind == Reg::l2_squared ? lambda / 2 * sq : lambda / 2 * std::sqrt(sq), 1e-14);
    Tensor<double> g = up(g0, 3, 4), l = up({1.0}, 1, 1);
    be->regularize(up(p, 3, 4).cmat(), lambda, kind, g.mat(), l.mat());
    Vec added = down(g);
    for (size_t i = 0; i < added.size(); ++i) added[i] -= g0[i];  // grad accumulates
    EXPECT_TRUE(all_close(added, numeric_grad(loss, p), kFdAtol, kFdRtol));
    EXPECT_NEAR(be->read_scalar(l.cmat()), 1.0 + loss(p), 1e-14);  // loss accumulates
  }
  // ‖p‖ = 0: no gradient, no loss, no NaN.
  Tensor<double> g = up(Vec(3, 1.0), 1, 3), l = be->zeros(1, 1);
  be->regularize(be->zeros(1, 3).cmat(), lambda, Reg::l2_norm, g.mat(), l.mat());
  EXPECT_EQ(down(g), Vec(3, 1.0));
  EXPECT_EQ(be->read_scalar(l.cmat()), 0.0);
}

TEST_F(CpuOps, LossesAccumulateAndGradientsOverwrite) {
  const Vec x{0.5, -1, 2, 0.25}, t{1, 0, 1, 1};
  auto once = [&](double start, int op) {
    Tensor<double> l = up({start}, 1, 1), g = up(Vec(4, 42.0), 2, 2);
    Tensor<double> xt = up(x, 2, 2), tt = up(t, 2, 2);
    for (int rep = 0; rep < 2; ++rep) {
      if (op == 0) be->mse_loss(xt.cmat(), tt.cmat(), true, 1.0, g.mat(), l.mat());
      if (op == 1) be->multinomial_nll(xt.cmat(), tt.cmat(), 1.0, g.mat(), l.mat());
      if (op == 2) be->bce_logits(xt.cmat(), tt.cmat(), 1.0, g.mat(), l.mat());
      if (op == 3)
        be->reparam_kl_backward(up(x, 1, 4).cmat(), CMat<double>{}, CMat<double>{}, 1.0,
                                g.mat().reshaped(1, 4), l.mat());
    }
    return std::make_pair(be->read_scalar(l.cmat()), down(g));
  };
  for (int op = 0; op < 4; ++op) {
    SCOPED_TRACE(::testing::Message() << "op " << op);
    const auto a = once(0.0, op), b = once(10.0, op);
    EXPECT_NEAR(b.first, 10.0 + a.first, 1e-12);  // two calls: 10 + 2·loss
    EXPECT_GT(std::fabs(a.first), 0.0);
    EXPECT_EQ(a.second, b.second);  // gradient independent of history (overwritten)
    for (double v : a.second) EXPECT_NE(v, 42.0);
  }
  // Empty loss accumulator: gradient only.
  Tensor<double> g = be->alloc<double>(2, 2);
  EXPECT_NO_THROW(be->mse_loss(up(x, 2, 2).cmat(), up(t, 2, 2).cmat(), false, 1.0, g.mat(),
                               Mat<double>{}));
}

// ---- input transforms -----------------------------------------------------------------------

TEST_F(CpuOps, DropoutFollowsPhiloxUniform) {
  const int64_t R = 5, C = 40;
  const Vec x = rand_vec(R * C, 91, 0.5, 2);
  const uint64_t seed = 77, stream = rng_stream(RngStream::dropout, 3);
  for (double q : {0.0, 0.2, 0.5, 0.9}) {
    SCOPED_TRACE(q);
    Tensor<double> y = be->alloc<double>(R, C);
    be->dropout(up(x, R, C).cmat(), q, seed, stream, y.mat());
    const Vec got = down(y);
    int kept = 0;
    for (int64_t i = 0; i < R * C; ++i) {
      const double u = philox_uniform(seed, stream, i);
      if (u > q) {
        ++kept;
        EXPECT_EQ(got[i], x[i] * (1.0 / (1.0 - q))) << i;
      } else {
        EXPECT_EQ(got[i], 0.0) << i;
      }
    }
    if (q == 0.0) {
      EXPECT_EQ(kept, R * C);
    }
    if (q == 0.5) {
      EXPECT_TRUE(kept > 60 && kept < 140) << kept;
    }
    // In place gives the same.
    Tensor<double> xy = up(x, R, C);
    be->dropout(xy.cmat(), q, seed, stream, xy.mat());
    EXPECT_EQ(down(xy), got);
  }
  // Float: same mask, 1/(1−q) scale.
  std::vector<float> xf(x.begin(), x.end());
  Tensor<float> yf = bf->alloc<float>(R, C);
  bf->dropout(bf->upload(xf, R, C).cmat(), 0.5f, seed, stream, yf.mat());
  const std::vector<float> gf = bf->download(yf.cmat());
  for (int64_t i = 0; i < R * C; ++i)
    EXPECT_EQ(gf[i], philox_uniform(seed, stream, i) > 0.5f ? xf[i] * 2.0f : 0.0f) << i;
  Tensor<double> y1 = be->alloc<double>(R, C);
  be->dropout(up(x, R, C).cmat(), 1.0, seed, stream, y1.mat());
  EXPECT_EQ(down(y1), Vec(R * C, 0.0));
  EXPECT_THROW(be->dropout(up(x, R, C).cmat(), 1.5, seed, stream, y1.mat()), VaeError);
}

TEST_F(CpuOps, L2NormalizeRows) {
  Tensor<double> x = up({3, 4, 0, 0, 0, 0, 1, -1, 1}, 3, 3);
  be->l2_normalize_rows(x.cmat(), x.mat());  // in place
  const double s = 1 / std::sqrt(3.0);
  EXPECT_TRUE(all_close(down(x), Vec{0.6, 0.8, 0, 0, 0, 0, s, -s, s}, 1e-16, 1e-15));
}

TEST_F(CpuOps, CsrRowsToDense) {
  Csr c;
  c.rows = 3;
  c.cols = 4;
  c.indptr = {0, 2, 2, 4};
  c.indices = {0, 3, 1, 2};
  c.values = {5, 1, 2, 4};
  CsrTensor<double> ct = be->upload_csr(c);
  Tensor<double> y = up(Vec(12, 9.0), 3, 4);  // stale contents must be cleared
  be->csr_rows_to_dense(ct.view(), up_idx({2, 0, 1}).cmat(), y.mat());
  EXPECT_EQ(down(y), (Vec{0, 2, 4, 0, 5, 0, 0, 1, 0, 0, 0, 0}));
  EXPECT_THROW(be->csr_rows_to_dense(ct.view(), up_idx({3, 0, 1}).cmat(), y.mat()), VaeError);
}

// take_rows copies a window of the epoch order, and refuses one that leaves it.
TEST_F(CpuOps, TakeRowsCopiesAWindowOfTheOrder) {
  Tensor<int32_t> order = up_idx({4, 9, 1, 7, 0, 3});
  Tensor<int32_t> dst = be->upload<int32_t>(std::vector<int32_t>(4, -5), 4, 1);
  be->take_rows(order.cmat(), 2, dst.mat().rows_slice(0, 4));
  EXPECT_EQ(be->download(dst.cmat()), (std::vector<int32_t>{1, 7, 0, 3}));
  be->take_rows(order.cmat(), 5, dst.mat().rows_slice(0, 1));  // the last, one-row batch
  EXPECT_EQ(be->download(dst.cmat()), (std::vector<int32_t>{3, 7, 0, 3}));
  be->take_rows(order.cmat(), 6, dst.mat().rows_slice(0, 0));  // empty at the end: nothing
  EXPECT_THROW(be->take_rows(order.cmat(), 3, dst.mat()), VaeError);
  EXPECT_THROW(be->take_rows(order.cmat(), -1, dst.mat().rows_slice(0, 1)), VaeError);
}

// The row ops that run in blocks of rows on the pool above a size (multinomial_nll, topk): the
// whole matrix gives the very bits that one-row calls (always serial) give. ctest runs this again
// with VAE_CPU_THREADS=1 and 3 (CMakeLists.txt).
TEST_F(CpuOps, RowOpsOnThePoolEqualTheirRowByRowResults) {
  const int64_t R = 257, C = 1500;  // 385 500 elements: above the serial cut-off
  const Vec xv = rand_vec(R * C, 31);
  std::vector<float> x(xv.begin(), xv.end()), t(R * C, 0.0f);
  std::mt19937 rng(5);
  for (int64_t r = 0; r < R; ++r)
    for (int q = 0; q < 12; ++q) t[r * C + rng() % C] = static_cast<float>(1 + rng() % 5);
  for (int64_t j = 0; j < C; j += 7) x[3 * C + j] = x[3 * C];  // ties for topk in row 3
  Tensor<float> xt = bf->upload(x, R, C), tt = bf->upload(t, R, C);
  Tensor<float> g = bf->alloc<float>(R, C), loss = bf->zeros(1, 1);
  bf->multinomial_nll(xt.cmat(), tt.cmat(), 1.0f, g.mat(), loss.mat());
  const std::vector<float> g_all = bf->download(g.cmat());
  const float loss_all = bf->read_scalar(loss.cmat());
  // The exclusion CSR: every row excludes its own targets.
  Csr ex;
  ex.rows = R;
  ex.cols = C;
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = 0; j < C; ++j)
      if (t[r * C + j] != 0) ex.indices.push_back(static_cast<int32_t>(j)), ex.values.push_back(1.0f);
    ex.indptr.push_back(static_cast<int64_t>(ex.indices.size()));
  }
  CsrTensor<float> ext = bf->upload_csr(ex);
  std::vector<int32_t> rows(R);
  std::iota(rows.begin(), rows.end(), 0);
  Tensor<int32_t> rt = bf->upload(rows, R, 1);
  const int k = 100;
  Tensor<int32_t> idx = bf->alloc<int32_t>(R, k);
  Tensor<float> val = bf->alloc<float>(R, k);
  bf->topk(xt.cmat(), ext.view(), rt.cmat(), k, idx.mat(), val.mat());
  const std::vector<int32_t> idx_all = bf->download(idx.cmat());
  const std::vector<float> val_all = bf->download(val.cmat());

  double loss_rows = 0;
  for (int64_t r = 0; r < R; ++r) {
    Tensor<float> g1 = bf->alloc<float>(1, C), l1 = bf->zeros(1, 1);
    bf->multinomial_nll(xt.cmat().rows_slice(r, 1), tt.cmat().rows_slice(r, 1), 1.0f, g1.mat(), l1.mat());
    const std::vector<float> g_row = bf->download(g1.cmat());
    ASSERT_TRUE(std::equal(g_row.begin(), g_row.end(), g_all.begin() + r * C)) << "gradient row " << r;
    loss_rows += bf->read_scalar(l1.cmat());
    Tensor<int32_t> i1 = bf->alloc<int32_t>(1, k);
    Tensor<float> v1 = bf->alloc<float>(1, k);
    bf->topk(xt.cmat().rows_slice(r, 1), ext.view(), rt.cmat().rows_slice(r, 1), k, i1.mat(), v1.mat());
    const std::vector<int32_t> i_row = bf->download(i1.cmat());
    const std::vector<float> v_row = bf->download(v1.cmat());
    ASSERT_TRUE(std::equal(i_row.begin(), i_row.end(), idx_all.begin() + r * k)) << "topk row " << r;
    ASSERT_TRUE(std::equal(v_row.begin(), v_row.end(), val_all.begin() + r * k)) << "topk values row " << r;
  }
  EXPECT_NEAR(loss_all, loss_rows, 1e-6 * std::fabs(loss_rows));  // the float total rounds once more
  // An out-of-range exclusion row is refused before any row runs.
  Tensor<int32_t> bad = bf->upload(std::vector<int32_t>(R, static_cast<int32_t>(R)), R, 1);
  EXPECT_THROW(bf->topk(xt.cmat(), ext.view(), bad.cmat(), k, idx.mat(), val.mat()), VaeError);
}

// ---- sparse first layer ---------------------------------------------------------------------

// Random CSR (ascending columns, values in [0.5, 5)) with some empty rows and, in row 0, every
// column (a row longer than any tile or staging chunk).
Csr random_sparse(int64_t rows, int64_t cols, double density, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Csr m;
  m.rows = rows;
  m.cols = cols;
  m.indptr.assign(1, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const bool empty = r % 5 == 3, full = r == 0;
    for (int64_t c = 0; c < cols && !empty; ++c) {
      if (!full && u(g) >= density) continue;
      m.indices.push_back(static_cast<int32_t>(c));
      m.values.push_back(static_cast<float>(0.5 + 4.5 * u(g)));
    }
    m.indptr.push_back(static_cast<int64_t>(m.indices.size()));
  }
  return m;
}

struct SparseCase {
  const char* name;
  bool norms;
  double q;
};
const SparseCase kSparseCases[] = {{"raw", false, 0.0}, {"l2", true, 0.0}, {"dropout", false, 0.4},
                                   {"l2+dropout", true, 0.5}, {"drop-all", false, 1.0}};

// The sparse ops against the dense path on the densified, transformed batch: csr_rows_to_dense,
// l2_normalize_rows, dropout, then gemm — what the models did before. Same mask, same values;
// only the GEMM's summation order differs.
TEST_F(CpuOps, CsrLinearMatchesDenseGemmOnTransformedInput) {
  const int64_t R = 23, I = 70, H = 9;
  const Csr m = random_sparse(R, I, 0.15, 5);
  CsrTensor<double> ct = be->upload_csr(m);
  const std::vector<int32_t> rows = {4, 0, 3, 3, 22, 8, 13, 1, 9, 18, 7};  // repeats, empty rows
  const int64_t n = static_cast<int64_t>(rows.size());
  Tensor<int32_t> ri = up_idx(rows);
  const Vec w = rand_vec(H * I, 11), dy = rand_vec(n * H, 12);
  Tensor<double> wt = up(w, H, I), dyt = up(dy, n, H);
  const uint64_t seed = 9, stream = rng_stream(RngStream::dropout, 17);
  for (const SparseCase& sc : kSparseCases) {
    SCOPED_TRACE(sc.name);
    // Dense reference.
    Tensor<double> x = be->alloc<double>(n, I);
    be->csr_rows_to_dense(ct.view(), ri.cmat(), x.mat());
    if (sc.norms) be->l2_normalize_rows(x.cmat(), x.mat());
    if (sc.q > 0) be->dropout(x.cmat(), sc.q, seed, stream, x.mat());
    Tensor<double> y_ref = be->alloc<double>(n, H), dw_ref = be->alloc<double>(H, I);
    be->gemm(false, true, 1.0, x.cmat(), wt.cmat(), 0.0, y_ref.mat());
    be->gemm(true, false, 1.0, dyt.cmat(), x.cmat(), 0.0, dw_ref.mat());
    // Sparse.
    Tensor<double> norms = be->alloc<double>(n, 1);
    CsrBatch<double> xb{ct.view(), ri.cmat(), {}, sc.q, seed, stream};
    if (sc.norms) {
      be->csr_row_norms(ct.view(), ri.cmat(), norms.mat());
      xb.norms = norms.cmat();
    }
    Tensor<double> y = up(Vec(n * H, std::nan("")), n, H), dw = up(Vec(H * I, std::nan("")), H, I);
    be->csr_linear_forward(xb, wt.cmat(), y.mat());
    be->csr_linear_weight_grad(xb, dyt.cmat(), dw.mat());
    EXPECT_TRUE(all_close(down(y), down(y_ref), 1e-14, 1e-12));
    EXPECT_TRUE(all_close(down(dw), down(dw_ref), 1e-14, 1e-12));
    if (sc.q >= 1) {
      EXPECT_EQ(down(y), Vec(n * H, 0.0));
    }
  }
  // Row norms: the L2 norm of each selected row (0 for an empty one).
  Tensor<double> norms = be->alloc<double>(n, 1);
  be->csr_row_norms(ct.view(), ri.cmat(), norms.mat());
  const Vec got = down(norms);
  for (int64_t r = 0; r < n; ++r) {
    double sq = 0;
    for (int64_t e = m.indptr[rows[r]]; e < m.indptr[rows[r] + 1]; ++e) sq += double(m.values[e]) * m.values[e];
    EXPECT_DOUBLE_EQ(got[r], std::sqrt(sq)) << r;
  }
  EXPECT_EQ(got[2], 0.0);  // row 3 is empty
}

// Float: forward and weight gradient against double loops over the batch entries.
TEST_F(CpuOps, CsrLinearFloatAgainstNaiveLoops) {
  const int64_t R = 40, I = 300, H = 33;
  const Csr m = random_sparse(R, I, 0.05, 8);
  CsrTensor<float> ct = bf->upload_csr(m);
  std::vector<int32_t> rows(R);
  std::iota(rows.rbegin(), rows.rend(), 0);
  Tensor<int32_t> ri = bf->upload(rows, R, 1);
  const Vec w = rand_vec(H * I, 21), dy = rand_vec(R * H, 22);
  Tensor<float> wt = bf->upload(std::vector<float>(w.begin(), w.end()), H, I);
  Tensor<float> dyt = bf->upload(std::vector<float>(dy.begin(), dy.end()), R, H);
  Tensor<float> y = bf->alloc<float>(R, H), dw = bf->alloc<float>(H, I);
  const CsrBatch<float> xb{ct.view(), ri.cmat(), {}, 0.0f, 0, 0};
  bf->csr_linear_forward(xb, wt.cmat(), y.mat());
  bf->csr_linear_weight_grad(xb, dyt.cmat(), dw.mat());
  Vec y_ref(R * H, 0.0), dw_ref(H * I, 0.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t e = m.indptr[rows[r]]; e < m.indptr[rows[r] + 1]; ++e) {
      const int64_t c = m.indices[e];
      const double v = m.values[e];
      for (int64_t h = 0; h < H; ++h) {
        y_ref[r * H + h] += v * static_cast<float>(w[h * I + c]);
        dw_ref[h * I + c] += v * static_cast<float>(dy[r * H + h]);
      }
    }
  // Float sums of up to 300 terms of either sign: a few ulps of the largest term.
  EXPECT_TRUE(all_close(bf->download(y.cmat()), y_ref, 1e-4, 1e-5));
  EXPECT_TRUE(all_close(bf->download(dw.cmat()), dw_ref, 1e-4, 1e-5));
}

// An empty batch writes an all-zero weight gradient and nothing else; bad input throws.
TEST_F(CpuOps, CsrLinearEmptyBatchAndErrors) {
  const Csr m = random_sparse(6, 10, 0.3, 3);
  CsrTensor<double> ct = be->upload_csr(m);
  Tensor<int32_t> none = be->alloc<int32_t>(0, 1);
  Tensor<double> w = up(rand_vec(40, 1), 4, 10), y0 = be->alloc<double>(0, 4);
  Tensor<double> dw = up(Vec(40, std::nan("")), 4, 10);
  const CsrBatch<double> empty{ct.view(), none.cmat(), {}, 0.0, 0, 0};
  be->csr_linear_forward(empty, w.cmat(), y0.mat());
  be->csr_linear_weight_grad(empty, be->alloc<double>(0, 4).cmat(), dw.mat());
  EXPECT_EQ(down(dw), Vec(40, 0.0));

  Tensor<int32_t> bad = up_idx({0, 6}), ok = up_idx({0, 5});
  Tensor<double> y = be->alloc<double>(2, 4), dy = be->zeros(2, 4), nrm = be->alloc<double>(2, 1);
  EXPECT_THROW(be->csr_linear_forward({ct.view(), bad.cmat(), {}, 0.0, 0, 0}, w.cmat(), y.mat()), VaeError);
  EXPECT_THROW(be->csr_linear_weight_grad({ct.view(), bad.cmat(), {}, 0.0, 0, 0}, dy.cmat(), dw.mat()), VaeError);
  EXPECT_THROW(be->csr_row_norms(ct.view(), bad.cmat(), nrm.mat()), VaeError);
  const CsrBatch<double> good{ct.view(), ok.cmat(), {}, 0.0, 0, 0};
  EXPECT_THROW(be->csr_linear_forward(good, w.cmat(), be->alloc<double>(2, 3).mat()), VaeError);  // y cols
  EXPECT_THROW(be->csr_linear_forward(good, up(rand_vec(36, 1), 4, 9).cmat(), y.mat()), VaeError);  // w cols
  EXPECT_THROW(be->csr_linear_weight_grad(good, be->zeros(3, 4).cmat(), dw.mat()), VaeError);  // dy rows
  EXPECT_THROW(be->csr_linear_weight_grad(good, dy.cmat(), be->alloc<double>(4, 9).mat()), VaeError);
  EXPECT_THROW(be->csr_row_norms(ct.view(), ok.cmat(), be->alloc<double>(3, 1).mat()), VaeError);
  CsrBatch<double> q{ct.view(), ok.cmat(), {}, 1.5, 0, 0};
  EXPECT_THROW(be->csr_linear_forward(q, w.cmat(), y.mat()), VaeError);
  q.dropout = 0;
  Tensor<double> norms3 = be->alloc<double>(3, 1);  // one norm too many
  q.norms = norms3.cmat();
  EXPECT_THROW(be->csr_linear_forward(q, w.cmat(), y.mat()), VaeError);
}

// ---- optimiser ------------------------------------------------------------------------------

TEST_F(CpuOps, AdamStepMatchesHandWrittenTwoSteps) {
  const Vec p0 = rand_vec(10, 101), g1 = rand_vec(10, 102), g2 = rand_vec(10, 103);
  for (bool decoupled : {false, true}) {
    SCOPED_TRACE(decoupled ? "AdamW" : "Adam + L2");
    AdamConfig cfg;
    cfg.lr = 0.05;
    cfg.beta1 = 0.8;
    cfg.beta2 = 0.95;
    cfg.eps = 1e-6;
    cfg.weight_decay = 0.1;
    cfg.decoupled = decoupled;
    // Kingma & Ba with bias-corrected moments; weight decay as PyTorch Adam / AdamW apply it.
    Vec p = p0, m(10, 0.0), v(10, 0.0);
    for (int t = 1; t <= 2; ++t) {
      const Vec& gr = t == 1 ? g1 : g2;
      for (int i = 0; i < 10; ++i) {
        double g = gr[i];
        if (decoupled) p[i] -= cfg.lr * cfg.weight_decay * p[i];
        else g += cfg.weight_decay * p[i];
        m[i] = cfg.beta1 * m[i] + (1 - cfg.beta1) * g;
        v[i] = cfg.beta2 * v[i] + (1 - cfg.beta2) * g * g;
        const double mh = m[i] / (1 - std::pow(cfg.beta1, t));
        const double vh = v[i] / (1 - std::pow(cfg.beta2, t));
        p[i] -= cfg.lr * mh / (std::sqrt(vh) + cfg.eps);
      }
    }
    Tensor<double> pt = up(p0, 2, 5), mt = be->zeros(2, 5), vt = be->zeros(2, 5);
    be->adam_step(pt.mat(), up(g1, 2, 5).cmat(), mt.mat(), vt.mat(), cfg, 1);
    be->adam_step(pt.mat(), up(g2, 2, 5).cmat(), mt.mat(), vt.mat(), cfg, 2);
    EXPECT_TRUE(all_close(down(pt), p, 1e-15, 1e-12));
    EXPECT_TRUE(all_close(down(mt), m, 1e-15, 1e-12));
    EXPECT_TRUE(all_close(down(vt), v, 1e-15, 1e-12));

    std::vector<float> pf(p0.begin(), p0.end());
    Tensor<float> ptf = bf->upload(pf, 1, 10), mf = bf->zeros(1, 10), vf = bf->zeros(1, 10);
    bf->adam_step(ptf.mat(), bf->upload(std::vector<float>(g1.begin(), g1.end()), 1, 10).cmat(),
                  mf.mat(), vf.mat(), cfg, 1);
    bf->adam_step(ptf.mat(), bf->upload(std::vector<float>(g2.begin(), g2.end()), 1, 10).cmat(),
                  mf.mat(), vf.mat(), cfg, 2);
    EXPECT_TRUE(all_close(bf->download(ptf.cmat()), p, 1e-6, 1e-5));
  }
  Tensor<double> pt = be->zeros(1, 3);
  EXPECT_THROW(be->adam_step(pt.mat(), be->zeros(1, 3).cmat(), pt.mat(), pt.mat(), AdamConfig{}, 0),
               VaeError);
}

// ---- contracts ------------------------------------------------------------------------------

TEST_F(CpuOps, ShapeMismatchThrows) {
  Tensor<double> a23 = be->zeros(2, 3), b32 = be->zeros(3, 2), c22 = be->zeros(2, 2);
  Tensor<double> c33 = be->zeros(3, 3), l = be->zeros(1, 1), l2 = be->zeros(2, 1);
  EXPECT_THROW(be->axpy(1.0, a23.cmat(), b32.mat()), VaeError);
  EXPECT_THROW(be->gemm(false, false, 1.0, a23.cmat(), a23.cmat(), 0.0, c22.mat()), VaeError);
  EXPECT_THROW(be->gemm(false, false, 1.0, a23.cmat(), b32.cmat(), 0.0, c33.mat()), VaeError);
  EXPECT_NO_THROW(be->gemm(false, false, 1.0, a23.cmat(), b32.cmat(), 0.0, c22.mat()));
  EXPECT_NO_THROW(be->gemm(true, true, 1.0, a23.cmat(), b32.cmat(), 0.0, c33.mat()));
  EXPECT_THROW(be->bias_act(a23.cmat(), be->zeros(1, 2).cmat(), Act::relu, a23.mat()), VaeError);
  EXPECT_THROW(be->bias_act(a23.cmat(), CMat<double>{}, Act::relu, b32.mat()), VaeError);
  EXPECT_THROW(be->bias_act_backward(a23.cmat(), a23.cmat(), Act::relu, a23.mat(),
                                     be->zeros(1, 2).mat()), VaeError);
  EXPECT_THROW(be->mse_loss(a23.cmat(), b32.cmat(), false, 1.0, a23.mat(), l.mat()), VaeError);
  EXPECT_THROW(be->mse_loss(a23.cmat(), a23.cmat(), false, 1.0, a23.mat(), l2.mat()), VaeError);
  EXPECT_THROW(be->multinomial_nll(a23.cmat(), a23.cmat(), 1.0, b32.mat(), l.mat()), VaeError);
  EXPECT_THROW(be->bce_logits(a23.cmat(), b32.cmat(), 1.0, a23.mat(), l.mat()), VaeError);
  EXPECT_THROW(be->reparam_kl_backward(a23.cmat(), CMat<double>{}, CMat<double>{}, 1.0,
                                       a23.mat(), l.mat()), VaeError);  // odd column count
  EXPECT_THROW(be->regularize(a23.cmat(), 1.0, Reg::l2_squared, b32.mat(), l.mat()), VaeError);
  EXPECT_THROW(be->dropout(a23.cmat(), 0.5, 1, 1, b32.mat()), VaeError);
  EXPECT_THROW(be->l2_normalize_rows(a23.cmat(), b32.mat()), VaeError);
  EXPECT_THROW(be->adam_step(a23.mat(), b32.cmat(), a23.mat(), a23.mat(), AdamConfig{}, 1), VaeError);
  EXPECT_THROW(be->gather_rows_add(a23.cmat(), up_idx({0}).cmat(), c22.mat()), VaeError);
}

}  // namespace
}  // namespace vae
