// Synthetic generator: spec parsing, determinism, shape, and the planted structure that the
// clustering and analysis features rely on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <unordered_set>

#include "core/error.h"
#include "data/dataset.h"
#include "core/philox.h"
#include "data/shuffle.h"
#include "train/memory_plan.h"

namespace vae {
namespace {

const Dataset& default_synthetic() {
  static const Dataset d = make_synthetic(SyntheticSpec{});
  return d;
}

TEST(SyntheticSpecTest, DefaultsAreMl100kShaped) {
  const SyntheticSpec s = parse_synthetic_spec("synthetic");
  EXPECT_EQ(s.users, 943);
  EXPECT_EQ(s.items, 1682);
  EXPECT_EQ(s.ratings, 100000);
  EXPECT_EQ(s.groups, 6);
  EXPECT_EQ(s.seed, 1u);
}

TEST(SyntheticSpecTest, ParsesAnySubsetInAnyOrder) {
  const SyntheticSpec s = parse_synthetic_spec("synthetic:seed=7,groups=3,users=500");
  EXPECT_EQ(s.users, 500);
  EXPECT_EQ(s.items, 1682);
  EXPECT_EQ(s.ratings, 100000);
  EXPECT_EQ(s.groups, 3);
  EXPECT_EQ(s.seed, 7u);
  const SyntheticSpec f =
      parse_synthetic_spec("synthetic:users=943,items=1682,ratings=100000,groups=6,seed=1");
  EXPECT_EQ(f.items, 1682);
  EXPECT_EQ(parse_synthetic_spec("synthetic:seed=0").seed, 0u);  // zero is a valid seed
}

// Fewer users than the default 6 groups: the default follows the users (a given value is checked).
TEST(SyntheticSpecTest, DefaultGroupsFollowAFewUsers) {
  EXPECT_EQ(parse_synthetic_spec("synthetic:users=3,items=4,ratings=10").groups, 3);
  EXPECT_EQ(parse_synthetic_spec("synthetic:users=6,items=4,ratings=10").groups, 6);
  EXPECT_THROW(parse_synthetic_spec("synthetic:users=3,items=4,ratings=10,groups=6"), UsageError);
  const Dataset d = make_synthetic(parse_synthetic_spec("synthetic:users=3,items=4,ratings=10"));
  EXPECT_EQ(d.source, "synthetic:users=3,items=4,ratings=10,groups=3,seed=1");
  EXPECT_EQ(d.num_users(), 3);
}

// The UsageError a spec gets, or "no error".
std::string message(const std::string& spec) {
  try {
    parse_synthetic_spec(spec);
  } catch (const UsageError& e) {
    return std::string(e.what());
  }
  return std::string("no error");
}

TEST(SyntheticSpecTest, RejectsBadSpecsNamingTheProblem) {
  EXPECT_NE(message("synthetic:colour=5").find("unknown key 'colour'"), std::string::npos);
  EXPECT_NE(message("synthetic:users=abc").find("users"), std::string::npos);
  EXPECT_NE(message("synthetic:users=-5").find("users"), std::string::npos);
  EXPECT_NE(message("synthetic:items=0").find("items must be a positive integer, got 0"), std::string::npos);
  EXPECT_NE(message("synthetic:ratings=1.5").find("ratings"), std::string::npos);
  EXPECT_NE(message("synthetic:users=10,items=10,ratings=101").find("exceeds users*items"),
            std::string::npos);
  EXPECT_NE(message("synthetic:users=500,items=100,ratings=300").find("fewer than users=500"),
            std::string::npos);
  EXPECT_NE(message("synthetic:users=5,users=6").find("twice"), std::string::npos);
  EXPECT_NE(message("synthetic:users").find("key=value"), std::string::npos);
  EXPECT_NE(message("synthetic:users=5,").find("key=value"), std::string::npos);
  EXPECT_NE(message("synthetic:users=5,items=100,ratings=100,groups=6").find("groups"), std::string::npos);
  EXPECT_NE(message("synthetics").find("synthetic spec must be"), std::string::npos);
  EXPECT_NE(message("synthetic:users=99999999999999999999").find("users"), std::string::npos);
  EXPECT_THROW(make_synthetic(SyntheticSpec{10, 10, 101, 2, 1}), UsageError);
}

// Every way a size can miss "positive integer" gets the same message (users=0 used to say "must
// be positive" and users=-5 "must be a non-negative integer").
TEST(SyntheticSpecTest, OutOfRangeValuesGetOneConsistentMessage) {
  for (const char* key : {"users", "items", "ratings", "groups"}) {
    const std::string k = key;
    const std::string want = "synthetic spec: " + k + " must be a positive integer, got ";
    EXPECT_EQ(message("synthetic:" + k + "=0"), want + "0");
    EXPECT_EQ(message("synthetic:" + k + "=-5"), want + "-5");
    EXPECT_EQ(message("synthetic:" + k + "=abc"), want + "'abc'");
    EXPECT_EQ(message("synthetic:" + k + "=1.5"), want + "'1.5'");
    EXPECT_EQ(message("synthetic:" + k + "="), want + "''");
  }
  // seed=0 is a valid seed; the seed's message says non-negative.
  EXPECT_EQ(message("synthetic:seed=-1"), "synthetic spec: seed must be a non-negative integer, got -1");
  EXPECT_EQ(message("synthetic:seed=0"), "no error");
  EXPECT_NE(message("synthetic:users=99999999999999999999").find("users must be a positive integer"),
            std::string::npos);
  EXPECT_NE(message("synthetic:users=3000000000").find("users must be an integer from 1 to 2147483647, got 3000000000"),
            std::string::npos);
  // Leading zeros are just the number.
  EXPECT_EQ(parse_synthetic_spec("synthetic:users=0050,ratings=1000").users, 50);
}

// The title generator as it was before titles were tracked by word indices (a set of title strings
// and a scan for the first free sequel number): the fast version must give the same titles.
std::vector<std::string> reference_titles(int64_t n_items, uint64_t seed) {
  static const char* const adjectives[] = {
    "Midnight", "Silent", "Broken", "Golden", "Crimson", "Hidden", "Last", "Lonely", "Savage",
    "Electric", "Frozen", "Burning", "Distant", "Wild", "Secret", "Lost", "Dark", "Bright",
    "Eternal", "Fallen", "Hollow", "Iron", "Velvet", "Silver", "Scarlet", "Quiet", "Restless",
    "Wicked", "Endless", "Northern", "Southern", "Little", "Blue", "Desperate", "Final",
    "Forgotten", "Sudden", "Strange", "Perfect", "Sweet", "Cold", "Deadly", "Brave", "Dancing",
    "Shattered", "Rising", "Painted", "Twisted"};
  static const char* const nouns[] = {
    "Harbor", "River", "Highway", "Garden", "Kingdom", "Shadow", "Summer", "Winter", "Empire",
    "Island", "Horizon", "Station", "Frontier", "Mirror", "Storm", "Heart", "Valley", "Circus",
    "Castle", "Canyon", "Desert", "Voyage", "Promise", "Dream", "Planet", "Ocean", "Stranger",
    "Witness", "Partner", "Angel", "Outlaw", "Detective", "City", "Moon", "Sun", "Road", "Fire",
    "Rain", "Forest", "Bridge", "Secret", "Mountain", "Legend", "Journey", "Night", "Paradise",
    "Game", "Orchard"};
  const uint32_t na = sizeof(adjectives) / sizeof(adjectives[0]), nn = sizeof(nouns) / sizeof(nouns[0]);
  PhiloxSeq rng(seed, rng_stream(RngStream::synthetic, 3));  // the generator's title stream
  std::set<std::string> used;
  std::vector<std::string> out;
  for (int64_t i = 0; i < n_items; ++i) {
    rng.uniform();  // the item's quality: one normal draw, two uniforms
    rng.uniform();
    const int age = static_cast<int>(std::min(78.0, std::floor(-7.0 * std::log(rng.uniform()))));
    const std::string year = std::to_string(1998 - age);
    std::string stem, title;
    for (int attempt = 0; attempt < 16 && title.empty(); ++attempt) {
      const char* a = adjectives[rng.below(na)];
      const char* n1 = nouns[rng.below(nn)];
      const char* n2 = nouns[rng.below(nn)];
      switch (rng.below(4)) {
        case 0: stem = std::string(a) + " " + n1; break;
        case 1: stem = std::string("The ") + a + " " + n1; break;
        case 2: stem = std::string(n1) + " of the " + a + " " + n2; break;
        default: stem = std::string("The ") + n1 + " and the " + n2; break;
      }
      if (used.insert(stem + " (" + year + ")").second) title = stem + " (" + year + ")";
    }
    for (int part = 2; title.empty(); ++part)
      if (used.insert(stem + " " + std::to_string(part) + " (" + year + ")").second)
        title = stem + " " + std::to_string(part) + " (" + year + ")";
    out.push_back(title);
  }
  return out;
}

TEST(SyntheticTest, TitlesMatchTheReferenceGeneratorIncludingSequels) {
  for (const auto& [items, seed] : {std::pair<int64_t, uint64_t>{1682, 1}, {250000, 1}, {120000, 7}}) {
    SyntheticSpec s;
    s.users = 6;
    s.items = items;
    s.ratings = 100;
    s.seed = seed;
    const Dataset d = make_synthetic(s);
    const std::vector<std::string> want = reference_titles(items, seed);
    ASSERT_EQ(d.titles.size(), want.size());
    int64_t mismatches = 0, sequels = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      if (d.titles[i] != want[i] && mismatches++ < 5)
        ADD_FAILURE() << "item " << i << ": '" << d.titles[i] << "', expected '" << want[i] << "'";
      const std::string& t = d.titles[i];
      const size_t cut = t.rfind(" (");
      const size_t sp = t.rfind(' ', cut - 1);
      if (sp != std::string::npos && std::isdigit(static_cast<unsigned char>(t[sp + 1]))) ++sequels;
    }
    EXPECT_EQ(mismatches, 0) << items << " items, seed " << seed;
    if (items == 250000) {
      EXPECT_GT(sequels, 100) << "the sequel path was not exercised";
    }
  }
}

TEST(SyntheticTest, ShapeCountsAndMetadata) {
  const Dataset& d = default_synthetic();
  EXPECT_EQ(d.num_users(), 943);
  EXPECT_EQ(d.num_items(), 1682);
  EXPECT_EQ(d.num_ratings(), 100000);
  EXPECT_NO_THROW(d.ratings.validate());  // sorted unique columns: no duplicate pairs
  EXPECT_EQ(d.name, "synthetic");
  EXPECT_EQ(d.format, "synthetic");
  EXPECT_EQ(d.source, "synthetic:users=943,items=1682,ratings=100000,groups=6,seed=1");
  EXPECT_EQ(d.rating_min, 1.0f);
  EXPECT_EQ(d.rating_max, 5.0f);
  ASSERT_EQ(d.user_ids.size(), 943u);
  ASSERT_EQ(d.item_ids.size(), 1682u);
  EXPECT_EQ(d.user_ids.front(), "1");
  EXPECT_EQ(d.user_ids.back(), "943");
  EXPECT_EQ(d.item_ids.back(), "1682");
  EXPECT_EQ(d.find_user("17"), 16);

  ASSERT_EQ(d.genre_names.size(), 18u);
  EXPECT_EQ(d.genre_names.front(), "Action");
  EXPECT_EQ(d.genre_names[3], "Children's");
  EXPECT_EQ(d.genre_names.back(), "Western");
  ASSERT_EQ(d.item_genres.size(), 1682u);
  for (uint32_t g : d.item_genres) {
    const int n = __builtin_popcount(g);
    EXPECT_GE(n, 1);
    EXPECT_LE(n, 3);
    EXPECT_EQ(g >> 18, 0u);
  }

  ASSERT_EQ(d.titles.size(), 1682u);
  std::set<std::string> unique(d.titles.begin(), d.titles.end());
  EXPECT_EQ(unique.size(), d.titles.size());
  for (const auto& t : d.titles) {
    ASSERT_GE(t.size(), 8u) << t;
    // "Name (YYYY)"
    EXPECT_EQ(t.substr(t.size() - 7, 2), " (") << t;
    EXPECT_EQ(t.back(), ')') << t;
    const int year = std::stoi(t.substr(t.size() - 5, 4));
    EXPECT_GE(year, 1900);
    EXPECT_LE(year, 1998);
  }

  ASSERT_EQ(d.users.age.size(), 943u);
  ASSERT_EQ(d.users.gender.size(), 943u);
  ASSERT_EQ(d.users.occupation.size(), 943u);
  ASSERT_EQ(d.users.occupation_names.size(), 21u);
  EXPECT_EQ(d.users.occupation_names.front(), "administrator");
  EXPECT_EQ(d.users.occupation_names.back(), "writer");
  for (int64_t u = 0; u < d.num_users(); ++u) {
    EXPECT_GE(d.users.age[u], 7);
    EXPECT_LE(d.users.age[u], 73);
    EXPECT_TRUE(d.users.gender[u] == 'M' || d.users.gender[u] == 'F');
    EXPECT_GE(d.users.occupation[u], 0);
    EXPECT_LT(d.users.occupation[u], 21);
  }
  ASSERT_EQ(d.planted_group.size(), 943u);
  std::set<int> groups(d.planted_group.begin(), d.planted_group.end());
  EXPECT_EQ(groups, (std::set<int>{0, 1, 2, 3, 4, 5}));
}

TEST(SyntheticTest, RatingsAreIntegersOneToFiveWithSpread) {
  const Dataset& d = default_synthetic();
  std::vector<int64_t> hist(6, 0);
  for (float v : d.ratings.values) {
    ASSERT_EQ(v, static_cast<float>(static_cast<int>(v)));
    ASSERT_GE(v, 1.0f);
    ASSERT_LE(v, 5.0f);
    ++hist[static_cast<int>(v)];
  }
  // Every level is used and the mean sits near ml-100k's 3.53.
  for (int r = 1; r <= 5; ++r) EXPECT_GT(hist[r], 1000) << "rating " << r;
  const double mean =
      std::accumulate(d.ratings.values.begin(), d.ratings.values.end(), 0.0) / d.num_ratings();
  EXPECT_GT(mean, 3.2);
  EXPECT_LT(mean, 3.8);
}

TEST(SyntheticTest, DeterministicFromSeed) {
  const Dataset a = make_synthetic(parse_synthetic_spec("synthetic:users=300,items=400,ratings=20000"));
  const Dataset b = make_synthetic(parse_synthetic_spec("synthetic:users=300,items=400,ratings=20000"));
  EXPECT_EQ(a.ratings.indptr, b.ratings.indptr);
  EXPECT_EQ(a.ratings.indices, b.ratings.indices);
  EXPECT_EQ(a.ratings.values, b.ratings.values);
  EXPECT_EQ(a.titles, b.titles);
  EXPECT_EQ(a.item_genres, b.item_genres);
  EXPECT_EQ(a.users.age, b.users.age);
  EXPECT_EQ(a.users.gender, b.users.gender);
  EXPECT_EQ(a.users.occupation, b.users.occupation);
  EXPECT_EQ(a.planted_group, b.planted_group);
  EXPECT_EQ(a.fingerprint(), b.fingerprint());

  const Dataset c =
      make_synthetic(parse_synthetic_spec("synthetic:users=300,items=400,ratings=20000,seed=2"));
  EXPECT_EQ(c.num_ratings(), a.num_ratings());
  EXPECT_NE(c.ratings.indices, a.ratings.indices);
  EXPECT_NE(c.titles, a.titles);
  EXPECT_NE(c.planted_group, a.planted_group);
  EXPECT_NE(c.fingerprint(), a.fingerprint());
}

// Rating times (the temporal protocol's order): one per rating, distinct within a user, not in
// item order, and the same for the same seed.
TEST(SyntheticTest, EveryRatingHasATime) {
  const Dataset a = make_synthetic(parse_synthetic_spec("synthetic:users=300,items=400,ratings=20000"));
  ASSERT_TRUE(a.has_times());
  int64_t unsorted = 0;
  for (int64_t u = 0; u < a.num_users(); ++u) {
    std::vector<int64_t> t(a.rating_times.begin() + a.ratings.indptr[u], a.rating_times.begin() + a.ratings.indptr[u + 1]);
    unsorted += !std::is_sorted(t.begin(), t.end());
    std::sort(t.begin(), t.end());
    EXPECT_EQ(std::adjacent_find(t.begin(), t.end()), t.end()) << "user " << u;
    EXPECT_GE(t.front(), 874724710);            // 1997-09-20
    EXPECT_LT(t.back(), 874724710 + 400 * 86400);  // within ml-100k's months and the user's session
  }
  EXPECT_GT(unsorted, 250);
  const Dataset b = make_synthetic(parse_synthetic_spec("synthetic:users=300,items=400,ratings=20000"));
  EXPECT_EQ(a.rating_times, b.rating_times);
  const Dataset c = make_synthetic(parse_synthetic_spec("synthetic:users=300,items=400,ratings=20000,seed=2"));
  EXPECT_NE(a.rating_times, c.rating_times);
}

TEST(SyntheticTest, ActivityIsHeavyTailedWithMl100kMinimum) {
  const Dataset& d = default_synthetic();
  std::vector<int64_t> n(d.num_users());
  for (int64_t u = 0; u < d.num_users(); ++u) n[u] = d.ratings.row_nnz(u);
  std::sort(n.begin(), n.end());
  EXPECT_EQ(n.front(), 20);
  const int64_t median = n[n.size() / 2];
  const double mean = 100000.0 / 943.0;
  EXPECT_LT(median, mean);      // right-skewed
  EXPECT_GT(n.back(), 5 * median);
  EXPECT_LE(n.back(), 1682 / 2);  // nobody rates more than half the catalogue
}

TEST(SyntheticTest, PopularityIsPowerLaw) {
  const Dataset& d = default_synthetic();
  std::vector<int64_t> per_item(d.num_items(), 0);
  for (int32_t i : d.ratings.indices) ++per_item[i];
  std::sort(per_item.rbegin(), per_item.rend());
  const int64_t top = std::accumulate(per_item.begin(), per_item.begin() + d.num_items() / 10, int64_t{0});
  EXPECT_GT(static_cast<double>(top) / d.num_ratings(), 0.35);
  // The head is not "everyone rated it", the tail is thin.
  EXPECT_LT(per_item.front(), d.num_users() * 9 / 10);
  const double mean_per_item = static_cast<double>(d.num_ratings()) / d.num_items();
  EXPECT_LT(per_item[d.num_items() / 2], 0.7 * mean_per_item);
}

// Share of a group's ratings on items of genre g versus the share over all users: the group's
// favoured genres stand out (lift ≥ 1.8), and its ratings there are higher.
TEST(SyntheticTest, GroupsFavourTheirGenres) {
  const Dataset& d = default_synthetic();
  const Csr& r = d.ratings;
  const int n_groups = 6;
  std::vector<double> overall(18, 0.0);
  std::vector<std::vector<double>> by_group(n_groups, std::vector<double>(18, 0.0));
  std::vector<double> group_total(n_groups, 0.0);
  for (int64_t u = 0; u < r.rows; ++u) {
    const int g = d.planted_group[u];
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k) {
      group_total[g] += 1;
      for (int x = 0; x < 18; ++x)
        if (d.item_genres[r.indices[k]] >> x & 1) {
          overall[x] += 1;
          by_group[g][x] += 1;
        }
    }
  }
  std::vector<uint32_t> favoured(n_groups, 0);
  for (int g = 0; g < n_groups; ++g) {
    int n_fav = 0;
    for (int x = 0; x < 18; ++x) {
      const double lift = (by_group[g][x] / group_total[g]) / (overall[x] / r.nnz());
      if (lift >= 1.8) {
        ++n_fav;
        favoured[g] |= 1u << x;
      }
    }
    EXPECT_GE(n_fav, 2) << "group " << g;
    EXPECT_LE(n_fav, 3) << "group " << g;
  }
  // Groups favour different genres.
  for (int g = 0; g < n_groups; ++g)
    for (int h = g + 1; h < n_groups; ++h) EXPECT_NE(favoured[g], favoured[h]);

  // Ratings of favoured-genre items are higher than of the rest.
  double fav_sum = 0, fav_n = 0, other_sum = 0, other_n = 0;
  for (int64_t u = 0; u < r.rows; ++u)
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k) {
      const bool fav = d.item_genres[r.indices[k]] & favoured[d.planted_group[u]];
      (fav ? fav_sum : other_sum) += r.values[k];
      (fav ? fav_n : other_n) += 1;
    }
  EXPECT_GT(fav_sum / fav_n, other_sum / other_n + 0.5);
  EXPECT_GT(fav_n / (fav_n + other_n), 0.7);  // users mostly rate their favoured genres
}

TEST(SyntheticTest, OccupationMixesDifferBetweenGroups) {
  const Dataset& d = default_synthetic();
  const int n_groups = 6;
  std::vector<std::vector<double>> mix(n_groups, std::vector<double>(21, 0.0));
  std::vector<double> size(n_groups, 0.0);
  for (int64_t u = 0; u < d.num_users(); ++u) {
    mix[d.planted_group[u]][d.users.occupation[u]] += 1;
    size[d.planted_group[u]] += 1;
  }
  // Total variation distance between every pair of groups' occupation mixes.
  for (int g = 0; g < n_groups; ++g)
    for (int h = g + 1; h < n_groups; ++h) {
      double tv = 0;
      for (int o = 0; o < 21; ++o) tv += std::abs(mix[g][o] / size[g] - mix[h][o] / size[h]);
      EXPECT_GT(tv / 2, 0.15) << "groups " << g << " and " << h;
    }
}

TEST(SyntheticTest, TinyAndDenseSpecsStayExact) {
  // Every cell filled: the per-user sampler must fall back cleanly.
  const Dataset full = make_synthetic(parse_synthetic_spec("synthetic:users=12,items=9,ratings=108,groups=3"));
  EXPECT_EQ(full.num_ratings(), 108);
  for (int64_t u = 0; u < 12; ++u) EXPECT_EQ(full.ratings.row_nnz(u), 9);
  // Fewer ratings than 20 per user.
  const Dataset sparse = make_synthetic(parse_synthetic_spec("synthetic:users=100,items=50,ratings=250"));
  EXPECT_EQ(sparse.num_ratings(), 250);
  EXPECT_NO_THROW(sparse.ratings.validate());
  // Nearly full.
  const Dataset dense = make_synthetic(parse_synthetic_spec("synthetic:users=40,items=30,ratings=1150"));
  EXPECT_EQ(dense.num_ratings(), 1150);
  EXPECT_NO_THROW(dense.ratings.validate());
}

TEST(SyntheticTest, ScalesToMillionsOfRatings) {
  const Dataset d =
      make_synthetic(parse_synthetic_spec("synthetic:users=20000,items=5000,ratings=2000000,seed=3"));
  EXPECT_EQ(d.num_users(), 20000);
  EXPECT_EQ(d.num_items(), 5000);
  EXPECT_EQ(d.num_ratings(), 2000000);
  EXPECT_NO_THROW(d.ratings.validate());
  std::set<std::string> unique(d.titles.begin(), d.titles.end());
  EXPECT_EQ(unique.size(), 5000u);
  int64_t min_row = d.num_ratings();
  for (int64_t u = 0; u < d.num_users(); ++u) min_row = std::min(min_row, d.ratings.row_nnz(u));
  EXPECT_EQ(min_row, 20);
}

// Sizes inside the spec's bounds that would need more memory than the machine has are refused
// before anything is allocated (they were left to the OOM killer, or generated titles for hours).
TEST(SyntheticTest, SpecsBeyondTheHostMemoryAreRefused) {
  if (host_available_bytes() == 0) GTEST_SKIP() << "no MemAvailable in /proc/meminfo";
  // About 340 GiB for the items alone (titles, popularity, alias tables): beyond any test machine.
  const SyntheticSpec s = parse_synthetic_spec("synthetic:users=2147483647,items=2147483647,ratings=2147483647");
  try {
    make_synthetic(s);
    FAIL() << "expected a UsageError";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("users=2147483647,items=2147483647,ratings=2147483647"), std::string::npos) << msg;
    EXPECT_NE(msg.find("GiB of host memory"), std::string::npos) << msg;
  }
}

TEST(SyntheticShuffleTest, PhiloxShuffleIsAPermutationAndDeterministic) {
  std::vector<int32_t> a(1000);
  std::iota(a.begin(), a.end(), 0);
  std::vector<int32_t> b = a, c = a;
  philox_shuffle(a, 5, 9);
  philox_shuffle(b, 5, 9);
  philox_shuffle(c, 5, 10);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<int32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  int fixed = 0;
  for (int i = 0; i < 1000; ++i) fixed += a[i] == i;
  EXPECT_LT(fixed, 10);  // a real shuffle leaves about one element in place
  // Position 0 of a 4-element shuffle is roughly uniform over many streams.
  std::vector<int> first(4, 0);
  for (uint64_t s = 0; s < 4000; ++s) {
    std::vector<int32_t> v{0, 1, 2, 3};
    philox_shuffle(v, 1, s);
    ++first[v[0]];
  }
  for (int x : first) {
    EXPECT_GT(x, 850);
    EXPECT_LT(x, 1150);
  }
  // Sequential draws equal philox_u32 at the same counter.
  PhiloxSeq seq(42, 7);
  for (uint64_t i = 0; i < 9; ++i) EXPECT_EQ(seq.u32(), philox_u32(42, 7, i));
}

}  // namespace
}  // namespace vae
