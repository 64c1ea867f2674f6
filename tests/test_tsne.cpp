// Exact t-SNE: joint probabilities and the gradient against scikit-learn's numbers, the gradient
// against finite differences of its KL, and end-to-end behaviour on separated blobs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "analysis/analysis_ops.h"
#include "analysis/cluster_metrics.h"
#include "analysis/kmeans.h"
#include "analysis/tsne.h"
#include "core/error.h"
#include "core/philox.h"

namespace vae {
namespace {

// X (10 × 3) = sin(1.3 i + 0.7 t² + 0.1) + 0.5 cos(0.37 i (t + 1)) as float32, the input the
// stored sklearn numbers were computed from.
std::vector<float> formula_x(int64_t n, int64_t d) {
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < d; ++t) {
      const double di = static_cast<double>(i), dt = static_cast<double>(t);
      x[i * d + t] = static_cast<float>(std::sin(1.3 * di + 0.7 * dt * dt + 0.1) + 0.5 * std::cos(0.37 * di * (dt + 1)));
    }
  return x;
}

// Y (10 × 2) = cos(0.9 j + 1.1 s) (1 + 0.1 j) as float32.
std::vector<float> formula_y(int64_t n) {
  std::vector<float> y(n * 2);
  for (int64_t j = 0; j < n; ++j)
    for (int s = 0; s < 2; ++s) y[j * 2 + s] = static_cast<float>(std::cos(0.9 * j + 1.1 * s) * (1 + 0.1 * j));
  return y;
}

TEST(Tsne, JointProbabilitiesMatchSklearn) {
  // sklearn.manifold._t_sne._joint_probabilities(pairwise_distances(X, squared=True), 3.0, 0),
  // scikit-learn 1.9.1, squareform'ed.
  const std::vector<float> p = tsne_joint_probabilities(formula_x(10, 3), 10, 3, 3.0);
  ASSERT_EQ(p.size(), 100u);
  const double row0[10] = {0.0, 0.011939238750576724, 0.0005014831374312771, 1.5556836183160536e-05,
                           0.00017275212357123013, 0.057331481225680936, 0.011143523590227937,
                           0.0009320150841765495, 4.6772703258010554e-05, 0.0015219616975014282};
  for (int j = 0; j < 10; ++j) EXPECT_NEAR(p[j], row0[j], 2e-6 * row0[j]) << "P[0," << j << "]";
  EXPECT_NEAR(p[3 * 10 + 7], 0.01511146848135174, 2e-8);
  EXPECT_NEAR(p[9 * 10 + 5], 0.007773325392259325, 2e-8);
  double sum = 0;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(p[i * 10 + i], 0.0f);
    for (int j = 0; j < 10; ++j) {
      sum += p[i * 10 + j];
      EXPECT_EQ(p[i * 10 + j], p[j * 10 + i]);
    }
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
}

TEST(Tsne, GradientAndKlMatchSklearn) {
  // sklearn.manifold._t_sne._kl_divergence(Y, P·exaggeration, 1, 10, 2) with the P above.
  auto ops = make_cpu_analysis_ops();
  const std::vector<float> p = tsne_joint_probabilities(formula_x(10, 3), 10, 3, 3.0);
  const std::vector<float> y = formula_y(10);
  std::vector<float> g(20);
  struct Want {
    float ex;
    double kl, g0x, g0y, g7x, g7y;
  };
  for (const Want& w : {Want{1.0f, 1.3055128900957549, 0.08950357884168625, -0.07422065734863281,
                             -0.020923789590597153, 0.011006584390997887},
                        Want{12.0f, 45.48503447860507, 1.1996783018112183, -0.6041442155838013,
                             1.0738465785980225, 0.4931911528110504}}) {
    const double kl = ops->tsne_gradient(p.data(), y.data(), 10, w.ex, g.data(), true);
    EXPECT_NEAR(kl, w.kl, 1e-5 * w.kl) << "exaggeration " << w.ex;
    EXPECT_NEAR(g[0], w.g0x, 1e-5) << "exaggeration " << w.ex;
    EXPECT_NEAR(g[1], w.g0y, 1e-5);
    EXPECT_NEAR(g[14], w.g7x, 1e-5);
    EXPECT_NEAR(g[15], w.g7y, 1e-5);
    // Without the KL: NaN, and the very same gradient.
    std::vector<float> g2(20);
    EXPECT_TRUE(std::isnan(ops->tsne_gradient(p.data(), y.data(), 10, w.ex, g2.data(), false)));
    EXPECT_EQ(g2, g);
  }
}

TEST(Tsne, GradientIsTheDerivativeOfKl) {
  auto ops = make_cpu_analysis_ops();
  const int64_t n = 25;
  const std::vector<float> p = tsne_joint_probabilities(formula_x(n, 4), n, 4, 5.0);
  std::vector<float> y(2 * n);
  for (int64_t t = 0; t < 2 * n; ++t) y[t] = philox_normal(3, 4, t);
  std::vector<float> g(2 * n), scratch(2 * n);
  ops->tsne_gradient(p.data(), y.data(), n, 1.0f, g.data(), true);
  const float h = 1e-2f;
  for (int64_t t : {0, 7, 20, 49}) {
    std::vector<float> yp = y, ym = y;
    yp[t] += h;
    ym[t] -= h;
    const double kp = ops->tsne_gradient(p.data(), yp.data(), n, 1.0f, scratch.data(), true);
    const double km = ops->tsne_gradient(p.data(), ym.data(), n, 1.0f, scratch.data(), true);
    const double fd = (kp - km) / (static_cast<double>(yp[t]) - ym[t]);
    EXPECT_NEAR(g[t], fd, 2e-3 * (1.0 + std::fabs(fd))) << "coordinate " << t;
  }
}

// The CPU gradient splits its i < j pair loop into bands of rows, each with its own partial
// sums: against the textbook double sum over ordered pairs, dC/dy_i = 4 Σ_j (p_ij − q_ij) w_ij
// (y_i − y_j), at sizes of one band (2, 3 and 182 points) and of 14 (700 points).
TEST(Tsne, BandedGradientIsTheSumOverEveryPair) {
  auto ops = make_cpu_analysis_ops();
  for (int64_t n : {2, 3, 182, 700}) {
    std::vector<float> p(n * n);
    double total = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) {
        const float v = 0.1f + std::fabs(philox_normal(5, 1, static_cast<uint64_t>(i * n + j)));
        p[i * n + j] = p[j * n + i] = v;
        total += 2.0 * v;
      }
    for (float& v : p) v = static_cast<float>(v / total);
    std::vector<float> y(2 * n), g(2 * n, std::nanf(""));
    for (int64_t t = 0; t < 2 * n; ++t) y[t] = 3.0f * philox_normal(6, 2, static_cast<uint64_t>(t));
    const float ex = 4.0f;
    const double kl = ops->tsne_gradient(p.data(), y.data(), n, ex, g.data(), true);
    double z = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        if (i != j) z += 1.0 / (1.0 + std::pow(y[2 * i] - y[2 * j], 2) + std::pow(y[2 * i + 1] - y[2 * j + 1], 2));
    double want_kl = 0;
    for (int64_t i = 0; i < n; ++i) {
      double gx = 0, gy = 0;
      for (int64_t j = 0; j < n; ++j) {
        if (i == j) continue;
        const double a = static_cast<double>(y[2 * i]) - y[2 * j], b = static_cast<double>(y[2 * i + 1]) - y[2 * j + 1];
        const double w = 1.0 / (1.0 + a * a + b * b), q = std::max(w / z, DBL_EPSILON), pij = ex * p[i * n + j];
        gx += 4.0 * (pij - q) * w * a;
        gy += 4.0 * (pij - q) * w * b;
        want_kl += pij * std::log(std::max(pij, DBL_EPSILON) / q);
      }
      ASSERT_NEAR(g[2 * i], gx, 1e-6 * (1.0 + std::fabs(gx))) << "n " << n << " row " << i;
      ASSERT_NEAR(g[2 * i + 1], gy, 1e-6 * (1.0 + std::fabs(gy))) << "n " << n << " row " << i;
    }
    EXPECT_NEAR(kl, want_kl, 1e-9 * std::fabs(want_kl)) << "n " << n;
    // Called again: the same bits (partial sums in a fixed order, whichever thread ran a band).
    std::vector<float> g2(2 * n);
    EXPECT_EQ(ops->tsne_gradient(p.data(), y.data(), n, ex, g2.data(), true), kl);
    EXPECT_EQ(g2, g);
  }
}

struct Blobs {
  std::vector<float> x;
  std::vector<int32_t> truth;
};

// 3 × 60 points in 10-D: blob c centred at 8·e_c, unit noise.
Blobs blobs10() {
  Blobs b;
  const int64_t n = 180, d = 10;
  b.x.resize(n * d);
  b.truth.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % 3);
    b.truth[i] = c;
    for (int64_t t = 0; t < d; ++t)
      b.x[i * d + t] = (t == c ? 8.0f : 0.0f) + philox_normal(21, 0, static_cast<uint64_t>(i * d + t));
  }
  return b;
}

TEST(Tsne, SeparatedBlobsStaySeparated) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = blobs10();
  TsneOptions o;
  o.seed = 3;
  const TsneResult r = tsne(*ops, b.x, 180, 10, o);
  ASSERT_EQ(r.n, 180);
  ASSERT_EQ(r.y.size(), 360u);
  EXPECT_EQ(r.indices.size(), 180u);
  EXPECT_EQ(r.indices.back(), 179);
  EXPECT_DOUBLE_EQ(r.learning_rate, 50.0);  // 'auto': max(180 / 12 / 4, 50)
  for (float v : r.y) ASSERT_TRUE(std::isfinite(v));

  EXPECT_GE(trustworthiness(b.x, 10, r.y, 2, 5), 0.9);
  KMeansOptions ko;
  ko.k = 3;
  const KMeansResult km = kmeans(*ops, r.y, 180, 2, ko);
  EXPECT_GE(adjusted_rand_index(km.labels, b.truth), 0.95);

  // History: every 50 iterations up to the end; after early exaggeration the (true) KL only
  // goes down, give or take optimiser jitter.
  ASSERT_GE(r.kl_history.size(), 6u);
  EXPECT_EQ(r.kl_history.front().iteration, 50);
  EXPECT_EQ(r.kl_history.back().iteration, r.iterations);
  EXPECT_EQ(r.kl_history.back().kl, r.kl_divergence);
  std::vector<double> after;
  for (const auto& h : r.kl_history)
    if (h.iteration > 250) after.push_back(h.kl);
  ASSERT_GE(after.size(), 3u);
  EXPECT_LT(after.back(), after.front());
  for (size_t i = 1; i < after.size(); ++i) EXPECT_LE(after[i], after[i - 1] + 1e-3) << "checkpoint " << i;
  EXPECT_GT(r.kl_divergence, 0.0);
  EXPECT_LT(r.kl_divergence, 2.0);
}

TEST(Tsne, DeterministicForASeedAndSubsamples) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = blobs10();
  TsneOptions o;
  o.iterations = 300;
  o.perplexity = 10;
  o.max_points = 70;
  o.seed = 8;
  const TsneResult r1 = tsne(*ops, b.x, 180, 10, o);
  const TsneResult r2 = tsne(*ops, b.x, 180, 10, o);
  EXPECT_EQ(r1.y, r2.y);
  EXPECT_EQ(r1.indices, r2.indices);
  ASSERT_EQ(r1.n, 70);
  ASSERT_EQ(r1.indices.size(), 70u);
  EXPECT_TRUE(std::is_sorted(r1.indices.begin(), r1.indices.end()));
  EXPECT_EQ(std::set<int32_t>(r1.indices.begin(), r1.indices.end()).size(), 70u);
  EXPECT_GE(r1.indices.front(), 0);
  EXPECT_LT(r1.indices.back(), 180);
  EXPECT_EQ(r1.y.size(), 140u);
  EXPECT_EQ(r1.iterations, 300);
  // The subsample is the documented helper's, and depends on the seed.
  EXPECT_EQ(tsne_subsample(180, 70, 8), r1.indices);
  EXPECT_NE(tsne_subsample(180, 70, 9), r1.indices);
  EXPECT_EQ(tsne_subsample(50, 70, 8).size(), 50u);
  EXPECT_EQ(tsne_subsample(500, 0, 8).size(), 500u);  // no cap
  o.seed = 9;
  EXPECT_NE(tsne(*ops, b.x, 180, 10, o).y, r1.y);
}

// Forwards to the CPU ops and records the calls a device twin relies on.
class RecordingOps : public AnalysisOps {
 public:
  std::string name() const override { return "recording"; }
  void kmeans_assign(const float* x, int64_t n, int64_t d, const float* c, int k, int32_t* labels,
                     float* dist2) override {
    cpu_->kmeans_assign(x, n, d, c, k, labels, dist2);
  }
  void kmeans_begin(const float* x, int64_t n, int64_t d) override { cpu_->kmeans_begin(x, n, d); }
  void kmeans_end() override { cpu_->kmeans_end(); }
  int64_t kmeans_step(const float* c, int k, double* sums, int64_t* counts) override {
    return cpu_->kmeans_step(c, k, sums, counts);
  }
  void kmeans_step_labels(int32_t* labels) override { cpu_->kmeans_step_labels(labels); }
  double tsne_gradient(const float* p, const float* y, int64_t n, float ex, float* grad,
                       bool compute_kl) override {
    ++gradients;
    kl_calls += compute_kl;
    if (p != begun_p || n != begun_n || !open) ++mismatches;
    exaggerations.insert(ex);
    return cpu_->tsne_gradient(p, y, n, ex, grad, compute_kl);
  }
  void tsne_begin(const float* p, int64_t n) override {
    ++begins;
    open = true;
    begun_p = p;
    begun_n = n;
  }
  void tsne_end() override {
    ++ends;
    open = false;
  }
  int begins = 0, ends = 0, gradients = 0, mismatches = 0, kl_calls = 0;
  bool open = false;
  const float* begun_p = nullptr;
  int64_t begun_n = 0;
  std::set<float> exaggerations;

 private:
  std::unique_ptr<AnalysisOps> cpu_ = make_cpu_analysis_ops();
};

TEST(Tsne, BracketsGradientsWithBeginEndForDeviceTwins) {
  RecordingOps ops;
  TsneOptions o;
  o.perplexity = 5;
  o.iterations = 120;
  o.exaggeration_iterations = 40;
  const TsneResult r = tsne(ops, formula_x(30, 3), 30, 3, o);
  EXPECT_EQ(ops.begins, 1);
  EXPECT_EQ(ops.ends, 1);
  EXPECT_EQ(ops.gradients, 120);
  // KL at iterations 40 (end of exaggeration), 50, 100 and 120 (the last) only.
  EXPECT_EQ(ops.kl_calls, 4);
  ASSERT_EQ(r.kl_history.size(), 3u);
  EXPECT_EQ(r.kl_history[2].iteration, 120);
  EXPECT_TRUE(std::isfinite(r.kl_divergence));
  EXPECT_EQ(r.iterations, 120);
  EXPECT_EQ(ops.mismatches, 0);
  EXPECT_EQ(ops.begun_n, 30);
  EXPECT_EQ(ops.exaggerations, (std::set<float>{1.0f, 12.0f}));
}

TEST(Tsne, FromProbabilitiesIsTheOptimisationOfTsne) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = blobs10();
  TsneOptions o;
  o.iterations = 120;
  o.exaggeration_iterations = 60;
  o.perplexity = 12;
  o.seed = 4;
  const TsneResult full = tsne(*ops, b.x, 180, 10, o);
  const std::vector<float> p = tsne_joint_probabilities(b.x, 180, 10, o.perplexity);
  RecordingOps rec;
  const TsneResult part = tsne_from_probabilities(rec, p, 180, o);
  EXPECT_EQ(part.y, full.y);
  EXPECT_EQ(part.kl_divergence, full.kl_divergence);
  EXPECT_EQ(part.iterations, 120);
  EXPECT_EQ(part.indices, full.indices);  // 0 … n − 1: no subsample
  EXPECT_EQ(rec.begins, 1);
  EXPECT_EQ(rec.ends, 1);
  EXPECT_EQ(rec.begun_p, p.data());
  EXPECT_EQ(rec.mismatches, 0);
  // Another seed, another start: the result is not a constant.
  o.seed = 5;
  EXPECT_NE(tsne_from_probabilities(*ops, p, 180, o).y, full.y);
  EXPECT_THROW(tsne_from_probabilities(*ops, p, 179, o), VaeError);  // P is not 179 × 179
  o.iterations = 0;
  EXPECT_THROW(tsne_from_probabilities(*ops, p, 180, o), UsageError);
}

TEST(Tsne, RejectsBadOptions) {
  auto ops = make_cpu_analysis_ops();
  const std::vector<float> x = formula_x(20, 3);
  TsneOptions o;  // perplexity 30 ≥ 20 points
  try {
    tsne(*ops, x, 20, 3, o);
    ADD_FAILURE() << "perplexity 30 accepted for 20 points";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("perplexity"), std::string::npos) << e.what();
  }
  o.perplexity = 5;
  o.iterations = 0;
  EXPECT_THROW(tsne(*ops, x, 20, 3, o), UsageError);
  o.iterations = 10;
  EXPECT_THROW(tsne(*ops, x, 1, 3, o), VaeError);   // x.size() ≠ n·d
  EXPECT_THROW(tsne(*ops, {1, 2, 3}, 1, 3, o), UsageError);  // one point
  auto bad = x;
  bad[4] = std::nanf("");
  EXPECT_THROW(tsne(*ops, bad, 20, 3, o), VaeError);
  // Within bounds it runs.
  const TsneResult r = tsne(*ops, x, 20, 3, o);
  EXPECT_EQ(r.iterations, 10);
  EXPECT_EQ(r.kl_history.size(), 1u);
}

}  // namespace
}  // namespace vae
