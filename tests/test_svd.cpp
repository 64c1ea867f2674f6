// SVD / SVD++ (Surprise semantics): one hand-computed SGD step, prediction rules for unknown
// users and items, determinism, k-fold splits, the blocked (DSGD) schedule's CPU twin, model
// files, recommendations and fold-in (library and CLI), and (with MOVIELENS_DIR) the ml-100k
// 5-fold RMSE targets next to Surprise's published table.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <cstring>
#include <functional>

#include <nlohmann/json.hpp>

#include "analysis/model_file.h"
#include "analysis/recommend.h"
#include "analysis/safetensors.h"
#include "backend/backend.h"
#include "core/error.h"
#include "data/dataset.h"
#include "kernels/svd_sgd.h"
#include "models/svd.h"
#include "train/svd_experiment.h"

#include "cli_runner.h"

namespace {

using namespace vae;

Csr tiny() {
  // users × items = 2 × 3: u0 rated i0=4, i1=2; u1 rated i1=5.
  return Csr::from_triplets(2, 3, {0, 0, 1}, {0, 1, 1}, {4.0f, 2.0f, 5.0f});
}

TEST(Svd, FirstSgdStepMatchesHandComputation) {
  SvdOptions o;
  o.factors = 2;
  o.epochs = 1;
  SvdModel m(tiny(), 1, 5, o);
  const std::vector<double> p0 = m.user_factors(), q0 = m.item_factors();
  ASSERT_NEAR(m.global_mean(), 11.0 / 3.0, 1e-12);
  // The first rating visited is (u0, i0, 4): replay its update by hand.
  const double lr = 0.005, reg = 0.02, mu = 11.0 / 3.0;
  const double dot = q0[0] * p0[0] + q0[1] * p0[1];
  const double err = 4.0 - (mu + dot);
  const double bu = lr * err, bi = lr * err;
  double p[2], q[2];
  for (int f = 0; f < 2; ++f) {
    p[f] = p0[f] + lr * (err * q0[f] - reg * p0[f]);
    q[f] = q0[f] + lr * (err * p0[f] - reg * q0[f]);
  }
  // Second rating (u0, i1, 2) uses the updated u0 values.
  const double dot2 = q0[2] * p[0] + q0[3] * p[1];
  const double err2 = 2.0 - (mu + bu + 0.0 + dot2);
  const double bu2 = bu + lr * (err2 - reg * bu);
  m.run_epoch();
  EXPECT_NEAR(m.item_bias()[0], bi, 1e-15);
  EXPECT_NEAR(m.item_factors()[0], q[0], 1e-15);
  EXPECT_NEAR(m.item_factors()[1], q[1], 1e-15);
  // (i1 moves again when u1's rating is visited, so u0's side is checked instead.)
  for (int f = 0; f < 2; ++f)
    EXPECT_NEAR(m.user_factors()[f], p[f] + lr * (err2 * q0[2 + f] - reg * p[f]), 1e-15);
  // u0's bias after both of its ratings.
  EXPECT_NEAR(m.user_bias()[0], bu2, 1e-15);
}

TEST(Svd, PlusPlusStepUsesImplicitFeedback) {
  SvdOptions o;
  o.plus_plus = true;
  o.factors = 2;
  // A user with a single rating: |N(u)| = 1, so the first visit is easy to replay by hand.
  const double lr = 0.007, reg = 0.02;
  Csr one = Csr::from_triplets(1, 2, {0}, {0}, {4.0f});
  SvdModel m1(one, 1, 5, o);
  const auto P = m1.user_factors(), Q = m1.item_factors(), Y = m1.implicit_factors();
  const double mu1 = 4.0;
  const double im0 = Y[0], im1 = Y[1];  // |N(u)| = 1
  const double e1 = 4.0 - (mu1 + Q[0] * (P[0] + im0) + Q[1] * (P[1] + im1));
  m1.run_epoch();
  EXPECT_NEAR(m1.user_bias()[0], lr * e1, 1e-15);
  EXPECT_NEAR(m1.user_factors()[0], P[0] + lr * (e1 * Q[0] - reg * P[0]), 1e-15);
  EXPECT_NEAR(m1.item_factors()[0], Q[0] + lr * (e1 * (P[0] + im0) - reg * Q[0]), 1e-15);
  EXPECT_NEAR(m1.implicit_factors()[0], Y[0] + lr * (e1 * Q[0] - reg * Y[0]), 1e-15);
  EXPECT_NEAR(m1.implicit_factors()[1], Y[1] + lr * (e1 * Q[1] - reg * Y[1]), 1e-15);
}

TEST(Svd, UnknownUsersAndItemsAndClipping) {
  SvdOptions o;
  o.factors = 3;
  // u1 has no ratings and i2 none either: 3 users × 3 items.
  Csr train = Csr::from_triplets(3, 3, {0, 0, 2}, {0, 1, 1}, {5.0f, 5.0f, 5.0f});
  SvdModel m(train, 1, 5, o);
  m.fit();
  EXPECT_DOUBLE_EQ(m.predict(1, 2), m.global_mean());                       // both unknown
  EXPECT_NEAR(m.predict(1, 0), m.global_mean() + m.item_bias()[0], 1e-12);  // unknown user
  EXPECT_NEAR(m.predict(0, 2), std::min(5.0, m.global_mean() + m.user_bias()[0]), 1e-12);
  for (int64_t u = 0; u < 3; ++u)
    for (int64_t i = 0; i < 3; ++i) {
      EXPECT_GE(m.predict(u, i), 1.0);
      EXPECT_LE(m.predict(u, i), 5.0);
    }
}

TEST(Svd, SameSeedSameModelOtherSeedOther) {
  Dataset d = make_synthetic(SyntheticSpec{200, 150, 4000, 3, 1});
  RatingsSplit s = split_ratings_random(d, 0.2, 1);
  auto fit = [&](uint64_t seed, bool pp) {
    SvdOptions o;
    o.seed = seed;
    o.plus_plus = pp;
    o.epochs = 5;
    SvdModel m(s.train, d.rating_min, d.rating_max, o);
    m.fit();
    return m.evaluate(s.test).rmse;
  };
  for (bool pp : {false, true}) {
    EXPECT_EQ(fit(3, pp), fit(3, pp));
    EXPECT_NE(fit(3, pp), fit(4, pp));
  }
}

TEST(Svd, TrainingErrorFallsAndBeatsTheMeanOnHeldOutRatings) {
  Dataset d = make_synthetic(SyntheticSpec{300, 200, 12000, 4, 2});
  RatingsSplit s = split_ratings_random(d, 0.1, 2);
  SvdOptions o;
  std::vector<double> hist;
  SvdModel m(s.train, d.rating_min, d.rating_max, o);
  m.fit([&](int, double r) { hist.push_back(r); });
  ASSERT_EQ(hist.size(), 20u);
  EXPECT_LT(hist.back(), 0.9 * hist.front());
  // Predicting the global mean is the floor any rating model must beat.
  double sq = 0;
  int64_t n = 0;
  for (float v : s.test.values) sq += (v - m.global_mean()) * (v - m.global_mean()), ++n;
  EXPECT_LT(m.evaluate(s.test).rmse, std::sqrt(sq / n));
}

TEST(Splits, KFoldPartitionsTheRatings) {
  Dataset d = make_synthetic(SyntheticSpec{50, 40, 700, 2, 3});
  const int k = 5;
  std::vector<int> times(static_cast<size_t>(d.ratings.nnz()), 0);
  int64_t total = 0;
  for (int f = 0; f < k; ++f) {
    RatingsSplit s = split_ratings_kfold(d, k, f, 9);
    EXPECT_EQ(s.train.nnz() + s.test.nnz(), d.ratings.nnz());
    EXPECT_NEAR(static_cast<double>(s.test.nnz()), d.ratings.nnz() / 5.0, 1.0);
    s.test.validate();
    s.train.validate();
    total += s.test.nnz();
    // Map test entries back to rating positions.
    for (int64_t u = 0; u < s.test.rows; ++u)
      for (int64_t q = s.test.indptr[u]; q < s.test.indptr[u + 1]; ++q) {
        int64_t pos = -1;
        for (int64_t r = d.ratings.indptr[u]; r < d.ratings.indptr[u + 1]; ++r)
          if (d.ratings.indices[r] == s.test.indices[q]) pos = r;
        ASSERT_GE(pos, 0);
        ++times[pos];
      }
  }
  EXPECT_EQ(total, d.ratings.nnz());
  for (int t : times) EXPECT_EQ(t, 1);
  EXPECT_THROW(split_ratings_kfold(d, 1, 0, 1), UsageError);
  EXPECT_THROW(split_ratings_kfold(d, 5, 5, 1), UsageError);
}

// Through the CLI: k-fold cross-validation reports mean and std in summary.json; wrong
// protocol is a usage error (exit 2).
TEST(SvdCli, FoldsWriteMeanAndStd) {
  const std::string out = (std::filesystem::temp_directory_path() / ("vae_svd_cli_" + std::to_string(::getpid()))).string();
  const std::string base = std::string(VAE_CLI_PATH) + " train --data synthetic:users=120,items=90,ratings=3000,groups=2";
  ASSERT_EQ(std::system((base + " --model svdpp --protocol ratings --folds 3 --epochs 4 --quiet --out " + out +
                         " >/dev/null 2>&1").c_str()),
            0);
  std::ifstream f(out + "/summary.json");
  const nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["model"], "svdpp");
  EXPECT_GT(j["metrics"]["rmse"].get<double>(), 0.3);
  EXPECT_LT(j["metrics"]["rmse"].get<double>(), 2.0);
  EXPECT_GT(j["metrics"]["rmse_std"].get<double>(), 0.0);
  std::filesystem::remove_all(out);
  const int rc = std::system((base + " --model svd --protocol seed >/dev/null 2>&1").c_str());
  EXPECT_EQ(WEXITSTATUS(rc), 2);
}

// ---- the blocked (DSGD) schedule ------------------------------------------------------------

SvdOptions blocked(SvdOptions o, int blocks) {
  o.schedule = SvdSchedule::blocked;
  o.blocks = blocks;
  return o;
}

TEST(SvdBlocked, EverySubEpochTouchesDisjointUsersAndItemsAndAnEpochCoversEveryRating) {
  const Dataset d = make_synthetic(SyntheticSpec{250, 180, 6000, 3, 7});
  const Csr& r = d.ratings;
  for (int B : {1, 2, 7, 16}) {
    const SvdBlockPlan p = make_svd_block_plan(r, B);
    ASSERT_EQ(p.blocks, B);
    ASSERT_EQ(p.block_ptr.size(), static_cast<size_t>(B * B + 1));
    ASSERT_EQ(p.nnz(), r.nnz());
    // Each block holds only its row block's users and its column block's items, and the blocks
    // hold every rating exactly once.
    std::multiset<std::pair<int32_t, int32_t>> seen;
    for (int rb = 0; rb < B; ++rb)
      for (int cb = 0; cb < B; ++cb)
        for (int64_t k = p.block_begin(rb, cb); k < p.block_end(rb, cb); ++k) {
          ASSERT_EQ(p.user_block[p.user[k]], rb);
          ASSERT_EQ(p.item_block[p.item[k]], cb);
          seen.insert({p.user[k], p.item[k]});
        }
    std::multiset<std::pair<int32_t, int32_t>> all;
    for (int64_t u = 0; u < r.rows; ++u)
      for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k) all.insert({static_cast<int32_t>(u), r.indices[k]});
    EXPECT_EQ(seen, all);
    // Sub-epoch s runs blocks (b, (b + s) mod B) at once: no user or item in two of them; over
    // the B sub-epochs every block comes up exactly once.
    std::vector<int> visits(static_cast<size_t>(B * B), 0);
    for (int s = 0; s < B; ++s) {
      std::set<int32_t> users, items;
      for (int b = 0; b < B; ++b) {
        const int cb = (b + s) % B;
        ++visits[static_cast<size_t>(b * B + cb)];
        std::set<int32_t> bu, bi;
        for (int64_t k = p.block_begin(b, cb); k < p.block_end(b, cb); ++k) {
          bu.insert(p.user[k]);
          bi.insert(p.item[k]);
        }
        for (int32_t u : bu) EXPECT_TRUE(users.insert(u).second) << "user " << u << " in two blocks, B " << B;
        for (int32_t i : bi) EXPECT_TRUE(items.insert(i).second) << "item " << i << " in two blocks, B " << B;
      }
    }
    for (int v : visits) EXPECT_EQ(v, 1);
    // Greedy balancing (largest first): row blocks differ by at most the busiest user's count.
    if (B > 1) {
      std::vector<int64_t> per_row(static_cast<size_t>(B), 0);
      int64_t busiest = 0;
      for (int64_t k = 0; k < p.nnz(); ++k) ++per_row[p.user_block[p.user[k]]];
      for (int64_t u = 0; u < r.rows; ++u) busiest = std::max(busiest, r.row_nnz(u));
      const auto mm = std::minmax_element(per_row.begin(), per_row.end());
      EXPECT_LE(*mm.second - *mm.first, busiest) << "B " << B;
    }
  }
  EXPECT_THROW(make_svd_block_plan(r, 0), UsageError);
}

TEST(SvdBlocked, VisitingOrderIsAPermutationOfEachBlockFixedBySeedAndEpoch) {
  const Dataset d = make_synthetic(SyntheticSpec{120, 90, 3000, 2, 3});
  const SvdBlockPlan p = make_svd_block_plan(d.ratings, 5);
  std::vector<int32_t> o1, o2, o3, o4;
  svd_block_order(p, 1, 0, o1);
  svd_block_order(p, 1, 0, o2);
  svd_block_order(p, 1, 1, o3);
  svd_block_order(p, 2, 0, o4);
  EXPECT_EQ(o1, o2);
  EXPECT_NE(o1, o3);
  EXPECT_NE(o1, o4);
  for (size_t b = 0; b + 1 < p.block_ptr.size(); ++b) {
    std::vector<int32_t> seg(o1.begin() + p.block_ptr[b], o1.begin() + p.block_ptr[b + 1]);
    std::sort(seg.begin(), seg.end());
    for (size_t t = 0; t < seg.size(); ++t) ASSERT_EQ(seg[t], p.block_ptr[b] + static_cast<int64_t>(t));
  }
}

// The warp's dot-product order (32 lane partials, xor butterfly) as emulated on the host.
TEST(SvdBlocked, WarpDotIsTheLaneTreeSum) {
  std::vector<double> a(70), b(70);
  for (int k = 0; k < 70; ++k) {
    a[k] = std::sin(k + 1.0);
    b[k] = std::cos(3.0 * k);
  }
  double lane[32] = {};
  for (int k = 0; k < 70; ++k) lane[k % 32] += a[k] * b[k];
  double s16[16], s8[8], s4[4], s2[2];
  for (int l = 0; l < 16; ++l) s16[l] = lane[l] + lane[l + 16];
  for (int l = 0; l < 8; ++l) s8[l] = s16[l] + s16[l + 8];
  for (int l = 0; l < 4; ++l) s4[l] = s8[l] + s8[l + 4];
  for (int l = 0; l < 2; ++l) s2[l] = s4[l] + s4[l + 2];
  EXPECT_EQ(svd_warp_dot(a.data(), b.data(), nullptr, 70), s2[0] + s2[1]);
  double plain = 0;
  for (int k = 0; k < 70; ++k) plain += a[k] * b[k];
  EXPECT_NEAR(svd_warp_dot(a.data(), b.data(), nullptr, 70), plain, 1e-12);
}

TEST(SvdBlocked, DeterministicAndWithinACentOfTheSerialRmse) {
  const Dataset d = make_synthetic(SyntheticSpec{400, 300, 20000, 4, 2});
  const RatingsSplit s = split_ratings_random(d, 0.1, 2);
  for (bool pp : {false, true}) {
    SvdOptions o;
    o.plus_plus = pp;
    SvdModel serial(s.train, d.rating_min, d.rating_max, o);
    serial.fit();
    SvdModel b1(s.train, d.rating_min, d.rating_max, blocked(o, 0));
    std::vector<double> h1, h2;
    b1.fit([&](int, double r) { h1.push_back(r); });
    SvdModel b2(s.train, d.rating_min, d.rating_max, blocked(o, 0));
    b2.fit([&](int, double r) { h2.push_back(r); });
    EXPECT_EQ(b1.block_plan()->blocks, default_svd_blocks(400, 300));
    // Same seed: the same bits.
    EXPECT_EQ(h1, h2);
    EXPECT_EQ(b1.user_factors(), b2.user_factors());
    EXPECT_EQ(b1.item_factors(), b2.item_factors());
    EXPECT_EQ(b1.user_bias(), b2.user_bias());
    EXPECT_EQ(b1.item_bias(), b2.item_bias());
    EXPECT_EQ(b1.implicit_factors(), b2.implicit_factors());
    const double rs = serial.evaluate(s.test).rmse, rb = b1.evaluate(s.test).rmse;
    std::cout << (pp ? "SVD++" : "SVD") << " test RMSE serial " << rs << " blocked " << rb << "\n";
    EXPECT_NEAR(rb, rs, 0.01);
    EXPECT_LT(h1.back(), 0.9 * h1.front());
    // Another seed or another B: another (equally good) model.
    SvdOptions o3 = blocked(o, 0);
    o3.seed = 9;
    SvdModel b3(s.train, d.rating_min, d.rating_max, o3);
    b3.fit();
    EXPECT_NE(b3.user_factors(), b1.user_factors());
    SvdModel b4(s.train, d.rating_min, d.rating_max, blocked(o, 5));
    b4.fit();
    EXPECT_NE(b4.user_factors(), b1.user_factors());
    EXPECT_NEAR(b4.evaluate(s.test).rmse, rs, 0.01);
  }
}

// With one user, SVD++'s deferred y update is Surprise's update in the block's order: replay
// the visiting order with Surprise's serial formulas and compare.
TEST(SvdBlocked, PlusPlusSingleUserFollowsSurpriseInTheVisitingOrder) {
  const Csr one = Csr::from_triplets(1, 4, {0, 0, 0, 0}, {0, 1, 2, 3}, {4.0f, 2.0f, 5.0f, 3.0f});
  SvdOptions o;
  o.plus_plus = true;
  o.factors = 3;
  o.epochs = 2;
  SvdModel m(one, 1, 5, blocked(o, 1));
  std::vector<double> p = m.user_factors(), q = m.item_factors(), y = m.implicit_factors();
  double bu = 0, bi[4] = {0, 0, 0, 0};
  const double lr = 0.007, reg = 0.02, mu = 3.5, inv = 0.5;
  const SvdBlockPlan& plan = *m.block_plan();
  for (int e = 0; e < 2; ++e) {
    std::vector<int32_t> order;
    svd_block_order(plan, o.seed, e, order);
    for (int32_t idx : order) {
      const int i = plan.item[idx];
      double impl[3] = {0, 0, 0};
      for (int j = 0; j < 4; ++j)
        for (int f = 0; f < 3; ++f) impl[f] += y[j * 3 + f] * inv;
      double dot = 0;
      for (int f = 0; f < 3; ++f) dot += q[i * 3 + f] * (p[f] + impl[f]);
      const double err = plan.value[idx] - (mu + bu + bi[i] + dot);
      bu += lr * (err - reg * bu);
      bi[i] += lr * (err - reg * bi[i]);
      for (int f = 0; f < 3; ++f) {
        const double pf = p[f], qf = q[i * 3 + f];
        p[f] += lr * (err * qf - reg * pf);
        q[i * 3 + f] += lr * (err * (pf + impl[f]) - reg * qf);
        for (int j = 0; j < 4; ++j) y[j * 3 + f] += lr * (err * qf * inv - reg * y[j * 3 + f]);
      }
    }
    m.run_epoch();
  }
  for (int f = 0; f < 3; ++f) EXPECT_NEAR(m.user_factors()[f], p[f], 1e-12);
  for (int k = 0; k < 12; ++k) {
    EXPECT_NEAR(m.item_factors()[k], q[k], 1e-12) << k;
    EXPECT_NEAR(m.implicit_factors()[k], y[k], 1e-12) << k;
  }
  EXPECT_NEAR(m.user_bias()[0], bu, 1e-12);
}

TEST(SvdBlocked, MoreBlocksThanUsersAndEmptyBlocksAreFine) {
  SvdOptions o;
  o.factors = 3;
  o.epochs = 3;
  for (bool pp : {false, true}) {
    o.plus_plus = pp;
    SvdModel m(tiny(), 1, 5, blocked(o, 5));
    m.fit();
    EXPECT_TRUE(std::isfinite(m.predict(0, 0)));
  }
  SvdOptions c = o;
  c.cuda = true;  // the GPU runs the blocked schedule only
  EXPECT_THROW(SvdModel(tiny(), 1, 5, c), UsageError);
  if (!cuda_device_available()) {
    SvdModel g(tiny(), 1, 5, blocked(c, 2));
    EXPECT_THROW(g.run_epoch(), VaeError);  // a clean error, not a crash
  }
}

// ---- model files and recommendations ---------------------------------------------------------

const Dataset& rec_data() {
  static const Dataset d = make_synthetic(SyntheticSpec{150, 200, 5000, 3, 4});
  return d;
}

std::filesystem::path temp_dir(const std::string& name) {
  std::filesystem::path p =
      std::filesystem::path(::testing::TempDir()) / ("vae_svd_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

std::unique_ptr<SvdModel> train_small(bool pp, SvdSchedule sched = SvdSchedule::serial) {
  const Dataset& d = rec_data();
  const RatingsSplit s = split_ratings_random(d, kSvdTestFraction, 1);
  SvdOptions o;
  o.plus_plus = pp;
  o.epochs = 4;
  o.schedule = sched;
  auto m = std::make_unique<SvdModel>(s.train, d.rating_min, d.rating_max, o);
  m->fit();
  return m;
}

TEST(SvdModelFile, RoundTripGivesIdenticalPredictions) {
  const Dataset& d = rec_data();
  const auto dir = temp_dir("rt");
  for (bool pp : {false, true})
    for (SvdSchedule sched : {SvdSchedule::serial, SvdSchedule::blocked}) {
      const auto m = train_small(pp, sched);
      const std::string path = (dir / (m->kind() + "_" + svd_schedule_name(sched) + ".safetensors")).string();
      save_svd_model_file(path, *m, svd_model_file_info(*m, d, "random", 1), d);
      EXPECT_EQ(peek_model_kind(path), m->kind());
      const LoadedSvd ls = load_svd_model_file(path, d);
      ASSERT_TRUE(ls.model);
      const SvdModel& r = *ls.model;
      EXPECT_EQ(r.kind(), m->kind());
      EXPECT_EQ(ls.info.ratings_split, "random");
      EXPECT_EQ(ls.info.svd.schedule, sched);
      EXPECT_EQ(ls.info.svd.blocks, m->options().blocks);
      EXPECT_EQ(r.options().factors, m->options().factors);
      EXPECT_EQ(r.global_mean(), m->global_mean());
      for (int64_t u = 0; u < d.num_users(); ++u) {
        for (int64_t i = 0; i < d.num_items(); ++i) ASSERT_EQ(r.predict(u, i), m->predict(u, i)) << u << "," << i;
        std::vector<float> a, b;
        r.score_items(u, a);
        m->score_items(u, b);
        ASSERT_EQ(a, b) << u;
      }
      // train --model-file's evaluation: the same split, the same errors.
      const RatingsSplit s = split_ratings_random(d, kSvdTestFraction, 1);
      const TrainResult t = evaluate_svd_model(d, r, "random", 1, "", path);
      EXPECT_EQ(t.metric("rmse"), m->evaluate(s.test).rmse);
      // Another seed's split is not the one the model was trained on.
      EXPECT_THROW(evaluate_svd_model(d, r, "random", 2, "", path), DataError);
      EXPECT_THROW(ls.model->run_epoch(), UsageError);
      // The autoencoder loader refuses an SVD file.
      auto be = make_cpu_backend<float>();
      EXPECT_THROW(load_model_file(path, *be, d), DataError);
    }
  std::filesystem::remove_all(dir);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  return "(no DataError)";
}

TEST(SvdModelFile, DamagedOrForeignFilesAreRefusedNamingTheFile) {
  const Dataset& d = rec_data();
  const auto dir = temp_dir("bad");
  const auto m = train_small(true);
  const std::string good = (dir / "good.safetensors").string();
  save_svd_model_file(good, *m, svd_model_file_info(*m, d, "random", 1), d);
  const std::string bytes = read_binary_file(good);
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string p = (dir / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  };
  using ::testing::HasSubstr;
  std::string flipped = bytes;
  flipped[flipped.size() - 100] ^= 0x10;
  const std::string f1 = write("flipped.safetensors", flipped);
  EXPECT_THAT(error_of([&] { load_svd_model_file(f1, d); }), HasSubstr("checksum"));
  EXPECT_THAT(error_of([&] { load_svd_model_file(f1, d); }), HasSubstr("flipped.safetensors"));
  const std::string f2 = write("truncated.safetensors", bytes.substr(0, bytes.size() / 2));
  EXPECT_THAT(error_of([&] { load_svd_model_file(f2, d); }), HasSubstr("truncated.safetensors"));
  // Another dataset.
  const Dataset other = make_synthetic(SyntheticSpec{150, 200, 5000, 3, 5});
  EXPECT_THAT(error_of([&] { load_svd_model_file(good, other); }), HasSubstr("trained on dataset"));
  // Re-signed edits: a missing tensor, a wrong shape, a non-finite value.
  auto resigned = [&](const std::string& name, const std::function<void(StFile&)>& edit) {
    StFile f = decode_safetensors(bytes, good);
    edit(f);
    f.metadata["checksum"] = model_file_checksum(f.metadata, f.tensors);
    const std::string p = (dir / name).string();
    save_safetensors(p, f.tensors, f.metadata);
    return p;
  };
  const std::string f3 = resigned("missing.safetensors", [](StFile& f) {
    f.tensors.erase(std::remove_if(f.tensors.begin(), f.tensors.end(), [](const StTensor& t) { return t.name == "item_bias"; }),
                    f.tensors.end());
  });
  EXPECT_THAT(error_of([&] { load_svd_model_file(f3, d); }), HasSubstr("missing tensor 'item_bias'"));
  const std::string f4 = resigned("shape.safetensors", [](StFile& f) {
    for (StTensor& t : f.tensors)
      if (t.name == "user_factors") t.shape = {t.shape[1], t.shape[0]};
  });
  EXPECT_THAT(error_of([&] { load_svd_model_file(f4, d); }), HasSubstr("has shape"));
  const std::string f5 = resigned("nan.safetensors", [](StFile& f) {
    for (StTensor& t : f.tensors)
      if (t.name == "item_factors") {
        const double nan = std::nan("");
        std::memcpy(t.data.data(), &nan, sizeof nan);
      }
  });
  EXPECT_THAT(error_of([&] { load_svd_model_file(f5, d); }), HasSubstr("non-finite"));
  const std::string f6 = resigned("items.safetensors", [](StFile& f) {
    for (StTensor& t : f.tensors)
      if (t.name == "implicit_items") {
        const int32_t bad = 100000;
        std::memcpy(t.data.data(), &bad, sizeof bad);
      }
  });
  EXPECT_THAT(error_of([&] { load_svd_model_file(f6, d); }), HasSubstr("out of range"));
  // Fold-in runs the stored epochs: a billion would hang recommend and similar.
  const std::string f7 = resigned("epochs.safetensors", [](StFile& f) {
    nlohmann::json j = nlohmann::json::parse(f.metadata["svd"]);
    j["epochs"] = 1000000000;
    f.metadata["svd"] = j.dump();
  });
  EXPECT_THAT(error_of([&] { load_svd_model_file(f7, d); }),
              HasSubstr("implausible SGD settings in the 'svd' metadata (epochs 1000000000"));
  EXPECT_EQ(peek_model_kind((dir / "nosuch").string()), "");
  std::filesystem::remove_all(dir);
}

std::string ratings_spec(const Dataset& d, int64_t u) {
  std::string s;
  for (int64_t p = d.ratings.indptr[u]; p < d.ratings.indptr[u + 1]; ++p) {
    if (!s.empty()) s += ",";
    std::ostringstream v;
    v << d.ratings.values[p];
    s += d.item_ids[d.ratings.indices[p]] + ":" + v.str();
  }
  return s;
}

TEST(SvdRecommend, ExcludesRatedItemsAndRanksByTheEstimate) {
  const Dataset& d = rec_data();
  const auto m = train_small(false);
  SvdRecommender rec(*m, d);
  RecommendOptions o;
  o.top = 15;
  const int64_t u = 5;
  const RecommendResult r = rec.for_user(d.user_ids[u], o);
  ASSERT_EQ(r.items.size(), 15u);
  std::set<int32_t> rated(d.ratings.indices.begin() + d.ratings.indptr[u], d.ratings.indices.begin() + d.ratings.indptr[u + 1]);
  std::vector<float> scores;
  m->score_items(u, scores);
  for (size_t k = 0; k < r.items.size(); ++k) {
    EXPECT_EQ(rated.count(r.items[k].item), 0u);
    EXPECT_EQ(r.items[k].score, scores[r.items[k].item]);
    EXPECT_EQ(r.items[k].title, d.titles[r.items[k].item]);
    if (k) {
      EXPECT_GE(r.items[k - 1].score, r.items[k].score);
    }
  }
  // Every unrated item outside the list scores at most the last one.
  for (int64_t i = 0; i < d.num_items(); ++i)
    if (!rated.count(static_cast<int32_t>(i)) &&
        std::none_of(r.items.begin(), r.items.end(), [&](const Recommendation& x) { return x.item == i; })) {
      EXPECT_LE(scores[i], r.items.back().score);
    }
  o.include_rated = true;
  o.top = static_cast<int>(d.num_items());
  const RecommendResult all = rec.for_user(d.user_ids[u], o);
  EXPECT_EQ(all.items.size(), static_cast<size_t>(d.num_items()));
  EXPECT_THROW(rec.for_user("nosuchuser", o), UsageError);
  // Fold-in input problems are warnings beside a list; when no pair is usable at all the
  // request is refused; an empty list ranks by the item bias.
  const RecommendResult w = rec.for_ratings("nosuch:3,bad," + d.item_ids[0] + ":4", o);
  EXPECT_EQ(w.warnings.size(), 2u);
  EXPECT_FALSE(w.popularity_fallback);
  EXPECT_THROW(rec.for_ratings("nosuch:3,bad", o), UsageError);
  const RecommendResult e = rec.for_ratings("", o);
  EXPECT_TRUE(e.popularity_fallback);
}

// Folding in a training user's own ratings must rank like that user's stored vector: the mean
// top-10 overlap is far above the overlap with another taste group's user (the bar is checked
// to fail for those, so it measures the user, not the item biases every list shares).
TEST(SvdRecommend, FoldInOfAUsersOwnRatingsRanksLikeTheStoredUser) {
  const Dataset d = make_synthetic(SyntheticSpec{943, 1682, 100000, 4, 5});
  for (bool pp : {false, true}) {
    SvdOptions o;
    o.plus_plus = pp;
    if (pp) o.schedule = SvdSchedule::blocked;  // same model semantics, faster on the CPU
    SvdModel m(d.ratings, d.rating_min, d.rating_max, o);
    m.fit();
    SvdRecommender rec(m, d);
    RecommendOptions ro;
    ro.top = 10;
    double own = 0, other = 0;
    const int n = 40;
    for (int64_t u = 0; u < n; ++u) {
      const RecommendResult stored = rec.for_user(d.user_ids[u], ro);
      std::set<int32_t> top;
      for (const auto& r : stored.items) top.insert(r.item);
      int64_t v = u + 1;
      while (d.planted_group[v] == d.planted_group[u]) ++v;
      const RecommendResult mine = rec.for_ratings(ratings_spec(d, u), ro);
      const RecommendResult theirs = rec.for_ratings(ratings_spec(d, v), ro);
      for (const auto& r : mine.items) own += top.count(r.item);
      for (const auto& r : theirs.items) other += top.count(r.item);
    }
    own /= n;
    other /= n;
    std::cout << m.kind() << " fold-in top-10 overlap: own ratings " << own << ", another group's user " << other << "\n";
    const double bar = 6.5;
    EXPECT_GE(own, bar);
    EXPECT_LT(other, bar);
  }
}

// Item factors that overflow the float scores (a damaged file passes the finiteness check on
// its doubles): refused, rather than a list ranked by inf and nan.
TEST(SvdRecommend, ScoresThatOverflowAreRefusedNotListed) {
  const Dataset d = make_synthetic(SyntheticSpec{200, 300, 6000, 4, 5});
  SvdModel fitted(d.ratings, d.rating_min, d.rating_max, SvdOptions{});
  fitted.fit();
  SvdState st = fitted.state();
  SvdModel good(st);
  RecommendOptions ro;
  ro.top = 5;
  EXPECT_EQ(SvdRecommender(good, d).for_user(d.user_ids[3], ro).items.size(), 5u);
  for (double& q : st.qi) q = 1e300;
  SvdModel bad(std::move(st));
  SvdRecommender rec(bad, d);
  try {
    rec.for_user(d.user_ids[3], ro);
    ADD_FAILURE() << "no error";
  } catch (const VaeError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("the model's scores are not finite (nan or inf)"));
  }
}

// A user or an item without training ratings: the user's list is Surprise's estimate for an
// unknown user (mu + b_i, so the largest item biases first), said in a note; a folded-in rating
// of the item is left out with a warning and the rest still fold in.
TEST(SvdRecommend, UsersAndItemsWithoutTrainingRatingsAreSaid) {
  const Dataset d = make_synthetic(SyntheticSpec{200, 300, 6000, 4, 5});
  const int64_t gone_user = 0;
  const int32_t gone_item = d.ratings.indices[d.ratings.indptr[1]];  // one user 1 rated
  std::vector<int32_t> rows, cols;
  std::vector<float> vals;
  for (int64_t u = 0; u < d.ratings.rows; ++u)
    for (int64_t p = d.ratings.indptr[u]; p < d.ratings.indptr[u + 1]; ++p) {
      if (u == gone_user || d.ratings.indices[p] == gone_item) continue;
      rows.push_back(static_cast<int32_t>(u));
      cols.push_back(d.ratings.indices[p]);
      vals.push_back(d.ratings.values[p]);
    }
  const Csr train = Csr::from_triplets(d.ratings.rows, d.ratings.cols, rows, cols, vals);
  SvdModel m(train, d.rating_min, d.rating_max, SvdOptions{});
  m.fit();
  SvdRecommender rec(m, d);
  RecommendOptions ro;
  ro.top = 5;
  ro.include_rated = true;
  const RecommendResult unknown = rec.for_user(d.user_ids[gone_user], ro);
  ASSERT_EQ(unknown.notes.size(), 1u);
  EXPECT_NE(unknown.notes[0].find("has no training ratings: ranked by mu + b_i"), std::string::npos) << unknown.notes[0];
  ASSERT_EQ(unknown.items.size(), 5u);
  std::vector<double> bi = m.item_bias();
  std::sort(bi.begin(), bi.end(), std::greater<double>());
  EXPECT_NEAR(unknown.items[0].score, m.global_mean() + bi[0], 1e-4);

  const std::string other_item = d.item_ids[d.ratings.indices[d.ratings.indptr[2]]];
  const RecommendResult r = rec.for_ratings(d.item_ids[gone_item] + ":5," + other_item + ":4", ro);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0], "item " + d.item_ids[gone_item] + " has no training ratings in the model; ignored");
  EXPECT_EQ(r.input_ratings, 1);
  EXPECT_FALSE(r.popularity_fallback);
}

// ---- through the CLI ----------------------------------------------------------------------------

using cli_test::CmdResult;
using cli_test::run_cli;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

TEST(SvdCli, ModelFileServesTrainInfoRecommendEmbedAndCluster) {
  using ::testing::HasSubstr;
  using ::testing::Not;
  const std::string spec = "synthetic:users=120,items=90,ratings=3000,groups=2";
  const std::string data = "--data " + spec + " --device cpu";
  const auto dir = temp_dir("cli");
  const std::string out = (dir / "run").string(), model = out + "/model.safetensors";
  for (const std::string kind : {"svd", "svdpp"}) {
    const CmdResult t = run_cli("train --model " + kind + " " + data + " --epochs 5 --out " + out);
    ASSERT_EQ(t.code, 0) << t.out;
    ASSERT_TRUE(std::filesystem::exists(model)) << t.out;
    const nlohmann::json sum = nlohmann::json::parse(slurp(out + "/summary.json"));
    // train --model-file: no epochs, the same test RMSE.
    const CmdResult e = run_cli("train " + data + " --model-file " + model);
    ASSERT_EQ(e.code, 0) << e.out;
    EXPECT_THAT(e.out, Not(HasSubstr("Epoch [")));
    std::ostringstream rmse;
    rmse << "rmse=" << sum["metrics"]["rmse"].get<double>();
    EXPECT_THAT(e.out, HasSubstr(rmse.str()));
    const CmdResult i = run_cli("info " + data + " --model-file " + model);
    ASSERT_EQ(i.code, 0) << i.out;
    EXPECT_THAT(i.out, HasSubstr("model file"));
    EXPECT_THAT(i.out, HasSubstr(kind + ", 120 users x 90 items"));
    // recommend --user: titles, no rated item, the genre counts.
    const Dataset d = make_synthetic(parse_synthetic_spec(spec));
    const int64_t u = d.find_user("7");
    ASSERT_GE(u, 0);
    const CmdResult r = run_cli("recommend " + data + " --model-file " + model + " --user 7 --top 8");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, Not(HasSubstr("Epoch")));
    EXPECT_THAT(r.out, HasSubstr("Top 8 recommendations for user 7 (" + kind + "):"));
    EXPECT_THAT(r.out, HasSubstr("Genre Counts"));
    std::istringstream lines(r.out);
    std::string line;
    int listed = 0;
    while (std::getline(lines, line)) {
      std::istringstream ls(line);
      int rank = 0;
      std::string item;
      if (!(ls >> rank >> item) || rank < 1 || rank > 8) continue;
      const int64_t i = d.find_item(item);
      ASSERT_GE(i, 0) << line;
      ++listed;
      EXPECT_THAT(line, HasSubstr(d.titles[i]));
      for (int64_t k = d.ratings.indptr[u]; k < d.ratings.indptr[u + 1]; ++k)
        EXPECT_NE(d.ratings.indices[k], i) << "rated item recommended: " << line;
    }
    EXPECT_EQ(listed, 8) << r.out;
    // New-user fold-in, all users, embeddings, clusters.
    const CmdResult f = run_cli("recommend " + data + " --model-file " + model + " --ratings \"5:5,74:4,nosuch:2\" --top 3");
    ASSERT_EQ(f.code, 0) << f.out;
    EXPECT_THAT(f.out, HasSubstr("unknown item id nosuch"));
    EXPECT_THAT(f.out, HasSubstr("folded in 2 rating(s)"));
    const std::string csv = (dir / "recs.csv").string();
    const CmdResult a = run_cli("recommend " + data + " --model-file " + model + " --all-users --top 4 --out " + csv);
    ASSERT_EQ(a.code, 0) << a.out;
    const std::string csv_text = slurp(csv);
    EXPECT_EQ(std::count(csv_text.begin(), csv_text.end(), '\n'), 120 * 4 + 1);
    const CmdResult em = run_cli("embed " + data + " --model-file " + model + " --out " + (dir / "emb").string());
    ASSERT_EQ(em.code, 0) << em.out;
    EXPECT_THAT(em.out, HasSubstr(kind == "svd" ? "(120 x 100, SVD user vectors p_u)"
                                                : "(120 x 20, SVD++ user vectors, p_u + implicit term)"));
    EXPECT_EQ(run_cli("embed " + data + " --model-file " + model + " --sample --out " + (dir / "emb").string()).code, 2);
    const CmdResult c = run_cli("cluster " + data + " --model-file " + model + " --k 2");
    ASSERT_EQ(c.code, 0) << c.out;
    EXPECT_THAT(c.out, HasSubstr("Cluster sizes:"));
    EXPECT_THAT(c.out, HasSubstr("SVD user vectors"));
  }
  // Damage and misuse.
  std::string bytes = slurp(model);
  bytes[bytes.size() / 2] ^= 0x40;
  const std::string bad = (dir / "flipped.safetensors").string();
  std::ofstream(bad, std::ios::binary) << bytes;
  // embed's --out is made before the model is read: inside dir (removed below), not ./x.
  const std::string embed_out = "embed --out " + (dir / "bad_embed").string();
  for (const std::string& cmd : {std::string("recommend --user 1"), std::string("train"), std::string("info"),
                                 embed_out, std::string("cluster")}) {
    const CmdResult r = run_cli(cmd + " " + data + " --model-file " + bad);
    EXPECT_EQ(r.code, 1) << cmd << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("flipped.safetensors")) << cmd;
  }
  EXPECT_EQ(run_cli("recommend --model svd " + data + " --model-file " + model + " --user 1").code, 2);
  EXPECT_EQ(run_cli("train --model svd " + data + " --svd-schedule serial --svd-blocks 4").code, 2);
  EXPECT_EQ(run_cli("train --model svd --data " + spec + " --device cuda --svd-schedule serial").code, 2);
  if (!cuda_device_available()) {
    const CmdResult g = run_cli("train --model svd --data " + spec + " --device cuda");
    EXPECT_EQ(g.code, 1) << g.out;
    EXPECT_THAT(g.out, HasSubstr("no CUDA device"));
  }
  // k-fold: the summary, but no single model to save.
  const CmdResult k = run_cli("train --model svd " + data + " --folds 3 --epochs 2 --out " + (dir / "kf").string());
  ASSERT_EQ(k.code, 0) << k.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "kf" / "summary.json"));
  EXPECT_FALSE(std::filesystem::exists(dir / "kf" / "model.safetensors"));
  EXPECT_THAT(k.out, HasSubstr("no model.safetensors"));
  // Recommend trains first without a file (the ratings protocol is implied).
  const CmdResult tr = run_cli("recommend --model svd " + data + " --epochs 2 --user 3 --top 4 --svd-schedule blocked");
  ASSERT_EQ(tr.code, 0) << tr.out;
  EXPECT_THAT(tr.out, HasSubstr("blocked"));
  EXPECT_THAT(tr.out, HasSubstr("Top 4 recommendations for user 3 (svd):"));
  std::filesystem::remove_all(dir);
}

// Surprise's published ml-100k 5-fold table: SVD 0.934, SVD++ 0.919 (RMSE).
TEST(AcceptanceMl100k, SvdAndSvdppFiveFold) {
  const char* env = std::getenv("MOVIELENS_DIR");
  const std::string dir = env ? std::string(env) + "/ml-100k" : "";
  if (dir.empty() || !std::filesystem::exists(dir + "/u.data")) GTEST_SKIP() << "MOVIELENS_DIR with ml-100k/ not set";
  const Dataset d = load_movielens_dir(dir);
  for (bool pp : {false, true}) {
    double sum = 0;
    for (int f = 0; f < 5; ++f) {
      RatingsSplit s = split_ratings_kfold(d, 5, f, 1);
      SvdOptions o;
      o.plus_plus = pp;
      SvdModel m(s.train, d.rating_min, d.rating_max, o);
      m.fit();
      sum += m.evaluate(s.test).rmse;
    }
    const double rmse = sum / 5;
    std::cout << (pp ? "SVD++" : "SVD") << " ml-100k 5-fold mean RMSE " << rmse << "\n";
    EXPECT_LE(rmse, pp ? 0.930 : 0.945);
  }
}

}  // namespace

namespace {
vae::EpochRecord epoch_of(int epoch, double loss, double rmse) {
  vae::EpochRecord e;
  e.epoch = epoch;
  e.train_loss = loss;
  e.test_loss = rmse;
  e.metrics = {{"rmse", rmse}, {"mae", rmse / 2}};
  e.train_seconds = loss;
  return e;
}
}  // namespace

// The k-fold curve: each epoch averaged over the folds that reached it (a fold --patience stopped
// early counts only in its own epochs).
TEST(CrossValidationCurve, EachEpochIsTheMeanOverTheFoldsThatReachedIt) {
  const std::vector<std::vector<vae::EpochRecord>> folds = {
      {epoch_of(1, 2.0, 1.0), epoch_of(2, 1.0, 0.8), epoch_of(3, 0.5, 0.7)},
      {epoch_of(1, 4.0, 1.2), epoch_of(2, 3.0, 1.0)},
  };
  const std::vector<vae::EpochRecord> m = vae::mean_history(folds);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].epoch, 1);
  EXPECT_DOUBLE_EQ(m[0].train_loss, 3.0);
  EXPECT_DOUBLE_EQ(m[0].test_loss, 1.1);
  EXPECT_DOUBLE_EQ(m[1].metrics[0].second, 0.9);
  EXPECT_EQ(m[1].metrics[1].first, "mae");
  EXPECT_DOUBLE_EQ(m[1].metrics[1].second, 0.45);
  EXPECT_DOUBLE_EQ(m[1].train_seconds, 2.0);
  EXPECT_EQ(m[2].epoch, 3);
  EXPECT_DOUBLE_EQ(m[2].train_loss, 0.5);  // fold 2 stopped at epoch 2
  EXPECT_TRUE(vae::mean_history({}).empty());
}
