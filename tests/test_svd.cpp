// SVD / SVD++ (Surprise semantics): one hand-computed SGD step, prediction rules for unknown
// users and items, determinism, k-fold splits, and (with MOVIELENS_DIR) the ml-100k 5-fold
// RMSE targets next to Surprise's published table.
#include <gtest/gtest.h>

#include <cmath>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/dataset.h"
#include "models/svd.h"

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
