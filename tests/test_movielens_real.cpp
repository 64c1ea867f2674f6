// Checks the loaders against the real MovieLens files when MOVIELENS_DIR points at a folder
// holding ml-100k/ and/or ml-latest-small/ (as fetched by data/fetch_movielens.sh); skipped
// otherwise. The data itself is never part of the project (see data/README.md).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "data/dataset.h"

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

}  // namespace
