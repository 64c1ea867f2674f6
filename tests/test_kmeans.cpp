// K-Means (k-means++, Lloyd, restarts, empty-cluster reseeding), the assignment kernel against a
// naive loop, and the cluster-quality metrics against hand-computed and scikit-learn values.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "analysis/analysis_ops.h"
#include "analysis/cluster_metrics.h"
#include "analysis/kmeans.h"
#include "core/error.h"
#include "core/philox.h"

namespace vae {
namespace {

struct Blobs {
  std::vector<float> x;
  std::vector<int32_t> truth;
  int64_t n = 0, d = 0;
};

// `per` points around each centre, N(0, sigma²) noise from Philox; blob order is interleaved
// so that index order carries no hint.
Blobs make_blobs(const std::vector<std::vector<float>>& centres, int per, float sigma, uint64_t seed) {
  Blobs b;
  b.d = static_cast<int64_t>(centres[0].size());
  b.n = static_cast<int64_t>(centres.size()) * per;
  b.x.resize(b.n * b.d);
  b.truth.resize(b.n);
  for (int64_t i = 0; i < b.n; ++i) {
    const int c = static_cast<int>(i % centres.size());
    b.truth[i] = c;
    for (int64_t t = 0; t < b.d; ++t)
      b.x[i * b.d + t] = centres[c][t] + sigma * philox_normal(seed, 99, static_cast<uint64_t>(i * b.d + t));
  }
  return b;
}

Blobs three_blobs() {
  return make_blobs({{0, 0, 0, 0, 0}, {10, 0, 0, 0, 0}, {0, 10, 0, 0, 0}}, 50, 1.0f, 7);
}

double direct_inertia(const Blobs& b, const KMeansResult& r) {
  double s = 0;
  for (int64_t i = 0; i < b.n; ++i)
    for (int64_t t = 0; t < b.d; ++t) {
      const double e = static_cast<double>(b.x[i * b.d + t]) - r.centers[r.labels[i] * b.d + t];
      s += e * e;
    }
  return s;
}

TEST(KMeans, RecoversSeparatedBlobs) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = three_blobs();
  KMeansOptions o;
  o.k = 3;
  const KMeansResult r = kmeans(*ops, b.x, b.n, b.d, o);
  ASSERT_EQ(r.labels.size(), static_cast<size_t>(b.n));
  ASSERT_EQ(r.centers.size(), static_cast<size_t>(3 * b.d));
  EXPECT_EQ(r.k, 3);
  EXPECT_EQ(r.d, b.d);
  EXPECT_DOUBLE_EQ(adjusted_rand_index(r.labels, b.truth), 1.0);
  EXPECT_NEAR(r.inertia, direct_inertia(b, r), 1e-9 * r.inertia);
  // 150 points × 5 dims of unit noise: inertia ≈ 750 less the fitted means' share.
  EXPECT_GT(r.inertia, 500.0);
  EXPECT_LT(r.inertia, 950.0);
  EXPECT_GE(r.iterations, 1);
  EXPECT_LT(r.iterations, 20);
  // Each centre is the mean of its members.
  for (int c = 0; c < 3; ++c) {
    std::vector<double> mean(b.d, 0.0);
    int cnt = 0;
    for (int64_t i = 0; i < b.n; ++i)
      if (r.labels[i] == c) {
        ++cnt;
        for (int64_t t = 0; t < b.d; ++t) mean[t] += b.x[i * b.d + t];
      }
    ASSERT_EQ(cnt, 50);
    for (int64_t t = 0; t < b.d; ++t) EXPECT_NEAR(r.centers[c * b.d + t], mean[t] / cnt, 1e-5);
  }
}

TEST(KMeans, SameSeedSameResultOtherSeedSamePartition) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = make_blobs({{0, 0}, {6, 0}, {0, 6}, {6, 6}}, 30, 1.2f, 3);
  KMeansOptions o;
  o.k = 4;
  o.n_init = 3;
  o.seed = 42;
  const KMeansResult r1 = kmeans(*ops, b.x, b.n, b.d, o);
  const KMeansResult r2 = kmeans(*ops, b.x, b.n, b.d, o);
  EXPECT_EQ(r1.labels, r2.labels);
  EXPECT_EQ(r1.centers, r2.centers);
  EXPECT_EQ(r1.inertia, r2.inertia);
  EXPECT_EQ(r1.best_init, r2.best_init);
  // Another seed starts elsewhere (the seeding depends on it) and finds the same four blobs.
  o.seed = 43;
  const KMeansResult r43 = kmeans(*ops, b.x, b.n, b.d, o);
  EXPECT_DOUBLE_EQ(adjusted_rand_index(r43.labels, r1.labels), 1.0);
  EXPECT_NEAR(r43.inertia, r1.inertia, 1e-6 * r1.inertia);
  const auto c42 = kmeans_plusplus(*ops, b.x, b.n, b.d, 4, 42);
  const auto c43 = kmeans_plusplus(*ops, b.x, b.n, b.d, 4, 43);
  EXPECT_NE(c42, c43);
  EXPECT_EQ(c42, kmeans_plusplus(*ops, b.x, b.n, b.d, 4, 42));
}

TEST(KMeans, PlusPlusPicksDistinctDataPointsSpreadOut) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = three_blobs();
  int spread = 0;
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    const auto c = kmeans_plusplus(*ops, b.x, b.n, b.d, 3, seed);
    std::set<int> blobs_hit;
    for (int j = 0; j < 3; ++j) {
      int64_t found = -1;
      for (int64_t i = 0; i < b.n && found < 0; ++i)
        if (std::equal(&c[j * b.d], &c[(j + 1) * b.d], &b.x[i * b.d])) found = i;
      ASSERT_GE(found, 0) << "centre " << j << " is not a data point (seed " << seed << ")";
      blobs_hit.insert(b.truth[found]);
    }
    spread += blobs_hit.size() == 3;
  }
  // D² sampling with 3 greedy trials on blobs 10σ apart misses a blob with probability ≈ 0.4 %
  // (all trials landing in the ≈ 16 % of potential left in covered blobs); uniform picks
  // would cover all three blobs only 2/9 of the time.
  EXPECT_GE(spread, 48);
}

TEST(KMeans, NInitKeepsTheLowestInertiaRun) {
  auto ops = make_cpu_analysis_ops();
  // Eight overlapping blobs: restarts end in different local optima.
  std::vector<std::vector<float>> centres;
  for (int c = 0; c < 8; ++c) centres.push_back({static_cast<float>(c % 4) * 2.5f, static_cast<float>(c / 4) * 2.5f});
  const Blobs b = make_blobs(centres, 12, 1.0f, 11);
  KMeansOptions o;
  o.k = 8;
  o.n_init = 6;
  o.seed = 5;
  const KMeansResult best = kmeans(*ops, b.x, b.n, b.d, o);
  std::vector<double> inertias;
  for (int run = 0; run < o.n_init; ++run) {
    const auto init = kmeans_plusplus(*ops, b.x, b.n, b.d, o.k, o.seed, run);
    inertias.push_back(kmeans_from_centers(*ops, b.x, b.n, b.d, init, o).inertia);
  }
  const auto mn = std::min_element(inertias.begin(), inertias.end());
  ASSERT_GT(*std::max_element(inertias.begin(), inertias.end()), *mn + 1e-3)
      << "test data too easy: every restart found the same optimum";
  EXPECT_EQ(best.inertia, *mn);
  EXPECT_EQ(best.best_init, static_cast<int>(mn - inertias.begin()));
  o.n_init = 1;
  EXPECT_EQ(kmeans(*ops, b.x, b.n, b.d, o).inertia, inertias[0]);
}

TEST(KMeans, EmptyClusterIsReseededFromTheFarthestPoint) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = three_blobs();
  // Two centres inside blob 0 and one so far away that no point picks it.
  const std::vector<float> init = {0.1f, 0.1f, 0, 0, 0, -0.1f, -0.1f, 0, 0, 0,
                                   -1000, -1000, -1000, -1000, -1000};
  KMeansOptions o;
  o.max_iter = 1;
  const KMeansResult one = kmeans_from_centers(*ops, b.x, b.n, b.d, init, o);
  // The expected donor: the point farthest from its nearest initial centre.
  int64_t far = -1;
  double far_d = -1;
  for (int64_t i = 0; i < b.n; ++i) {
    double best = std::numeric_limits<double>::max();
    for (int j = 0; j < 2; ++j) {
      double s = 0;
      for (int64_t t = 0; t < b.d; ++t) {
        const double e = static_cast<double>(b.x[i * b.d + t]) - init[j * b.d + t];
        s += e * e;
      }
      best = std::min(best, s);
    }
    if (best > far_d) {
      far_d = best;
      far = i;
    }
  }
  for (int64_t t = 0; t < b.d; ++t) EXPECT_EQ(one.centers[2 * b.d + t], b.x[far * b.d + t]);
  EXPECT_EQ(one.iterations, 1);

  o.max_iter = 100;
  const KMeansResult full = kmeans_from_centers(*ops, b.x, b.n, b.d, init, o);
  EXPECT_DOUBLE_EQ(adjusted_rand_index(full.labels, b.truth), 1.0);
  for (int c = 0; c < 3; ++c) EXPECT_EQ(std::count(full.labels.begin(), full.labels.end(), c), 50);
}

TEST(KMeans, FromCentersConvergesToAFixedPoint) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = make_blobs({{0, 0, 0}, {3, 3, 0}}, 40, 1.5f, 9);
  std::vector<float> init(b.x.begin(), b.x.begin() + 2 * b.d);  // the first two points
  KMeansOptions o;
  o.tol = 0;
  o.max_iter = 300;
  const KMeansResult r = kmeans_from_centers(*ops, b.x, b.n, b.d, init, o);
  EXPECT_LT(r.iterations, 300);
  // Fixed point: labels are the nearest centres, centres the means of their labels.
  std::vector<int32_t> lab(b.n);
  ops->kmeans_assign(b.x.data(), b.n, b.d, r.centers.data(), 2, lab.data(), nullptr);
  EXPECT_EQ(lab, r.labels);
  EXPECT_NEAR(r.inertia, direct_inertia(b, r), 1e-9 * r.inertia);
}

TEST(KMeans, RejectsBadInput) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = three_blobs();
  KMeansOptions o;
  o.k = 0;
  EXPECT_THROW(kmeans(*ops, b.x, b.n, b.d, o), UsageError);
  o.k = 151;
  EXPECT_THROW(kmeans(*ops, b.x, b.n, b.d, o), UsageError);
  o.k = 3;
  o.n_init = 0;
  EXPECT_THROW(kmeans(*ops, b.x, b.n, b.d, o), UsageError);
  o.n_init = 1;
  o.max_iter = 0;
  EXPECT_THROW(kmeans(*ops, b.x, b.n, b.d, o), UsageError);
  o.max_iter = 10;
  EXPECT_THROW(kmeans(*ops, b.x, b.n - 1, b.d, o), VaeError);
  auto bad = b.x;
  bad[17] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(kmeans(*ops, bad, b.n, b.d, o), VaeError);
  bad[17] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(kmeans(*ops, bad, b.n, b.d, o), VaeError);
  EXPECT_THROW(kmeans_from_centers(*ops, b.x, b.n, b.d, {1.f, 2.f}, o), VaeError);  // not k × d
  // k = n works: every point its own centre, inertia 0.
  o.k = 4;
  const std::vector<float> four = {0, 0, 1, 0, 0, 1, 5, 5};
  const KMeansResult r = kmeans(*ops, four, 4, 2, o);
  EXPECT_EQ(r.inertia, 0.0);
  EXPECT_EQ(std::set<int32_t>(r.labels.begin(), r.labels.end()).size(), 4u);
}

TEST(KMeans, AssignMatchesNaiveDistances) {
  auto ops = make_cpu_analysis_ops();
  const int64_t n = 1500, d = 7;
  const int k = 13;
  std::vector<float> x(n * d), c(k * d);
  for (int64_t i = 0; i < n * d; ++i) x[i] = 3.0f * philox_normal(5, 1, i);
  for (int64_t i = 0; i < k * d; ++i) c[i] = 3.0f * philox_normal(5, 2, i);
  std::vector<int32_t> lab(n);
  std::vector<float> d2(n);
  ops->kmeans_assign(x.data(), n, d, c.data(), k, lab.data(), d2.data());
  int near_ties = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> dist(k);
    for (int j = 0; j < k; ++j) {
      double s = 0;
      for (int64_t t = 0; t < d; ++t) {
        const double e = static_cast<double>(x[i * d + t]) - c[j * d + t];
        s += e * e;
      }
      dist[j] = s;
    }
    const int best = static_cast<int>(std::min_element(dist.begin(), dist.end()) - dist.begin());
    EXPECT_NEAR(d2[i], dist[best], 1e-4 * (1.0 + dist[best])) << "row " << i;
    if (lab[i] != best) {
      // Only a float near-tie may flip the winner.
      ++near_ties;
      EXPECT_NEAR(dist[lab[i]], dist[best], 1e-4 * (1.0 + dist[best])) << "row " << i;
    }
  }
  EXPECT_LE(near_ties, 2);
}

TEST(KMeans, AssignTiesGoToLowerCentreAndDistancesClampAtZero) {
  auto ops = make_cpu_analysis_ops();
  // Centres 1 and 2 identical; point 0 sits on them, point 1 is equidistant from 0 and 3.
  const std::vector<float> c = {-1, 0, 1e3f, 1e3f, 1e3f, 1e3f, 1, 0};
  const std::vector<float> x = {1e3f, 1e3f, 0, 0, 0.5f, 0.25f};
  std::vector<int32_t> lab(3, -1);
  std::vector<float> d2(3, -1);
  ops->kmeans_assign(x.data(), 3, 2, c.data(), 4, lab.data(), d2.data());
  EXPECT_EQ(lab[0], 1);
  EXPECT_GE(d2[0], 0.0f);  // ||x||² + ||c||² − 2x·c cancels to ≈ 0, never below
  EXPECT_LE(d2[0], 1.0f);  // float cancellation at magnitude 2e6
  EXPECT_EQ(lab[1], 0);
  EXPECT_FLOAT_EQ(d2[1], 1.0f);
  EXPECT_EQ(lab[2], 3);
  EXPECT_FLOAT_EQ(d2[2], 0.3125f);
}

// Naive nearest centre in double (first minimum) for every row.
std::vector<int32_t> naive_labels(const std::vector<float>& x, int64_t n, int64_t d,
                                  const std::vector<float>& c, int k) {
  std::vector<int32_t> lab(n);
  for (int64_t i = 0; i < n; ++i) {
    double best = std::numeric_limits<double>::max();
    for (int j = 0; j < k; ++j) {
      double s = 0;
      for (int64_t t = 0; t < d; ++t) {
        const double e = static_cast<double>(x[i * d + t]) - c[j * d + t];
        s += e * e;
      }
      if (s < best) {
        best = s;
        lab[i] = j;
      }
    }
  }
  return lab;
}

TEST(KMeans, StepSumsCountsAndChangesMatchANaiveLloydStep) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = make_blobs({{0, 0, 0, 0}, {9, 0, 0, 0}, {0, 9, 0, 0}, {0, 0, 9, 0}}, 70, 1.0f, 17);
  const int k = 4;
  // Centres near (not at) the blob centres, listed in another order than the blobs.
  const std::vector<float> c1 = {0.5f, 8.5f, 0, 0, 1, 0, 0, 0.5f, 0, 0, 9.5f, 0, 8, 1, 0, 0};
  const std::vector<int32_t> want1 = naive_labels(b.x, b.n, b.d, c1, k);
  ops->kmeans_begin(b.x.data(), b.n, b.d);
  std::vector<double> sums(k * b.d, -1.0);
  std::vector<int64_t> counts(k, -1);
  EXPECT_EQ(ops->kmeans_step(c1.data(), k, sums.data(), counts.data()), b.n);  // first step: all new
  std::vector<int32_t> lab(b.n, -1);
  ops->kmeans_step_labels(lab.data());
  EXPECT_EQ(lab, want1);
  for (int j = 0; j < k; ++j) {
    EXPECT_EQ(counts[j], std::count(want1.begin(), want1.end(), j)) << "cluster " << j;
    for (int64_t t = 0; t < b.d; ++t) {
      double s = 0;
      for (int64_t i = 0; i < b.n; ++i)
        if (want1[i] == j) s += b.x[i * b.d + t];
      EXPECT_NEAR(sums[j * b.d + t], s, 1e-9 * (1.0 + std::fabs(s))) << "cluster " << j << " column " << t;
    }
  }
  // The same centres again: nothing changes. Swapping two centres relabels exactly their members.
  EXPECT_EQ(ops->kmeans_step(c1.data(), k, sums.data(), counts.data()), 0);
  std::vector<float> c2 = c1;
  std::swap_ranges(c2.begin(), c2.begin() + b.d, c2.begin() + 3 * b.d);
  const int64_t moved = std::count(want1.begin(), want1.end(), 0) + std::count(want1.begin(), want1.end(), 3);
  ASSERT_GT(moved, 0);
  EXPECT_EQ(ops->kmeans_step(c2.data(), k, sums.data(), counts.data()), moved);
  ops->kmeans_step_labels(lab.data());
  EXPECT_EQ(lab, naive_labels(b.x, b.n, b.d, c2, k));
  // Inside the session, kmeans_assign on the session's x gives the step's labels.
  std::vector<int32_t> assigned(b.n, -1);
  ops->kmeans_assign(b.x.data(), b.n, b.d, c2.data(), k, assigned.data(), nullptr);
  EXPECT_EQ(assigned, lab);
  ops->kmeans_end();
}

TEST(KMeans, StepNeedsASession) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = three_blobs();
  std::vector<double> sums(3 * b.d);
  std::vector<int64_t> counts(3);
  std::vector<int32_t> lab(b.n);
  EXPECT_THROW(ops->kmeans_step(b.x.data(), 3, sums.data(), counts.data()), VaeError);
  ops->kmeans_begin(b.x.data(), b.n, b.d);
  EXPECT_THROW(ops->kmeans_step_labels(lab.data()), VaeError);  // no step yet
  EXPECT_THROW(ops->kmeans_begin(b.x.data(), b.n, b.d), VaeError);  // sessions do not nest
  EXPECT_EQ(ops->kmeans_step(b.x.data(), 3, sums.data(), counts.data()), b.n);
  ops->kmeans_end();
  EXPECT_THROW(ops->kmeans_step(b.x.data(), 3, sums.data(), counts.data()), VaeError);
  // A new session starts from scratch: its first step counts every label again.
  ops->kmeans_begin(b.x.data(), b.n, b.d);
  EXPECT_EQ(ops->kmeans_step(b.x.data(), 3, sums.data(), counts.data()), b.n);
  ops->kmeans_end();
}

// Forwards to the CPU ops and records what a device twin relies on: one session per driver
// call, every assignment on the session's x, the session ended even when a step throws.
class RecordingKMeansOps : public AnalysisOps {
 public:
  std::string name() const override { return "recording"; }
  void kmeans_assign(const float* x, int64_t n, int64_t d, const float* c, int k, int32_t* labels,
                     float* dist2) override {
    ++assigns;
    if (!open || x != x_ || n != n_ || d != d_) ++foreign_assigns;
    cpu_->kmeans_assign(x, n, d, c, k, labels, dist2);
  }
  void kmeans_begin(const float* x, int64_t n, int64_t d) override {
    ++begins;
    open = true;
    x_ = x;
    n_ = n;
    d_ = d;
    cpu_->kmeans_begin(x, n, d);
  }
  void kmeans_end() override {
    ++ends;
    open = false;
    cpu_->kmeans_end();
  }
  int64_t kmeans_step(const float* c, int k, double* sums, int64_t* counts) override {
    ++steps;
    if (!open) ++foreign_assigns;
    if (throw_at_step > 0 && steps == throw_at_step) throw std::runtime_error("injected");
    return cpu_->kmeans_step(c, k, sums, counts);
  }
  void kmeans_step_labels(int32_t* labels) override { cpu_->kmeans_step_labels(labels); }
  double tsne_gradient(const float* p, const float* y, int64_t n, float ex, float* grad, bool kl) override {
    return cpu_->tsne_gradient(p, y, n, ex, grad, kl);
  }
  int begins = 0, ends = 0, assigns = 0, foreign_assigns = 0, steps = 0, throw_at_step = 0;
  bool open = false;

 private:
  const float* x_ = nullptr;
  int64_t n_ = 0, d_ = 0;
  std::unique_ptr<AnalysisOps> cpu_ = make_cpu_analysis_ops();
};

TEST(KMeans, DriversRunInOneSessionOnTheResidentData) {
  const Blobs b = three_blobs();
  KMeansOptions o;
  o.k = 3;
  o.n_init = 4;
  RecordingKMeansOps rec;
  auto cpu = make_cpu_analysis_ops();
  const KMeansResult r = kmeans(rec, b.x, b.n, b.d, o);
  EXPECT_EQ(rec.begins, 1);
  EXPECT_EQ(rec.ends, 1);
  EXPECT_FALSE(rec.open);
  EXPECT_EQ(rec.foreign_assigns, 0);
  EXPECT_GE(rec.steps, o.n_init * 2);  // a strict convergence needs two steps at least
  // k-means++ with 3 trials per extra centre: 1 + 2·3 assignments per restart.
  EXPECT_GE(rec.assigns, o.n_init * 7);
  // Same result as the plain CPU ops.
  const KMeansResult ref = kmeans(*cpu, b.x, b.n, b.d, o);
  EXPECT_EQ(r.labels, ref.labels);
  EXPECT_EQ(r.centers, ref.centers);
  EXPECT_EQ(r.iterations, ref.iterations);

  RecordingKMeansOps pp;
  kmeans_plusplus(pp, b.x, b.n, b.d, 3, 1);
  EXPECT_EQ(pp.begins, 1);
  EXPECT_EQ(pp.ends, 1);
  EXPECT_EQ(pp.foreign_assigns, 0);

  RecordingKMeansOps thrower;
  thrower.throw_at_step = 1;
  EXPECT_THROW(kmeans_from_centers(thrower, b.x, b.n, b.d, r.centers, o), std::runtime_error);
  EXPECT_EQ(thrower.begins, 1);
  EXPECT_EQ(thrower.ends, 1);  // ended on the way out
}

TEST(KMeans, AnalysisOpsFactory) {
  EXPECT_EQ(make_analysis_ops(false)->name(), "cpu");
}

// ---- cluster metrics --------------------------------------------------------------------

TEST(ClusterMetrics, AdjustedRandIndexByHand) {
  // a = {0,0,1,1}, b = {0,0,1,2}: Σ C(n_ij,2) = 1, Σ C(a_i,2) = 2, Σ C(b_j,2) = 1, C(4,2) = 6;
  // expected = 2·1/6 = 1/3, max = (2+1)/2 = 3/2 → ARI = (1 − 1/3) / (3/2 − 1/3) = 4/7.
  EXPECT_NEAR(adjusted_rand_index({0, 0, 1, 1}, {0, 0, 1, 2}), 4.0 / 7.0, 1e-15);
  // Relabelling does not matter; identical partitions score 1.
  EXPECT_DOUBLE_EQ(adjusted_rand_index({3, 3, 7, 7, 9}, {0, 0, 1, 1, 2}), 1.0);
  // Degenerate cases score 1, as sklearn: one cluster each, all singletons, empty input.
  EXPECT_DOUBLE_EQ(adjusted_rand_index({1, 1, 1}, {4, 4, 4}), 1.0);
  EXPECT_DOUBLE_EQ(adjusted_rand_index({0, 1, 2}, {5, 6, 7}), 1.0);
  EXPECT_DOUBLE_EQ(adjusted_rand_index({}, {}), 1.0);
  // Symmetric.
  EXPECT_DOUBLE_EQ(adjusted_rand_index({0, 0, 1, 2}, {0, 0, 1, 1}), adjusted_rand_index({0, 0, 1, 1}, {0, 0, 1, 2}));
  EXPECT_THROW(adjusted_rand_index({0, 1}, {0}), VaeError);
}

TEST(ClusterMetrics, AdjustedRandIndexMatchesSklearn) {
  // sklearn.metrics.adjusted_rand_score (scikit-learn 1.9.1) on these inputs.
  struct Case {
    std::vector<int32_t> a, b;
    double want;
  };
  const std::vector<Case> cases = {
      {{0, 0, 0, 1, 1, 1}, {0, 0, 1, 1, 2, 2}, 0.24242424242424243},
      {{1, 1, 0, 0, 2, 2, 2, 3}, {5, 5, 5, 7, 7, 9, 9, 9}, 0.15789473684210525},
      {{0, 1, 2, 0, 1, 2, 0, 1, 2, 0}, {0, 0, 0, 1, 1, 1, 2, 2, 2, 2}, -0.25},
      {{-1, 3, 3, -1, 8, 8, 8, -1, 3, 3, 8, -1}, {2, 2, 0, 0, 1, 1, 1, 1, 2, 0, 0, 2}, 0.08333333333333333},
  };
  for (const auto& c : cases) EXPECT_NEAR(adjusted_rand_index(c.a, c.b), c.want, 1e-14);
}

// X (n × dx) and Y (n × dy) by formula; the same formula fed sklearn (float32 arrays):
// X = sin(1.3 i + 0.7 t² + 0.1) + 0.5 cos(0.37 i (t + 1)), Y = X[:, :dy] + 0.3 sin(2.1 i + 1.7 s).
void formula_xy(int64_t n, int64_t dx, int64_t dy, std::vector<float>& x, std::vector<float>& y) {
  x.resize(n * dx);
  y.resize(n * dy);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t t = 0; t < dx; ++t) {
      const double di = static_cast<double>(i), dt = static_cast<double>(t);
      x[i * dx + t] = static_cast<float>(std::sin(1.3 * di + 0.7 * dt * dt + 0.1) + 0.5 * std::cos(0.37 * di * (dt + 1)));
    }
    for (int64_t s = 0; s < dy; ++s)
      y[i * dy + s] = static_cast<float>(static_cast<double>(x[i * dx + s]) + 0.3 * std::sin(2.1 * i + 1.7 * s));
  }
}

TEST(ClusterMetrics, TrustworthinessMatchesSklearn) {
  // sklearn.manifold.trustworthiness(X, Y, n_neighbors=k), scikit-learn 1.9.1.
  struct Case {
    int64_t n, dx, dy;
    int k;
    double want;
  };
  for (const Case& c : {Case{40, 6, 2, 5, 0.818125}, Case{60, 10, 2, 3, 0.7913131313131313},
                        Case{30, 4, 3, 7, 0.9418546365914787}}) {
    std::vector<float> x, y;
    formula_xy(c.n, c.dx, c.dy, x, y);
    EXPECT_NEAR(trustworthiness(x, c.dx, y, c.dy, c.k), c.want, 1e-12) << "n = " << c.n;
  }
}

TEST(ClusterMetrics, TrustworthinessBoundsAndErrors) {
  std::vector<float> x, y;
  formula_xy(30, 4, 2, x, y);
  EXPECT_DOUBLE_EQ(trustworthiness(x, 4, x, 4, 5), 1.0);  // the identity embedding
  // Reversing the neighbourhoods is worse than a noisy projection.
  std::vector<float> flipped(30);
  for (int i = 0; i < 30; ++i) flipped[i] = static_cast<float>(i % 2 ? i : -i);
  EXPECT_LT(trustworthiness(x, 4, flipped, 1, 5), trustworthiness(x, 4, y, 2, 5));
  EXPECT_THROW(trustworthiness(x, 4, y, 2, 15), UsageError);  // ≥ n / 2
  EXPECT_THROW(trustworthiness(x, 4, y, 2, 0), UsageError);
  EXPECT_THROW(trustworthiness(x, 4, std::vector<float>(10), 2, 5), VaeError);
}

// Silhouettes worked out by hand on the line: {0, 1, 5, 6} in clusters {0, 1} and {5, 6}.
// Point 0: a = 1, b = (5 + 6) / 2 = 5.5, s = 4.5 / 5.5; point 1: a = 1, b = 4.5, s = 3.5 / 4.5;
// points 5 and 6 mirror them.
TEST(Silhouette, HandComputedScores) {
  const std::vector<float> line = {0, 1, 5, 6};
  const double want = (2 * (4.5 / 5.5) + 2 * (3.5 / 4.5)) / 4;
  EXPECT_NEAR(silhouette_score(line, 1, {0, 0, 1, 1}), want, 1e-12);
  EXPECT_NEAR(silhouette_score(line, 1, {7, 7, -3, -3}), want, 1e-12);  // label values are names only
  // The same points in 2-D, moved off the axis: distances are Euclidean, not per coordinate.
  const std::vector<float> plane = {0, 3, 0.6f, 3.8f, 3, 7, 3.6f, 7.8f};  // steps of length 1 and 5
  EXPECT_NEAR(silhouette_score(plane, 2, {0, 0, 1, 1}), want, 1e-6);
  // A cluster's only member scores 0: {0, 1, 10} → (0.9 + 8/9 + 0) / 3.
  EXPECT_NEAR(silhouette_score({0, 1, 10}, 1, {0, 0, 1}), (0.9 + 8.0 / 9) / 3, 1e-12);
  // Over a sample the rows are compared among themselves: rows 0, 1, 3 of the line →
  // point 0: a = 1, b = 6; point 1: a = 1, b = 5; point 6 alone in its cluster.
  EXPECT_NEAR(silhouette_score(line, 1, {0, 0, 1, 1}, {0, 1, 3}), (5.0 / 6 + 0.8 + 0) / 3, 1e-12);
  // A wrong partition scores below zero: {0, 5} and {1, 6}.
  EXPECT_LT(silhouette_score(line, 1, {0, 1, 0, 1}), 0.0);
}

TEST(Silhouette, RefusesWhatSklearnRefuses) {
  const std::vector<float> line = {0, 1, 5, 6};
  EXPECT_THROW(silhouette_score(line, 1, {0, 0, 0, 0}), UsageError);   // one cluster
  EXPECT_THROW(silhouette_score(line, 1, {0, 1, 2, 3}), UsageError);   // every row its own
  EXPECT_THROW(silhouette_score(line, 1, {0, 0, 1}), VaeError);        // labels ≠ rows
  EXPECT_THROW(silhouette_score(line, 1, {0, 0, 1, 1}, {0, 4}), VaeError);
  EXPECT_THROW(silhouette_score(line, 1, {0, 0, 1, 1}, {0, 2, 2}), VaeError);  // a row twice
  EXPECT_THROW(silhouette_score({0, 1, NAN, 6}, 1, {0, 0, 1, 1}), VaeError);
}

// Blocks of rows (4 Mi distances each) give what one pass over every pair gives.
TEST(Silhouette, BlockedEqualsANaiveDoubleLoop) {
  const Blobs b = make_blobs({{0, 0, 0}, {4, 0, 0}, {0, 4, 0}}, 1000, 1.5f, 21);  // 3000 rows: 3 blocks
  double naive = 0;
  for (int64_t i = 0; i < b.n; ++i) {
    double sum[3] = {0, 0, 0};
    int64_t size[3] = {0, 0, 0};
    for (int64_t j = 0; j < b.n; ++j) {
      ++size[b.truth[j]];
      if (j == i) continue;
      double d2 = 0;
      for (int64_t t = 0; t < b.d; ++t) {
        const double diff = static_cast<double>(b.x[i * b.d + t]) - b.x[j * b.d + t];
        d2 += diff * diff;
      }
      sum[b.truth[j]] += std::sqrt(d2);
    }
    const int own = b.truth[i];
    const double a = sum[own] / (size[own] - 1);
    double nearest = std::numeric_limits<double>::infinity();
    for (int l = 0; l < 3; ++l)
      if (l != own) nearest = std::min(nearest, sum[l] / size[l]);
    naive += (nearest - a) / std::max(a, nearest);
  }
  naive /= static_cast<double>(b.n);
  EXPECT_NEAR(silhouette_score(b.x, b.d, b.truth), naive, 1e-9);
  EXPECT_GT(naive, 0.2);  // overlapping but real blobs
}

TEST(Silhouette, SampleIsSeededSortedAndCapped) {
  const auto s = silhouette_sample(1000, 100, 5);
  ASSERT_EQ(s.size(), 100u);
  EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  EXPECT_EQ(std::set<int32_t>(s.begin(), s.end()).size(), 100u);
  EXPECT_EQ(silhouette_sample(1000, 100, 5), s);
  EXPECT_NE(silhouette_sample(1000, 100, 6), s);
  EXPECT_EQ(silhouette_sample(50, 100, 5).size(), 50u);  // all rows
}

// Four blobs: the scan's silhouette peaks at k = 4, inertia falls with every k, and the kept
// result is K-Means at that k.
TEST(KMeansScan, PicksTheNumberOfSeparatedBlobs) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = make_blobs({{0, 0}, {8, 0}, {0, 8}, {8, 8}}, 40, 1.0f, 5);
  KMeansOptions o;
  o.n_init = 3;
  const KScan scan = kmeans_scan(*ops, b.x, b.n, b.d, 2, 6, o);
  ASSERT_EQ(scan.rows.size(), 5u);
  EXPECT_EQ(scan.best_k, 4);
  EXPECT_EQ(scan.silhouette_rows, b.n);
  for (size_t i = 0; i < scan.rows.size(); ++i) {
    EXPECT_EQ(scan.rows[i].k, static_cast<int>(i) + 2);
    if (i) {
      EXPECT_LT(scan.rows[i].inertia, scan.rows[i - 1].inertia);
    }
    if (scan.rows[i].k != 4) {
      EXPECT_LT(scan.rows[i].silhouette, scan.rows[2].silhouette);
    }
  }
  EXPECT_EQ(scan.best.k, 4);
  EXPECT_DOUBLE_EQ(adjusted_rand_index(scan.best.labels, b.truth), 1.0);
  o.k = 4;
  EXPECT_EQ(kmeans(*ops, b.x, b.n, b.d, o).labels, scan.best.labels);
  EXPECT_DOUBLE_EQ(scan.rows[2].silhouette, silhouette_score(b.x, b.d, scan.best.labels));

  // A sample of 60 rows: the same 60 for every k, and the same scan twice.
  const KScan part = kmeans_scan(*ops, b.x, b.n, b.d, 2, 5, o, 60);
  EXPECT_EQ(part.silhouette_rows, 60);
  EXPECT_EQ(part.best_k, 4);
  const KScan again = kmeans_scan(*ops, b.x, b.n, b.d, 2, 5, o, 60);
  for (size_t i = 0; i < part.rows.size(); ++i) EXPECT_EQ(part.rows[i].silhouette, again.rows[i].silhouette);
  const std::vector<int32_t> rows60 = silhouette_sample(b.n, 60, o.seed);
  for (int k : {2, 5}) {  // each k's score is over those same rows
    KMeansOptions ok = o;
    ok.k = k;
    EXPECT_EQ(part.rows[k - 2].silhouette, silhouette_score(b.x, b.d, kmeans(*ops, b.x, b.n, b.d, ok).labels, rows60)) << k;
  }

  EXPECT_THROW(kmeans_scan(*ops, b.x, b.n, b.d, 1, 4, o), UsageError);
  EXPECT_THROW(kmeans_scan(*ops, b.x, b.n, b.d, 5, 4, o), UsageError);
  EXPECT_THROW(kmeans_scan(*ops, b.x, b.n, b.d, 2, static_cast<int>(b.n), o), UsageError);
}

}  // namespace
}  // namespace vae
