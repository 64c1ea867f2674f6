// Confidence intervals of the metrics (train/stats) and the paired comparison in compare.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/compare.h"
#include "train/stats.h"

namespace vae {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(Stats, StudentQuantiles) {
  EXPECT_DOUBLE_EQ(student_t975(1), 12.706);
  EXPECT_DOUBLE_EQ(student_t975(10), 2.228);
  EXPECT_DOUBLE_EQ(student_t975(30), 2.042);
  // Beyond the table: published t(0.975) quantiles.
  EXPECT_NEAR(student_t975(40), 2.0211, 5e-4);
  EXPECT_NEAR(student_t975(60), 2.0003, 5e-4);
  EXPECT_NEAR(student_t975(120), 1.9799, 5e-4);
  EXPECT_NEAR(student_t975(1000000), 1.95996, 1e-4);
  EXPECT_TRUE(std::isnan(student_t975(0)));
  for (int64_t v = 31; v < 400; ++v) EXPECT_LT(student_t975(v), student_t975(v - 1)) << v;  // decreasing
}

TEST(Stats, MeanAndItsInterval) {
  const MeanCi c = mean_ci95({1, 2, 3, 4, 5});
  EXPECT_EQ(c.n, 5);
  EXPECT_DOUBLE_EQ(c.mean, 3.0);
  EXPECT_NEAR(c.half, 2.776 * std::sqrt(2.5) / std::sqrt(5.0), 1e-12);  // sd² = 2.5, t(4) = 2.776
  const MeanCi skip = mean_ci95({1, NAN, 2, INFINITY, 3, 4, 5});  // non-finite values are not used
  EXPECT_EQ(skip.n, 5);
  EXPECT_DOUBLE_EQ(skip.half, c.half);
  const MeanCi one = mean_ci95({0.5});
  EXPECT_DOUBLE_EQ(one.mean, 0.5);
  EXPECT_TRUE(std::isnan(one.half));
  EXPECT_FALSE(one.excludes_zero());
  EXPECT_TRUE(std::isnan(mean_ci95({}).mean));
}

TEST(Stats, PairedDifferences) {
  // A constant shift user by user is certain however spread the users are.
  const std::vector<double> a = {0.1, 0.9, 0.4, 0.7}, b = {0.0, 0.8, 0.3, 0.6};
  const MeanCi d = paired_difference_ci95(a, b);
  EXPECT_NEAR(d.mean, 0.1, 1e-15);
  EXPECT_NEAR(d.half, 0.0, 1e-15);
  EXPECT_TRUE(d.excludes_zero());
  // Opposite differences cancel: an interval around 0.
  const MeanCi z = paired_difference_ci95({1, 0, 1, 0}, {0, 1, 0, 1});
  EXPECT_DOUBLE_EQ(z.mean, 0.0);
  EXPECT_FALSE(z.excludes_zero());
  EXPECT_THROW(paired_difference_ci95({1, 2}, {1}), VaeError);
  EXPECT_EQ(format_ci(d), "+0.1000 \xc2\xb1 0.0000");
  EXPECT_EQ(format_ci(mean_ci95({-0.25})), "-0.2500");
}

TrainResult result(const std::string& model, const std::string& protocol,
                   const std::vector<std::pair<std::string, std::vector<double>>>& users) {
  TrainResult r;
  r.model = model;
  r.protocol = protocol;
  r.user_metrics = users;
  for (const auto& [k, v] : users) r.metrics.emplace_back(k, mean_ci95(v).mean);
  return r;
}

// A trained model level with popularity (within 2 %), below it or far below it (under half)
// gets a note with the updates behind it and the likeliest cause; one clearly above, EASE
// (closed form, nothing trained) and a table without popularity none.
TEST(Stats, ModelsLevelWithOrBelowPopularityAreNoted) {
  auto trained = [](TrainResult r, int epochs, int64_t steps) {
    r.best_epoch = epochs;
    r.steps_per_epoch = steps;
    return r;
  };
  std::vector<TrainResult> rs;
  rs.push_back(result("popularity", "heldout", {{"ndcg@100", {0.2, 0.4}}}));                     // 0.3
  rs.push_back(trained(result("multvae", "heldout", {{"ndcg@100", {0.3, 0.305}}}), 50, 8));      // level
  rs.push_back(trained(result("autorec", "heldout", {{"ndcg@100", {0.1, 0.1}}}), 50, 8));        // far below
  rs.push_back(trained(result("cdae", "heldout", {{"ndcg@100", {0.4, 0.5}}}), 50, 8));           // above
  rs.push_back(result("ease", "heldout", {{"ndcg@100", {0.3, 0.3}}}));                           // level, closed form
  rs.push_back(trained(result("i-autorec", "heldout", {{"ndcg@100", {0.25, 0.25}}}), 30, 10));   // below
  std::string n = format_popularity_notes(rs);
  EXPECT_THAT(n, HasSubstr("note: multvae ends within 2 % of popularity (ndcg@100 0.3025 vs 0.3) after 400 updates "
                           "(50 epochs of 8 batches): it learned little beyond the most popular items here\n"));
  EXPECT_THAT(n, HasSubstr("note: autorec ends far below popularity (ndcg@100 0.1 vs 0.3) after 400 updates (50 "
                           "epochs of 8 batches): it learned no useful ranking under this protocol\n"));
  EXPECT_THAT(n, HasSubstr("note: i-autorec ends below popularity (ndcg@100 0.25 vs 0.3) after 300 updates (30 "
                           "epochs of 10 batches): counting ratings ranks better here\n"));
  EXPECT_THAT(n, Not(HasSubstr("cdae")));
  EXPECT_THAT(n, Not(HasSubstr("ease")));

  // Fewer than kFewUpdates steps (Mult-VAE's one batch of 500 an epoch on a small set): the
  // steps are the cause to try first.
  rs[1] = trained(result("multvae", "heldout", {{"ndcg@100", {0.27, 0.27}}}), 20, 1);
  n = format_popularity_notes(rs);
  EXPECT_THAT(n, HasSubstr("note: multvae ends below popularity (ndcg@100 0.27 vs 0.3) after 20 updates (20 epochs "
                           "of 1 batch): few for a network; more --epochs or a smaller --batch-size give it more\n"));
  rs[1] = trained(result("multvae", "heldout", {{"ndcg@100", {0.27, 0.27}}}), 1, 1);
  EXPECT_THAT(format_popularity_notes(rs), HasSubstr("after 1 update (1 epoch of 1 batch): few"));

  // An early epoch kept on the validation users out of many trained: not a lack of steps.
  TrainResult early = trained(result("autorec", "heldout", {{"ndcg@100", {0.06, 0.06}}}), 1, 7);
  for (int e = 1; e <= 50; ++e) {
    EpochRecord rec;
    rec.epoch = e;
    early.history.push_back(rec);
  }
  rs[2] = std::move(early);
  EXPECT_THAT(format_popularity_notes(rs),
              HasSubstr("note: autorec ends far below popularity (ndcg@100 0.06 vs 0.3) at epoch 1 of 50 trained (7 of "
                        "350 updates, 7 batches an epoch): it learned no useful ranking under this protocol\n"));

  // The notebook VAE level with popularity at a KL weight of 1: its collapse, whatever the steps.
  TrainResult vae = trained(result("vae", "heldout", {{"ndcg@100", {0.3, 0.3}}}), 20, 12);
  vae.config.beta = 1;
  rs.push_back(std::move(vae));
  EXPECT_THAT(format_popularity_notes(rs),
              HasSubstr("note: vae ends within 2 % of popularity (ndcg@100 0.3 vs 0.3) after 240 updates (20 epochs of "
                        "12 batches): its KL term (--beta 1) collapses the latent code"));
  rs.back().config.beta = 1e-4;  // not collapsed: the plain wording
  EXPECT_THAT(format_popularity_notes(rs), HasSubstr("note: vae ends within 2 % of popularity (ndcg@100 0.3 vs 0.3) after "
                                                     "240 updates (20 epochs of 12 batches): it learned little"));

  rs.erase(rs.begin());
  EXPECT_EQ(format_popularity_notes(rs), "");
}

TEST(Stats, CompareListsEachModelAgainstTheBest) {
  std::vector<TrainResult> rs;
  rs.push_back(result("vae", "seed", {{"ndcg@20", {0.1, 0.2, 0.3, 0.4}}, {"recall@20", {1, 1, 1, 1}}}));
  rs.push_back(result("ease", "seed", {{"ndcg@20", {0.3, 0.4, 0.5, 0.6}}, {"recall@20", {0, 0, 0, 0}}}));
  rs.push_back(result("cdae", "seed", {{"ndcg@20", {0.5, 0.1, 0.6, 0.2}}, {"recall@20", {0, 0, 0, 0}}}));
  rs.push_back(result("svd", "seed", {}));  // no per-user values: not listed
  const std::string t = format_paired_differences(rs);
  EXPECT_THAT(t, HasSubstr("best ndcg@20 (ease) over the 4 evaluated users"));
  EXPECT_THAT(t, HasSubstr("\n  vae    -0.2000 \xc2\xb1 0.0000 *\n"));
  const MeanCi cd = paired_difference_ci95({0.5, 0.1, 0.6, 0.2}, {0.3, 0.4, 0.5, 0.6});
  EXPECT_FALSE(cd.excludes_zero());
  EXPECT_THAT(t, HasSubstr("\n  cdae   " + format_ci(cd) + "\n"));
  EXPECT_THAT(t, ::testing::Not(HasSubstr("svd")));
  EXPECT_THAT(t, HasSubstr("* the interval excludes 0"));

  // Heldout: its selection metric, NDCG@100, rather than the first NDCG; without 100, the
  // largest cut-off's.
  std::vector<TrainResult> h;
  h.push_back(result("multvae", "heldout", {{"ndcg@20", {0.9, 0.9}}, {"ndcg@100", {0.1, 0.3}}, {"ndcg@200", {0, 0}}}));
  h.push_back(result("ease", "heldout", {{"ndcg@20", {0.1, 0.1}}, {"ndcg@100", {0.2, 0.4}}, {"ndcg@200", {0, 0}}}));
  EXPECT_THAT(format_paired_differences(h), HasSubstr("best ndcg@100 (ease)"));
  for (auto& r : h) {
    r.user_metrics.erase(r.user_metrics.begin() + 1);
    r.metrics.erase(r.metrics.begin() + 1);
  }
  EXPECT_THAT(format_paired_differences(h), HasSubstr("best ndcg@200 ("));
  // Another evaluation set is other users: not paired.
  h[1].eval_set = "other users";
  EXPECT_EQ(format_paired_differences(h), "");
  h[1].eval_set = h[0].eval_set;
  // No users (NaN metrics), or one user (no interval).
  std::vector<TrainResult> empty;
  empty.push_back(result("a", "heldout", {{"ndcg@100", {}}}));
  empty.push_back(result("b", "heldout", {{"ndcg@100", {}}}));
  EXPECT_EQ(format_paired_differences(empty), "");
  std::vector<TrainResult> one;
  one.push_back(result("a", "heldout", {{"ndcg@100", {0.5}}}));
  one.push_back(result("b", "heldout", {{"ndcg@100", {0.25}}}));
  const std::string t1 = format_paired_differences(one);
  EXPECT_THAT(t1, HasSubstr("over the 1 evaluated user, mean"));
  EXPECT_THAT(t1, HasSubstr("  b      -0.2500\n(too few users for an interval)\n"));
  // One model, or none with per-user values: nothing to say.
  h.pop_back();
  EXPECT_EQ(format_paired_differences(h), "");
  std::vector<TrainResult> none;
  none.push_back(result("svd", "ratings", {}));
  none.push_back(result("svdpp", "ratings", {}));
  EXPECT_EQ(format_paired_differences(none), "");
}

// Ratings protocol: RMSE differences from the lowest, paired by user over the same test ratings.
TEST(Stats, RmseDifferencesArePairedByUser) {
  auto rated = [](const std::string& model, std::vector<std::pair<double, int64_t>> rows) {
    TrainResult r;
    r.model = model;
    r.protocol = "ratings";
    r.eval_set = "random 90/10";
    double sse = 0;
    int64_t n = 0;
    for (const auto& [e, c] : rows) sse += e, n += c;
    r.metrics = {{"rmse", std::sqrt(sse / static_cast<double>(n))}};
    r.row_errors = std::move(rows);
    return r;
  };
  std::vector<TrainResult> rs;
  rs.push_back(rated("svd", {{2.0, 2}, {3.0, 3}, {0.0, 0}, {1.0, 1}}));
  rs.push_back(rated("svdpp", {{1.0, 2}, {2.0, 3}, {0.0, 0}, {1.0, 1}}));
  const std::string t = format_paired_differences(rs);
  EXPECT_THAT(t, HasSubstr("Differences in rmse from the best (svdpp) over the 6 test ratings of 3 users, with a 95% "
                           "interval paired by user:"));
  // x = (1, 1, 0) over the 3 rated users with n = (2, 3, 1); ΔMSE D = 2/6, so the residuals
  // x − n·D = (1/3, 0, −1/3) carry the interval (a ratio over users); ΔRMSE exact, the interval scaled.
  const double a = std::sqrt(6.0 / 6), b = std::sqrt(4.0 / 6);
  MeanCi want = mean_ci95({1.0 / 3, 0, -1.0 / 3});
  want.mean = a - b;
  want.half = want.half * 3.0 / 6.0 / (a + b);
  EXPECT_THAT(t, HasSubstr("\n  svd    " + format_ci(want)));
  // Other test ratings (a row's count differs), or items against users: not paired.
  rs[0].row_errors[3].second = 2;
  EXPECT_EQ(format_paired_differences(rs), "No paired rmse differences: no other model can be paired with the best "
                                           "(svdpp): svd (other test ratings)\n");
  rs[0].row_errors[3].second = 1;
  rs[0].item_based = true;
  EXPECT_EQ(format_paired_differences(rs), "No paired rmse differences: no other model can be paired with the best "
                                           "(svdpp): svd (its rows are items)\n");
  // Beside a paired model, the unpaired one is named with the reason.
  rs[0].item_based = false;
  rs.push_back(rated("i-autorec", {{1.5, 2}, {2.5, 3}}));
  rs.back().item_based = true;
  EXPECT_THAT(format_paired_differences(rs), HasSubstr("not paired with svdpp: i-autorec (its rows are items)\n"));
}

TEST(Stats, ActivityBreakdownGroupsUsersByTheirInputRatings) {
  std::vector<TrainResult> rs;
  rs.push_back(result("a", "seed", {{"ndcg@20", {1, 2, 3, 4, 5, 6, 7, 8}}}));
  rs.push_back(result("b", "seed", {{"ndcg@20", {0, 0, 0, 0, 1, 1, 1, 1}}}));
  rs.push_back(result("c", "seed", {}));  // no per-user values: no row
  for (auto& r : rs) r.user_activity = {10, 20, 30, 40, 50, 60, 70, 80};
  std::string t = format_activity_breakdown(rs);
  EXPECT_THAT(t, HasSubstr("ndcg@20 by the users' number of input ratings (quartiles of the 8 evaluated users"));
  EXPECT_THAT(t, HasSubstr("model  10-20 (2)  21-40 (2)  41-60 (2)  61-80 (2)\n"));
  EXPECT_THAT(t, HasSubstr("\na         1.5000     3.5000     5.5000     7.5000\n"));
  EXPECT_THAT(t, HasSubstr("\nb         0.0000     0.0000     1.0000     1.0000\n"));
  EXPECT_THAT(t, ::testing::Not(HasSubstr("\nc ")));
  // Users in any order, equal activities in one group (groups then differ in size).
  for (auto& r : rs) r.user_activity = {80, 10, 10, 10, 10, 10, 70, 40};
  t = format_activity_breakdown(rs);
  // Sorted: 10 10 10 10 10 40 70 80; the quartile bounds 10, 10, 40, 80 merge to three groups.
  EXPECT_THAT(t, HasSubstr("model     10 (5)  11-40 (1)  41-80 (2)\n"));
  EXPECT_THAT(t, HasSubstr("\na         4.0000     8.0000     4.0000\n"));  // (2+3+4+5+6)/5, 8, (1+7)/2
  // One activity for all, or too few users: no table.
  for (auto& r : rs) r.user_activity.assign(8, 5);
  EXPECT_EQ(format_activity_breakdown(rs), "");
  std::vector<TrainResult> few;
  few.push_back(result("a", "seed", {{"ndcg@20", {1, 2, 3}}}));
  few.back().user_activity = {1, 2, 3};
  EXPECT_EQ(format_activity_breakdown(few), "");
}

TEST(Stats, NormalUpperTail) {
  EXPECT_DOUBLE_EQ(normal_upper_tail(0), 0.5);
  EXPECT_NEAR(normal_upper_tail(1.959964), 0.025, 1e-7);
  EXPECT_NEAR(normal_upper_tail(-1.644854), 0.95, 1e-7);
  EXPECT_NEAR(normal_upper_tail(5), 2.8665157e-7, 1e-13);  // tables: 2.8665e-7
}

// Benjamini–Hochberg's step-up rule worked by hand: m = 6, q = 0.05, bounds 0.0083·i.
TEST(Stats, BenjaminiHochberg) {
  //            rank: 1      3      4     2      6    5
  const std::vector<double> p = {0.001, 0.020, 0.024, 0.012, 0.9, 0.2};
  // Sorted 0.001 ≤ .0083, 0.012 ≤ .0167, 0.020 ≤ .025, 0.024 ≤ .0333, 0.2 > .0417, 0.9 > .05:
  // the largest rank within its bound is 4, so the first four are discoveries.
  EXPECT_EQ(benjamini_hochberg(p, 0.05), (std::vector<bool>{true, true, true, true, false, false}));
  // Step-up: a p-value above its own bound still passes when a later rank is within its bound.
  EXPECT_EQ(benjamini_hochberg({0.03, 0.04}, 0.05), (std::vector<bool>{true, true}));  // 0.03 > 0.025
  EXPECT_EQ(benjamini_hochberg({0.03, 0.06}, 0.05), (std::vector<bool>{false, false}));
  // NaN is not tested and does not count in m.
  EXPECT_EQ(benjamini_hochberg({NAN, 0.03, NAN}, 0.05), (std::vector<bool>{false, true, false}));
  EXPECT_TRUE(benjamini_hochberg({}, 0.05).empty());
  // q = 1 takes everything.
  EXPECT_EQ(benjamini_hochberg({0.9, 1.0}, 1.0), (std::vector<bool>{true, true}));
}

}  // namespace
}  // namespace vae
