// The CUDA analysis ops against the CPU reference: K-Means assignment (shapes that are not
// multiples of a block, k = 1, k beyond the device step's limit, exact ties), the fused Lloyd
// step (sums, counts, changed labels, determinism), whole K-Means runs on separated blobs, the
// t-SNE gradient and KL, and whole t-SNE runs. GPU outputs are poisoned before each call so an
// unwritten element fails. Every test but the factory's skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "analysis/analysis_ops.h"
#include "analysis/cluster_metrics.h"
#include "analysis/kmeans.h"
#include "analysis/tsne.h"
#include "backend/backend.h"
#include "core/error.h"
#include "core/philox.h"

namespace vae {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(CudaAnalysisFactory, CudaOpsOnlyWithADevice) {
  EXPECT_EQ(make_analysis_ops(false)->name(), "cpu");
  if (!cuda_device_available()) {
    EXPECT_THROW(make_cuda_analysis_ops(), VaeError);
    EXPECT_THROW(make_analysis_ops(true), VaeError);
    GTEST_SKIP() << "no CUDA device";
  }
  EXPECT_EQ(make_cuda_analysis_ops()->name(), "cuda");
  EXPECT_EQ(make_analysis_ops(true)->name(), "cuda");
}

class CudaAnalysis : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    gpu_ = make_cuda_analysis_ops();
    cpu_ = make_cpu_analysis_ops();
  }
  std::unique_ptr<AnalysisOps> gpu_, cpu_;
};

std::vector<float> normal_vec(size_t n, uint64_t seed, uint64_t stream, float scale = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * philox_normal(seed, stream, i);
  return v;
}

const auto dist2 = row_dist2;  // analysis/kmeans.h

double norm2(const float* a, int64_t d) {
  double s = 0;
  for (int64_t t = 0; t < d; ++t) s += static_cast<double>(a[t]) * a[t];
  return s;
}

// ‖got − ref‖ / ‖ref‖ below tol, every value finite.
::testing::AssertionResult rel_close(const std::vector<float>& got, const std::vector<float>& ref, double tol) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.size();
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return ::testing::AssertionFailure() << "non-finite at " << i << ": " << got[i];
    num += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  const double rel = std::sqrt(num / std::max(den, 1e-300));
  if (rel <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << rel << " (tol " << tol << ")";
}

struct Blobs {
  std::vector<float> x;
  std::vector<int32_t> truth;
  int64_t n = 0, d = 0;
};

// `per` points around each of `groups` centres 12·e_g (d ≥ groups), unit noise, interleaved.
Blobs blobs(int groups, int per, int64_t d, uint64_t seed) {
  Blobs b;
  b.n = static_cast<int64_t>(groups) * per;
  b.d = d;
  b.x.resize(b.n * d);
  b.truth.resize(b.n);
  for (int64_t i = 0; i < b.n; ++i) {
    const int g = static_cast<int>(i % groups);
    b.truth[i] = g;
    for (int64_t t = 0; t < d; ++t)
      b.x[i * d + t] = (t == g ? 12.0f : 0.0f) + philox_normal(seed, 7, static_cast<uint64_t>(i * d + t));
  }
  return b;
}

// ---- K-Means assignment --------------------------------------------------------------------

// GPU and CPU distances agree to the float rounding of the GEMM form; labels agree wherever the
// nearest centre wins by more than that rounding.
void check_assign_against_cpu(AnalysisOps& gpu, AnalysisOps& cpu, int64_t n, int64_t d, int k, uint64_t seed) {
  SCOPED_TRACE("n = " + std::to_string(n) + ", d = " + std::to_string(d) + ", k = " + std::to_string(k));
  const std::vector<float> x = normal_vec(static_cast<size_t>(n * d), seed, 1, 2.0f);
  const std::vector<float> c = normal_vec(static_cast<size_t>(k) * d, seed, 2, 2.0f);
  std::vector<int32_t> gl(n, -7), cl(n, -7);
  std::vector<float> gd(n, kNaN), cd(n, kNaN);
  gpu.kmeans_assign(x.data(), n, d, c.data(), k, gl.data(), gd.data());
  cpu.kmeans_assign(x.data(), n, d, c.data(), k, cl.data(), cd.data());
  double cmax = 0;
  for (int j = 0; j < k; ++j) cmax = std::max(cmax, norm2(&c[j * d], d));
  int64_t ambiguous = 0;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_GE(gl[i], 0) << "row " << i;
    ASSERT_LT(gl[i], k) << "row " << i;
    ASSERT_TRUE(std::isfinite(gd[i])) << "row " << i;
    const double tol = 1e-5 * (1.0 + norm2(&x[i * d], d) + cmax);
    EXPECT_NEAR(gd[i], cd[i], tol) << "row " << i;
    EXPECT_GE(gd[i], 0.0f);
    // Exact distances: the best and the runner-up.
    double best = std::numeric_limits<double>::max(), second = best;
    int arg = 0;
    for (int j = 0; j < k; ++j) {
      const double v = dist2(&x[i * d], &c[j * d], d);
      if (v < best) {
        second = best;
        best = v;
        arg = j;
      } else if (v < second) {
        second = v;
      }
    }
    if (k == 1 || second - best > 2 * tol) {
      EXPECT_EQ(gl[i], cl[i]) << "row " << i;
      EXPECT_EQ(gl[i], arg) << "row " << i;
    } else {
      ++ambiguous;
      EXPECT_NEAR(dist2(&x[i * d], &c[gl[i] * d], d), best, 2 * tol) << "row " << i;
    }
  }
  EXPECT_LE(ambiguous, n / 100 + 1);
}

TEST_F(CudaAnalysis, AssignMatchesCpuOnRandomData) {
  check_assign_against_cpu(*gpu_, *cpu_, 1037, 7, 13, 1);   // not a multiple of the block
  check_assign_against_cpu(*gpu_, *cpu_, 769, 64, 10, 2);
  check_assign_against_cpu(*gpu_, *cpu_, 5, 3, 1, 3);       // k = 1, fewer rows than a warp
  check_assign_against_cpu(*gpu_, *cpu_, 2000, 33, 300, 4);
  check_assign_against_cpu(*gpu_, *cpu_, 1, 5, 1, 5);       // a single row
}

TEST_F(CudaAnalysis, AssignTiesGoToTheLowerCentreAndDistancesClampAtZero) {
  // As the CPU test: centres 1 and 2 identical; point 0 on them, point 1 equidistant from 0 and 3.
  const std::vector<float> c = {-1, 0, 1e3f, 1e3f, 1e3f, 1e3f, 1, 0};
  const std::vector<float> x = {1e3f, 1e3f, 0, 0, 0.5f, 0.25f};
  std::vector<int32_t> lab(3, -1);
  std::vector<float> d2(3, kNaN);
  gpu_->kmeans_assign(x.data(), 3, 2, c.data(), 4, lab.data(), d2.data());
  EXPECT_EQ(lab[0], 1);
  EXPECT_GE(d2[0], 0.0f);
  EXPECT_LE(d2[0], 1.0f);
  EXPECT_EQ(lab[1], 0);
  EXPECT_FLOAT_EQ(d2[1], 1.0f);
  EXPECT_EQ(lab[2], 3);
  EXPECT_FLOAT_EQ(d2[2], 0.3125f);
  // Exact ties among many centres (small integers: every step exact): the first duplicate wins.
  const std::vector<float> c1 = {5, 3, 3, 7, 3, 1, 1};
  const std::vector<float> x1 = {3, 1, 2, 6, 4};
  std::vector<int32_t> l1(5, -1);
  gpu_->kmeans_assign(x1.data(), 5, 1, c1.data(), 7, l1.data(), nullptr);
  // 2: centres 3 and 1 tie → index 1; 6: 5 and 7 tie → 0; 4: 5 and 3 tie → 0.
  EXPECT_EQ(l1, (std::vector<int32_t>{1, 5, 1, 0, 0}));
  std::vector<int32_t> l1_cpu(5, -1);
  cpu_->kmeans_assign(x1.data(), 5, 1, c1.data(), 7, l1_cpu.data(), nullptr);
  EXPECT_EQ(l1_cpu, l1);
}

TEST_F(CudaAnalysis, AssignInsideASessionUsesTheResidentCopyOnlyForTheSessionsData) {
  const int64_t n = 1500, d = 12;
  const int k = 9;
  const std::vector<float> x = normal_vec(n * d, 9, 1);
  const std::vector<float> c = normal_vec(k * d, 9, 2);
  std::vector<int32_t> outside(n, -1), inside(n, -2), other_gpu(n, -3), other_cpu(n, -4);
  std::vector<float> d_out(n, kNaN), d_in(n, kNaN);
  gpu_->kmeans_assign(x.data(), n, d, c.data(), k, outside.data(), d_out.data());
  gpu_->kmeans_begin(x.data(), n, d);
  gpu_->kmeans_assign(x.data(), n, d, c.data(), k, inside.data(), d_in.data());
  EXPECT_EQ(inside, outside);
  EXPECT_EQ(d_in, d_out);
  // Other data inside the session (another buffer) must not be answered from the resident x.
  std::vector<float> y = x;
  for (float& v : y) v = -v + 0.5f;
  gpu_->kmeans_assign(y.data(), n, d, c.data(), k, other_gpu.data(), nullptr);
  cpu_->kmeans_assign(y.data(), n, d, c.data(), k, other_cpu.data(), nullptr);
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) differ += other_gpu[i] != other_cpu[i];
  EXPECT_LE(differ, 2);  // near-ties only
  EXPECT_NE(other_gpu, inside);
  gpu_->kmeans_end();
}

// ---- the Lloyd step ------------------------------------------------------------------------

// One step on the GPU against naive double sums over the GPU's own labels (which must match the
// CPU's up to near-ties), counts exactly, and the changed count of a second and third step.
void check_step(AnalysisOps& gpu, AnalysisOps& cpu, const std::vector<float>& x, int64_t n, int64_t d,
                const std::vector<float>& c, int k, bool same_labels) {
  SCOPED_TRACE("n = " + std::to_string(n) + ", d = " + std::to_string(d) + ", k = " + std::to_string(k));
  gpu.kmeans_begin(x.data(), n, d);
  cpu.kmeans_begin(x.data(), n, d);
  std::vector<double> gs(k * d, std::nan("")), cs(k * d, std::nan(""));
  std::vector<int64_t> gc(k, -1), cc(k, -1);
  EXPECT_EQ(gpu.kmeans_step(c.data(), k, gs.data(), gc.data()), n);
  EXPECT_EQ(cpu.kmeans_step(c.data(), k, cs.data(), cc.data()), n);
  std::vector<int32_t> gl(n, -1), cl(n, -1);
  gpu.kmeans_step_labels(gl.data());
  cpu.kmeans_step_labels(cl.data());
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) differ += gl[i] != cl[i];
  if (same_labels) {
    EXPECT_EQ(differ, 0);
  } else {
    EXPECT_LE(differ, n / 100 + 1);
  }
  std::vector<double> want(k * d, 0.0);
  std::vector<int64_t> count(k, 0);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_GE(gl[i], 0);
    ASSERT_LT(gl[i], k);
    ++count[gl[i]];
    for (int64_t t = 0; t < d; ++t) want[gl[i] * d + t] += x[i * d + t];
  }
  EXPECT_EQ(gc, count);
  for (int64_t e = 0; e < k * d; ++e) {
    ASSERT_TRUE(std::isfinite(gs[e])) << "sum " << e;
    EXPECT_NEAR(gs[e], want[e], 1e-9 * (1.0 + std::fabs(want[e]))) << "sum " << e;
    if (differ == 0) {
      EXPECT_NEAR(gs[e], cs[e], 1e-9 * (1.0 + std::fabs(cs[e]))) << "sum " << e;
    }
  }
  if (differ == 0) {
    EXPECT_EQ(gc, cc);
  }
  // Same centres: nothing changes. Then centres moved: the count of labels that changed.
  EXPECT_EQ(gpu.kmeans_step(c.data(), k, gs.data(), gc.data()), 0);
  std::vector<float> c2 = c;
  for (size_t e = 0; e < c2.size(); ++e) c2[e] += 0.7f * philox_normal(77, 3, e);
  const int64_t changed = gpu.kmeans_step(c2.data(), k, gs.data(), gc.data());
  std::vector<int32_t> gl2(n, -1);
  gpu.kmeans_step_labels(gl2.data());
  int64_t moved = 0;
  for (int64_t i = 0; i < n; ++i) moved += gl2[i] != gl[i];
  EXPECT_EQ(changed, moved);
  gpu.kmeans_end();
  cpu.kmeans_end();
}

TEST_F(CudaAnalysis, StepMatchesCpuOnBlobs) {
  // Separated blobs, centres near the blob centres: no near-ties, the labels must be the CPU's.
  for (const auto& s : {std::vector<int64_t>{5, 601, 70}, std::vector<int64_t>{10, 26, 64},
                        std::vector<int64_t>{1, 5, 3}, std::vector<int64_t>{7, 4000, 16}}) {
    const int k = static_cast<int>(s[0]);
    const Blobs b = blobs(k, static_cast<int>(s[1]), s[2], 11);
    std::vector<float> c(k * b.d);
    for (int j = 0; j < k; ++j)
      for (int64_t t = 0; t < b.d; ++t) c[j * b.d + t] = (t == j ? 12.0f : 0.0f) + 0.3f * philox_normal(5, 6, j * b.d + t);
    check_step(*gpu_, *cpu_, b.x, b.n, b.d, c, k, true);
  }
}

TEST_F(CudaAnalysis, StepMatchesCpuOnRandomDataIncludingColumnTilesAndTheCpuFallback) {
  // k = 300 splits the columns over several blocks; k = 2100 is beyond the device step's shared
  // memory and takes the CPU path inside the CUDA ops.
  for (const auto& s : {std::vector<int64_t>{700, 40, 300}, std::vector<int64_t>{3001, 70, 5},
                        std::vector<int64_t>{2200, 3, 2100}, std::vector<int64_t>{70000, 2, 3}}) {
    const int64_t n = s[0], d = s[1];
    const int k = static_cast<int>(s[2]);
    const std::vector<float> x = normal_vec(n * d, 21, 1, 3.0f);
    std::vector<float> c(x.begin(), x.begin() + k * d);  // the first k points
    check_step(*gpu_, *cpu_, x, n, d, c, k, false);
  }
}

TEST_F(CudaAnalysis, StepIsDeterministic) {
  const int64_t n = 50000, d = 16;
  const int k = 7;
  const std::vector<float> x = normal_vec(n * d, 31, 1);
  const std::vector<float> c = normal_vec(k * d, 31, 2);
  std::vector<double> s1(k * d), s2(k * d);
  std::vector<int64_t> c1(k), c2(k);
  gpu_->kmeans_begin(x.data(), n, d);
  gpu_->kmeans_step(c.data(), k, s1.data(), c1.data());
  gpu_->kmeans_end();
  auto again = make_cuda_analysis_ops();
  again->kmeans_begin(x.data(), n, d);
  again->kmeans_step(c.data(), k, s2.data(), c2.data());
  again->kmeans_end();
  EXPECT_EQ(s1, s2);
  EXPECT_EQ(c1, c2);
}

// ---- whole K-Means runs ------------------------------------------------------------------

TEST_F(CudaAnalysis, KMeansOnSeparatedBlobsMatchesTheCpu) {
  for (const auto& s : {std::vector<int64_t>{5, 401, 8}, std::vector<int64_t>{10, 1000, 16}}) {
    const int k = static_cast<int>(s[0]);
    const Blobs b = blobs(k, static_cast<int>(s[1]), s[2], 13);
    SCOPED_TRACE("k = " + std::to_string(k) + ", n = " + std::to_string(b.n));
    KMeansOptions o;
    o.k = k;
    o.n_init = 3;
    const KMeansResult g = kmeans(*gpu_, b.x, b.n, b.d, o);
    const KMeansResult c = kmeans(*cpu_, b.x, b.n, b.d, o);
    EXPECT_DOUBLE_EQ(adjusted_rand_index(g.labels, b.truth), 1.0);
    EXPECT_DOUBLE_EQ(adjusted_rand_index(c.labels, b.truth), 1.0);
    // From the same initial centres: the very same labels and iterations, centres to rounding.
    const std::vector<float> init = kmeans_plusplus(*cpu_, b.x, b.n, b.d, k, 3);
    const KMeansResult gi = kmeans_from_centers(*gpu_, b.x, b.n, b.d, init, o);
    const KMeansResult ci = kmeans_from_centers(*cpu_, b.x, b.n, b.d, init, o);
    EXPECT_EQ(gi.labels, ci.labels);
    EXPECT_EQ(gi.iterations, ci.iterations);
    EXPECT_TRUE(rel_close(gi.centers, ci.centers, 1e-6));
    EXPECT_NEAR(gi.inertia, ci.inertia, 1e-6 * ci.inertia);
    // The seeding on the GPU picks the same points here (no near-ties in D² sampling).
    EXPECT_EQ(kmeans_plusplus(*gpu_, b.x, b.n, b.d, k, 3), init);
  }
}

// ---- t-SNE -------------------------------------------------------------------------------

std::vector<float> formula_x(int64_t n, int64_t d) {
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < d; ++t) {
      const double di = static_cast<double>(i), dt = static_cast<double>(t);
      x[i * d + t] = static_cast<float>(std::sin(1.3 * di + 0.7 * dt * dt + 0.1) + 0.5 * std::cos(0.37 * di * (dt + 1)));
    }
  return x;
}

TEST_F(CudaAnalysis, TsneGradientMatchesSklearnNumbers) {
  // The stored scikit-learn values of Tsne.GradientAndKlMatchSklearn (n = 10, perplexity 3).
  const std::vector<float> p = tsne_joint_probabilities(formula_x(10, 3), 10, 3, 3.0);
  std::vector<float> y(20);
  for (int j = 0; j < 10; ++j)
    for (int s = 0; s < 2; ++s) y[j * 2 + s] = static_cast<float>(std::cos(0.9 * j + 1.1 * s) * (1 + 0.1 * j));
  std::vector<float> g(20, kNaN);
  const double kl = gpu_->tsne_gradient(p.data(), y.data(), 10, 12.0f, g.data(), true);
  EXPECT_NEAR(kl, 45.48503447860507, 1e-5 * 45.5);
  EXPECT_NEAR(g[0], 1.1996783018112183, 1e-5);
  EXPECT_NEAR(g[1], -0.6041442155838013, 1e-5);
  EXPECT_NEAR(g[14], 1.0738465785980225, 1e-5);
  EXPECT_NEAR(g[15], 0.4931911528110504, 1e-5);
}

TEST_F(CudaAnalysis, TsneGradientAndKlMatchCpu) {
  // 301: the last block has idle warps; 1500: more than one tile of y.
  for (int64_t n : {int64_t{2}, int64_t{301}, int64_t{1500}}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const int64_t d = 6;
    const std::vector<float> x = normal_vec(n * d, 41, static_cast<uint64_t>(n));
    const std::vector<float> p = tsne_joint_probabilities(x, n, d, std::min(30.0, n / 4.0 + 0.5));
    const std::vector<float> y = normal_vec(2 * n, 42, static_cast<uint64_t>(n), 3.0f);
    for (float ex : {1.0f, 12.0f}) {
      std::vector<float> gg(2 * n, kNaN), cg(2 * n, kNaN), gg2(2 * n, kNaN);
      const double gkl = gpu_->tsne_gradient(p.data(), y.data(), n, ex, gg.data(), true);
      const double ckl = cpu_->tsne_gradient(p.data(), y.data(), n, ex, cg.data(), true);
      EXPECT_TRUE(rel_close(gg, cg, 1e-4)) << "exaggeration " << ex;
      EXPECT_NEAR(gkl, ckl, 1e-4 * std::fabs(ckl)) << "exaggeration " << ex;
      EXPECT_TRUE(std::isfinite(gkl));
      // Without the KL: NaN, and the very same gradient.
      EXPECT_TRUE(std::isnan(gpu_->tsne_gradient(p.data(), y.data(), n, ex, gg2.data(), false)));
      EXPECT_EQ(gg2, gg);
    }
  }
}

TEST_F(CudaAnalysis, TsneSessionKeepsPResidentOnlyForItsOwnP) {
  const int64_t n = 400, d = 5;
  const std::vector<float> x = normal_vec(n * d, 51, 1);
  const std::vector<float> p = tsne_joint_probabilities(x, n, d, 20.0);
  const std::vector<float> x2 = normal_vec(n * d, 52, 1);
  const std::vector<float> p2 = tsne_joint_probabilities(x2, n, d, 20.0);
  const std::vector<float> y = normal_vec(2 * n, 53, 1);
  std::vector<float> stray(2 * n, kNaN), resident(2 * n, kNaN), other(2 * n, kNaN), other_cpu(2 * n, kNaN);
  const double kl_stray = gpu_->tsne_gradient(p.data(), y.data(), n, 1.0f, stray.data(), true);
  gpu_->tsne_begin(p.data(), n);
  const double kl_res = gpu_->tsne_gradient(p.data(), y.data(), n, 1.0f, resident.data(), true);
  gpu_->tsne_gradient(p2.data(), y.data(), n, 1.0f, other.data(), false);
  gpu_->tsne_end();
  EXPECT_EQ(resident, stray);
  EXPECT_EQ(kl_res, kl_stray);
  cpu_->tsne_gradient(p2.data(), y.data(), n, 1.0f, other_cpu.data(), false);
  EXPECT_TRUE(rel_close(other, other_cpu, 1e-4));
  EXPECT_FALSE(rel_close(other, resident, 1e-2));
}

TEST_F(CudaAnalysis, TsneOnSeparatedBlobsStaysSeparatedAndIsDeterministic) {
  const Blobs b = blobs(3, 60, 10, 21);
  TsneOptions o;
  o.seed = 3;
  const TsneResult g = tsne(*gpu_, b.x, b.n, b.d, o);
  ASSERT_EQ(g.y.size(), static_cast<size_t>(2 * b.n));
  for (float v : g.y) ASSERT_TRUE(std::isfinite(v));
  EXPECT_GE(trustworthiness(b.x, b.d, g.y, 2, 5), 0.9);
  KMeansOptions ko;
  ko.k = 3;
  EXPECT_GE(adjusted_rand_index(kmeans(*gpu_, g.y, b.n, 2, ko).labels, b.truth), 0.95);
  EXPECT_EQ(tsne(*gpu_, b.x, b.n, b.d, o).y, g.y);  // bit for bit on a rerun
  // The CPU reaches an embedding of about the same quality (trajectories may part by rounding).
  const TsneResult c = tsne(*cpu_, b.x, b.n, b.d, o);
  EXPECT_EQ(g.iterations, c.iterations);
  EXPECT_NEAR(g.kl_divergence, c.kl_divergence, 0.2 * c.kl_divergence);
  // Early on they still agree closely: the first checkpoint's KL.
  ASSERT_FALSE(g.kl_history.empty());
  EXPECT_NEAR(g.kl_history.front().kl, c.kl_history.front().kl, 1e-3 * std::fabs(c.kl_history.front().kl));
}

}  // namespace
}  // namespace vae
