// Barnes-Hut t-SNE: neighbours against brute force, the sparse P against the exact path's P, the
// gradient against the exact gradient (theta 0: equal; theta 0.5: close), end-to-end quality
// against exact t-SNE on separated blobs, determinism, and tsne()'s validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "analysis/analysis_ops.h"
#include "analysis/tsne.h"
#include "analysis/tsne_bh.h"
#include "backend/cpu_gemm.h"
#include "core/error.h"
#include "core/philox.h"

namespace vae {
namespace {

struct Blobs {
  std::vector<float> x;
  std::vector<int32_t> truth;
};

// `blobs` Gaussian blobs of `per` points in d dimensions: blob c centred at spread·e_(c mod d),
// unit noise; point i belongs to blob i mod blobs.
Blobs blobs(int blobs, int64_t per, int64_t d, float spread, uint64_t seed) {
  Blobs b;
  const int64_t n = blobs * per;
  b.x.resize(n * d);
  b.truth.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % blobs);
    b.truth[i] = c;
    for (int64_t t = 0; t < d; ++t)
      b.x[i * d + t] = (t == c % d ? spread * (1 + c / d) : 0.0f) +
                       philox_normal(seed, 0, static_cast<uint64_t>(i * d + t));
  }
  return b;
}

// An embedding-like Y (n × 2): 5 clumps of unit spread on a circle of radius 12.
std::vector<float> clumped_y(int64_t n, uint64_t seed) {
  std::vector<float> y(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const double a = 2 * M_PI * static_cast<double>(i % 5) / 5;
    y[2 * i] = static_cast<float>(12 * std::cos(a)) + philox_normal(seed, 1, 2 * i);
    y[2 * i + 1] = static_cast<float>(12 * std::sin(a)) + philox_normal(seed, 1, 2 * i + 1);
  }
  return y;
}

std::vector<float> dense(const TsneSparseP& p) {
  std::vector<float> out(static_cast<size_t>(p.n * p.n), 0.0f);
  for (int64_t i = 0; i < p.n; ++i)
    for (int64_t e = p.row_start[i]; e < p.row_start[i + 1]; ++e) out[i * p.n + p.col[e]] = p.val[e];
  return out;
}

TsneSparseP sparse_p(const std::vector<float>& x, int64_t n, int64_t d, double perplexity) {
  return tsne_sparse_joint_probabilities(
      tsne_nearest_neighbours(x, n, d, tsne_bh_neighbour_count(n, perplexity)), perplexity);
}

double norm(const std::vector<float>& v) {
  double s = 0;
  for (float f : v) s += static_cast<double>(f) * f;
  return std::sqrt(s);
}

double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t t = 0; t < a.size(); ++t) {
    const double e = static_cast<double>(a[t]) - b[t];
    s += e * e;
  }
  return std::sqrt(s) / norm(b);
}

// Leave-one-out 1-NN in the embedding: the share of points whose nearest other point is of
// their own blob.
double one_nn_accuracy(const std::vector<float>& y, const std::vector<int32_t>& truth) {
  const int64_t n = static_cast<int64_t>(truth.size());
  int64_t right = 0;
  for (int64_t i = 0; i < n; ++i) {
    double best = INFINITY;
    int64_t arg = -1;
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const double a = y[2 * i] - y[2 * j], b = y[2 * i + 1] - y[2 * j + 1];
      if (a * a + b * b < best) {
        best = a * a + b * b;
        arg = j;
      }
    }
    right += truth[arg] == truth[i];
  }
  return static_cast<double>(right) / n;
}

TEST(TsneBh, NeighbourCountIsSklearns) {
  EXPECT_EQ(tsne_bh_neighbour_count(10000, 30.0), 91);
  EXPECT_EQ(tsne_bh_neighbour_count(10000, 5.5), 17);  // int(17.5)
  EXPECT_EQ(tsne_bh_neighbour_count(40, 13.0), 39);     // capped at n − 1
}

TEST(TsneBh, NearestNeighboursAreTheBruteForceOnesWithTiesToTheLowerIndex) {
  // Small integer coordinates: many exactly equal distances, and two duplicate rows.
  const int64_t n = 300, d = 5, k = 12;
  std::vector<float> x(n * d);
  for (int64_t t = 0; t < n * d; ++t)
    x[t] = static_cast<float>(static_cast<int>(std::floor(3 * philox_normal(2, 5, t))));
  std::copy_n(&x[7 * d], d, &x[200 * d]);
  const TsneNeighbours nn = tsne_nearest_neighbours(x, n, d, k);
  ASSERT_EQ(nn.n, n);
  ASSERT_EQ(nn.k, k);
  std::vector<std::pair<double, int32_t>> all;
  for (int64_t i = 0; i < n; ++i) {
    all.clear();
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      double s = 0;
      for (int64_t t = 0; t < d; ++t) s += (static_cast<double>(x[i * d + t]) - x[j * d + t]) * (x[i * d + t] - x[j * d + t]);
      all.push_back({s, static_cast<int32_t>(j)});
    }
    std::sort(all.begin(), all.end());
    for (int64_t q = 0; q < k; ++q) {
      ASSERT_EQ(nn.index[i * k + q], all[q].second) << "row " << i << " rank " << q;
      ASSERT_EQ(nn.sqdist[i * k + q], static_cast<float>(all[q].first)) << "row " << i;
    }
  }
  EXPECT_EQ(nn.index[7 * k], 200);  // the duplicate, at distance 0
  EXPECT_EQ(nn.sqdist[7 * k], 0.0f);
}

TEST(TsneBh, SparsePWithAllNeighboursIsTheExactP) {
  const int64_t n = 40, d = 6;
  const Blobs b = blobs(3, 14, d, 5.0f, 31);
  const std::vector<float> x(b.x.begin(), b.x.begin() + n * d);
  const double perplexity = 13.0;  // k = min(39, int(40)) = n − 1
  const TsneSparseP p = sparse_p(x, n, d, perplexity);
  const std::vector<float> exact = tsne_joint_probabilities(x, n, d, perplexity);
  ASSERT_EQ(p.n, n);
  ASSERT_EQ(p.col.size(), static_cast<size_t>(n * (n - 1)));
  const std::vector<float> mine = dense(p);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      if (i == j) {
        EXPECT_EQ(mine[i * n + j], 0.0f);
        continue;
      }
      // The exact path clamps at machine epsilon; everything else agrees to float rounding.
      EXPECT_NEAR(mine[i * n + j], exact[i * n + j], 1e-5 * exact[i * n + j] + 1e-15)
          << "P[" << i << "," << j << "]";
    }
}

TEST(TsneBh, SparsePIsSymmetricNormalisedAndCoversTheNeighbours) {
  const int64_t n = 250, d = 8;
  const Blobs b = blobs(5, 50, d, 6.0f, 32);
  const double perplexity = 10.0;
  const int64_t k = tsne_bh_neighbour_count(n, perplexity);
  ASSERT_EQ(k, 31);
  const TsneNeighbours nn = tsne_nearest_neighbours(b.x, n, d, k);
  const TsneSparseP p = tsne_sparse_joint_probabilities(nn, perplexity);
  ASSERT_EQ(p.row_start.size(), static_cast<size_t>(n + 1));
  double sum = 0;
  int64_t max_row = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t len = p.row_start[i + 1] - p.row_start[i];
    EXPECT_GE(len, k) << "row " << i;
    max_row = std::max(max_row, len);
    std::set<int32_t> cols;
    for (int64_t e = p.row_start[i]; e < p.row_start[i + 1]; ++e) {
      const int32_t j = p.col[e];
      ASSERT_NE(j, i);
      if (e > p.row_start[i]) {
        EXPECT_LT(p.col[e - 1], j) << "columns ascending, once each";
      }
      cols.insert(j);
      EXPECT_GE(p.val[e], 0.0f);
      sum += p.val[e];
      // (j, i) is stored with the very same value.
      const int32_t* b0 = p.col.data() + p.row_start[j];
      const int32_t* b1 = p.col.data() + p.row_start[j + 1];
      const int32_t* it = std::lower_bound(b0, b1, static_cast<int32_t>(i));
      ASSERT_TRUE(it != b1 && *it == i) << "(" << j << "," << i << ") missing";
      EXPECT_EQ(p.val[it - p.col.data()], p.val[e]);
    }
    for (int64_t q = 0; q < k; ++q) EXPECT_TRUE(cols.count(nn.index[i * k + q])) << "row " << i;
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_GT(max_row, k);  // some point is a neighbour of a point outside its own list
  // Each conditional row sums to 1, so P sums over a row to (1 + Σ_l p_{i|l}) / 2n ≥ 1 / 2n.
  for (int64_t i = 0; i < n; ++i) {
    double row = 0;
    for (int64_t e = p.row_start[i]; e < p.row_start[i + 1]; ++e) row += p.val[e];
    EXPECT_GE(row, (1.0 - 1e-5) / (2.0 * n)) << "row " << i;
  }
}

TEST(TsneBh, GradientWithThetaZeroIsTheExactGradient) {
  auto ops = make_cpu_analysis_ops();
  struct Case {
    int64_t n;
    double perplexity;  // 13 for n = 40: every pair is a neighbour pair; 8 for 150: sparse P
  };
  for (const Case c : {Case{40, 13.0}, Case{150, 8.0}}) {
    const int64_t d = 6;
    const Blobs b = blobs(3, c.n / 3 + 1, d, 5.0f, 33);
    const std::vector<float> x(b.x.begin(), b.x.begin() + c.n * d);
    const TsneSparseP p = sparse_p(x, c.n, d, c.perplexity);
    const std::vector<float> pd = dense(p);
    std::vector<float> y = clumped_y(c.n, 34);
    y[2 * 5] = y[2 * 9];  // a duplicate point: a leaf of two, each skipping only itself
    y[2 * 5 + 1] = y[2 * 9 + 1];
    for (int64_t i = 20; i < 32; ++i) {  // twelve points at one position: a leaf taken in O(1)
      y[2 * i] = y[2 * 12];
      y[2 * i + 1] = y[2 * 12 + 1];
    }
    for (float ex : {1.0f, 12.0f}) {
      std::vector<float> g_bh(2 * c.n), g_ex(2 * c.n);
      const double kl_bh = tsne_bh_gradient(p, y.data(), ex, 0.0, g_bh.data(), true);
      const double kl_ex = ops->tsne_gradient(pd.data(), y.data(), c.n, ex, g_ex.data(), true);
      const double scale = norm(g_ex) / std::sqrt(2.0 * c.n);
      for (int64_t t = 0; t < 2 * c.n; ++t)
        ASSERT_NEAR(g_bh[t], g_ex[t], 1e-5 * (std::fabs(g_ex[t]) + scale))
            << "n " << c.n << " exaggeration " << ex << " coordinate " << t;
      EXPECT_NEAR(kl_bh, kl_ex, 1e-6 * std::fabs(kl_ex)) << "n " << c.n << " exaggeration " << ex;
      std::vector<float> g2(2 * c.n);
      EXPECT_TRUE(std::isnan(tsne_bh_gradient(p, y.data(), ex, 0.0, g2.data(), false)));
      EXPECT_EQ(g2, g_bh);
    }
  }
}

TEST(TsneBh, GradientWithThetaHalfIsCloseToExact) {
  auto ops = make_cpu_analysis_ops();
  const int64_t n = 400, d = 10;
  const Blobs b = blobs(5, 80, d, 6.0f, 35);
  const TsneSparseP p = sparse_p(b.x, n, d, 30.0);
  const std::vector<float> pd = dense(p);
  for (const std::vector<float>& y : {clumped_y(n, 36), [&] {
         // Early in the optimisation: one tight clump.
         std::vector<float> v(2 * n);
         for (int64_t t = 0; t < 2 * n; ++t) v[t] = 0.01f * philox_normal(37, 0, t);
         return v;
       }()}) {
    std::vector<float> g_ex(2 * n), g_half(2 * n), g_coarse(2 * n);
    const double kl_ex = ops->tsne_gradient(pd.data(), y.data(), n, 1.0f, g_ex.data(), true);
    const double kl_half = tsne_bh_gradient(p, y.data(), 1.0f, 0.5, g_half.data(), true);
    tsne_bh_gradient(p, y.data(), 1.0f, 1.0, g_coarse.data(), false);
    const double err_half = relative_difference(g_half, g_ex);
    const double err_coarse = relative_difference(g_coarse, g_ex);
    EXPECT_LT(err_half, 0.03);
    EXPECT_GT(err_half, 0.0);  // cells were summarised
    EXPECT_LT(err_half, err_coarse);
    EXPECT_NEAR(kl_half, kl_ex, 0.01 * kl_ex);
  }
}

TEST(TsneBh, SeparatedBlobsEmbedAsWellAsExactTsne) {
  auto ops = make_cpu_analysis_ops();
  const int64_t n = 300, d = 10;
  const Blobs b = blobs(5, 60, d, 8.0f, 38);
  TsneOptions o;
  o.seed = 3;
  const TsneResult bh = tsne_barnes_hut(b.x, n, d, o);
  ASSERT_EQ(bh.n, n);
  ASSERT_EQ(bh.y.size(), static_cast<size_t>(2 * n));
  for (float v : bh.y) ASSERT_TRUE(std::isfinite(v));
  EXPECT_EQ(bh.indices.size(), static_cast<size_t>(n));
  EXPECT_DOUBLE_EQ(bh.learning_rate, 50.0);  // 'auto': max(300 / 12 / 4, 50)
  EXPECT_GE(one_nn_accuracy(bh.y, b.truth), 0.95);

  ASSERT_GE(bh.kl_history.size(), 6u);
  EXPECT_EQ(bh.kl_history.front().iteration, 50);
  EXPECT_EQ(bh.kl_history.back().iteration, bh.iterations);
  EXPECT_EQ(bh.kl_history.back().kl, bh.kl_divergence);
  std::vector<double> after;
  for (const auto& h : bh.kl_history)
    if (h.iteration > 250) after.push_back(h.kl);
  ASSERT_GE(after.size(), 3u);
  EXPECT_LT(after.back(), after.front());

  // Against exact t-SNE: its own KL, and the exact KL of the BH embedding under the exact P.
  const TsneResult ex = tsne(*ops, b.x, n, d, o);
  const std::vector<float> p_exact = tsne_joint_probabilities(b.x, n, d, o.perplexity);
  std::vector<float> g(2 * n);
  const double kl_bh_exact = ops->tsne_gradient(p_exact.data(), bh.y.data(), n, 1.0f, g.data(), true);
  EXPECT_GT(bh.kl_divergence, 0.0);
  EXPECT_NEAR(bh.kl_divergence, ex.kl_divergence, 0.1 * ex.kl_divergence);
  EXPECT_NEAR(kl_bh_exact, ex.kl_divergence, 0.1 * ex.kl_divergence);
}

TEST(TsneBh, DeterministicForASeedOnAnyThreadCount) {
  const int64_t n = 700, d = 6;  // several tasks of the parallel loops
  const Blobs b = blobs(4, n / 4, d, 6.0f, 39);
  TsneOptions o;
  o.iterations = 120;
  o.exaggeration_iterations = 60;
  o.perplexity = 10;
  o.seed = 8;
  const TsneResult r1 = tsne_barnes_hut(b.x, n, d, o);
  const TsneResult r2 = tsne_barnes_hut(b.x, n, d, o);
  EXPECT_EQ(r1.y, r2.y);
  EXPECT_EQ(r1.kl_divergence, r2.kl_divergence);
  // Inside a task of the pool every parallel loop runs on one thread: the same bits.
  TsneResult serial;
  cpu_parallel_for(2, [&](int64_t t) {
    if (t == 0) serial = tsne_barnes_hut(b.x, n, d, o);
  });
  EXPECT_EQ(serial.y, r1.y);
  EXPECT_EQ(serial.kl_divergence, r1.kl_divergence);
  o.seed = 9;
  EXPECT_NE(tsne_barnes_hut(b.x, n, d, o).y, r1.y);
}

TEST(TsneBh, SubsamplesAsTsneDoes) {
  auto ops = make_cpu_analysis_ops();
  const Blobs b = blobs(3, 60, 10, 8.0f, 40);
  TsneOptions o;
  o.iterations = 100;
  o.perplexity = 10;
  o.max_points = 70;
  o.seed = 8;
  const TsneResult bh = tsne_barnes_hut(b.x, 180, 10, o);
  ASSERT_EQ(bh.n, 70);
  EXPECT_EQ(bh.y.size(), 140u);
  EXPECT_EQ(bh.iterations, 100);
  EXPECT_EQ(bh.indices, tsne_subsample(180, 70, 8));
  EXPECT_EQ(bh.indices, tsne(*ops, b.x, 180, 10, o).indices);
  // The embedding is of those rows: the same as embedding the subsample itself.
  std::vector<float> rows;
  for (int32_t i : bh.indices) rows.insert(rows.end(), &b.x[i * 10], &b.x[i * 10] + 10);
  o.max_points = 0;
  EXPECT_EQ(tsne_barnes_hut(rows, 70, 10, o).y, bh.y);
}

TEST(TsneBh, RejectsWhatTsneRejectsWithTheSameMessages) {
  auto ops = make_cpu_analysis_ops();
  const std::vector<float> x = blobs(2, 10, 3, 4.0f, 41).x;  // 20 × 3
  auto bad_nan = x;
  bad_nan[4] = std::nanf("");
  struct Case {
    const char* what;
    std::vector<float> x;
    int64_t n;
    double perplexity;
    int iterations, exaggeration_iterations;
    int64_t max_points;
  };
  const Case cases[] = {
      {"perplexity ≥ points", x, 20, 30.0, 10, 250, 10000},
      {"perplexity ≥ subsampled points", x, 20, 5.0, 10, 250, 4},
      {"perplexity 0", x, 20, 0.0, 10, 250, 10000},
      {"iterations 0", x, 20, 5.0, 0, 250, 10000},
      {"negative exaggeration iterations", x, 20, 5.0, 10, -1, 10000},
      {"x not n × d", x, 1, 5.0, 10, 250, 10000},
      {"one point", {1, 2, 3}, 1, 5.0, 10, 250, 10000},
      {"max_points 1", x, 20, 0.5, 10, 250, 1},
      {"NaN", bad_nan, 20, 5.0, 10, 250, 10000},
  };
  for (const Case& c : cases) {
    TsneOptions o;
    o.perplexity = c.perplexity;
    o.iterations = c.iterations;
    o.exaggeration_iterations = c.exaggeration_iterations;
    o.max_points = c.max_points;
    std::string exact_msg, bh_msg;
    bool exact_usage = false, bh_usage = false;
    try {
      tsne(*ops, c.x, c.n, 3, o);
    } catch (const UsageError& e) {
      exact_msg = e.what();
      exact_usage = true;
    } catch (const VaeError& e) {
      exact_msg = e.what();
    }
    try {
      tsne_barnes_hut(c.x, c.n, 3, o);
    } catch (const UsageError& e) {
      bh_msg = e.what();
      bh_usage = true;
    } catch (const VaeError& e) {
      bh_msg = e.what();
    }
    EXPECT_FALSE(exact_msg.empty()) << c.what << ": tsne() accepted it";
    EXPECT_EQ(bh_msg, exact_msg) << c.what;
    EXPECT_EQ(bh_usage, exact_usage) << c.what;
  }
  TsneOptions o;
  o.perplexity = 5;
  o.iterations = 10;
  for (double theta : {-0.1, 1.5, static_cast<double>(NAN)})
    EXPECT_THROW(tsne_barnes_hut(x, 20, 3, o, theta), UsageError) << "theta " << theta;
  // A diverged embedding is reported rather than walked point by point.
  const TsneSparseP p = sparse_p(x, 20, 3, 5.0);
  std::vector<float> y = clumped_y(20, 43), g(40);
  y[7] = NAN;
  EXPECT_THROW(tsne_bh_gradient(p, y.data(), 1.0f, 0.5, g.data(), false), VaeError);
  // Within bounds it runs, theta 0 and 1 included.
  for (double theta : {0.0, 1.0}) {
    const TsneResult r = tsne_barnes_hut(x, 20, 3, o, theta);
    EXPECT_EQ(r.iterations, 10);
    EXPECT_EQ(r.kl_history.size(), 1u);
    EXPECT_TRUE(std::isfinite(r.kl_divergence));
  }
}

// Timing, not a check: ./vae_tests --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Timing*'
TEST(TsneBh, DISABLED_TimingTenThousandPoints) {
  using Clock = std::chrono::steady_clock;
  auto secs = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  const int64_t n = 10000, d = 64;
  const Blobs b = blobs(20, n / 20, d, 6.0f, 42);
  TsneOptions o;
  const auto t0 = Clock::now();
  const TsneNeighbours nn = tsne_nearest_neighbours(b.x, n, d, tsne_bh_neighbour_count(n, o.perplexity));
  const auto t1 = Clock::now();
  const TsneSparseP p = tsne_sparse_joint_probabilities(nn, o.perplexity);
  const auto t2 = Clock::now();
  const TsneResult r = tsne_bh_from_probabilities(p, o, 0.5);
  const auto t3 = Clock::now();
  std::printf("BH t-SNE %lld x %lld, %d threads: kNN %.2f s, P %.2f s (%zu entries), %d iterations "
              "%.2f s; total %.2f s; KL %.4f; 1-NN accuracy %.4f\n",
              static_cast<long long>(n), static_cast<long long>(d), reference_gemm_threads(),
              secs(t0, t1), secs(t1, t2), p.col.size(), r.iterations, secs(t2, t3), secs(t0, t3),
              r.kl_divergence, one_nn_accuracy(r.y, b.truth));

  const int64_t m = 2000;
  const std::vector<float> xm(b.x.begin(), b.x.begin() + m * d);
  const std::vector<int32_t> tm(b.truth.begin(), b.truth.begin() + m);
  auto ops = make_cpu_analysis_ops();
  const auto e0 = Clock::now();
  const std::vector<float> pe = tsne_joint_probabilities(xm, m, d, o.perplexity);
  const auto e1 = Clock::now();
  const TsneResult re = tsne_from_probabilities(*ops, pe, m, o);
  const auto e2 = Clock::now();
  const TsneResult rb = tsne_barnes_hut(xm, m, d, o);
  const auto e3 = Clock::now();
  std::printf("exact t-SNE %lld x %lld: P %.2f s, %d iterations %.2f s; total %.2f s; KL %.4f; "
              "1-NN %.4f\nBH t-SNE same %lld points: total %.2f s; KL %.4f; 1-NN %.4f\n",
              static_cast<long long>(m), static_cast<long long>(d), secs(e0, e1), re.iterations,
              secs(e1, e2), secs(e0, e2), re.kl_divergence, one_nn_accuracy(re.y, tm),
              static_cast<long long>(m), secs(e2, e3), rb.kl_divergence, one_nn_accuracy(rb.y, tm));
}

}  // namespace
}  // namespace vae
