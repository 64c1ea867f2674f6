// Evaluation ops of the CPU reference backend: top-k selection, the Mult-VAE binary metrics,
// the notebooks' graded metrics (checked against real scikit-learn numbers) and rating errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "data/dataset.h"
#include "train/trainer.h"
#include "trained_model.h"

namespace vae {
namespace {

using Vec = std::vector<double>;
using Idx = std::vector<int32_t>;
constexpr double kInf = std::numeric_limits<double>::infinity();

Csr make_csr(int64_t cols, const std::vector<std::vector<std::pair<int32_t, float>>>& rows) {
  Csr c;
  c.rows = static_cast<int64_t>(rows.size());
  c.cols = cols;
  c.indptr = {0};
  for (const auto& r : rows) {
    for (const auto& [j, v] : r) {
      c.indices.push_back(j);
      c.values.push_back(v);
    }
    c.indptr.push_back(static_cast<int64_t>(c.indices.size()));
  }
  return c;
}

class Metrics : public ::testing::Test {
 protected:
  std::unique_ptr<Backend<double>> be = make_cpu_backend<double>();
  std::unique_ptr<Backend<float>> bf = make_cpu_backend<float>();

  Tensor<int32_t> up_idx(const Idx& v) { return be->upload(v, static_cast<int64_t>(v.size()), 1); }

  // topk of one backend, returning (indices, values).
  std::pair<Idx, Vec> topk(const Vec& scores, int64_t n, int64_t m, int k, const Csr* excl = nullptr,
                           const Idx& excl_rows = {}) {
    Tensor<double> s = be->upload(scores, n, m);
    CsrTensor<double> ex;
    if (excl) ex = be->upload_csr(*excl);
    Tensor<int32_t> er = up_idx(excl_rows);
    Tensor<int32_t> idx = be->alloc<int32_t>(n, k);
    Tensor<double> val = be->alloc<double>(n, k);
    be->topk(s.cmat(), excl ? ex.view() : CsrView<double>{}, er.cmat(), k, idx.mat(), val.mat());
    return {be->download(idx.cmat()), be->download(val.cmat())};
  }
};

// ---- topk -----------------------------------------------------------------------------------

TEST_F(Metrics, TopkOrdersDescendingWithTiesByIndex) {
  const Vec s{0.1, 0.5, 0.3, 0.5, 0.9, 0.2};
  auto [i3, v3] = topk(s, 1, 6, 3);
  EXPECT_EQ(i3, (Idx{4, 1, 3}));
  EXPECT_EQ(v3, (Vec{0.9, 0.5, 0.5}));
  auto [i1, v1] = topk(s, 1, 6, 1);
  EXPECT_EQ(i1, (Idx{4}));
  EXPECT_EQ(v1, (Vec{0.9}));
  auto [i6, v6] = topk(s, 1, 6, 6);  // k = n: a full sort
  EXPECT_EQ(i6, (Idx{4, 1, 3, 2, 5, 0}));
  EXPECT_EQ(v6, (Vec{0.9, 0.5, 0.5, 0.3, 0.2, 0.1}));
  // All equal: plain index order.
  auto [ie, ve] = topk(Vec(5, 1.0), 1, 5, 4);
  EXPECT_EQ(ie, (Idx{0, 1, 2, 3}));
}

TEST_F(Metrics, TopkExcludesAndPads) {
  // Two score rows; row 0 uses exclude row 2, row 1 uses exclude row 0.
  const Vec s{0.1, 0.5, 0.3, 0.5, 0.9, 0.2,   //
              0.6, 0.4, 0.8, 0.1, 0.7, 0.3};
  const Csr ex = make_csr(6, {{{0, 1}, {1, 1}, {2, 1}, {3, 1}}, {}, {{1, 1}, {4, 1}}});
  auto [i, v] = topk(s, 2, 6, 3, &ex, {2, 0});
  EXPECT_EQ(i, (Idx{3, 2, 5, 4, 5, -1}));
  EXPECT_EQ(v, (Vec{0.5, 0.3, 0.2, 0.7, 0.3, -kInf}));
  // Fewer candidates than k: padding −1 / −inf.
  auto [ip, vp] = topk(s, 2, 6, 4, &ex, {0, 1});
  EXPECT_EQ(ip, (Idx{4, 5, -1, -1, 2, 4, 0, 1}));  // row 1's exclude row is empty
  EXPECT_EQ(vp, (Vec{0.9, 0.2, -kInf, -kInf, 0.8, 0.7, 0.6, 0.4}));
}

TEST_F(Metrics, TopkMatchesStableSortOnRandomTiedScores) {
  const int64_t n = 7, m = 300;
  std::mt19937_64 g(5);
  std::uniform_int_distribution<int> d(0, 20);  // many ties
  Vec s(n * m);
  for (double& x : s) x = d(g) / 20.0;
  std::vector<std::vector<std::pair<int32_t, float>>> ex_rows(n);
  for (int64_t r = 0; r < n; ++r)
    for (int32_t j = static_cast<int32_t>(r); j < m; j += 7) ex_rows[r].push_back({j, 1.f});
  const Csr ex = make_csr(m, ex_rows);
  Idx er(n);
  std::iota(er.begin(), er.end(), 0);
  for (int k : {1, 10, 50, 257, 300}) {
    SCOPED_TRACE(k);
    auto [idx, val] = topk(s, n, m, k, &ex, er);
    for (int64_t r = 0; r < n; ++r) {
      std::vector<int32_t> cand;
      for (int32_t j = 0; j < m; ++j)
        if ((j - r) % 7 != 0 || j < r) cand.push_back(j);
      std::stable_sort(cand.begin(), cand.end(),
                       [&](int32_t a, int32_t b) { return s[r * m + a] > s[r * m + b]; });
      std::set<int32_t> seen;
      for (int i = 0; i < k; ++i) {
        const int32_t want = i < static_cast<int>(cand.size()) ? cand[i] : -1;
        ASSERT_EQ(idx[r * k + i], want) << "row " << r << " rank " << i;
        ASSERT_EQ(val[r * k + i], want < 0 ? -kInf : s[r * m + want]);
        if (want >= 0) {
          EXPECT_TRUE(seen.insert(want).second);
        }
      }
    }
  }
}

// ---- heldout_metrics (Mult-VAE) --------------------------------------------------------------

TEST_F(Metrics, HeldoutMetricsByHand) {
  // Row 0: ranking 3, 7, 1, 5, (pad) against target {1, 3, 9}: hits at ranks 0 and 2.
  // Row 1: empty target → zeros. Row 2: target {7} (via target row 3), hit at rank 1.
  const Idx idx{3, 7, 1, 5, -1,  //
                0, 1, 2, 3, 4,   //
                3, 7, 1, 5, -1};
  const Csr tgt = make_csr(10, {{{1, 1}, {3, 1}, {9, 1}}, {}, {{2, 0}}, {{7, 1}}});
  CsrTensor<double> t = be->upload_csr(tgt);
  Tensor<double> out = be->alloc<double>(3, 6);
  be->heldout_metrics(be->upload(idx, 3, 5).cmat(), t.view(), up_idx({0, 1, 3}).cmat(), {1, 3, 5},
                      out.mat());
  const Vec got = be->download(out.cmat());
  const double d2 = 1 / std::log2(3.0), d3 = 0.5;
  const double idcg3 = 1 + d2 + d3;
  const Vec want{1.0, 2.0 / 3, 2.0 / 3, 1.0, 1.5 / idcg3, 1.5 / idcg3,  //
                 0, 0, 0, 0, 0, 0,                                       //
                 0.0, 1.0, 1.0, 0.0, d2, d2};
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-15) << i;
  // A target row whose only stored value is 0 has no relevant item (Mult-VAE's `> 0`).
  Tensor<double> o1 = be->alloc<double>(1, 2);
  be->heldout_metrics(be->upload(Idx{2, 0}, 1, 2).cmat(), t.view(), up_idx({2}).cmat(), {2},
                      o1.mat());
  EXPECT_EQ(be->download(o1.cmat()), (Vec{0, 0}));
  EXPECT_THROW(be->heldout_metrics(be->upload(idx, 3, 5).cmat(), t.view(), up_idx({0, 1, 3}).cmat(),
                                   {6}, be->alloc<double>(3, 2).mat()),
               VaeError);
}

// ---- graded_metrics (scikit-learn) -----------------------------------------------------------

// Expected numbers from scikit-learn 1.9.1 / numpy 2.4.6:
//
//   import numpy as np
//   from sklearn.metrics import ndcg_score
//   for s, t, k in rows:          # the GradedCase inputs below
//       s = np.array(s); t = np.array(t, dtype=float)
//       nd = ndcg_score([t], [s], k=k)
//       order = np.argsort(-s, kind='stable')[:k]          # ties → lower index
//       rec = t[order].sum() / t.sum() if t.sum() > 0 else 0.0
//       print(nd, rec)
struct GradedCase {
  Vec scores, truth;
  int k;
  double ndcg, recall;
};
const GradedCase kGraded[] = {
    // No ties.
    {{0.9, 0.1, 0.4, 0.75, 0.3, 0.6, 0.05, 0.2}, {5, 0, 3, 0, 4, 1, 0, 2}, 3,
     0.6095047941201093, 0.4},
    // Scores saturated at 1.0: a 4-item tie straddling k = 2.
    {{1.0, 1.0, 0.5, 1.0, 0.2, 1.0, 0.1, 0.0}, {0, 4, 5, 3, 0, 0, 2, 1}, 2,
     0.37935056629981967, 0.26666666666666666},
    // Same with the tie inside the top k.
    {{1.0, 1.0, 0.5, 1.0, 0.2, 1.0, 0.1, 0.0}, {0, 4, 5, 3, 0, 0, 2, 1}, 5,
     0.6247198183876691, 0.8},
    // Two tie groups, the second straddling k = 4.
    {{0.3, 0.8, 0.8, 0.1, 0.8, 0.5, 0.5, 0.9}, {1, 0, 2, 0, 5, 4, 0, 3}, 4,
     0.6720990977952419, 0.6666666666666666},
    // k larger than the number of relevant items.
    {{0.2, 0.7, 0.4, 0.9, 0.1, 0.3, 0.6, 0.5}, {0, 0, 4, 0, 0, 0, 0, 5}, 6,
     0.4918836033453889, 1.0},
    // Every score equal.
    {{0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5}, {3, 0, 0, 5, 0, 1, 0, 0}, 3,
     0.32427489655457004, 0.3333333333333333},
    // No relevant item: IDCG = 0 → 0.
    {{0.2, 0.7, 0.4, 0.9, 0.1, 0.3, 0.6, 0.5}, {0, 0, 0, 0, 0, 0, 0, 0}, 3, 0.0, 0.0},
    // k larger than the row.
    {{0.2, 0.7, 0.4, 0.9, 0.1, 0.3, 0.6, 0.5}, {2, 1, 0, 3, 0, 4, 0, 5}, 20,
     0.7667314555771902, 1.0},
};

TEST_F(Metrics, GradedMetricsMatchScikitLearn) {
  for (size_t c = 0; c < std::size(kGraded); ++c) {
    const GradedCase& g = kGraded[c];
    SCOPED_TRACE(::testing::Message() << "case " << c);
    const int64_t m = static_cast<int64_t>(g.scores.size());
    Tensor<double> out = be->alloc<double>(1, 2);
    be->graded_metrics(be->upload(g.scores, 1, m).cmat(), be->upload(g.truth, 1, m).cmat(), g.k,
                       out.mat());
    const Vec got = be->download(out.cmat());
    EXPECT_NEAR(got[0], g.ndcg, 1e-14);
    EXPECT_NEAR(got[1], g.recall, 1e-15);
    // Float: same ties (the scores are exactly representable), float rounding only.
    std::vector<float> sf(g.scores.begin(), g.scores.end()), tf(g.truth.begin(), g.truth.end());
    Tensor<float> of = bf->alloc<float>(1, 2);
    bf->graded_metrics(bf->upload(sf, 1, m).cmat(), bf->upload(tf, 1, m).cmat(), g.k, of.mat());
    const std::vector<float> gf = bf->download(of.cmat());
    EXPECT_NEAR(gf[0], g.ndcg, 1e-6);
    EXPECT_NEAR(gf[1], g.recall, 1e-6);
  }
}

TEST_F(Metrics, GradedMetricsRowsAreIndependent) {
  // All cases with the same k in one call give the same per-row numbers.
  const int64_t m = 8;
  Vec s, t;
  std::vector<const GradedCase*> cases;
  for (const GradedCase& g : kGraded)
    if (g.k == 3) {
      s.insert(s.end(), g.scores.begin(), g.scores.end());
      t.insert(t.end(), g.truth.begin(), g.truth.end());
      cases.push_back(&g);
    }
  const int64_t n = static_cast<int64_t>(cases.size());
  ASSERT_GE(n, 3);
  Tensor<double> out = be->alloc<double>(n, 2);
  be->graded_metrics(be->upload(s, n, m).cmat(), be->upload(t, n, m).cmat(), 3, out.mat());
  const Vec got = be->download(out.cmat());
  for (int64_t r = 0; r < n; ++r) {
    EXPECT_NEAR(got[r * 2], cases[r]->ndcg, 1e-14) << r;
    EXPECT_NEAR(got[r * 2 + 1], cases[r]->recall, 1e-15) << r;
  }
}

// ---- rating_errors ---------------------------------------------------------------------------

TEST_F(Metrics, RatingErrorsClipPredictions) {
  const Vec pred{0.5, 3.2, 6.0, 4.0,  //
                 2.0, 2.0, 2.0, 2.0};
  // Pred row 0 ↔ target row 1, pred row 1 ↔ target row 0 (empty).
  const Csr tgt = make_csr(4, {{}, {{0, 1.f}, {2, 5.f}, {3, 3.5f}}});
  CsrTensor<double> t = be->upload_csr(tgt);
  Tensor<double> out = be->alloc<double>(2, 3);
  be->rating_errors(be->upload(pred, 2, 4).cmat(), t.view(), up_idx({1, 0}).cmat(), 1.0, 5.0,
                    out.mat());
  // Clipped: 0.5 → 1 (err 0), 6 → 5 (err 0), 4 vs 3.5 (err 0.5). Column 1 is not a target.
  EXPECT_EQ(be->download(out.cmat()), (Vec{0.25, 0.5, 3, 0, 0, 0}));
  // Without clipping room the raw errors count.
  be->rating_errors(be->upload(pred, 2, 4).cmat(), t.view(), up_idx({1, 1}).cmat(), -10.0, 10.0,
                    out.mat());
  const Vec got = be->download(out.cmat());
  EXPECT_NEAR(got[0], 0.25 + 1 + 0.25, 1e-15);
  EXPECT_NEAR(got[1], 0.5 + 1 + 0.5, 1e-15);
  EXPECT_EQ(got[2], 3);
  EXPECT_NEAR(got[3], 1 + 9 + 2.25, 1e-15);
  EXPECT_NEAR(got[4], 1 + 3 + 1.5, 1e-15);
  EXPECT_THROW(be->rating_errors(be->upload(pred, 2, 4).cmat(), t.view(), up_idx({1, 2}).cmat(),
                                 1.0, 5.0, out.mat()),
               VaeError);
}

// ---- catalogue coverage through the trainer's evaluation --------------------------------

double metric(const TrainResult& r, const std::string& key) {
  for (const auto& kv : r.metrics)
    if (kv.first == key) return kv.second;
  ADD_FAILURE() << "no metric " << key;
  return NAN;
}

TrainResult run_popularity(const Dataset& d, const std::string& protocol, int k) {
  auto be = make_cpu_backend<float>();
  TrainOptions o;
  o.model.kind = "popularity";
  o.protocol = protocol;
  o.k = k;
  o.ks = {k, 50};
  o.quiet = true;
  std::ostringstream log;
  return run_experiment(*be, d, o, log);
}

// The per-user values behind each ranking metric average to it, one per evaluated user (what
// the confidence intervals and compare's paired differences are computed from).
TEST(UserMetrics, PerUserValuesAverageToTheReportedMetrics) {
  const Dataset d = test::synthetic_data(300, 200, 9000, 3, 5);
  for (const char* protocol : {"seed", "heldout"}) {
    auto be = make_cpu_backend<float>();
    const TrainResult r = test::run_small(*be, d, "cdae", protocol, 0, 2);
    ASSERT_FALSE(r.user_metrics.empty()) << protocol;
    const size_t users = r.user_metrics.front().second.size();
    EXPECT_GT(users, 10u) << protocol;
    for (const auto& [name, values] : r.user_metrics) {
      EXPECT_EQ(values.size(), users) << protocol << " " << name;
      const double mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
      EXPECT_NEAR(mean, metric(r, name), 1e-12) << protocol << " " << name;
    }
    for (const char* absent : {"rmse", "coverage@20"})
      for (const auto& kv : r.user_metrics) EXPECT_NE(kv.first, absent);
    // Who they are, and how many ratings each gave the model: all of them under seed (full
    // vectors), about 80 % of the positives under heldout (the fold-in part).
    ASSERT_EQ(r.eval_user_ids.size(), users) << protocol;
    ASSERT_EQ(r.user_activity.size(), users) << protocol;
    for (size_t i = 0; i < users; ++i) {
      const int64_t u = d.find_user(r.eval_user_ids[i]);
      ASSERT_GE(u, 0) << r.eval_user_ids[i];
      const int64_t all = d.ratings.indptr[u + 1] - d.ratings.indptr[u];
      if (std::string(protocol) == "seed")
        EXPECT_EQ(r.user_activity[i], all) << r.eval_user_ids[i];
      else
        EXPECT_TRUE(r.user_activity[i] >= 1 && r.user_activity[i] < all) << r.eval_user_ids[i];
    }
  }
}

// What compare's popularity notes read from a result: the steps per epoch (ceil of the training
// rows over the batch), and the model's settings with their defaults resolved, kept after the
// model itself is released.
TEST(UserMetrics, ResultsKeepTheirStepsAndResolvedSettings) {
  const Dataset d = test::synthetic_data(300, 200, 9000, 3, 5);
  auto be = make_cpu_backend<float>();
  TrainResult vae = test::run_small(*be, d, "vae", "seed", 0, 3);
  ASSERT_EQ(vae.batch_size, 64);
  EXPECT_EQ(vae.steps_per_epoch, (vae.train_rows + 63) / 64);
  EXPECT_GT(vae.steps_per_epoch, 1);
  EXPECT_EQ(vae.best_epoch, 3);
  EXPECT_EQ(vae.config.beta, 1.0);  // the notebook VAE's default, resolved from "unset"
  vae.model_ptr.reset();
  EXPECT_EQ(vae.config.kind, "vae");
  const TrainResult mult = test::run_small(*be, d, "multvae", "seed", 0, 1);
  EXPECT_EQ(mult.steps_per_epoch, 1);  // batch 500 over 240 training users
  EXPECT_DOUBLE_EQ(mult.config.beta, 0.2);
  EXPECT_EQ(run_popularity(d, "seed", 20).steps_per_epoch, 0);  // nothing trained
}

// Under the timed protocols the evaluated users are training users: CDAE scores each with their
// own user vector (by training row). The reported test NDCG is that scoring's, recomputed here
// from the split and the trained model, and not the one without the vectors. Under cutoff, test
// users who arrived after the validation cut have no row (kNoRow) and are scored without one.
TEST(UserMetrics, TimedProtocolsCdaeScoresEachUserWithTheirOwnVector) {
  const Dataset d = test::synthetic_data(200, 300, 8000, 4, 3);
  auto be = make_cpu_backend<float>();
  for (const std::string protocol : {"temporal", "cutoff"}) {
    SCOPED_TRACE(protocol);
    const TrainResult r = test::run_small(*be, d, "cdae", protocol, 0, 12);
    TrainOptions opt;
    opt.protocol = protocol;
    const TemporalSplit s = split_timed(d, opt);
    ASSERT_EQ(r.column_map, s.item_map);
    const int64_t n = s.test_foldin.rows, width = static_cast<int64_t>(s.item_map.size());
    ASSERT_GT(n, protocol == "temporal" ? 50 : 20);
    CsrTensor<float> in = be->upload_csr(s.test_foldin), target = be->upload_csr(s.test_target);
    std::vector<int32_t> iota(static_cast<size_t>(n));
    std::iota(iota.begin(), iota.end(), 0);
    Tensor<int32_t> rows = be->upload<int32_t>(iota, n, 1), users = be->upload<int32_t>(s.test_rows, n, 1);
    auto ndcg100 = [&](bool with_users) {
      const int64_t batch = r.batch_size;  // the model's buffers hold this many rows
      Tensor<float> scores = be->alloc<float>(batch, width), val = be->alloc<float>(batch, 100);
      Tensor<float> out = be->alloc<float>(batch, 2);
      Tensor<int32_t> idx = be->alloc<int32_t>(batch, 100);
      std::vector<double> per_user;
      for (int64_t r0 = 0; r0 < n; r0 += batch) {
        const int64_t m = std::min(batch, n - r0);
        Batch<float> b;
        b.input = in.view();
        b.rows = rows.cmat().rows_slice(r0, m);
        if (with_users) b.users = users.cmat().rows_slice(r0, m);
        b.n = m;
        r.model_ptr->predict(b, scores.mat().rows_slice(0, m));
        be->topk(scores.cmat().rows_slice(0, m), in.view(), b.rows, 100, idx.mat().rows_slice(0, m),
                 val.mat().rows_slice(0, m));
        be->heldout_metrics(idx.cmat().rows_slice(0, m), target.view(), b.rows, {100}, out.mat().rows_slice(0, m));
        const std::vector<float> h = be->download(out.cmat().rows_slice(0, m));
        for (int64_t i = 0; i < m; ++i) per_user.push_back(h[i * 2 + 1]);
      }
      return per_user;
    };
    const std::vector<double> own = ndcg100(true), none = ndcg100(false);
    const double own_mean = std::accumulate(own.begin(), own.end(), 0.0) / static_cast<double>(n);
    const double none_mean = std::accumulate(none.begin(), none.end(), 0.0) / static_cast<double>(n);
    EXPECT_NEAR(metric(r, "ndcg@100"), own_mean, 1e-6);
    EXPECT_GT(std::fabs(own_mean - none_mean), 1e-4) << "the user vectors changed no ranking";
    int64_t rowless = 0;
    for (int64_t i = 0; i < n; ++i)
      if (s.test_rows[i] == kNoRow) {
        ++rowless;
        EXPECT_EQ(own[i], none[i]) << "test user " << i << " has no vector to add";
      }
    EXPECT_EQ(rowless > 0, protocol == "cutoff");
  }
}

// Seed protocol: every item is ranked for every user, so popularity gives each the same list and
// covers exactly k items.
TEST(Coverage, PopularityUnderTheSeedProtocolCoversItsOneList) {
  const Dataset d = test::synthetic_data(200, 300, 6000, 3, 4);
  for (int k : {7, 20}) {
    const TrainResult r = run_popularity(d, "seed", k);
    EXPECT_DOUBLE_EQ(metric(r, "coverage@" + std::to_string(k)), static_cast<double>(k) / 300) << "k " << k;
  }
  // A cut-off beyond the 300 items ranks them all, and keeps the name it was asked by.
  EXPECT_DOUBLE_EQ(metric(run_popularity(d, "seed", 500), "coverage@500"), 1.0);
}

// Heldout protocol: each test user's fold-in items are left out of their list, so the lists
// differ. The oracle ranks the training counts itself (ties to the lower index).
TEST(Coverage, PopularityUnderTheHeldoutProtocolMatchesAnOracle) {
  const Dataset d = test::synthetic_data(300, 200, 9000, 3, 5);
  const int k = 10;
  const TrainResult r = run_popularity(d, "heldout", k);
  const HeldoutSplit s = split_heldout(d, HeldoutOptions{}, 1);
  const int64_t items = static_cast<int64_t>(s.item_map.size());
  std::vector<int64_t> count(static_cast<size_t>(items), 0);
  for (int64_t j = 0; j < s.train.nnz(); ++j) ++count[s.train.indices[j]];
  std::vector<int32_t> order(static_cast<size_t>(items));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return count[a] > count[b]; });
  std::set<int32_t> covered;
  for (int64_t u = 0; u < s.test_foldin.rows; ++u) {
    std::set<int32_t> seen(s.test_foldin.indices.begin() + s.test_foldin.indptr[u],
                           s.test_foldin.indices.begin() + s.test_foldin.indptr[u + 1]);
    int taken = 0;
    for (size_t j = 0; j < order.size() && taken < k; ++j)
      if (!seen.count(order[j])) covered.insert(order[j]), ++taken;
  }
  ASSERT_GT(covered.size(), static_cast<size_t>(k));  // the exclusions really vary the lists
  EXPECT_DOUBLE_EQ(metric(r, "coverage@" + std::to_string(k)), static_cast<double>(covered.size()) / items);
}

}  // namespace
}  // namespace vae
