// Checks the loaders against the real MovieLens files when MOVIELENS_DIR points at a folder
// holding ml-100k/ and/or ml-latest-small/ (as fetched by data/fetch_movielens.sh); skipped
// otherwise. The data itself is never part of the project (see data/README.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "analysis/profile.h"
#include "data/dataset.h"
#include "data/shuffle.h"

namespace fs = std::filesystem;

namespace {

// MOVIELENS_DIR/name, or MOVIELENS_DIR itself when it already is that data set; "" if absent.
std::string movielens_dir(const std::string& name) {
  const char* env = std::getenv("MOVIELENS_DIR");
  if (env == nullptr || *env == '\0') return "";
  const fs::path root(env);
  if (fs::is_directory(root / name)) return (root / name).string();
  if (fs::is_directory(root) && root.lexically_normal().filename() == name) return root.string();
  return "";
}

#define REQUIRE_MOVIELENS(var, name)                            \
  const std::string var = movielens_dir(name);                  \
  if (var.empty())                                              \
  GTEST_SKIP() << "set MOVIELENS_DIR to a folder holding " name \
                  "/ (fetch it with data/fetch_movielens.sh " name ")"

TEST(MovieLensReal, Ml100kMatchesPublishedCounts) {
  REQUIRE_MOVIELENS(dir, "ml-100k");
  const vae::Dataset d = vae::load_movielens_dir(dir);
  EXPECT_EQ(d.format, "ml-100k");
  EXPECT_EQ(d.num_users(), 943);
  EXPECT_EQ(d.num_items(), 1682);
  EXPECT_EQ(d.num_ratings(), 100000);
  ASSERT_EQ(d.genre_names.size(), 19u);
  EXPECT_EQ(d.genre_names.front(), "unknown");
  EXPECT_EQ(d.genre_names.back(), "Western");
  EXPECT_EQ(d.users.occupation_names.size(), 21u);
  ASSERT_EQ(d.users.age.size(), 943u);

  const int64_t u1 = d.find_user("1");
  EXPECT_EQ(u1, 0);  // numeric id order
  EXPECT_EQ(d.ratings.row_nnz(u1), 272);
  EXPECT_EQ(d.users.age[u1], 24);
  EXPECT_EQ(d.users.gender[u1], 'M');
  EXPECT_EQ(d.users.occupation_names[d.users.occupation[u1]], "technician");

  const int64_t toy = d.find_item("1");
  EXPECT_EQ(toy, 0);
  EXPECT_EQ(d.titles[toy], "Toy Story (1995)");
  // Animation | Children's | Comedy.
  EXPECT_EQ(d.item_genres[toy], (1u << 3) | (1u << 4) | (1u << 5));
  EXPECT_EQ(d.item_ids.back(), "1682");

  double sum = 0;
  for (float v : d.ratings.values) sum += v;
  EXPECT_NEAR(sum / 100000.0, 3.52986, 1e-5);  // the well-known ml-100k mean rating
}

TEST(MovieLensReal, MlLatestSmallMatchesPublishedCounts) {
  REQUIRE_MOVIELENS(dir, "ml-latest-small");
  std::string note;
  const vae::Dataset d = vae::load_dataset(dir, &note);
  EXPECT_EQ(d.format, "ml-latest");
  EXPECT_EQ(d.name, "ml-latest-small");
  EXPECT_EQ(d.num_users(), 610);
  EXPECT_EQ(d.num_items(), 9724);
  EXPECT_EQ(d.num_ratings(), 100836);
  EXPECT_EQ(d.rating_min, 0.5f);
  EXPECT_EQ(d.rating_max, 5.0f);
  EXPECT_EQ(d.titles[d.find_item("1")], "Toy Story (1995)");
  EXPECT_EQ(d.titles[d.find_item("11")], "American President, The (1995)");
  EXPECT_EQ(d.genre_names.size(), 19u);  // the fixed list; nothing else occurs
  for (size_t k = 0; k < d.titles.size(); ++k) ASSERT_FALSE(d.titles[k].empty()) << k;
}

// Cluster profiles must not find structure that is not there: users dealt at random show a
// distinctive genre, movie or occupation only as often as the 5 % false-discovery rate allows.
// Three kinds of deal, 20 each: thirds (60 clusters of about 314), and about 793 + 150 and
// 900 + 43 (40 clusters each; in the big ones many movies and occupations are found only
// inside, by chance). A calibrated test gives each kind in at most 5 % of the
// clusters, 3 of 60 or 2 of 40 expected; the bounds (8 of 60, 6 of 40) are passed by chance
// with probability 0.98. A z over genre tags as if each were independent passed 1.96 for 13 %
// of the genres of random clusters (a 2.5 % test), and a z whose other side had no spread when
// no one there had the entry flagged movies in every big cluster.
TEST(MovieLensReal, RandomClustersShowNothingDistinctive) {
  REQUIRE_MOVIELENS(dir, "ml-100k");
  const vae::Dataset d = vae::load_movielens_dir(dir);
  std::vector<int32_t> users(d.num_users());
  for (int32_t u = 0; u < d.num_users(); ++u) users[u] = u;
  for (const int rest : {0, 150, 43}) {  // 0: thirds; else the small side's expected size
    int genres = 0, movies = 0, occupations = 0, clusters = 0;
    for (uint64_t deal = 0; deal < 20; ++deal) {
      vae::PhiloxSeq rng(1234 + rest, deal);
      std::vector<int32_t> labels(users.size());
      for (auto& l : labels)
        l = rest == 0 ? static_cast<int32_t>(rng.below(3)) : static_cast<int32_t>(rng.below(943) < static_cast<uint32_t>(rest));
      const auto profiles = vae::profile_clusters(d, users, labels, rest == 0 ? 3 : 2);
      for (size_t c = 0; c < profiles.size(); ++c) {
        const auto& p = profiles[c];
        ASSERT_TRUE(p.tested) << "deal " << deal << " cluster " << c << " of " << p.size;
        ++clusters;
        genres += !p.lift_genres.empty();
        movies += !p.lift_movies.empty();
        occupations += !p.lift_occupations.empty();
      }
    }
    std::cout << (rest == 0 ? std::string("thirds") : "943 - " + std::to_string(rest) + " vs " + std::to_string(rest))
              << ": clusters with a distinctive genre " << genres << ", movie " << movies << ", occupation "
              << occupations << " (of " << clusters << ")\n";
    const int bound = rest == 0 ? 8 : 6;
    EXPECT_LT(genres, bound) << rest;
    EXPECT_LT(movies, bound) << rest;
    EXPECT_LT(occupations, bound) << rest;
  }
}

// ...and must find it where it is: users grouped by gender. ml-100k's women give Romance a larger
// share of their ratings than its men do, and its men Action and Sci-Fi.
TEST(MovieLensReal, GenderGroupsShowTheirKnownGenres) {
  REQUIRE_MOVIELENS(dir, "ml-100k");
  const vae::Dataset d = vae::load_movielens_dir(dir);
  std::vector<int32_t> users(d.num_users()), labels(d.num_users());
  for (int32_t u = 0; u < d.num_users(); ++u) users[u] = u, labels[u] = d.users.gender[u] == 'F';
  vae::ProfileOptions o;
  o.top_lift = 19;
  const auto p = vae::profile_clusters(d, users, labels, 2, o);
  auto names = [](const vae::ClusterProfile& c) {
    std::vector<std::string> n;
    for (const auto& g : c.lift_genres) n.push_back(g.name);
    return n;
  };
  const auto men = names(p[0]), women = names(p[1]);
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  EXPECT_TRUE(has(women, "Romance")) << vae::format_cluster_report(p[1]);
  EXPECT_TRUE(has(men, "Action")) << vae::format_cluster_report(p[0]);
  EXPECT_TRUE(has(men, "Sci-Fi")) << vae::format_cluster_report(p[0]);
  EXPECT_FALSE(has(men, "Romance"));
  EXPECT_FALSE(has(women, "Action"));
}

// The whole of ml-100k as one cluster (what `info` prints): its published user counts, 670 men
// of 943, median age 31, 196 students; every ratings' genre tag counted.
TEST(MovieLensReal, Ml100kAsOneClusterGivesItsDemographics) {
  REQUIRE_MOVIELENS(dir, "ml-100k");
  const vae::Dataset d = vae::load_movielens_dir(dir);
  std::vector<int32_t> users(d.num_users());
  for (int32_t u = 0; u < d.num_users(); ++u) users[u] = u;
  const auto p = vae::profile_clusters(d, users, std::vector<int32_t>(users.size(), 0), 1)[0];
  EXPECT_DOUBLE_EQ(p.male_share, 670.0 / 943);
  EXPECT_DOUBLE_EQ(p.median_age, 31.0);
  ASSERT_FALSE(p.top_occupations.empty());
  EXPECT_EQ(p.top_occupations[0].name, "student");
  EXPECT_EQ(p.top_occupations[0].users, 196);
  ASSERT_FALSE(p.genres.empty());
  EXPECT_EQ(p.genres[0].name, "Drama");
  EXPECT_EQ(p.other_users, 0);
  EXPECT_EQ(vae::format_cluster_report(p).find("Distinctive"), std::string::npos);
}

}  // namespace
