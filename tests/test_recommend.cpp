// Recommendations through the backend: exclusion of rated items, include_rated, fold-in of new
// ratings (warnings by id, popularity fallback), the all-users CSV, CDAE user vectors, item-based
// AutoRec's column gather, held-out column subsets, and latent codes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <sstream>

#include "analysis/model_file.h"
#include "analysis/recommend.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "train/trainer.h"
#include "trained_model.h"

namespace {

namespace fs = std::filesystem;
using namespace vae;
using ::testing::HasSubstr;

const Dataset& data() {
  static const Dataset d = test::synthetic_data(150, 200, 4000, 3, 4);
  return d;
}

using test::Trained;

Trained train(const std::string& kind, const std::string& protocol, int hidden = 0) {
  return test::train_small(data(), kind, protocol, hidden);
}

std::set<std::string> rated_ids(const Dataset& d, int64_t u) {
  std::set<std::string> s;
  for (int64_t p = d.ratings.indptr[u]; p < d.ratings.indptr[u + 1]; ++p) s.insert(d.item_ids[d.ratings.indices[p]]);
  return s;
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

std::vector<std::pair<std::string, float>> ids_scores(const RecommendResult& r) {
  std::vector<std::pair<std::string, float>> v;
  for (const auto& rec : r.items) v.emplace_back(rec.item_id, rec.score);
  return v;
}

class RecommendVae : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { t_ = new Trained(train("vae", "seed")); }
  static void TearDownTestSuite() {
    delete t_;
    t_ = nullptr;
  }
  Recommender make() { return Recommender(*t_->be, *t_->r.model_ptr, t_->info, data()); }
  static Trained* t_;
};
Trained* RecommendVae::t_ = nullptr;

TEST_F(RecommendVae, ExcludesRatedItemsUnlessAsked) {
  Recommender rec = make();
  const Dataset& d = data();
  const std::string uid = d.user_ids[3];
  const std::set<std::string> rated = rated_ids(d, 3);
  ASSERT_FALSE(rated.empty());
  RecommendOptions o;
  o.top = 20;
  const RecommendResult r = rec.for_user(uid, o);
  EXPECT_EQ(r.user_id, uid);
  EXPECT_FALSE(r.popularity_fallback);
  ASSERT_EQ(r.items.size(), 20u);
  for (size_t i = 0; i < r.items.size(); ++i) {
    EXPECT_EQ(r.items[i].rank, static_cast<int>(i) + 1);
    EXPECT_EQ(rated.count(r.items[i].item_id), 0u) << r.items[i].item_id;
    EXPECT_EQ(r.items[i].title, d.titles[r.items[i].item]);
    if (i) {
      EXPECT_GE(r.items[i - 1].score, r.items[i].score);
    }
  }
  // The full ranking with rated items, filtered, is the excluded ranking.
  RecommendOptions all;
  all.top = static_cast<int>(d.num_items());
  all.include_rated = true;
  const RecommendResult full = rec.for_user(uid, all);
  ASSERT_EQ(full.items.size(), static_cast<size_t>(d.num_items()));
  bool any_rated = false;
  std::vector<std::pair<std::string, float>> filtered;
  for (const auto& it : full.items) {
    if (rated.count(it.item_id)) any_rated = true;
    else if (filtered.size() < 20) filtered.emplace_back(it.item_id, it.score);
  }
  EXPECT_TRUE(any_rated);
  EXPECT_EQ(filtered, ids_scores(r));
  // VAE scores are the notebook's sigmoid(output).
  for (const auto& it : full.items) {
    EXPECT_GT(it.score, 0.0f);
    EXPECT_LT(it.score, 1.0f);
  }
}

TEST_F(RecommendVae, FoldInOfAUsersOwnRatingsReproducesTheirList) {
  Recommender rec = make();
  const Dataset& d = data();
  RecommendOptions o;
  o.top = 15;
  for (int64_t u : {0, 7, 42}) {
    const RecommendResult stored = rec.for_user(d.user_ids[u], o);
    const RecommendResult folded = rec.for_ratings(ratings_spec(d, u), o);
    EXPECT_TRUE(folded.warnings.empty());
    EXPECT_EQ(folded.input_ratings, d.ratings.row_nnz(u));
    EXPECT_EQ(ids_scores(folded), ids_scores(stored)) << "user " << d.user_ids[u];
  }
}

TEST_F(RecommendVae, UnknownIdsAndMalformedPairsAreReported) {
  Recommender rec = make();
  const Dataset& d = data();
  RecommendOptions o;
  o.top = 5;
  const std::string good = d.item_ids[10];
  const RecommendResult r = rec.for_ratings(good + ":5, 99999:4,abc,:3," + d.item_ids[11] + ":x," +
                                                d.item_ids[12] + ":17," + good + ":2",
                                            o);
  const std::string w = ::testing::PrintToString(r.warnings);
  EXPECT_THAT(w, HasSubstr("99999"));
  EXPECT_THAT(w, HasSubstr("'abc'"));
  EXPECT_THAT(w, HasSubstr("':3'"));
  EXPECT_THAT(w, HasSubstr("'x'"));
  EXPECT_THAT(w, HasSubstr("17"));
  EXPECT_THAT(w, HasSubstr("given twice"));
  EXPECT_EQ(r.warnings.size(), 6u);
  EXPECT_EQ(r.input_ratings, 1);
  EXPECT_FALSE(r.popularity_fallback);
  ASSERT_EQ(r.items.size(), 5u);
  for (const auto& it : r.items) EXPECT_NE(it.item_id, good);  // the rated item is excluded
  const std::string text = format_recommendations(r, d, "Top 5:");
  EXPECT_THAT(text, HasSubstr("warning: unknown item id 99999"));
  EXPECT_THAT(text, HasSubstr("Genre Counts"));
}

TEST_F(RecommendVae, AnEmptyRatingsListFallsBackToPopularity) {
  Recommender rec = make();
  const Dataset& d = data();
  RecommendOptions o;
  o.top = 5;
  std::vector<int64_t> counts(static_cast<size_t>(d.num_items()), 0);
  for (int32_t i : d.ratings.indices) ++counts[i];
  std::vector<int32_t> order(counts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return counts[a] > counts[b]; });
  // Ratings given but none usable: not a cold-start query but a mistake, said as one.
  try {
    rec.for_ratings("nonsense,99999:3", o);
    ADD_FAILURE() << "no error for a --ratings list without one usable pair";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("'nonsense'"));
    EXPECT_THAT(e.what(), HasSubstr("99999"));
  }
  for (const std::string& spec : {std::string(""), std::string(" , ")}) {
    const RecommendResult r = rec.for_ratings(spec, o);
    EXPECT_TRUE(r.popularity_fallback) << spec;
    EXPECT_THAT(::testing::PrintToString(r.notes), HasSubstr("popular"));
    ASSERT_EQ(r.items.size(), 5u);
    for (int j = 0; j < 5; ++j) {
      EXPECT_EQ(r.items[j].item, order[j]);
      EXPECT_EQ(r.items[j].score, static_cast<float>(counts[order[j]]));
    }
    EXPECT_THAT(format_recommendations(r, d, "x"), HasSubstr("note: "));
  }
}

TEST_F(RecommendVae, UnknownUserIsAUsageError) {
  Recommender rec = make();
  EXPECT_THROW(rec.for_user("no-such-user", RecommendOptions{}), UsageError);
  RecommendOptions bad;
  bad.top = 0;
  EXPECT_THROW(rec.for_user(data().user_ids[0], bad), UsageError);
}

TEST_F(RecommendVae, AllUsersCsvMatchesPerUserCalls) {
  Recommender rec = make();
  const Dataset& d = data();
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_rec_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "recs.csv").string();
  RecommendOptions o;
  o.top = 7;
  const auto s = rec.write_all_users_csv(path, o);
  EXPECT_EQ(s.users, d.num_users());
  EXPECT_EQ(s.rows, d.num_users() * 7);
  for (const auto& e : fs::directory_iterator(dir))  // no temporary (recs.csv.tmp.PID.N) left
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  // A directory where the CSV should go: an error naming it.
  fs::create_directories(dir / "taken");
  EXPECT_THROW(rec.write_all_users_csv((dir / "taken").string(), o), DataError);
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line, "user_id,rank,item_id,score");
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> per_user;
  int rows = 0;
  while (std::getline(f, line)) {
    std::stringstream ss(line);
    std::string u, rank, item, score;
    std::getline(ss, u, ',');
    std::getline(ss, rank, ',');
    std::getline(ss, item, ',');
    std::getline(ss, score, ',');
    EXPECT_EQ(std::stoi(rank), static_cast<int>(per_user[u].size()) + 1);
    per_user[u].emplace_back(item, score);
    ++rows;
  }
  EXPECT_EQ(rows, d.num_users() * 7);
  EXPECT_EQ(per_user.size(), static_cast<size_t>(d.num_users()));
  for (int64_t u : {0, 1, 77, 149}) {
    const RecommendResult r = rec.for_user(d.user_ids[u], o);
    const auto& got = per_user[d.user_ids[u]];
    ASSERT_EQ(got.size(), r.items.size());
    for (size_t j = 0; j < got.size(); ++j) {
      EXPECT_EQ(got[j].first, r.items[j].item_id);
      EXPECT_NEAR(std::stod(got[j].second), r.items[j].score, 1e-5 * std::max(1.0f, std::abs(r.items[j].score)));
    }
  }
  // Batches inside for_users give the same lists (scores up to GEMM blocking differences).
  std::vector<int32_t> all(static_cast<size_t>(d.num_users()));
  std::iota(all.begin(), all.end(), 0);
  const auto many = rec.for_users(all, o);
  const RecommendResult one = rec.for_user(d.user_ids[77], o);
  ASSERT_EQ(many[77].items.size(), one.items.size());
  for (size_t j = 0; j < one.items.size(); ++j) {
    EXPECT_EQ(many[77].items[j].item_id, one.items[j].item_id);
    EXPECT_NEAR(many[77].items[j].score, one.items[j].score, 1e-5);
  }
}

TEST_F(RecommendVae, EmbeddingsAreTheEncoderMeans) {
  const Dataset& d = data();
  Model<float>& m = *t_->r.model_ptr;
  const Embeddings mu = encode_users(*t_->be, m, t_->info, d, false, true);
  ASSERT_EQ(mu.users.size(), static_cast<size_t>(d.num_users()));
  EXPECT_EQ(mu.dim, 8);
  EXPECT_EQ(mu.z.size(), static_cast<size_t>(d.num_users() * 8));
  EXPECT_EQ(mu.logvar.size(), mu.z.size());
  const Embeddings again = encode_users(*t_->be, m, t_->info, d, false, false, {5, 6});
  ASSERT_EQ(again.z.size(), 16u);
  for (int j = 0; j < 16; ++j) EXPECT_NEAR(again.z[j], mu.z[5 * 8 + j], 1e-5);
  const Embeddings z1 = encode_users(*t_->be, m, t_->info, d, true, false);
  const Embeddings z2 = encode_users(*t_->be, m, t_->info, d, true, false);
  EXPECT_EQ(z1.z, z2.z);   // reproducible
  EXPECT_NE(z1.z, mu.z);   // but noisy
}

TEST(Recommend, CdaeUsesTrainingUserVectors) {
  Trained t = train("cdae", "seed", 16);
  Recommender rec(*t.be, *t.r.model_ptr, t.info, data());
  RecommendOptions o;
  o.top = 10;
  const int32_t train_user = t.r.row_map.at(0);
  const RecommendResult stored = rec.for_user(data().user_ids[train_user], o);
  EXPECT_TRUE(stored.notes.empty());
  const RecommendResult folded = rec.for_ratings(ratings_spec(data(), train_user), o);
  EXPECT_THAT(::testing::PrintToString(folded.notes), HasSubstr("user vector"));
  ASSERT_EQ(stored.items.size(), 10u);
  EXPECT_NE(ids_scores(stored), ids_scores(folded));  // the learned vector changes the scores
  // A seed-protocol test user has no vector and says so.
  std::set<int32_t> train_rows(t.r.row_map.begin(), t.r.row_map.end());
  int32_t test_user = 0;
  while (train_rows.count(test_user)) ++test_user;
  EXPECT_THAT(::testing::PrintToString(rec.for_user(data().user_ids[test_user], o).notes),
              HasSubstr("not a training user"));
}

TEST(Recommend, ItemBasedAutoRecGathersTheUsersColumn) {
  Trained t = train("i-autorec", "ratings", 16);
  const Dataset& d = data();
  Model<float>& m = *t.r.model_ptr;
  // Reference: every item row through the model, user u's column on the host.
  const Csr items = d.ratings.transpose();
  CsrTensor<float> x = t.be->upload_csr(items);
  const int64_t I = items.rows, U = items.cols;
  std::vector<float> all;
  for (int64_t r0 = 0; r0 < I; r0 += m.max_batch()) {
    const int64_t n = std::min(m.max_batch(), I - r0);
    std::vector<int32_t> rows(static_cast<size_t>(n));
    std::iota(rows.begin(), rows.end(), static_cast<int32_t>(r0));
    Tensor<int32_t> rd = t.be->upload<int32_t>(rows, n, 1);
    Batch<float> b;
    b.input = x.view();
    b.rows = rd.cmat();
    b.n = n;
    Tensor<float> out = t.be->alloc<float>(n, U);
    m.predict(b, out.mat());
    const auto h = t.be->download(out.cmat());
    all.insert(all.end(), h.begin(), h.end());
  }
  Recommender rec(*t.be, m, t.info, d);
  RecommendOptions o;
  o.top = 8;
  for (int64_t u : {0, 33, 149}) {
    const std::set<std::string> rated = rated_ids(d, u);
    std::vector<int32_t> cand;
    for (int32_t i = 0; i < I; ++i)
      if (!rated.count(d.item_ids[i])) cand.push_back(i);
    std::stable_sort(cand.begin(), cand.end(), [&](int32_t a, int32_t b) { return all[a * U + u] > all[b * U + u]; });
    const RecommendResult r = rec.for_user(d.user_ids[u], o);
    ASSERT_EQ(r.items.size(), 8u);
    for (int j = 0; j < 8; ++j) {
      EXPECT_EQ(r.items[j].item, cand[j]) << "user " << u << " rank " << j + 1;
      EXPECT_NEAR(r.items[j].score, all[cand[j] * U + u], 1e-4);
    }
  }
  EXPECT_THROW(rec.for_ratings("1:5", o), UsageError);
}

TEST(Recommend, HeldoutModelsRecommendOnlyTheirColumns) {
  Trained t = train("multvae", "heldout", 32);
  const Dataset& d = data();
  ASSERT_LT(t.info.column_map.size(), static_cast<size_t>(d.num_items()));
  std::set<int32_t> cols(t.info.column_map.begin(), t.info.column_map.end());
  int32_t missing = 0;
  while (cols.count(missing)) ++missing;
  Recommender rec(*t.be, *t.r.model_ptr, t.info, d);
  RecommendOptions o;
  o.top = 10;
  const RecommendResult r = rec.for_user(d.user_ids[0], o);
  for (const auto& it : r.items) EXPECT_TRUE(cols.count(it.item));
  const RecommendResult f = rec.for_ratings(d.item_ids[missing] + ":5," + d.item_ids[*cols.begin()] + ":2", o);
  const std::string w = ::testing::PrintToString(f.warnings) + ::testing::PrintToString(f.notes);
  EXPECT_THAT(w, HasSubstr("not one of the model's items"));
  EXPECT_THAT(w, HasSubstr("below"));  // 2 < the threshold 4
  EXPECT_TRUE(f.popularity_fallback);
  for (const auto& it : f.items) EXPECT_NE(it.item, *cols.begin());  // still excluded
}

}  // namespace
