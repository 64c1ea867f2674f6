// Data splits: user splits, Mult-VAE strong generalisation, rating splits, ml-100k folds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "data/dataset.h"

namespace vae {
namespace {

namespace fs = std::filesystem;

const Dataset& small_synthetic() {
  static const Dataset d =
      make_synthetic(parse_synthetic_spec("synthetic:users=500,items=800,ratings=40000,seed=4"));
  return d;
}

std::vector<int32_t> row_of(const Csr& m, int64_t r) {
  return std::vector<int32_t>(m.indices.begin() + m.indptr[r], m.indices.begin() + m.indptr[r + 1]);
}

// ---- split_seed ----------------------------------------------------------------------------

TEST(SplitSeedTest, DisjointAscendingAndCoverAllUsers) {
  const Dataset& d = small_synthetic();
  const SeedSplit s = split_seed(d, 0.2, 7);
  EXPECT_EQ(s.test_users.size(), 100u);
  EXPECT_EQ(s.train_users.size(), 400u);
  EXPECT_TRUE(std::is_sorted(s.test_users.begin(), s.test_users.end()));
  EXPECT_TRUE(std::is_sorted(s.train_users.begin(), s.train_users.end()));
  std::vector<int32_t> all = s.train_users;
  all.insert(all.end(), s.test_users.begin(), s.test_users.end());
  std::sort(all.begin(), all.end());
  for (int32_t u = 0; u < 500; ++u) ASSERT_EQ(all[u], u);
  // Test users are spread over the whole range, not a block.
  EXPECT_LT(s.test_users.front(), 50);
  EXPECT_GT(s.test_users.back(), 450);
}

TEST(SplitSeedTest, DeterministicAndSeedDependent) {
  const Dataset& d = small_synthetic();
  EXPECT_EQ(split_seed(d, 0.2, 7).test_users, split_seed(d, 0.2, 7).test_users);
  EXPECT_NE(split_seed(d, 0.2, 7).test_users, split_seed(d, 0.2, 8).test_users);
  EXPECT_EQ(split_seed(d, 0.0, 7).test_users.size(), 0u);
  EXPECT_EQ(split_seed(d, 1.0, 7).train_users.size(), 0u);
  EXPECT_EQ(split_seed(d, 0.101, 7).test_users.size(), 51u);  // round(50.5)
  EXPECT_THROW(split_seed(d, 1.5, 7), UsageError);
  EXPECT_THROW(split_seed(d, -0.1, 7), UsageError);
}

// ---- split_heldout -------------------------------------------------------------------------

void expect_binary(const Csr& m, int64_t cols) {
  EXPECT_NO_THROW(m.validate());
  EXPECT_EQ(m.cols, cols);
  for (float v : m.values) ASSERT_EQ(v, 1.0f);
}

TEST(SplitHeldoutTest, StrongGeneralisationInvariants) {
  const Dataset& d = small_synthetic();
  const HeldoutOptions opt;  // threshold 4, min 5 positives, 10 % val, 20 % test, 80 % fold-in
  const HeldoutSplit s = split_heldout(d, opt, 11);
  const Csr& r = d.ratings;
  const int64_t n_cols = static_cast<int64_t>(s.item_map.size());
  ASSERT_GT(n_cols, 0);
  EXPECT_TRUE(std::is_sorted(s.item_map.begin(), s.item_map.end()));
  EXPECT_EQ(std::adjacent_find(s.item_map.begin(), s.item_map.end()), s.item_map.end());

  // Users: kept = those with ≥ 5 ratings ≥ 4; the three sets are disjoint and cover them.
  std::vector<int32_t> kept;
  for (int64_t u = 0; u < r.rows; ++u) {
    int pos = 0;
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k) pos += r.values[k] >= 4.0f;
    if (pos >= 5) kept.push_back(static_cast<int32_t>(u));
  }
  ASSERT_GT(kept.size(), 300u);
  std::vector<int32_t> all = s.train_users;
  all.insert(all.end(), s.val_users.begin(), s.val_users.end());
  all.insert(all.end(), s.test_users.begin(), s.test_users.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, kept);  // no held-out user lost all items here (dense enough)
  const double n = static_cast<double>(kept.size());
  EXPECT_EQ(s.val_users.size(), static_cast<size_t>(std::llround(0.1 * n)));
  EXPECT_EQ(s.test_users.size(), static_cast<size_t>(std::llround(0.2 * n)));

  // Train: exactly the train users' positives; every kept item appears in it.
  expect_binary(s.train, n_cols);
  ASSERT_EQ(s.train.rows, static_cast<int64_t>(s.train_users.size()));
  std::vector<int> seen(n_cols, 0);
  for (int32_t c : s.train.indices) seen[c] = 1;
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 0), 0);
  for (size_t t = 0; t < s.train_users.size(); ++t) {
    const int32_t u = s.train_users[t];
    std::vector<int32_t> expect;
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k)
      if (r.values[k] >= 4.0f) expect.push_back(r.indices[k]);
    std::vector<int32_t> got;
    for (int32_t c : row_of(s.train, t)) got.push_back(s.item_map[c]);
    ASSERT_EQ(got, expect) << "train user " << u;
  }
  // Items outside item_map are exactly those no train user likes.
  std::set<int32_t> liked;
  for (int32_t u : s.train_users)
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k)
      if (r.values[k] >= 4.0f) liked.insert(r.indices[k]);
  EXPECT_EQ(std::vector<int32_t>(liked.begin(), liked.end()), s.item_map);

  // Held-out users: fold-in ∩ target = ∅, union = positives over kept items, fold-in ≈ 80 %.
  std::vector<int32_t> column(r.cols, -1);
  for (size_t c = 0; c < s.item_map.size(); ++c) column[s.item_map[c]] = static_cast<int32_t>(c);
  double foldin_total = 0, all_total = 0;
  auto check = [&](const std::vector<int32_t>& users, const Csr& in, const Csr& tg) {
    expect_binary(in, n_cols);
    expect_binary(tg, n_cols);
    ASSERT_EQ(in.rows, static_cast<int64_t>(users.size()));
    ASSERT_EQ(tg.rows, static_cast<int64_t>(users.size()));
    EXPECT_TRUE(std::is_sorted(users.begin(), users.end()));
    for (size_t h = 0; h < users.size(); ++h) {
      const int32_t u = users[h];
      std::vector<int32_t> expect;
      for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k)
        if (r.values[k] >= 4.0f && column[r.indices[k]] >= 0) expect.push_back(column[r.indices[k]]);
      const std::vector<int32_t> a = row_of(in, h), b = row_of(tg, h);
      ASSERT_GE(a.size(), 1u);
      if (expect.size() >= 2) {
        ASSERT_GE(b.size(), 1u);
      }
      std::vector<int32_t> both;
      std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
      ASSERT_TRUE(both.empty()) << "user " << u;
      std::vector<int32_t> uni;
      std::set_union(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(uni));
      ASSERT_EQ(uni, expect) << "user " << u;
      // Per user: the rounded share, within one item.
      EXPECT_NEAR(static_cast<double>(a.size()), 0.8 * expect.size(), 1.0);
      foldin_total += a.size();
      all_total += expect.size();
    }
  };
  check(s.val_users, s.val_foldin, s.val_target);
  check(s.test_users, s.test_foldin, s.test_target);
  EXPECT_NEAR(foldin_total / all_total, 0.8, 0.02);
}

TEST(SplitHeldoutTest, DeterministicAndSeedDependent) {
  const Dataset& d = small_synthetic();
  const HeldoutOptions opt;
  const HeldoutSplit a = split_heldout(d, opt, 3), b = split_heldout(d, opt, 3),
                     c = split_heldout(d, opt, 4);
  EXPECT_EQ(a.test_users, b.test_users);
  EXPECT_EQ(a.item_map, b.item_map);
  EXPECT_EQ(a.test_foldin.indices, b.test_foldin.indices);
  EXPECT_EQ(a.val_target.indices, b.val_target.indices);
  EXPECT_NE(a.test_users, c.test_users);
}

// Hand-made dataset: thresholding, min_positives and item dropping are checked exactly.
// extra: user 5 also likes item 1 (which users 0, 2 and 4 like), so held out they keep one usable positive.
Dataset tiny_dataset(bool extra = false) {
  Dataset d;
  d.name = d.format = "test";
  // 6 users × 5 items.
  std::vector<int32_t> r, c;
  std::vector<float> v;
  auto add = [&](int u, int i, float x) {
    r.push_back(u);
    c.push_back(i);
    v.push_back(x);
  };
  for (int u = 0; u < 5; ++u)
    for (int i = 0; i < 4; ++i) add(u, i, (u + i) % 2 ? 5.0f : 3.0f);
  if (extra) add(5, 1, 5.0f);
  add(5, 4, 5.0f);  // the only rating of item 4, by a one-rating user (unless extra)
  d.ratings = Csr::from_triplets(6, 5, r, c, v);
  for (int u = 0; u < 6; ++u) d.user_ids.push_back(std::to_string(u + 1));
  for (int i = 0; i < 5; ++i) d.item_ids.push_back(std::to_string(10 * (i + 1)));
  return d;
}

TEST(SplitHeldoutTest, ThresholdAndMinPositives) {
  const Dataset d = tiny_dataset();
  HeldoutOptions opt;
  opt.val_fraction = 0.0;
  opt.test_fraction = 0.0;
  opt.min_positives = 2;
  // Threshold 4: each of users 0–4 has 2 positives (rating 5); user 5 has 1 → dropped.
  HeldoutSplit s = split_heldout(d, opt, 1);
  EXPECT_EQ(s.train_users, (std::vector<int32_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(s.item_map, (std::vector<int32_t>{0, 1, 2, 3}));  // item 4 only liked by user 5
  EXPECT_EQ(s.train.nnz(), 10);
  EXPECT_EQ(row_of(s.train, 0), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(row_of(s.train, 1), (std::vector<int32_t>{0, 2}));
  // Threshold ≤ 0 keeps every rating; min_positives 1 keeps user 5 and item 4.
  opt.threshold = 0;
  opt.min_positives = 1;
  s = split_heldout(d, opt, 1);
  EXPECT_EQ(s.train_users.size(), 6u);
  EXPECT_EQ(s.item_map.size(), 5u);
  EXPECT_EQ(s.train.nnz(), 21);
  for (float v : s.train.values) EXPECT_EQ(v, 1.0f);
  // Nobody left → a clear error; no training users left → a clear error.
  opt.threshold = 4;
  opt.min_positives = 3;
  EXPECT_THROW(split_heldout(d, opt, 1), UsageError);
  opt.min_positives = 1;
  opt.val_fraction = 0.5;
  opt.test_fraction = 0.5;
  EXPECT_THROW(split_heldout(d, opt, 1), UsageError);
}

// Every user eligible, a fifth each for validation and test: over 30 seeds user 5 is held out.
HeldoutOptions fifths() {
  HeldoutOptions opt;
  opt.min_positives = 1;
  opt.val_fraction = 0.2;
  opt.test_fraction = 0.2;
  return opt;
}

TEST(SplitHeldoutTest, HeldOutUsersWithOnlyDroppedItemsAreRemoved) {
  // Users 0–4 are kept (val/test draws vary); user 5 likes only item 4, which no one else rates:
  // whenever user 5 is held out, item 4 is dropped and so is user 5.
  const Dataset d = tiny_dataset();
  int removed_seen = 0;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    const HeldoutSplit s = split_heldout(d, fifths(), seed);
    const bool in_train = std::count(s.train_users.begin(), s.train_users.end(), 5) > 0;
    const bool in_val = std::count(s.val_users.begin(), s.val_users.end(), 5) > 0;
    const bool in_test = std::count(s.test_users.begin(), s.test_users.end(), 5) > 0;
    EXPECT_FALSE(in_val || in_test) << "seed " << seed;
    if (!in_train) {
      ++removed_seen;
      EXPECT_EQ(std::count(s.item_map.begin(), s.item_map.end(), 4), 0);
      EXPECT_EQ(s.train_users.size() + s.val_users.size() + s.test_users.size(), 5u);
    }
    EXPECT_EQ(s.val_foldin.rows, static_cast<int64_t>(s.val_users.size()));
    EXPECT_EQ(s.test_target.rows, static_cast<int64_t>(s.test_users.size()));
  }
  EXPECT_GT(removed_seen, 0);
}

// A held-out user left with one usable positive (the other on an item no training user liked)
// has nothing to hold out once one item is folded in: not evaluated (an empty target would score
// 0 and pull the mean down).
TEST(SplitHeldoutTest, HeldOutUsersWithOneUsablePositiveAreNotEvaluated) {
  const Dataset d = tiny_dataset(/*extra=*/true);
  int held_out = 0;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    const HeldoutSplit s = split_heldout(d, fifths(), seed);
    for (const Csr* target : {&s.val_target, &s.test_target})
      for (int64_t row = 0; row < target->rows; ++row) EXPECT_GT(target->row_nnz(row), 0) << "seed " << seed;
    const bool in_train = std::count(s.train_users.begin(), s.train_users.end(), 5) > 0;
    if (!in_train) {
      ++held_out;
      EXPECT_EQ(std::count(s.val_users.begin(), s.val_users.end(), 5) + std::count(s.test_users.begin(), s.test_users.end(), 5), 0);
    }
  }
  EXPECT_GT(held_out, 0);
}

// ---- split_temporal ------------------------------------------------------------------------

struct TimedRating {
  int32_t user, item;
  float rating;
  int64_t time;
};

// A data set of the given ratings with their times, in CSR order.
Dataset timed_dataset(int64_t users, int64_t items, std::vector<TimedRating> rs) {
  std::sort(rs.begin(), rs.end(), [](const TimedRating& a, const TimedRating& b) {
    return a.user != b.user ? a.user < b.user : a.item < b.item;
  });
  std::vector<int32_t> r, c;
  std::vector<float> v;
  Dataset d;
  for (const TimedRating& x : rs) {
    r.push_back(x.user);
    c.push_back(x.item);
    v.push_back(x.rating);
    d.rating_times.push_back(x.time);
  }
  d.name = "timed";
  d.ratings = Csr::from_triplets(users, items, r, c, v);
  for (int64_t u = 0; u < users; ++u) d.user_ids.push_back(std::to_string(u + 1));
  for (int64_t i = 0; i < items; ++i) d.item_ids.push_back(std::to_string(i + 1));
  return d;
}

// When user u rated the item of split column col.
int64_t rating_time(const Dataset& d, const HeldoutSplit& s, int32_t u, int32_t col) {
  const Csr& r = d.ratings;
  const int32_t item = s.item_map[col];
  const auto* b = r.indices.data() + r.indptr[u];
  const auto* e = r.indices.data() + r.indptr[u + 1];
  const auto* it = std::lower_bound(b, e, item);
  EXPECT_TRUE(it != e && *it == item);
  return d.rating_times[it - r.indices.data()];
}

// User 0: positives in time order 0, 1, 2, 4, 5 (item 3, rated 1, is later than 2 but no
// positive). User 1: four positives, too few to evaluate. User 2: positives 4, 0, 1, 3, 2, 6,
// and item 6 is no one else's, so its test target has no column.
Dataset three_users() {
  return timed_dataset(3, 7, {{0, 5, 5, 60}, {0, 0, 5, 10}, {0, 1, 4, 20}, {0, 2, 5, 30}, {0, 3, 1, 40},
                              {0, 4, 4, 50}, {1, 0, 4, 1}, {1, 1, 5, 2}, {1, 3, 4, 3}, {1, 5, 4, 4},
                              {2, 4, 5, 100}, {2, 0, 5, 200}, {2, 1, 4, 300}, {2, 3, 4, 400},
                              {2, 2, 5, 500}, {2, 6, 5, 600}});
}

TEST(SplitTemporalTest, LatestPositivesAreTheTargetsAndEarlierOnesTrain) {
  const TemporalSplit s = split_temporal(three_users(), HeldoutOptions{}, 1, 1);
  EXPECT_EQ(s.item_map, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));  // item 6 only held out
  EXPECT_EQ(s.train_users, (std::vector<int32_t>{0, 1, 2}));
  ASSERT_EQ(s.train.rows, 3);
  EXPECT_EQ(row_of(s.train, 0), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(row_of(s.train, 1), (std::vector<int32_t>{0, 1, 3, 5}));  // too few to evaluate: all train
  EXPECT_EQ(row_of(s.train, 2), (std::vector<int32_t>{0, 1, 3, 4}));
  // Validation: the second-latest positive, folding in the training ones.
  EXPECT_EQ(s.val_users, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(s.val_rows, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(row_of(s.val_target, 0), (std::vector<int32_t>{4}));
  EXPECT_EQ(row_of(s.val_target, 1), (std::vector<int32_t>{2}));
  EXPECT_EQ(row_of(s.val_foldin, 0), row_of(s.train, 0));
  EXPECT_EQ(row_of(s.val_foldin, 1), row_of(s.train, 2));
  // Test: the latest, folding in the validation one too; user 2's latest has no column.
  EXPECT_EQ(s.test_users, (std::vector<int32_t>{0}));
  EXPECT_EQ(s.test_rows, (std::vector<int32_t>{0}));
  EXPECT_EQ(row_of(s.test_target, 0), (std::vector<int32_t>{5}));
  EXPECT_EQ(row_of(s.test_foldin, 0), (std::vector<int32_t>{0, 1, 2, 4}));
  EXPECT_EQ(s.dropped, 1);
  EXPECT_EQ(s.dropped_test, 1);          // user 2's latest, item 6
  EXPECT_EQ(s.untrained_test_users, 1);  // user 2: no other test positive, so not scored
  for (const Csr* m : {&s.train, &s.val_foldin, &s.val_target, &s.test_foldin, &s.test_target}) expect_binary(*m, 6);
}

TEST(SplitTemporalTest, ThresholdAndLeaveLastChooseWhatIsHeldOut) {
  HeldoutOptions all;
  all.threshold = 0;  // every rating is a positive: user 0's item 3 (rated 1) trains
  TemporalSplit s = split_temporal(three_users(), all, 1, 1);
  EXPECT_EQ(row_of(s.train, 0), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(row_of(s.test_target, 0), (std::vector<int32_t>{5}));

  // Two held out each: 2·2 + 1 = 5 positives needed; users 0 (five) and 2 (six) qualify. Item 2
  // then trains nowhere (user 0 holds it out, user 2 too), so it has no column.
  s = split_temporal(three_users(), HeldoutOptions{}, 2, 1);
  auto items = [&](const Csr& m, int64_t row) {
    std::vector<int32_t> out;
    for (int32_t c : row_of(m, row)) out.push_back(s.item_map[c]);
    return out;
  };
  EXPECT_EQ(s.item_map, (std::vector<int32_t>{0, 1, 3, 4, 5}));
  EXPECT_EQ(s.val_users, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(items(s.train, 0), (std::vector<int32_t>{0}));
  EXPECT_EQ(items(s.val_target, 0), (std::vector<int32_t>{1}));  // and item 2, left out
  EXPECT_EQ(items(s.test_target, 0), (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(items(s.train, 2), (std::vector<int32_t>{0, 4}));
  EXPECT_EQ(items(s.val_target, 1), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(s.test_users, (std::vector<int32_t>{0}));  // user 2's latest two, items 2 and 6, have no column
  EXPECT_EQ(s.dropped, 3);
  EXPECT_EQ(s.dropped_test, 2);  // user 2's items 2 and 6; user 0's item 2 was a validation target
  EXPECT_EQ(s.untrained_test_users, 1);
  // Three each need seven: nobody is evaluated, everybody trains on everything they like.
  s = split_temporal(three_users(), HeldoutOptions{}, 3, 1);
  EXPECT_TRUE(s.val_users.empty());
  EXPECT_TRUE(s.test_users.empty());
  EXPECT_EQ(s.train.nnz(), 5 + 4 + 6);
  EXPECT_THROW(split_temporal(three_users(), HeldoutOptions{}, 0, 1), UsageError);
}

// Ratings given in the same second are ordered by the seed, not by item id.
TEST(SplitTemporalTest, TiesInTimeFallInASeededOrder) {
  std::vector<TimedRating> rs;
  // Users 1 and 2 hold out different items (their times run opposite ways), so every item trains.
  for (int32_t i = 0; i < 8; ++i) {
    rs.push_back({0, i, 5, 1000});
    rs.push_back({1, i, 5, 10 + i});
    rs.push_back({2, i, 5, 10 - i});
  }
  const Dataset d = timed_dataset(3, 8, rs);
  std::set<int32_t> tested;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const TemporalSplit s = split_temporal(d, HeldoutOptions{}, 1, seed);
    ASSERT_EQ(s.item_map.size(), 8u);
    ASSERT_EQ(s.test_target.nnz(), 3);
    EXPECT_EQ(row_of(s.test_target, 1), std::vector<int32_t>{7});
    EXPECT_EQ(row_of(s.test_target, 2), std::vector<int32_t>{0});
    EXPECT_EQ(row_of(s.test_target, 0), row_of(split_temporal(d, HeldoutOptions{}, 1, seed).test_target, 0));
    tested.insert(s.test_target.indices[0]);
  }
  EXPECT_GE(tested.size(), 5u);  // 40 draws over 8 items
}

TEST(SplitTemporalTest, NoTargetIsOlderThanItsInputOnSyntheticData) {
  const Dataset& d = small_synthetic();
  ASSERT_TRUE(d.has_times());
  const TemporalSplit s = split_temporal(d, HeldoutOptions{}, 1, 3);
  ASSERT_GT(s.test_users.size(), 300u);
  auto time_of = [&](int32_t u, int32_t col) { return rating_time(d, s, u, col); };
  for (size_t j = 0; j < s.test_users.size(); ++j) {
    const int32_t u = s.test_users[j];
    ASSERT_EQ(s.train_users[s.test_rows[j]], u);
    int64_t newest_in = INT64_MIN;
    for (int32_t c : row_of(s.test_foldin, j)) newest_in = std::max(newest_in, time_of(u, c));
    for (int32_t c : row_of(s.test_target, j)) EXPECT_GT(time_of(u, c), newest_in) << "user " << u;
    const auto tr = row_of(s.train, s.test_rows[j]);
    for (int32_t c : row_of(s.test_target, j)) EXPECT_FALSE(std::binary_search(tr.begin(), tr.end(), c));
  }
  for (size_t j = 0; j < s.val_users.size(); ++j) {
    ASSERT_EQ(s.train_users[s.val_rows[j]], s.val_users[j]);
    EXPECT_EQ(row_of(s.val_foldin, j), row_of(s.train, s.val_rows[j]));
  }
  const TemporalSplit again = split_temporal(d, HeldoutOptions{}, 1, 3);
  EXPECT_EQ(again.test_target.indices, s.test_target.indices);
  EXPECT_EQ(again.train.indices, s.train.indices);
}

TEST(SplitTemporalTest, DataWithoutTimesIsRefusedWithTheReason) {
  Dataset d = three_users();
  d.rating_times.clear();
  d.no_times = "r.csv:3: the line has no timestamp";
  try {
    split_temporal(d, HeldoutOptions{}, 1, 1);
    FAIL() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("timed has no rating times (r.csv:3: the line has no timestamp)"),
              std::string::npos)
        << e.what();
  }
}

// ---- split_cutoff ----------------------------------------------------------------------------

// Cut at 50 (validation) and 70 (test). User 0 likes 0, 1 before, 2 between (3 there is rated 1),
// 4, 5 after. User 1: 0, 3 before, 5 between. User 2 likes 1 between and 4 after: new to the
// model. User 3 rates item 0 low before and likes 6 (no one else's) after. User 4 trains on 2, 4, 5.
Dataset five_users() {
  return timed_dataset(5, 7, {{0, 0, 5, 10}, {0, 1, 4, 20}, {0, 2, 5, 55}, {0, 3, 1, 58}, {0, 4, 5, 70},
                              {0, 5, 4, 80}, {1, 0, 4, 5},   {1, 3, 5, 30}, {1, 5, 5, 60}, {2, 1, 5, 52},
                              {2, 4, 5, 75}, {3, 0, 2, 15},  {3, 6, 5, 90}, {4, 2, 5, 1},  {4, 5, 5, 2},
                              {4, 4, 4, 3}});
}

TEST(SplitCutoffTest, RatingsBeforeTheCutTrainAndLaterOnesAreTheTargets) {
  const TemporalSplit s = split_cutoff(five_users(), HeldoutOptions{}, 50, 70);
  EXPECT_EQ(s.val_from, 50);
  EXPECT_EQ(s.test_from, 70);
  EXPECT_EQ(s.last, 0);
  EXPECT_EQ(s.item_map, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));  // item 6 is liked after the cut only
  EXPECT_EQ(s.train_users, (std::vector<int32_t>{0, 1, 4}));
  ASSERT_EQ(s.train.rows, 3);
  EXPECT_EQ(row_of(s.train, 0), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(row_of(s.train, 1), (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(row_of(s.train, 2), (std::vector<int32_t>{2, 4, 5}));
  // Validation: positives in [50, 70) folding in the training ones (user 0's item 3 is no positive).
  EXPECT_EQ(s.val_users, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(s.val_rows, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(row_of(s.val_target, 0), (std::vector<int32_t>{2}));
  EXPECT_EQ(row_of(s.val_target, 1), (std::vector<int32_t>{5}));
  EXPECT_EQ(row_of(s.val_foldin, 0), row_of(s.train, 0));
  EXPECT_EQ(row_of(s.val_foldin, 1), row_of(s.train, 1));
  // Test: from 70 on, folding in everything before 70. A rating at the cut is after it. User 2
  // liked item 1 only after 50: no row in the model, but scored by folding it in. User 3 liked
  // nothing before 70: nothing to fold in, counted and not scored.
  EXPECT_EQ(s.test_users, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(s.test_rows, (std::vector<int32_t>{0, kNoRow}));
  EXPECT_EQ(row_of(s.test_target, 0), (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(row_of(s.test_foldin, 0), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(row_of(s.test_target, 1), (std::vector<int32_t>{4}));
  EXPECT_EQ(row_of(s.test_foldin, 1), (std::vector<int32_t>{1}));
  EXPECT_EQ(s.unseen_users, 1);
  EXPECT_EQ(s.dropped, 0);
  for (const Csr* m : {&s.train, &s.val_foldin, &s.val_target, &s.test_foldin, &s.test_target}) expect_binary(*m, 6);

  // Every rating a positive: user 3 trains on item 0, and their item 6 (no column) is left out.
  HeldoutOptions all;
  all.threshold = 0;
  const TemporalSplit t = split_cutoff(five_users(), all, 50, 70);
  EXPECT_EQ(t.train_users, (std::vector<int32_t>{0, 1, 3, 4}));
  EXPECT_EQ(row_of(t.val_target, 0), (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(t.test_users, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(t.unseen_users, 0);
  EXPECT_EQ(t.dropped, 1);
  EXPECT_EQ(t.dropped_test, 1);
  EXPECT_EQ(t.untrained_test_users, 1);  // user 3: item 6 was their only test positive
  // The cut decides alone; a later test cut moves user 0's item 4 into validation.
  const TemporalSplit later = split_cutoff(five_users(), HeldoutOptions{}, 50, 71);
  EXPECT_EQ(row_of(later.val_target, 0), (std::vector<int32_t>{2, 4}));
  EXPECT_EQ(row_of(later.test_target, 0), (std::vector<int32_t>{5}));
  EXPECT_THROW(split_cutoff(five_users(), HeldoutOptions{}, 70, 70), UsageError);
  EXPECT_THROW(split_cutoff(five_users(), HeldoutOptions{}, 0, 70), UsageError);  // nothing left to train on
}

TEST(SplitCutoffTest, CutsAreSharesDatesOrSeconds) {
  Dataset d = five_users();
  // Sorted times: 1 2 3 5 10 15 20 30 52 55 58 60 70 75 80 90. The latest quarter starts at 70.
  EXPECT_EQ(resolve_time_cut(d, "0.75", "--test-from"), 70);
  EXPECT_EQ(resolve_time_cut(d, " 0.65 ", "--test-from"), 60);  // ceil(10.4): the 12th
  EXPECT_EQ(resolve_time_cut(d, "58", "--test-from"), 58);
  EXPECT_EQ(resolve_time_cut(d, "1970-01-01 00:01", "--val-from"), 60);
  EXPECT_EQ(resolve_time_cut(d, "1998-03-31", "--val-from"), 891302400);
  // A share of n ratings puts exactly share·n before the cut, also where the product is not
  // exact in doubles (0.07 × 100 = 7.000000000000001).
  {
    std::vector<TimedRating> hundred;
    for (int32_t u = 0; u < 10; ++u)
      for (int32_t i = 0; i < 10; ++i) hundred.push_back({u, i, 5.0f, 10 * u + i});
    const Dataset h = timed_dataset(10, 10, hundred);
    EXPECT_EQ(resolve_time_cut(h, "0.07", "--test-from"), 7);
    EXPECT_EQ(resolve_time_cut(h, "0.57", "--test-from"), 57);
    EXPECT_EQ(resolve_time_cut(h, "0.075", "--test-from"), 8);  // 7.5 ratings: the 8th is the first after
  }
  // As many ratings before the test cut as after it: 52, 55, 58, 60 against 70, 75, 80, 90.
  EXPECT_EQ(default_val_cut(d, 70), 52);
  try {  // 4 before, 12 after
    default_val_cut(d, 10);
    ADD_FAILURE() << "accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("leaves 4 ratings before it, and the default --val-from would take as many as "
                                         "come from it on (12) for validation, leaving none to train on"),
              std::string::npos)
        << e.what();
  }
  // After every rating (the last at 90): nothing to test on, said before the default cut is sought.
  try {
    resolve_cutoff(d, "", "91");
    ADD_FAILURE() << "accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("--test-from 1970-01-01 00:01:31 is after the last rating (1970-01-01 00:01:30)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(resolve_cutoff(d, "", "90"), std::make_pair(int64_t{80}, int64_t{90}));  // one rating from 90 on, so one (80) validates
  EXPECT_THROW(resolve_cutoff(d, "1", "90"), UsageError);  // nothing before the first rating's time to train on
  for (const char* bad : {"soon", "1.5", "0.0", "1998-02-30", ""}) {
    try {
      resolve_time_cut(d, bad, "--test-from");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_THAT(std::string(e.what()), ::testing::StartsWith("--test-from '")) << e.what();
    }
  }
  d.rating_times.clear();
  d.no_times = "r.csv:2: the line has no timestamp";
  try {
    resolve_time_cut(d, "0.9", "--test-from");
    FAIL() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_THAT(std::string(e.what()), ::testing::HasSubstr("the cutoff protocol splits by rating time, and timed has no rating "
                                                 "times (r.csv:2: the line has no timestamp)"));
  }
}

TEST(SplitCutoffTest, NothingHeldOutIsOlderThanTheCutOnSyntheticData) {
  const Dataset& d = small_synthetic();
  const int64_t test_from = resolve_time_cut(d, "0.8", "--test-from"), val_from = default_val_cut(d, test_from);
  const TemporalSplit s = split_cutoff(d, HeldoutOptions{}, val_from, test_from);
  ASSERT_GT(s.test_users.size(), 20u);
  ASSERT_GT(s.val_users.size(), 20u);
  const Csr& r = d.ratings;
  auto time_of = [&](int32_t u, int32_t col) { return rating_time(d, s, u, col); };
  for (int64_t row = 0; row < s.train.rows; ++row)
    for (int32_t c : row_of(s.train, row)) EXPECT_LT(time_of(s.train_users[row], c), val_from);
  for (size_t j = 0; j < s.val_users.size(); ++j) {
    ASSERT_EQ(s.train_users[s.val_rows[j]], s.val_users[j]);
    for (int32_t c : row_of(s.val_target, j)) {
      EXPECT_GE(time_of(s.val_users[j], c), val_from);
      EXPECT_LT(time_of(s.val_users[j], c), test_from);
    }
  }
  int64_t targets = 0;
  int64_t arrived = 0;
  for (size_t j = 0; j < s.test_users.size(); ++j) {
    if (s.test_rows[j] == kNoRow) {  // not a training user: nothing liked before val_from
      ++arrived;
      EXPECT_FALSE(std::binary_search(s.train_users.begin(), s.train_users.end(), s.test_users[j]));
      for (int32_t c : row_of(s.test_foldin, j)) EXPECT_GE(time_of(s.test_users[j], c), val_from);
    } else {
      ASSERT_EQ(s.train_users[s.test_rows[j]], s.test_users[j]);
    }
    EXPECT_GT(row_of(s.test_foldin, j).size(), 0u);
    for (int32_t c : row_of(s.test_foldin, j)) EXPECT_LT(time_of(s.test_users[j], c), test_from);
    for (int32_t c : row_of(s.test_target, j)) EXPECT_GE(time_of(s.test_users[j], c), test_from);
    targets += static_cast<int64_t>(row_of(s.test_target, j).size());
  }
  // Every positive from the cut on is a target, left out (no column) or a new user's.
  int64_t later = 0;
  for (int64_t k = 0; k < r.nnz(); ++k) later += d.rating_times[k] >= test_from && r.values[k] >= 4;
  EXPECT_LE(targets + s.dropped, later);
  EXPECT_GT(targets, later / 5) << s.test_users.size() << " test users, " << s.unseen_users << " unseen";
  EXPECT_GT(arrived, 0);
}

// ---- split_ratings_random ------------------------------------------------------------------

TEST(SplitRatingsTest, RandomSplitPartitionsTheRatings) {
  const Dataset& d = small_synthetic();
  const RatingsSplit s = split_ratings_random(d, 0.1, 5);
  EXPECT_EQ(s.description, "random 90/10");
  const Csr& r = d.ratings;
  EXPECT_NO_THROW(s.train.validate());
  EXPECT_NO_THROW(s.test.validate());
  EXPECT_EQ(s.train.rows, r.rows);
  EXPECT_EQ(s.train.cols, r.cols);
  EXPECT_EQ(s.test.rows, r.rows);
  EXPECT_EQ(s.test.cols, r.cols);
  EXPECT_EQ(s.test.nnz(), std::llround(0.1 * r.nnz()));  // exact count
  EXPECT_EQ(s.train.nnz() + s.test.nnz(), r.nnz());
  int64_t users_with_test = 0;
  for (int64_t u = 0; u < r.rows; ++u) {
    // Merge train and test rows: they must be disjoint and rebuild the user's ratings.
    std::vector<std::pair<int32_t, float>> merged;
    for (const Csr* m : {&s.train, &s.test})
      for (int64_t k = m->indptr[u]; k < m->indptr[u + 1]; ++k)
        merged.emplace_back(m->indices[k], m->values[k]);
    std::sort(merged.begin(), merged.end());
    ASSERT_EQ(static_cast<int64_t>(merged.size()), r.row_nnz(u));
    for (int64_t k = 0; k < r.row_nnz(u); ++k) {
      ASSERT_EQ(merged[k].first, r.indices[r.indptr[u] + k]);
      ASSERT_EQ(merged[k].second, r.values[r.indptr[u] + k]);
    }
    users_with_test += s.test.row_nnz(u) > 0;
  }
  EXPECT_GT(users_with_test, 400);  // spread over users, not a block of rows
  const RatingsSplit again = split_ratings_random(d, 0.1, 5), other = split_ratings_random(d, 0.1, 6);
  EXPECT_EQ(again.test.indices, s.test.indices);
  EXPECT_NE(other.test.indices, s.test.indices);
  EXPECT_EQ(split_ratings_random(d, 0.25, 5).description, "random 75/25");
  EXPECT_THROW(split_ratings_random(d, 2.0, 5), UsageError);
}

// ---- split_ratings_ml100k_fold -------------------------------------------------------------

class SplitFoldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("vae_split_fold_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    // 3 users (ids 7, 8, 9) × 3 items (ids 100, 200, 300).
    d_.name = d_.format = "test";
    d_.user_ids = {"7", "8", "9"};
    d_.item_ids = {"100", "200", "300"};
    d_.ratings = Csr::from_triplets(3, 3, {0, 0, 1, 2, 2}, {0, 2, 1, 0, 1}, {4, 3, 5, 1, 2});
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::string dir() const { return dir_.string(); }
  // DataError message for loading the fold, or "" when it loads.
  std::string error_of(const std::string& fold) {
    try {
      split_ratings_ml100k_fold(d_, dir(), fold);
    } catch (const DataError& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
  Dataset d_;
};

TEST_F(SplitFoldTest, LoadsBaseAndTestThroughIdMaps) {
  write("u1.base", "7\t100\t4\t881250949\n8\t200\t5\t881250950\n9\t100\t1\t881250951\n");
  write("u1.test", "7\t300\t3\t881250952\r\n9\t200\t2\t881250953\n\n");
  const RatingsSplit s = split_ratings_ml100k_fold(d_, dir(), "1");
  EXPECT_EQ(s.description, "u1.base/u1.test");
  EXPECT_EQ(s.train.rows, 3);
  EXPECT_EQ(s.train.cols, 3);
  EXPECT_EQ(s.train.nnz(), 3);
  EXPECT_EQ(s.test.nnz(), 2);
  EXPECT_EQ(row_of(s.train, 0), (std::vector<int32_t>{0}));
  EXPECT_EQ(row_of(s.train, 1), (std::vector<int32_t>{1}));
  EXPECT_EQ(row_of(s.test, 0), (std::vector<int32_t>{2}));
  EXPECT_EQ(s.test.values[0], 3.0f);
  EXPECT_EQ(row_of(s.test, 2), (std::vector<int32_t>{1}));
  EXPECT_EQ(s.test.values[1], 2.0f);

  write("ua.base", "8\t200\t5\t1\n");
  write("ua.test", "9\t300\t4\t1\n");
  EXPECT_EQ(split_ratings_ml100k_fold(d_, dir(), "a").description, "ua.base/ua.test");
}

TEST_F(SplitFoldTest, BadFilesNameFileLineAndProblem) {
  write("u2.base", "7\t100\t4\t1\n7\t999\t4\t1\n");
  write("u2.test", "8\t200\t5\t1\n");
  std::string e = error_of("2");
  EXPECT_NE(e.find("u2.base:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown item id '999'"), std::string::npos) << e;

  write("u2.base", "7\t100\t4\t1\n");
  write("u2.test", "8\t200\t5\t1\n1234\t200\t5\t1\n");
  e = error_of("2");
  EXPECT_NE(e.find("u2.test:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown user id '1234'"), std::string::npos) << e;

  write("u2.test", "8 200 5 1\n");
  e = error_of("2");
  EXPECT_NE(e.find("u2.test:1:"), std::string::npos) << e;
  EXPECT_NE(e.find("4 tab-separated fields"), std::string::npos) << e;

  write("u2.test", "8\t200\tfive\t1\n");
  EXPECT_NE(error_of("2").find("non-numeric rating 'five'"), std::string::npos) << error_of("2");
  write("u2.test", "8\t200\t9\t1\n");
  EXPECT_NE(error_of("2").find("rating '9' is outside the data's ratings, 1 to 5"), std::string::npos) << error_of("2");
  write("u2.test", "8\t200\t5\tnoon\n");
  EXPECT_NE(error_of("2").find("timestamp 'noon' is not an integer"), std::string::npos) << error_of("2");
  write("u2.test", "8\t200\t5\t-5\n");  // before 1970, as u.data may have
  EXPECT_EQ(error_of("2"), "");
  // ml-100k's fold files hold what its u.data may: whole stars 1 to 5 (not the range u.data happens to use).
  d_.format = "ml-100k";
  write("u2.test", "8\t200\t3.5\t1\n");
  EXPECT_NE(error_of("2").find("u2.test:1: rating '3.5' is not a whole number from 1 to 5"), std::string::npos)
      << error_of("2");
  write("u2.test", "\xEF\xBB\xBF" "8\t300\t5\t1\n");  // a byte-order mark, dropped as in u.data; 5 is above u.data's 4 here
  EXPECT_EQ(error_of("2"), "");
  d_.format = "test";
  write("u2.test", "8\t200\t5\t1\n");

  write("u2.test", "8\t200\t5\t1\n7\t100\t2\t1\n");
  e = error_of("2");
  EXPECT_NE(e.find("u2.test:2:"), std::string::npos) << e;
  EXPECT_NE(e.find("both the base and the test file"), std::string::npos) << e;

  write("u2.test", "8\t200\t5\t1\n8\t200\t4\t2\n");
  EXPECT_NE(error_of("2").find("duplicate"), std::string::npos);

  e = error_of("3");  // no u3.* files, but other folds are here
  EXPECT_NE(e.find("u3.base: no such file"), std::string::npos) << e;
  EXPECT_NE(e.find("lacks fold 3"), std::string::npos) << e;

  EXPECT_THROW(split_ratings_ml100k_fold(d_, dir(), "6"), UsageError);
  EXPECT_THROW(split_ratings_ml100k_fold(d_, dir(), "c"), UsageError);
  EXPECT_THROW(split_ratings_ml100k_fold(d_, dir(), "11"), UsageError);
}

// An empty fold file is a broken copy of ml-100k: training on nothing, or an RMSE over no
// ratings, would be figures of no data.
TEST_F(SplitFoldTest, AnEmptyFoldFileIsRefused) {
  write("u4.base", "");
  write("u4.test", "8\t200\t5\t1\n");
  std::string e = error_of("4");
  EXPECT_NE(e.find("u4.base: no ratings (the fold's training file is empty)"), std::string::npos) << e;
  write("u4.base", "7\t100\t4\t1\n");
  write("u4.test", "\n");
  e = error_of("4");
  EXPECT_NE(e.find("u4.test: no ratings (the fold's test file is empty)"), std::string::npos) << e;
}

// A non-numeric id in a fold file is not a number, as u.data's loader says, rather than an
// "unknown" id; fold ids match the data set's by value like u.data's ("007" is user 7).
TEST_F(SplitFoldTest, NonNumericOrNonPositiveIdsAreNamedAsSuch) {
  write("u1.base", "7\t100\t4\t1\n");
  write("u1.test", "8\t200\t5\t1\nabc\t200\t5\t1\n");
  std::string e = error_of("1");
  EXPECT_NE(e.find("u1.test:2: non-numeric user id 'abc'"), std::string::npos) << e;
  EXPECT_EQ(e.find("unknown"), std::string::npos) << e;
  write("u1.test", "8\t2x0\t5\t1\n");
  e = error_of("1");
  EXPECT_NE(e.find("u1.test:1: non-numeric item id '2x0'"), std::string::npos) << e;
  write("u1.test", "0\t200\t5\t1\n");
  e = error_of("1");
  EXPECT_NE(e.find("u1.test:1: user id '0' is not a positive integer"), std::string::npos) << e;
  write("u1.test", std::string("8\t200\t5\t1\n9\t3") + '\0' + "0\t5\t1\n");
  e = error_of("1");
  EXPECT_NE(e.find("u1.test:2: holds a NUL byte (byte 4 of the line): not a text file"), std::string::npos) << e;
  write("u1.test", "008\t0200\t5\t1\n");
  const RatingsSplit s = split_ratings_ml100k_fold(d_, dir(), "1");
  ASSERT_EQ(s.test.nnz(), 1);
  EXPECT_EQ(row_of(s.test, 1), (std::vector<int32_t>{1}));
}

// --fold 1 on a data set without fold files (ml-latest-small, ml-1m, CSV) says the fold files are
// ml-100k's, not just that u1.base cannot be opened.
TEST_F(SplitFoldTest, NoFoldFilesSaysTheyExistOnlyInMl100k) {
  d_.format = "ml-latest";
  write("ratings.csv", "userId,movieId,rating,timestamp\n");
  for (const char* fold : {"1", "5", "a", "b"}) {
    const std::string e = error_of(fold);
    EXPECT_NE(e.find(dir() + ": no u" + fold + ".base here"), std::string::npos) << e;
    EXPECT_NE(e.find("exist only in ml-100k"), std::string::npos) << e;
    EXPECT_NE(e.find("this data directory (ml-latest) has none"), std::string::npos) << e;
  }
}

// Real ml-100k when MOVIELENS_DIR points at a directory holding ml-100k/ (never copied here).
TEST(SplitMovieLensTest, Ml100kFoldOneIs80kPlus20k) {
  const char* root = std::getenv("MOVIELENS_DIR");
  if (!root || !*root) GTEST_SKIP() << "MOVIELENS_DIR not set";
  const std::string dir = std::string(root) + "/ml-100k";
  if (!fs::exists(dir + "/u1.base")) GTEST_SKIP() << dir << "/u1.base not found";
  const Dataset d = load_ml100k(dir);
  ASSERT_EQ(d.num_ratings(), 100000);
  const RatingsSplit s = split_ratings_ml100k_fold(d, dir, "1");
  EXPECT_EQ(s.train.nnz(), 80000);
  EXPECT_EQ(s.test.nnz(), 20000);
  EXPECT_EQ(s.train.rows, 943);
  EXPECT_EQ(s.train.cols, 1682);
  for (const char* fold : {"2", "3", "4", "5", "a", "b"}) {
    const RatingsSplit f = split_ratings_ml100k_fold(d, dir, fold);
    EXPECT_EQ(f.train.nnz() + f.test.nnz(), 100000) << fold;
  }
  const HeldoutSplit h = split_heldout(d, HeldoutOptions{}, 1);
  EXPECT_GT(h.train_users.size(), 500u);
}

TEST(SplitMovieLensTest, MlLatestSmallHasNoMl100kFolds) {
  const char* root = std::getenv("MOVIELENS_DIR");
  if (!root || !*root) GTEST_SKIP() << "MOVIELENS_DIR not set";
  const std::string dir = std::string(root) + "/ml-latest-small";
  if (!fs::exists(dir + "/ratings.csv")) GTEST_SKIP() << dir << "/ratings.csv not found";
  const Dataset d = load_movielens_dir(dir);
  try {
    split_ratings_ml100k_fold(d, dir, "1");
    ADD_FAILURE() << "fold 1 of ml-latest-small loaded";
  } catch (const DataError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("exist only in ml-100k"), std::string::npos) << m;
    EXPECT_NE(m.find("(ml-latest)"), std::string::npos) << m;
    EXPECT_EQ(m.find("cannot open"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace vae
