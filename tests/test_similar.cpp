// Item effects: `similar` (items a like of one item pulls up most, over the average item's pull)
// and recommend --explain (the rated item behind each recommendation). Checked against a linear
// stand-in whose answers are known in closed form, against EASE's B (its outputs are X·B, so
// every effect is a difference of B entries), and the fold-in outputs against the recommend path.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <sstream>

#include "analysis/model_file.h"
#include "analysis/recommend.h"
#include "analysis/similar.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "data/text_reader.h"
#include "models/baselines.h"
#include "train/trainer.h"
#include "trained_model.h"

namespace {

using namespace vae;
using ::testing::HasSubstr;
using ::testing::Not;

const Dataset& data() {
  static const Dataset d = test::synthetic_data(150, 120, 4000, 3, 8);
  return d;
}

// A linear "model": out(x) = b + x·M over n items, item `absent` not a column (NaN), and the
// number of users it was asked for counted (chunking).
struct Linear {
  int64_t n = 0;
  std::vector<double> m, b;
  int32_t absent = -1;
  mutable int64_t calls = 0;
  mutable size_t max_users = 0;
  ItemEffects effects(int64_t chunk = 256) const {
    ItemEffects e;
    e.model = "linear";
    e.unit = "output";
    e.like = 5.0f;
    e.chunk = chunk;
    e.outputs = [this](const std::vector<FoldInRow>& users) {
      ++calls;
      max_users = std::max(max_users, users.size());
      std::vector<std::vector<float>> out;
      for (const FoldInRow& row : users) {
        std::vector<float> o(static_cast<size_t>(n));
        for (int64_t j = 0; j < n; ++j) {
          double v = b[j];
          for (const auto& [i, r] : row)
            if (i != absent) v += r * m[i * n + j];
          o[j] = j == absent ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(v);
        }
        out.push_back(std::move(o));
      }
      return out;
    };
    return e;
  }
};

Linear linear(int64_t n, uint64_t seed) {
  Linear l;
  l.n = n;
  l.m.resize(static_cast<size_t>(n * n));
  l.b.resize(static_cast<size_t>(n));
  uint64_t s = seed;
  auto next = [&] {  // small exact binary fractions: float sums stay exact
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(static_cast<int>((s >> 40) % 64) - 32) / 64.0;
  };
  for (double& v : l.m) v = next();
  for (double& v : l.b) v = next();
  return l;
}

TEST(ItemEffects, MostSimilarIsTheItemsPullOverTheAverageItems) {
  const Dataset& d = data();
  const int64_t n = d.num_items();
  Linear l = linear(n, 3);
  l.absent = 7;
  const ItemEffects e = l.effects(/*chunk=*/16);
  const int32_t q = 11;
  const std::vector<SimilarItem> got = most_similar(e, q, 10, d);
  // Oracle: raw_j = 5·M[q][j] − mean over model items i of 5·M[i][j] (b cancels), then centred:
  // lift_j = raw_j − mean over model items j' of raw_j'.
  std::vector<double> raw(static_cast<size_t>(n), 0.0);
  double shift = 0;
  for (int32_t j = 0; j < n; ++j) {
    if (j == l.absent) continue;
    double mean = 0;
    for (int32_t i = 0; i < n; ++i)
      if (i != l.absent) mean += 5 * l.m[i * n + j];
    mean /= static_cast<double>(n - 1);
    raw[j] = 5 * l.m[q * n + j] - mean;
    shift += raw[j];
  }
  shift /= static_cast<double>(n - 1);
  std::vector<std::pair<double, int32_t>> want;
  for (int32_t j = 0; j < n; ++j)
    if (j != q && j != l.absent) want.emplace_back(raw[j] - shift, j);
  std::sort(want.begin(), want.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  ASSERT_EQ(got.size(), 10u);
  for (size_t r = 0; r < got.size(); ++r) {
    EXPECT_EQ(got[r].rank, static_cast<int>(r) + 1);
    EXPECT_EQ(got[r].item, want[r].second) << "rank " << r + 1;
    EXPECT_NEAR(got[r].effect, want[r].first, 1e-5) << "rank " << r + 1;
  }
  EXPECT_LE(l.max_users, 16u);  // the chunk bounds each call
  // An item the model has no column for is refused by name; --top beyond the items is cut.
  try {
    most_similar(e, l.absent, 5, d);
    FAIL() << "expected a UsageError";
  } catch (const UsageError& err) {
    EXPECT_THAT(err.what(), HasSubstr("is not one of the linear model's items"));
    EXPECT_THAT(err.what(), HasSubstr(d.item_ids[l.absent]));
  }
  EXPECT_EQ(most_similar(e, q, 100000, d).size(), static_cast<size_t>(n - 2));
}

// --min-ratings: the list is the unfiltered one with the items of fewer ratings taken out (the
// lifts themselves unchanged: still centred over every model item), in the CSV too.
TEST(ItemEffects, MinRatingsListsOnlyItemsWithThatSupport) {
  const Dataset& d = data();
  const int64_t n = d.num_items();
  Linear l = linear(n, 9);
  std::vector<int64_t> counts(static_cast<size_t>(n), 0);
  for (int32_t c : d.ratings.indices) ++counts[c];
  std::vector<int64_t> sorted = counts;
  std::sort(sorted.begin(), sorted.end());
  const int64_t m = sorted[sorted.size() / 2];  // about half the items fall below
  const int32_t q = 4;
  // One item below m without a model column (as a heldout model leaves out items nobody liked).
  for (int32_t j = 0; j < n && l.absent < 0; ++j)
    if (j != q && counts[j] < m) l.absent = j;
  ASSERT_GE(l.absent, 0);
  const ItemEffects e = l.effects();
  const std::vector<SimilarItem> all = most_similar(e, q, static_cast<int>(n), d);
  const std::vector<SimilarItem> some = most_similar(e, q, static_cast<int>(n), d, m);
  std::vector<SimilarItem> want;
  for (const SimilarItem& s : all)
    if (counts[s.item] >= m) want.push_back(s);
  ASSERT_LT(want.size(), all.size());
  ASSERT_EQ(some.size(), want.size());
  for (size_t r = 0; r < want.size(); ++r) {
    EXPECT_EQ(some[r].item, want[r].item) << "rank " << r + 1;
    EXPECT_EQ(some[r].effect, want[r].effect) << "rank " << r + 1;
    EXPECT_EQ(some[r].rank, static_cast<int>(r) + 1);
  }
  // Counted among the model's items (l.absent has no column): the catalogue's count would be off.
  int64_t below = 0;
  for (int32_t j = 0; j < n; ++j) below += j != l.absent && j != q && counts[j] < m;
  ASSERT_NE(below, 0);
  EXPECT_THAT(format_similar(e, q, some, d, m),
              HasSubstr("(" + std::to_string(below) + " of the model's other " + std::to_string(n - 2) +
                        " items have fewer than " + std::to_string(m) + " ratings and are not listed"));
  EXPECT_THAT(format_similar(e, q, all, d), Not(HasSubstr("are not listed")));
  const std::string csv = ::testing::TempDir() + "/vae_similar_min_" + std::to_string(getpid()) + ".csv";
  write_similar_csv(e, d, 3, csv, m);
  std::ifstream f(csv);
  std::string line;
  std::getline(f, line);
  int rows = 0;
  while (std::getline(f, line)) {
    const std::string similar_id = line.substr(0, line.rfind(',')).substr(line.substr(0, line.rfind(',')).rfind(',') + 1);
    EXPECT_GE(counts[d.find_item(similar_id)], m) << line;
    ++rows;
  }
  EXPECT_EQ(rows, 3 * (n - 1));  // every model item's list
  std::filesystem::remove(csv);
}

// The all-items table holds, for every model item, exactly its most_similar list.
TEST(ItemEffects, AllItemsCsvHoldsEachItemsList) {
  const Dataset& d = data();
  Linear l = linear(d.num_items(), 5);
  l.absent = 3;
  const ItemEffects e = l.effects(/*chunk=*/7);
  const std::string path = ::testing::TempDir() + "/similar_all_" + std::to_string(::getpid()) + ".csv";
  const int64_t rows = write_similar_csv(e, d, 4, path);
  EXPECT_EQ(rows, 4 * (d.num_items() - 1));
  std::ifstream f(path);
  std::string line;
  ASSERT_TRUE(std::getline(f, line));
  EXPECT_EQ(line, "item_id,rank,similar_item_id,lift");
  std::string want;
  for (int32_t i = 0; i < d.num_items(); ++i) {
    if (i == l.absent) continue;
    for (const SimilarItem& s : most_similar(e, i, 4, d)) {
      char v[32];
      std::snprintf(v, sizeof v, "%.6g", s.effect);
      want += d.item_ids[i] + "," + std::to_string(s.rank) + "," + d.item_ids[s.item] + "," + v + "\n";
    }
  }
  std::string got;
  while (std::getline(f, line)) got += line + "\n";
  EXPECT_EQ(got, want);
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
    EXPECT_EQ(e.path().filename().string().rfind(std::filesystem::path(path).filename().string() + ".tmp", 0), std::string::npos)
        << e.path();  // no temporary (NAME.tmp.PID.N) left
  std::filesystem::remove(path);
}

// Ids and titles come from data files: a control byte in one is shown escaped, never sent to
// the terminal, and the columns still line up.
TEST(ItemEffects, TablesEscapeIdsAndTitles) {
  Dataset d = data();
  d.item_ids[9] = "x\x1b[31my";
  d.titles[9] = "Bad\x07Title";
  Linear l;
  l.n = d.num_items();
  l.m.assign(static_cast<size_t>(l.n * l.n), 0.0);
  l.b.assign(static_cast<size_t>(l.n), 0.0);
  l.m[3 * l.n + 9] = 1.0;
  l.m[3 * l.n + 10] = 0.5;
  const ItemEffects e = l.effects();
  const std::string t = format_similar(e, 3, most_similar(e, 3, 2, d), d);
  EXPECT_EQ(t.find('\x1b'), std::string::npos) << t;
  EXPECT_EQ(t.find('\x07'), std::string::npos) << t;
  EXPECT_THAT(t, HasSubstr("x\\x1b[31my"));
  EXPECT_THAT(t, HasSubstr("Bad\\x07Title"));
  // Both rows put their lift at the same column.
  const size_t r1 = t.find("\n   1 "), r2 = t.find("\n   2 ");
  ASSERT_NE(r1, std::string::npos);
  ASSERT_NE(r2, std::string::npos);
  const std::string row1 = t.substr(r1 + 1, t.find('\n', r1 + 1) - r1 - 1), row2 = t.substr(r2 + 1, t.find('\n', r2 + 1) - r2 - 1);
  EXPECT_EQ(row1.find('.'), row2.find('.')) << row1 << "\n" << row2;
  RecommendResult r;
  Recommendation x;
  x.rank = 1;
  x.item = 9;
  x.item_id = d.item_ids[9];
  x.title = d.titles[9];
  r.items.push_back(x);
  const std::string rt = format_recommendations(r, d, "Top 1:");
  EXPECT_EQ(rt.find('\x1b'), std::string::npos) << rt;
  EXPECT_THAT(rt, HasSubstr("x\\x1b[31my"));
}

TEST(ItemEffects, TiesGoToTheLowerItem) {
  const Dataset& d = data();
  Linear l;
  l.n = d.num_items();
  l.m.assign(static_cast<size_t>(l.n * l.n), 0.0);
  l.b.assign(static_cast<size_t>(l.n), 0.0);
  for (int32_t j : {40, 9, 77}) l.m[3 * l.n + j] = 1.0;  // item 3 pulls three items equally
  const std::vector<SimilarItem> got = most_similar(l.effects(), 3, 3, d);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].item, 9);
  EXPECT_EQ(got[1].item, 40);
  EXPECT_EQ(got[2].item, 77);
  EXPECT_EQ(got[0].effect, got[2].effect);
}

// --explain's oracle, written from its definition over the stand-in's outputs: for each
// recommended j, the liked i maximising (out_i[j] − none[j]) − mean over columns j' of the same,
// if positive; ties to the lower i.
std::vector<int32_t> explain_oracle(const Linear& l, const std::vector<int32_t>& recommended, const FoldInRow& rated,
                                    float liked) {
  const ItemEffects e = l.effects();
  const std::vector<float> none = e.outputs({FoldInRow{}}).front();
  std::vector<int32_t> best(recommended.size(), -1);
  std::vector<double> pull(recommended.size(), 0.0);
  for (const auto& [i, r] : rated) {
    if (r < liked) continue;
    const std::vector<float> o = e.outputs({FoldInRow{{i, r}}}).front();
    double shift = 0;
    int64_t cols = 0;
    for (int64_t j = 0; j < l.n; ++j)
      if (!std::isnan(none[j])) shift += static_cast<double>(o[j]) - none[j], ++cols;
    shift /= static_cast<double>(cols);
    for (size_t t = 0; t < recommended.size(); ++t) {
      const int32_t j = recommended[t];
      if (j == i || std::isnan(none[j])) continue;
      const double v = static_cast<double>(o[j]) - none[j] - shift;
      if (v > 0 && (best[t] < 0 || v > pull[t] || (v == pull[t] && i < best[t]))) best[t] = i, pull[t] = v;
    }
  }
  return best;
}

TEST(ItemEffects, ExplainPicksTheLikedItemWithTheLargestCentredPull) {
  const int64_t n = 30;
  Linear l;
  l.n = n;
  l.m.assign(static_cast<size_t>(n * n), 0.0);
  l.b.assign(static_cast<size_t>(n), 0.5);
  l.absent = 29;
  // Rated: 2 (rating 5), 4 (1), 6 (4), 8 (5), 10 (5), 12 (5), 29 (not a column).
  l.m[2 * n + 20] = 0.125;  // 0.625
  l.m[4 * n + 20] = 1.0;    // 1.0, but a rating of 1 is no like at liked = 3
  l.m[6 * n + 21] = -1;     // item 21 is only pushed down → none
  l.m[6 * n + 6] = 9;       // a rated item recommended again is not its own reason
  l.m[2 * n + 6] = 0.015625;
  // Items 8 and 10 pull item 23 equally, with rows of the same sum (the same centring): the
  // lower index wins.
  l.m[8 * n + 23] = 0.25;
  l.m[10 * n + 23] = 0.25;
  l.m[8 * n + 3] = 0.125;
  l.m[10 * n + 4] = 0.125;
  // Item 12 raises every item alike (a user bias): after centring it pulls none of them.
  for (int64_t j = 0; j < n; ++j) l.m[12 * n + j] = 2.0;
  const FoldInRow rated{{2, 5.f}, {4, 1.f}, {6, 4.f}, {8, 5.f}, {10, 5.f}, {12, 5.f}, {29, 5.f}};
  const ItemEffects e = l.effects(/*chunk=*/2);
  const std::vector<int32_t> recs{20, 21, 23, 6, 24};
  const std::vector<int32_t> got = explain_recommendations(e, recs, rated, 3.0f, n);
  EXPECT_EQ(got, (std::vector<int32_t>{2, -1, 8, 2, -1}));
  EXPECT_LE(l.max_users, 2u);
  EXPECT_EQ(got, explain_oracle(l, recs, rated, 3.0f));
  // With every rating a like, item 4's larger pull on item 20 wins.
  EXPECT_EQ(explain_recommendations(e, {20}, rated, 1.0f, n), std::vector<int32_t>{4});
  EXPECT_EQ(explain_recommendations(e, {20}, {}, 1.0f, n), std::vector<int32_t>{-1});
  // A random matrix against the oracle.
  Linear r = linear(n, 11);
  r.absent = 5;
  FoldInRow many;
  for (int32_t i = 0; i < n; i += 2) many.emplace_back(i, static_cast<float>(1 + i % 5));
  std::vector<int32_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  EXPECT_EQ(explain_recommendations(r.effects(4), all, many, 2.5f, n), explain_oracle(r, all, many, 2.5f));
}

TEST(ItemEffects, ItemsAreFoundByIdOrTitle) {
  Dataset d;
  d.name = "tiny";
  d.item_ids = {"1", "2", "3", "4", "50"};
  d.titles = {"Star Wars (1977)", "Return of the Jedi (1983)", "Star Trek (1979)", "star wars (1977)x", "Fargo (1996)"};
  d.ratings.rows = 0;
  d.ratings.cols = 5;
  d.ratings.indptr = {0};
  d.titles[4] = "Amélie (2001)";
  EXPECT_EQ(find_item_by_id_or_title("AMÉLIE", d), 4);  // Latin-1 capitals fold too
  EXPECT_EQ(find_item_by_id_or_title("amelie", d), 4);  // and accents need not be typed
  d.titles[4] = "Fargo (1996)";
  EXPECT_EQ(text::search_key("ÀÉÎÕÜ Þ × ÿ ß Æ"), "aeiou th × y ss ae");
  EXPECT_EQ(text::search_key("Łódź, Ŝ ŒUVRE İ"), "lodz, s oeuvre i");
  EXPECT_EQ(text::search_key("Rock \u2018n\u2019 Roll \u2013 1"), "rock 'n' roll - 1");
  EXPECT_EQ(text::search_key("\xff\xc3 Ωμέγα"), "\xff\xc3 Ωμέγα");  // other bytes as they are
  EXPECT_EQ(text::search_key("\xe2\x80" "A\xe2\x80\x99"), "\xe2\x80" "a'");  // a broken sequence takes no letter
  EXPECT_EQ(text::display_width("Amélie"), 6u);
  EXPECT_EQ(find_item_by_id_or_title("50", d), 4);  // an id first
  EXPECT_EQ(find_item_by_id_or_title("JEDI", d), 1);  // case ignored
  EXPECT_EQ(find_item_by_id_or_title("star wars (1977)", d), 0);  // two parts match, one exactly
  EXPECT_EQ(find_item_by_id_or_title("  star   WARS (1977) ", d), 0);  // spaces as typed
  auto message = [&](const std::string& q) {
    try {
      find_item_by_id_or_title(q, d);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string several = message("star");
  EXPECT_THAT(several, HasSubstr("3 titles in tiny match 'star'; give the item id of one:"));
  EXPECT_THAT(several, HasSubstr("\n  3  Star Trek (1979)"));
  EXPECT_THAT(message("casablanca"), HasSubstr("no item id or title in tiny matches 'casablanca'"));
  d.titles.clear();
  EXPECT_THAT(message("Jedi"), HasSubstr("it has no titles to search: give an item id"));
}

// MovieLens files leading articles after the title; a search may put them in front, and a title
// asked for whole (with or without its year) wins over the longer titles that hold it.
TEST(ItemEffects, TitlesAreFoundWithTheirArticleInFront) {
  Dataset d;
  d.name = "tiny";
  d.item_ids = {"1", "2", "3", "4", "5", "6", "7"};
  d.titles = {"Matrix, The (1999)",         "Matrix Reloaded, The (2003)", "Dolce Vita, La (1960)",
              "Age d'or, L' (1930)",        "Hamlet (1990)",               "Hamlet (1996)",
              "Paris, Texas (1984)"};
  d.ratings.rows = 0;
  d.ratings.cols = 7;
  d.ratings.indptr = {0};
  EXPECT_EQ(find_item_by_id_or_title("The Matrix", d), 0);
  EXPECT_EQ(find_item_by_id_or_title("the matrix (1999)", d), 0);
  EXPECT_EQ(find_item_by_id_or_title("Matrix, The", d), 0);
  EXPECT_EQ(find_item_by_id_or_title("the matrix reloaded", d), 1);
  EXPECT_EQ(find_item_by_id_or_title("la dolce vita", d), 2);
  EXPECT_EQ(find_item_by_id_or_title("l'age d'or", d), 3);
  EXPECT_EQ(find_item_by_id_or_title("paris, texas", d), 6);  // not an article: as filed
  EXPECT_EQ(find_item_by_id_or_title("hamlet (1996)", d), 5);
  try {
    find_item_by_id_or_title("hamlet", d);
    ADD_FAILURE() << "two Hamlets are one title each: the query is ambiguous";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("2 titles in tiny match 'hamlet'; give the item id of one:\n  5  Hamlet (1990)\n  6"));
  }
  EXPECT_EQ(find_item_by_id_or_title("the matrix re", d), 1);  // part of one title's front form
  // Titles with double spaces (ml-latest-small has a few) are found as filed and as typed.
  d.titles[6] = "Blind Side, The  (2009)";
  EXPECT_EQ(find_item_by_id_or_title("Blind Side, The  (2009)", d), 6);
  EXPECT_EQ(find_item_by_id_or_title("the blind side", d), 6);
}

// --explain against an oracle pull(i, j): each item j of `items` is explained by the liked item
// (rated at least 3, not j itself) with the largest pull above 0 (its pull within tol), or by
// none when no pull is above 0; at least one item is explained.
void expect_explained_by(const ItemEffects& e, const FoldInRow& rated, const std::vector<int32_t>& items, int64_t n,
                         double tol, const std::function<double(int32_t, int32_t)>& pull) {
  const std::vector<int32_t> why = explain_recommendations(e, items, rated, e.liked, n);
  ASSERT_EQ(why.size(), items.size());
  int explained = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    const int32_t j = items[k];
    int32_t want = -1;
    double best = 0;
    for (const auto& [i, r] : rated) {
      if (r < 3.0f || i == j) continue;
      const double v = pull(i, j);
      if (v > 0 && (want < 0 || v > best)) want = i, best = v;
    }
    if (want < 0) {
      EXPECT_EQ(why[k], -1) << "item " << j;
    } else {
      ++explained;
      ASSERT_GE(why[k], 0) << "item " << j;
      EXPECT_NEAR(pull(why[k], j), best, tol) << "item " << j;
    }
  }
  EXPECT_GT(explained, 0);
}

// ---- trained models through the recommend path -------------------------------------------

using test::Trained;

Trained train(const std::string& kind, const std::string& protocol, int hidden = 0) {
  return test::train_small(data(), kind, protocol, hidden);
}

FoldInRow ratings_of(const Dataset& d, int64_t u) {
  FoldInRow row;
  for (int64_t p = d.ratings.indptr[u]; p < d.ratings.indptr[u + 1]; ++p)
    row.emplace_back(d.ratings.indices[p], d.ratings.values[p]);
  return row;
}

std::string spec_of(const Dataset& d, const FoldInRow& row) {
  std::ostringstream s;
  for (const auto& [i, r] : row) s << (s.tellp() > 0 ? "," : "") << d.item_ids[i] << ":" << r;
  return s.str();
}

// The outputs `similar` and --explain read are the model's own scores of a folded-in user: the
// ones recommend --ratings ranks (before the VAE / CDAE sigmoid), NaN exactly off the columns.
TEST(ItemEffects, FoldInOutputsAreWhatRecommendScores) {
  const Dataset& d = data();
  for (const auto& [kind, protocol] : std::vector<std::pair<std::string, std::string>>{
           {"vae", "seed"}, {"multvae", "seed"}, {"multvae", "heldout"}, {"cdae", "seed"}, {"autorec", "seed"},
           {"ease", "heldout"}}) {
    SCOPED_TRACE(kind + " / " + protocol);
    Trained t = train(kind, protocol);
    Recommender rec(*t.be, *t.r.model_ptr, t.info, d);
    const std::vector<FoldInRow> users{ratings_of(d, 5), ratings_of(d, 17), FoldInRow{{3, 5.f}}};
    const std::vector<std::vector<float>> out = rec.fold_in_outputs(users);
    ASSERT_EQ(out.size(), users.size());
    const bool sigmoid = kind == "vae" || kind == "cdae";
    int64_t columns = 0;
    for (float v : out[0]) columns += !std::isnan(v);
    EXPECT_EQ(columns, static_cast<int64_t>(t.info.column_map.size()));
    for (size_t u = 0; u < users.size(); ++u) {
      RecommendOptions o;
      o.top = static_cast<int>(d.num_items());
      o.include_rated = true;
      const RecommendResult r = rec.for_ratings(spec_of(d, users[u]), o);
      if (r.popularity_fallback) continue;  // nothing above the heldout threshold
      ASSERT_EQ(static_cast<int64_t>(r.items.size()), columns);
      for (const Recommendation& x : r.items) {
        const double raw = out[u][x.item];
        const double want = sigmoid ? 1.0 / (1.0 + std::exp(-raw)) : raw;
        EXPECT_NEAR(x.score, want, 1e-6 + 1e-6 * std::fabs(want)) << "user row " << u << ", item " << x.item_id;
      }
    }
  }
}

// EASE scores are X·B: a like of item q adds B[q][·], so its lift is B[q][j] minus B's column mean
// (centred over j), and a user's recommendation is explained by the liked item with the largest
// B[i][j] less its row's mean.
TEST(ItemEffects, EaseEffectsAreItsItemItemWeights) {
  const Dataset& d = data();
  Trained t = train("ease", "seed");
  auto* ease = dynamic_cast<EaseModel<float>*>(t.r.model_ptr.get());
  ASSERT_NE(ease, nullptr);
  const std::vector<float> b = t.be->download(ease->item_item());
  const int64_t n = d.num_items();
  ASSERT_EQ(static_cast<int64_t>(b.size()), n * n);  // seed protocol: every item is a column
  Recommender rec(*t.be, *t.r.model_ptr, t.info, d);
  const ItemEffects e = item_effects(rec, *t.be, *t.r.model_ptr, t.info, d.rating_min, d.rating_max);
  // The outputs come from B directly: they are recommend's X·B.
  const std::vector<FoldInRow> users{ratings_of(d, 2), FoldInRow{{4, 1.f}, {9, 5.f}}, FoldInRow{}};
  const auto fast = e.outputs(users), slow = rec.fold_in_outputs(users);
  for (size_t u = 0; u < users.size(); ++u)
    for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(fast[u][j], slow[u][j], 1e-5) << "row " << u << " item " << j;
  const int32_t q = 12;
  const std::vector<SimilarItem> got = most_similar(e, q, 8, d);
  ASSERT_EQ(got.size(), 8u);
  std::vector<double> raw(static_cast<size_t>(n));
  double shift = 0;
  for (int64_t j = 0; j < n; ++j) {
    double mean = 0;
    for (int64_t i = 0; i < n; ++i) mean += b[i * n + j];
    raw[j] = b[q * n + j] - mean / static_cast<double>(n);
    shift += raw[j] / static_cast<double>(n);
  }
  for (const SimilarItem& s : got) EXPECT_NEAR(s.effect, raw[s.item] - shift, 1e-5) << d.item_ids[s.item];
  for (size_t r = 1; r < got.size(); ++r) EXPECT_GE(got[r - 1].effect, got[r].effect);

  // --explain: each liked item (rating >= 3 on this 1–5 scale) adds its row of B; its pull on j
  // is B[i][j] less that row's mean.
  EXPECT_EQ(e.liked, 3.0f);
  std::vector<int32_t> items;
  for (int32_t j = 0; j < n; j += 7) items.push_back(j);
  expect_explained_by(e, ratings_of(d, 9), items, n, 1e-6, [&](int32_t i, int32_t j) {
    double row_mean = 0;
    for (int64_t c = 0; c < n; ++c) row_mean += b[i * n + c];
    return b[i * n + j] - row_mean / static_cast<double>(n);
  });
}

// --ratings pairs: parsed by original id; off-scale, unknown, malformed and repeated pairs are
// warnings, and a rating between the data's steps is kept with a warning.
TEST(FoldinRatings, PairsAreCheckedAgainstTheDataAndItsSteps) {
  Dataset d = data();  // whole stars
  const FoldinRatings f = parse_foldin_ratings(
      d.item_ids[3] + ":5, " + d.item_ids[1] + ":4.5," + d.item_ids[2] + ":9,nosuch:3," + d.item_ids[3] + ":1,x", d);
  ASSERT_EQ(f.ratings.size(), 2u);
  EXPECT_EQ(f.ratings[0], (std::pair<int32_t, float>{1, 4.5f}));  // sorted by item
  EXPECT_EQ(f.ratings[1], (std::pair<int32_t, float>{3, 5.0f}));
  std::string all;
  for (const std::string& w : f.warnings) all += w + "\n";
  EXPECT_THAT(all, HasSubstr("rating 4.5 for item " + d.item_ids[1] + " is between the data's steps of 1; used as given"));
  EXPECT_THAT(all, HasSubstr("is outside the scale 1-5"));
  EXPECT_THAT(all, HasSubstr("unknown item id nosuch"));
  EXPECT_THAT(all, HasSubstr("given twice; the first rating is kept"));
  EXPECT_THAT(all, HasSubstr("malformed pair 'x'"));
  // Half stars on a half-star scale are on its steps.
  for (float& v : d.ratings.values) v = 0.5f * std::round(2 * v * 0.9f);
  d.ratings.values[0] = 2.5f;
  d.rating_min = 0.5f;
  const FoldinRatings h = parse_foldin_ratings(d.item_ids[1] + ":4.5," + d.item_ids[2] + ":4.7", d);
  ASSERT_EQ(h.warnings.size(), 1u);
  EXPECT_THAT(h.warnings[0], HasSubstr("rating 4.7 for item " + d.item_ids[2] + " is between the data's steps of 0.5"));
}

// "1:5:3" and "1:5;2:4" split at their last colon into an id no item has: said to be malformed
// pairs, not unknown items. A file whose one line is a bad pair is not a silent cold start.
TEST(FoldinRatings, MalformedListsAndHeaderLikeLinesAreSaid) {
  const Dataset& d = data();
  const std::string a = d.item_ids[1], b = d.item_ids[2];
  const FoldinRatings f = parse_foldin_ratings(a + ":5:3," + a + ":5;" + b + ":4," + b + ":4", d);
  ASSERT_EQ(f.ratings.size(), 1u);
  std::string all;
  for (const std::string& w : f.warnings) all += w + "\n";
  EXPECT_THAT(all, HasSubstr("malformed pair '" + a + ":5:3' (expected item_id:rating, pairs separated by commas)"));
  EXPECT_THAT(all, HasSubstr("malformed pair '" + a + ":5;" + b + ":4'"));
  EXPECT_THAT(all, Not(HasSubstr("unknown item id")));
  const std::string file = ::testing::TempDir() + "/vae_foldin_nan_" + std::to_string(getpid()) + ".csv";
  std::ofstream(file) << a << ",nan\n";
  try {
    parse_foldin_ratings("@" + file, d);
    ADD_FAILURE() << "no error";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr(":1: read as a header: its rating field 'nan' is not a number"));
  }
  // A header that names its columns is read as one, without a word.
  std::ofstream(file) << "movieId,rating\n" << a << ",4\n";
  const FoldinRatings h = parse_foldin_ratings("@" + file, d);
  EXPECT_EQ(h.ratings.size(), 1u);
  EXPECT_TRUE(h.warnings.empty()) << h.warnings.front();
  std::remove(file.c_str());
}

// Outputs that overflow (extreme weights) are refused, not ranked.
TEST(ItemEffects, OutputsThatOverflowAreRefused) {
  const Dataset& d = data();
  Linear l = linear(d.num_items(), 3);
  for (int64_t j = 0; j < l.n; ++j) l.m[4 * l.n + j] = 1e300;  // item 4's like: inf in float
  try {
    most_similar(l.effects(), 4, 5, d);
    ADD_FAILURE() << "no error";
  } catch (const VaeError& e) {
    EXPECT_THAT(e.what(), HasSubstr("the model's outputs are not finite (nan or inf)"));
  }
  // An empty list under --min-ratings says why it is empty.
  const Linear ok = linear(d.num_items(), 3);
  const ItemEffects e = ok.effects();
  const std::vector<SimilarItem> none = most_similar(e, 4, 5, d, int64_t{1} << 40);
  EXPECT_TRUE(none.empty());
  EXPECT_THAT(format_similar(e, 4, none, d, int64_t{1} << 40),
              HasSubstr("(no other item has 1099511627776 ratings or more)"));
}

TEST(ItemEffects, ModelsWithoutEffectsAreRefused) {
  try {
    require_item_effects("popularity");
    FAIL() << "popularity";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("popularity"));
    EXPECT_THAT(e.what(), HasSubstr("use vae, multvae, autorec, i-autorec, cdae, ease, svd or svdpp"));
  }
  for (const char* kind : {"vae", "multvae", "autorec", "i-autorec", "cdae", "ease", "svd", "svdpp"})
    EXPECT_NO_THROW(require_item_effects(kind)) << kind;
}

// Pearson's correlation of two equally long rows, the textbook way.
double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  const double mx = std::accumulate(x.begin(), x.end(), 0.0) / n, my = std::accumulate(y.begin(), y.end(), 0.0) / n;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t u = 0; u < x.size(); ++u) {
    sxy += (x[u] - mx) * (y[u] - my);
    sxx += (x[u] - mx) * (x[u] - mx);
    syy += (y[u] - my) * (y[u] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

// Item-based AutoRec takes no new user: `similar` compares its items by their predicted ratings
// over the users — Pearson's correlation of the rows, each user's mean prediction (over the
// compared items) taken out first. Items without input ratings are not compared; --explain picks
// the liked item most correlated with each recommendation.
TEST(ItemEffects, ItemAutoRecComparesItemsByTheCorrelationOfTheirPredictions) {
  const Dataset& full = data();
  Trained t = train("i-autorec", "ratings", 16);
  // The data the model serves lacks every rating of item 7: its input row is empty.
  const int32_t gone = 7;
  Dataset d = full;
  Csr& r = d.ratings;
  Csr kept;
  kept.rows = r.rows;
  kept.cols = r.cols;
  kept.indptr.assign(1, 0);
  for (int64_t u = 0; u < r.rows; ++u) {
    for (int64_t p = r.indptr[u]; p < r.indptr[u + 1]; ++p)
      if (r.indices[p] != gone) kept.indices.push_back(r.indices[p]), kept.values.push_back(r.values[p]);
    kept.indptr.push_back(static_cast<int64_t>(kept.indices.size()));
  }
  r = kept;
  Recommender rec(*t.be, *t.r.model_ptr, t.info, d);
  const Recommender::ItemOutputs o = rec.item_based_outputs();
  ASSERT_EQ(o.rows, d.num_items());  // the ratings protocol: every item a row, every user a column
  ASSERT_EQ(o.users, d.num_users());
  ASSERT_TRUE(o.empty[gone]);
  const ItemEffects e = item_effects(rec, *t.be, *t.r.model_ptr, t.info, d.rating_min, d.rating_max);
  ASSERT_TRUE(e.by_similarity());
  EXPECT_EQ(e.users, d.num_users());
  ASSERT_EQ(static_cast<int64_t>(e.items.size()), d.num_items() - 1);
  EXPECT_EQ(std::count(e.items.begin(), e.items.end(), gone), 0);

  // Oracle: user-centred rows (the user's mean over the compared items), then Pearson.
  const int64_t n = d.num_items(), U = o.users;
  std::vector<double> user_mean(static_cast<size_t>(U), 0.0);
  for (int64_t i = 0; i < n; ++i)
    if (i != gone)
      for (int64_t u = 0; u < U; ++u) user_mean[u] += o.values[i * U + u] / static_cast<double>(n - 1);
  auto row = [&](int64_t i) {
    std::vector<double> x(static_cast<size_t>(U));
    for (int64_t u = 0; u < U; ++u) x[u] = o.values[i * U + u] - user_mean[u];
    return x;
  };
  for (int32_t q : {0, 11, 42}) {
    const std::vector<SimilarItem> got = most_similar(e, q, 12, d);
    std::vector<std::pair<double, int32_t>> want;
    for (int32_t j = 0; j < n; ++j)
      if (j != q && j != gone) want.emplace_back(pearson(row(q), row(j)), j);
    std::sort(want.begin(), want.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    ASSERT_EQ(got.size(), 12u);
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_NEAR(got[k].effect, pearson(row(q), row(got[k].item)), 1e-5) << "item " << q << " rank " << k + 1;
      EXPECT_NEAR(got[k].effect, want[k].first, 1e-5) << "item " << q << " rank " << k + 1;  // the same ranking
      EXPECT_LE(got[k].effect, 1.0 + 1e-6);
    }
    // Symmetric: the first item's list holds q with the same value.
    const std::vector<double> back = e.similarity({got[0].item}).front();
    EXPECT_NEAR(back[q], got[0].effect, 1e-6);
  }
  try {
    most_similar(e, gone, 5, d);
    FAIL() << "expected a UsageError";
  } catch (const UsageError& err) {
    EXPECT_THAT(err.what(), HasSubstr("is not one of the i-autorec model's items (it has no ratings the model takes as input)"));
  }

  // --explain: of the liked items (>= mid-scale, 3), the most correlated one above 0.
  EXPECT_EQ(e.liked, 3.0f);
  std::vector<int32_t> items;
  for (int32_t j = 0; j < n; j += 5) items.push_back(j);
  expect_explained_by(e, ratings_of(d, 4), items, n, 1e-5, [&](int32_t i, int32_t j) { return pearson(row(i), row(j)); });
}

}  // namespace
