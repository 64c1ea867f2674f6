// Cluster profiles on a six-user hand-made dataset whose every number is worked out in the
// comments, plus the "Genre Counts" of a top-N list.
#include <gtest/gtest.h>

#include <cstdio>

#include <cmath>
#include <string>
#include <vector>

#include "analysis/profile.h"
#include "core/error.h"
#include "data/dataset.h"

namespace vae {
namespace {

// Genres Action(bit 0) Comedy(1) Drama(2).
//   item: 0 Alpha (1990) A | 1 Bravo (1991) C | 2 Charlie (1992) D | 3 Delta (1993) A|D
//         4 Echo (1994) C|D | 5 Foxtrot (1995) D
// Ratings (item:rating):           occupation
//   u0: 0:5 3:4 1:2                student
//   u1: 0:4 3:5 2:3                student
//   u2: 0:3 5:3                    engineer
//   u3: 1:5 4:4 2:4                artist
//   u4: 1:3 4:5 5:2 0:1            student
//   u5: 2:5 3:5   (never clustered) engineer
Dataset tiny() {
  Dataset d;
  d.name = "tiny";
  for (int u = 0; u < 6; ++u) d.user_ids.push_back(std::to_string(u + 1));
  for (int i = 0; i < 6; ++i) d.item_ids.push_back(std::to_string(100 + i));
  std::vector<int32_t> r, c;
  std::vector<float> v;
  auto add = [&](int u, int i, float x) {
    r.push_back(u);
    c.push_back(i);
    v.push_back(x);
  };
  add(0, 0, 5), add(0, 3, 4), add(0, 1, 2);
  add(1, 0, 4), add(1, 3, 5), add(1, 2, 3);
  add(2, 0, 3), add(2, 5, 3);
  add(3, 1, 5), add(3, 4, 4), add(3, 2, 4);
  add(4, 1, 3), add(4, 4, 5), add(4, 5, 2), add(4, 0, 1);
  add(5, 2, 5), add(5, 3, 5);
  d.ratings = Csr::from_triplets(6, 6, r, c, v);
  d.titles = {"Alpha (1990)", "Bravo (1991)", "Charlie (1992)", "Delta (1993)", "Echo (1994)", "Foxtrot (1995)"};
  d.genre_names = {"Action", "Comedy", "Drama"};
  d.item_genres = {1u, 2u, 4u, 5u, 6u, 4u};
  d.users.age = {20, 21, 30, 40, 22, 35};
  d.users.gender = {'M', 'F', 'M', 'F', 'M', 'F'};
  d.users.occupation_names = {"student", "engineer", "artist"};
  d.users.occupation = {0, 0, 1, 2, 0, 1};
  return d;
}

const std::vector<int32_t> kUsers = {0, 1, 2, 3, 4};
const std::vector<int32_t> kLabels = {0, 0, 0, 1, 1};

// Six users cannot show significance: every over-represented entry with this support counts
// (a false-discovery rate of 1), and clusters of 2 and 3 users are tested.
ProfileOptions low_support() {
  ProfileOptions o;
  o.min_genre_ratings = 2;
  o.min_movie_ratings = 2;
  o.min_occupation_users = 1;
  o.fdr = 1;
  o.min_test_users = 2;
  return o;
}

TEST(Profile, GenreSharesAndTopMovies) {
  const Dataset d = tiny();
  const auto p = profile_clusters(d, kUsers, kLabels, 3, low_support());
  ASSERT_EQ(p.size(), 3u);
  // Cluster 0 = u0..u2: 8 ratings. Genre tags: Action 3 (item 0) + 2 (item 3) = 5; Drama 2 + 1 + 1
  // = 4; Comedy 1; of 10. Overall (u0..u4): Action 6, Comedy 5, Drama 8 of 19.
  EXPECT_EQ(p[0].cluster, 0);
  EXPECT_EQ(p[0].size, 3);
  EXPECT_EQ(p[0].ratings, 8);
  ASSERT_EQ(p[0].genres.size(), 3u);
  EXPECT_EQ(p[0].genres[0].name, "Action");
  EXPECT_EQ(p[0].genres[0].count, 5);
  EXPECT_DOUBLE_EQ(p[0].genres[0].share, 0.5);
  EXPECT_DOUBLE_EQ(p[0].genres[0].overall_share, 6.0 / 19);
  EXPECT_DOUBLE_EQ(p[0].genres[0].lift, 0.5 / (6.0 / 19));
  EXPECT_EQ(p[0].genres[1].name, "Drama");
  EXPECT_DOUBLE_EQ(p[0].genres[1].share, 0.4);
  EXPECT_EQ(p[0].genres[2].name, "Comedy");
  EXPECT_DOUBLE_EQ(p[0].genres[2].share, 0.1);
  ASSERT_EQ(p[0].top_genres.size(), 3u);
  // Action: item 0 (3 ratings) then item 3 (2).
  ASSERT_EQ(p[0].top_genres[0].movies.size(), 2u);
  EXPECT_EQ(p[0].top_genres[0].movies[0].title, "Alpha (1990)");
  EXPECT_EQ(p[0].top_genres[0].movies[0].count, 3);
  EXPECT_DOUBLE_EQ(p[0].top_genres[0].movies[0].mean_rating, 4.0);
  EXPECT_EQ(p[0].top_genres[0].movies[1].item, 3);
  // Drama: item 3 (2 ratings), then items 2 and 5 (1 rating each, mean 3 each) → lower index first.
  const auto& drama = p[0].top_genres[1].movies;
  ASSERT_EQ(drama.size(), 3u);
  EXPECT_EQ(drama[0].item, 3);
  EXPECT_DOUBLE_EQ(drama[0].mean_rating, 4.5);
  EXPECT_EQ(drama[1].item, 2);
  EXPECT_EQ(drama[2].item, 5);

  // Cluster 1 = u3, u4: 7 ratings; Comedy 4, Drama 4 (tie → name), Action 1 of 9.
  EXPECT_EQ(p[1].size, 2);
  EXPECT_EQ(p[1].ratings, 7);
  ASSERT_EQ(p[1].genres.size(), 3u);
  EXPECT_EQ(p[1].genres[0].name, "Comedy");
  EXPECT_EQ(p[1].genres[1].name, "Drama");
  EXPECT_DOUBLE_EQ(p[1].genres[1].share, 4.0 / 9);
  EXPECT_EQ(p[1].genres[2].name, "Action");
  // Comedy: items 1 and 4 both twice; item 4 has the higher mean (4.5 vs 4).
  const auto& comedy = p[1].top_genres[0].movies;
  ASSERT_EQ(comedy.size(), 2u);
  EXPECT_EQ(comedy[0].title, "Echo (1994)");
  EXPECT_DOUBLE_EQ(comedy[0].mean_rating, 4.5);
  EXPECT_EQ(comedy[1].title, "Bravo (1991)");
  EXPECT_DOUBLE_EQ(comedy[1].mean_rating, 4.0);
  // Most rated overall in cluster 0: item 0, item 3, then item 2 (tie with 5 on count and mean).
  ASSERT_EQ(p[0].top_movies.size(), 3u);
  EXPECT_EQ(p[0].top_movies[2].item, 2);

  // Cluster 2 is empty.
  EXPECT_EQ(p[2].size, 0);
  EXPECT_TRUE(p[2].genres.empty());
  EXPECT_NE(format_cluster_report(p[2]).find("Cluster 2 (0 users)"), std::string::npos);
}

TEST(Profile, OccupationsAndLift) {
  const Dataset d = tiny();
  const auto p = profile_clusters(d, kUsers, kLabels, 2, low_support());
  // Cluster 0: student 2/3, engineer 1/3; overall student 3/5, engineer 1/5, artist 1/5.
  ASSERT_EQ(p[0].top_occupations.size(), 2u);
  EXPECT_EQ(p[0].top_occupations[0].name, "student");
  EXPECT_EQ(p[0].top_occupations[0].users, 2);
  EXPECT_DOUBLE_EQ(p[0].top_occupations[0].share, 2.0 / 3);
  EXPECT_DOUBLE_EQ(p[0].top_occupations[0].lift, (2.0 / 3) / 0.6);
  // Cluster 1: artist 1, student 1 → name order.
  ASSERT_EQ(p[1].top_occupations.size(), 2u);
  EXPECT_EQ(p[1].top_occupations[0].name, "artist");
  EXPECT_EQ(p[1].top_occupations[1].name, "student");
  // Distinctive, support ≥ 1 user, ordered by z (share_difference_z, the smaller of the two
  // estimates; values worked out by an independent per-user computation). Engineer 1 of 3 vs
  // 0 of 2: lift (1/3)/(1/5) = 5/3, z 0.816 (the randomisation z: the groups' z would be 1, its
  // other side having no spread); student 2 of 3 vs 1 of 2: lift 10/9, z (1/6)/√(1/9 + 1/4) =
  // 0.277. Cluster 1: artist 1 of 2 vs 0 of 3 (z 1, lift 2.5); its student (lift 5/6) is
  // under-represented and left out.
  ASSERT_EQ(p[0].lift_occupations.size(), 2u);
  EXPECT_EQ(p[0].lift_occupations[0].name, "engineer");
  EXPECT_DOUBLE_EQ(p[0].lift_occupations[0].lift, 5.0 / 3);
  EXPECT_NEAR(p[0].lift_occupations[0].z, 0.816497, 1e-6);
  EXPECT_NEAR(p[0].lift_occupations[1].z, 0.277350, 1e-6);
  ASSERT_EQ(p[1].lift_occupations.size(), 1u);
  EXPECT_EQ(p[1].lift_occupations[0].name, "artist");
  EXPECT_DOUBLE_EQ(p[1].lift_occupations[0].lift, 2.5);
  EXPECT_NEAR(p[1].lift_occupations[0].z, 1.0, 1e-9);

  // Genres, support ≥ 2 ratings (genre tags: cluster 0 has 10, the rest 9): cluster 0 Action
  // 5 of 10 vs 1 of 9, lift 19/12, z 1.894 (per user: u0 2 of 4 tags, u1 2 of 4, u2 1 of 2
  // against u3 0 of 5, u4 1 of 6); its Drama (lift 0.95) is under-represented, its Comedy has 1
  // rating. Cluster 1: Comedy 4 of 9 vs 1 of 10 (lift 76/45, z 1.795), Drama 4 of 9 vs 4 of 10
  // (lift 19/18, z 0.427); Action has 1.
  ASSERT_EQ(p[0].lift_genres.size(), 1u);
  EXPECT_EQ(p[0].lift_genres[0].name, "Action");
  EXPECT_DOUBLE_EQ(p[0].lift_genres[0].lift, 19.0 / 12);
  EXPECT_NEAR(p[0].lift_genres[0].z, 1.894246, 1e-6);
  EXPECT_NEAR(p[0].genres[1].lift, 0.95, 1e-12);  // Drama, in the shares but not distinctive
  EXPECT_FALSE(p[0].genres[1].distinctive);
  ASSERT_EQ(p[1].lift_genres.size(), 2u);
  EXPECT_EQ(p[1].lift_genres[0].name, "Comedy");
  EXPECT_NEAR(p[1].lift_genres[0].lift, 76.0 / 45, 1e-12);
  EXPECT_NEAR(p[1].lift_genres[0].z, 1.795179, 1e-6);
  EXPECT_EQ(p[1].lift_genres[1].name, "Drama");
  EXPECT_NEAR(p[1].lift_genres[1].z, 0.426904, 1e-6);
  // Movies, support ≥ 2 ratings (8 ratings in cluster 0, 7 in cluster 1): cluster 0 item 0
  // 3 vs 1 (lift (3/8)/(4/15) = 1.40625, z 1.630) before item 3 2 vs 0 (lift 1.875, z 1.533):
  // the larger lift of two raters is the weaker evidence.
  ASSERT_EQ(p[0].lift_movies.size(), 2u);
  EXPECT_EQ(p[0].lift_movies[0].item, 0);
  EXPECT_DOUBLE_EQ(p[0].lift_movies[0].lift, 1.40625);
  EXPECT_NEAR(p[0].lift_movies[0].z, 1.630102, 1e-6);
  EXPECT_EQ(p[0].lift_movies[1].item, 3);
  EXPECT_DOUBLE_EQ(p[0].lift_movies[1].lift, 1.875);
  EXPECT_NEAR(p[0].lift_movies[1].z, 1.533010, 1e-6);
  // cluster 1: item 4 2 vs 0 (lift 15/7, z 1.978), item 1 2 vs 1 (lift 10/7, z 1.168).
  ASSERT_EQ(p[1].lift_movies.size(), 2u);
  EXPECT_EQ(p[1].lift_movies[0].item, 4);
  EXPECT_DOUBLE_EQ(p[1].lift_movies[0].lift, 15.0 / 7);
  EXPECT_NEAR(p[1].lift_movies[0].z, 1.978477, 1e-6);
  EXPECT_EQ(p[1].lift_movies[1].item, 1);
  EXPECT_NEAR(p[1].lift_movies[1].z, 1.167748, 1e-6);
  EXPECT_EQ(p[0].other_users, 2);
  EXPECT_EQ(p[1].other_users, 3);
}

TEST(Profile, DefaultsTestNothingInTinyClusters) {
  const auto p = profile_clusters(tiny(), kUsers, kLabels, 2);
  // Defaults: 30 users on each side before anything is tested.
  EXPECT_FALSE(p[0].tested);
  EXPECT_TRUE(p[0].lift_genres.empty());
  EXPECT_TRUE(p[0].lift_movies.empty());
  EXPECT_TRUE(p[0].lift_occupations.empty());
  EXPECT_NE(format_cluster_report(p[0]).find("  Distinctive: not tested (2 users outside it; the test needs 30 on each side)\n"),
            std::string::npos)
      << format_cluster_report(p[0]);
  EXPECT_NE(format_cluster_report(p[1]).find("  Distinctive: not tested (2 users in the cluster;"), std::string::npos)
      << format_cluster_report(p[1]);
  // Tested, with the default supports (≥ 5 genre ratings, ≥ 5 movie ratings, ≥ 3 users): only
  // cluster 0's Action has the support, and as the one genre tested it is a discovery (z 1.894,
  // p = 0.029 ≤ 0.05).
  ProfileOptions tested;
  tested.min_test_users = 2;
  const auto q = profile_clusters(tiny(), kUsers, kLabels, 2, tested);
  ASSERT_EQ(q[0].lift_genres.size(), 1u);
  EXPECT_EQ(q[0].lift_genres[0].name, "Action");
  EXPECT_TRUE(q[0].lift_movies.empty());
  EXPECT_TRUE(q[0].lift_occupations.empty());
  EXPECT_TRUE(q[1].lift_genres.empty());
  EXPECT_NE(format_cluster_report(q[1]).find("  Distinctive: nothing clearly over-represented against the other users\n"),
            std::string::npos)
      << format_cluster_report(q[1]);
}

TEST(Profile, ReportText) {
  const auto p = profile_clusters(tiny(), kUsers, kLabels, 2, low_support());
  const std::string r = format_cluster_report(p[0]);
  for (const char* want : {"Cluster 0 (3 users)\n",
                           "  Top genres: Action (50.0%), Drama (40.0%), Comedy (10.0%)\n",
                           "    Action: Alpha (1990) [3], Delta (1993) [2]\n",
                           "    Drama: Delta (1993) [2], Charlie (1992) [1], Foxtrot (1995) [1]\n",
                           "  Top occupations: student 66.7%, engineer 33.3%\n",
                           // ages 20, 21, 30 (all five: 20, 21, 22, 30, 40); men u0, u2 of 3 (all 3 of 5)
                           "  Users: 66.7% men (all 60.0%), median age 21 (all 22)\n",
                           "  Distinctive (lift, strongest evidence first):\n    genres: Action 1.58x\n",
                           "    movies: Alpha (1990) 1.41x [3], Delta (1993) 1.88x [2]\n",
                           "    occupations: engineer 1.67x [1], student 1.11x [2]\n"})
    EXPECT_NE(r.find(want), std::string::npos) << "missing: " << want << "\nin:\n" << r;
  // Ratings per member next to all clustered users' (u5 is not clustered).
  const Dataset& d = tiny();
  auto nnz = [&](int32_t u) { return static_cast<double>(d.ratings.row_nnz(u)); };
  char want[80];
  std::snprintf(want, sizeof want, "  Ratings: %.1f per user (all %.1f)\n", (nnz(0) + nnz(1) + nnz(2)) / 3,
                (nnz(0) + nnz(1) + nnz(2) + nnz(3) + nnz(4)) / 5);
  EXPECT_NE(r.find(want), std::string::npos) << "missing: " << want << "\nin:\n" << r;
  const std::string all = format_cluster_report(p);
  EXPECT_NE(all.find("Cluster 1 (2 users)"), std::string::npos);
  EXPECT_LT(all.find("Cluster 0"), all.find("Cluster 1"));
  // One legend under all the clusters, with the rate they were tested at (low_support: 100 %).
  EXPECT_NE(all.find("\n(Distinctive: a larger share of the cluster's ratings, or users, than of the other users', tested "
                     "with users as the units at a 100% false-discovery rate;"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("[n] = the cluster's ratings of the movie, or its users with the occupation)\n"), std::string::npos);
  EXPECT_EQ(all.find("(Distinctive:"), all.rfind("(Distinctive:"));
  // Untested clusters (the defaults ask for 30 users) get no legend.
  EXPECT_EQ(format_cluster_report(profile_clusters(tiny(), kUsers, kLabels, 2)).find("(Distinctive:"), std::string::npos);

  const std::string csv = cluster_lift_csv(p, low_support());
  EXPECT_EQ(csv.rfind("cluster,genre,lift,share,overall_share,count,z,distinctive\n", 0), 0u);
  EXPECT_NE(csv.find("\n0,Action,1.583333,0.500000,0.315789,5,1.8942,1\n"), std::string::npos) << csv;
  // Every supported genre is a row, the under-represented too (Drama 0.95: 4 of 10 vs 4 of 9).
  EXPECT_NE(csv.find("\n0,Drama,0.950000,0.400000,0.421053,4,-0.4269,0\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\n1,Comedy,1.688889,"), std::string::npos) << csv;
  EXPECT_EQ(csv.find("0,Comedy"), std::string::npos);  // 1 rating: below support
}

// One group's users as (c_u, r_u) pairs, for an independent per-user computation.
struct UserShares {
  std::vector<double> c, r;
  ShareSums sums() const {
    ShareSums s;
    for (size_t u = 0; u < c.size(); ++u) {
      s.n += 1;
      s.c += c[u];
      s.r += r[u];
      s.cc += c[u] * c[u];
      s.cr += c[u] * r[u];
      s.rr += r[u] * r[u];
    }
    return s;
  }
  double total(const std::vector<double>& v) const {
    double t = 0;
    for (double x : v) t += x;
    return t;
  }
  double share() const { return total(c) / total(r); }
  // Σ (c_u − p·r_u)², term by term.
  double spread(double p) const {
    double v = 0;
    for (size_t u = 0; u < c.size(); ++u) v += (c[u] - p * r[u]) * (c[u] - p * r[u]);
    return v;
  }
};

// The two estimates of share_difference_z's header, term by term; the one nearer 0.
double naive_z(const UserShares& a, const UserShares& b, double* z_groups = nullptr, double* z_rand = nullptr) {
  const double na = static_cast<double>(a.c.size()), nb = static_cast<double>(b.c.size()), n = na + nb;
  const double va = a.spread(a.share()) / (a.total(a.r) * a.total(a.r)) * na / (na - 1);
  const double vb = b.spread(b.share()) / (b.total(b.r) * b.total(b.r)) * nb / (nb - 1);
  const double zg = (a.share() - b.share()) / std::sqrt(va + vb);
  const double p = (a.total(a.c) + b.total(b.c)) / (a.total(a.r) + b.total(b.r));
  const double zr = (a.total(a.c) - p * a.total(a.r)) / std::sqrt(na * nb / n * (a.spread(p) + b.spread(p)) / (n - 1));
  if (z_groups) *z_groups = zg;
  if (z_rand) *z_rand = zr;
  return std::fabs(zr) < std::fabs(zg) ? zr : zg;
}

TEST(Profile, ShareDifferenceZ) {
  // Occupations (r_u = 1): 2 of 3 vs 1 of 2. V_in = (2/3)(1/3)/3 · 3/2 = 1/9, V_out =
  // (1/2)(1/2)/2 · 2 = 1/4; z = (2/3 − 1/2) / √(13/36) = 0.277350 (the randomisation z is 0.289).
  const UserShares students_in{{1, 1, 0}, {1, 1, 1}}, students_out{{1, 0}, {1, 1}};
  EXPECT_NEAR(share_difference_z(students_in.sums(), students_out.sums()), 0.277350, 1e-6);
  // Users of different activity, term by term against the expanded sums.
  const UserShares a{{3, 0, 5, 1, 2}, {10, 4, 12, 30, 6}}, b{{1, 0, 0, 2}, {8, 20, 5, 40}};
  const double want = naive_z(a, b);
  EXPECT_NEAR(share_difference_z(a.sums(), b.sums()), want, 1e-12 * std::fabs(want));
  EXPECT_GT(want, 0.0);
  EXPECT_DOUBLE_EQ(share_difference_z(b.sums(), a.sums()), -share_difference_z(a.sums(), b.sums()));
  // The same shares from heavier raters who rate more of the feature the more they rate: the
  // users are the units, so this clumping widens the interval and z falls.
  const UserShares clumped{{0, 0, 0, 0, 11}, {10, 4, 12, 30, 6}};
  EXPECT_NEAR(clumped.share(), a.share(), 1e-12);
  EXPECT_LT(share_difference_z(clumped.sums(), b.sums()), share_difference_z(a.sums(), b.sums()));
  // An entry only some members have and nobody else: the other side's variance is 0, and the
  // groups' z alone (3.6) would call a chance pattern significant; the randomisation z (1.75)
  // wins: 10 of 40 members is about what 40 users drawn from all 50 would hold.
  UserShares members{std::vector<double>(40, 0), std::vector<double>(40, 20)}, others{std::vector<double>(10, 0), std::vector<double>(10, 20)};
  for (int u = 0; u < 10; ++u) members.c[u] = 1;
  double zg = 0, zr = 0;
  const double only = naive_z(members, others, &zg, &zr);
  EXPECT_GT(zg, 3.0);
  EXPECT_LT(zr, 1.96);
  EXPECT_NEAR(share_difference_z(members.sums(), others.sums()), only, 1e-12);
  EXPECT_DOUBLE_EQ(only, zr);
  // Degenerate groups: fewer than 2 users, or nothing rated, or no spread anywhere.
  const UserShares one{{1}, {3}}, none{{0, 0}, {0, 0}}, flat{{1, 1}, {2, 2}}, flat2{{1, 1, 1}, {4, 4, 4}};
  EXPECT_EQ(share_difference_z(one.sums(), b.sums()), 0.0);
  EXPECT_EQ(share_difference_z(b.sums(), none.sums()), 0.0);
  EXPECT_EQ(share_difference_z(flat.sums(), flat2.sums()), 0.0);
  // Sums subtract: all users minus the cluster's are the other users'.
  UserShares all = a;
  all.c.insert(all.c.end(), b.c.begin(), b.c.end());
  all.r.insert(all.r.end(), b.r.begin(), b.r.end());
  EXPECT_NEAR(share_difference_z(a.sums(), all.sums() - a.sums()), want, 1e-9 * std::fabs(want));
}

// A user whose movies have no genre has no genre tags: no share of anything, so not a unit of
// the genre tests (ml-latest's "(no genres listed)"). Items 0 and 5 lose their genres, so u2
// (who rated only those) has none; Drama's test in cluster 0 runs over u0, u1 against u3, u4.
TEST(Profile, UsersWithoutGenreTagsAreNotUnitsOfTheGenreTests) {
  Dataset d = tiny();
  d.item_genres[0] = 0;
  d.item_genres[5] = 0;
  const auto p = profile_clusters(d, kUsers, kLabels, 2, low_support());
  // Per user (Drama tags, all tags): u0 (1, 3) from items 3 A|D and 1 C; u1 (2, 3) from 3 and
  // 2 D; u3 (2, 4) from 1 C, 4 C|D, 2 D; u4 (1, 3) from 1 and 4.
  const UserShares in{{1, 2}, {3, 3}}, out{{2, 1}, {4, 3}};
  const GenreStat* drama = nullptr;
  for (const auto& g : p[0].genres)
    if (g.name == "Drama") drama = &g;
  ASSERT_NE(drama, nullptr);
  EXPECT_EQ(drama->count, 3);
  EXPECT_NEAR(drama->z, naive_z(in, out), 1e-12);
}

// Eighty users in two clusters of forty, everyone rating the ten filler movies 2..11. "Rare"
// (item 0) is rated by users 0..4 only, "Broad" (item 1) by 0..17 and 40..45, "Mild" (item 12)
// by 5..10 and 46..49. Cluster 0 then has 429 ratings, cluster 1 410. Rare's lift in cluster 0
// is the largest, (5/429)/(5/839) = 1.96 against Broad's 1.47 and Mild's 1.17, but five raters are
// weaker evidence: z 2.265 against Broad's 2.892 (Mild 0.605). With the fillers (z −2.91) that
// makes 13 movies tested; Benjamini–Hochberg at 5 % takes Broad (p 0.0019 ≤ 0.05·1/13) and
// stops at Rare (p 0.0118 > 0.05·2/13 = 0.0077). A lift ranking would list Rare first.
TEST(Profile, DistinctiveMoviesGoByEvidenceNotByLift) {
  Dataset d;
  d.name = "rare-vs-broad";
  std::vector<int32_t> r, c, users, labels;
  std::vector<float> v;
  for (int u = 0; u < 80; ++u) {
    d.user_ids.push_back(std::to_string(u + 1));
    users.push_back(u);
    labels.push_back(u < 40 ? 0 : 1);
    auto add = [&](int i) {
      r.push_back(u);
      c.push_back(i);
      v.push_back(4);
    };
    for (int i = 2; i < 12; ++i) add(i);
    if (u < 5) add(0);
    if (u < 18 || (u >= 40 && u < 46)) add(1);
    if ((u >= 5 && u < 11) || (u >= 46 && u < 50)) add(12);
  }
  for (int i = 0; i < 13; ++i) d.item_ids.push_back(std::to_string(i));
  d.ratings = Csr::from_triplets(80, 13, r, c, v);
  d.titles.assign(13, "Filler");
  d.titles[0] = "Rare";
  d.titles[1] = "Broad";
  d.titles[12] = "Mild";

  // Each movie's per-user shares (rated it or not, out of the user's ratings), cluster 0
  // against cluster 1: the z values naive_z derives term by term.
  auto shares = [&](int item, int first, int last) {
    UserShares s;
    for (int u = first; u < last; ++u) {
      int n = 0, has = 0;
      for (size_t k = 0; k < r.size(); ++k)
        if (r[k] == u) ++n, has += c[k] == item;
      s.c.push_back(has);
      s.r.push_back(n);
    }
    return s;
  };
  auto z_of = [&](int item) { return naive_z(shares(item, 0, 40), shares(item, 40, 80)); };

  const auto p = profile_clusters(d, users, labels, 2);
  ASSERT_TRUE(p[0].tested);
  ASSERT_EQ(p[0].ratings, 429);
  ASSERT_EQ(p[0].lift_movies.size(), 1u);  // Rare has the support (5) but not the evidence
  EXPECT_EQ(p[0].lift_movies[0].title, "Broad");
  EXPECT_NEAR(p[0].lift_movies[0].z, z_of(1), 1e-12);
  EXPECT_NEAR(p[0].lift_movies[0].lift, (18.0 / 429) / (24.0 / 839), 1e-12);
  // Cluster 1 rates little besides the fillers, so they take a larger share of its ratings:
  // (400/410)/(800/839) = 1.023, from every one of its users alike, hence strong evidence.
  ASSERT_FALSE(p[1].lift_movies.empty());
  EXPECT_EQ(p[1].lift_movies[0].title, "Filler");
  EXPECT_NEAR(p[1].lift_movies[0].lift, (400.0 / 410) / (800.0 / 839), 1e-12);

  ProfileOptions any;
  any.fdr = 1;
  const auto q = profile_clusters(d, users, labels, 2, any);
  ASSERT_EQ(q[0].lift_movies.size(), 3u);
  EXPECT_EQ(q[0].lift_movies[0].title, "Broad");
  EXPECT_EQ(q[0].lift_movies[1].title, "Rare");
  EXPECT_EQ(q[0].lift_movies[2].title, "Mild");
  EXPECT_GT(q[0].lift_movies[1].lift, q[0].lift_movies[0].lift);
  EXPECT_NEAR(q[0].lift_movies[1].z, z_of(0), 1e-12);
  EXPECT_NEAR(q[0].lift_movies[2].z, z_of(12), 1e-12);
  EXPECT_GT(z_of(1), z_of(0));  // Broad is the stronger evidence, Rare the larger lift
  const std::string report = format_cluster_report(q[0]);
  EXPECT_NE(report.find("    movies: Broad 1.47x [18], Rare 1.96x [5], Mild 1.17x [6]\n"), std::string::npos) << report;

  // One cluster: nothing to stand out against, so no Distinctive section at all.
  const auto one = profile_clusters(d, users, std::vector<int32_t>(80, 0), 1, any);
  EXPECT_EQ(one[0].other_users, 0);
  EXPECT_TRUE(one[0].lift_movies.empty());
  EXPECT_EQ(format_cluster_report(one[0]).find("Distinctive"), std::string::npos) << format_cluster_report(one[0]);
}

TEST(Profile, Demographics) {
  Dataset d = tiny();
  auto p = profile_clusters(d, kUsers, kLabels, 2, low_support());
  // Cluster 1 = u3 (40, F), u4 (22, M): an even count takes the mean of the middle two.
  EXPECT_DOUBLE_EQ(p[1].median_age, 31.0);
  EXPECT_DOUBLE_EQ(p[1].male_share, 0.5);
  EXPECT_DOUBLE_EQ(p[1].overall_male_share, 0.6);
  EXPECT_NE(format_cluster_report(p[1]).find("  Users: 50.0% men (all 60.0%), median age 31 (all 22)\n"), std::string::npos)
      << format_cluster_report(p[1]);
  // ml-1m gives age bands by their lower bound: the median is a band (the lower middle one).
  d.format = "ml-1m";
  d.users.age = {18, 25, 25, 35, 56, 1};
  p = profile_clusters(d, kUsers, kLabels, 2, low_support());
  EXPECT_TRUE(p[1].age_bands);
  EXPECT_DOUBLE_EQ(p[1].median_age, 35.0);  // 35 and 56
  EXPECT_NE(format_cluster_report(p[1]).find("median age 35-44 (all 25-34)\n"), std::string::npos)
      << format_cluster_report(p[1]);
  // Genders other than M/F count in neither share; without any, no share is printed.
  d.users.gender = {'M', 'F', 'M', '?', '?', 'F'};
  p = profile_clusters(d, kUsers, kLabels, 2, low_support());
  EXPECT_DOUBLE_EQ(p[0].male_share, 2.0 / 3);
  EXPECT_DOUBLE_EQ(p[1].male_share, -1.0);
  EXPECT_NE(format_cluster_report(p[1]).find("  Users: median age 35-44"), std::string::npos)
      << format_cluster_report(p[1]);
}

TEST(Profile, ClusterMoviesCsvHoldsEverySupportedMovie) {
  Dataset d = tiny();
  d.titles[3] = "Delta, The (1993)";  // a comma: quoted
  const auto p = profile_clusters(d, kUsers, kLabels, 2, low_support());
  const std::string csv = cluster_movies_csv(d, p);
  // Cluster 0: items 0 (z 1.630) and 3 (1.533) have ≥ 2 ratings; cluster 1: items 4 (1.978),
  // 1 (1.168). Item 0 in cluster 0: 3 ratings, mean (5 + 4 + 3) / 3, share 3/8, overall 4/15.
  EXPECT_EQ(csv,
            "cluster,item_id,title,ratings,mean_rating,share,overall_share,lift,z,distinctive\n"
            "0,100,Alpha (1990),3,4.0000,0.37500000,0.26666667,1.406250,1.6301,1\n"
            "0,103,\"Delta, The (1993)\",2,4.5000,0.25000000,0.13333333,1.875000,1.5330,1\n"
            "1,104,Echo (1994),2,4.5000,0.28571429,0.13333333,2.142857,1.9785,1\n"
            "1,101,Bravo (1991),2,4.0000,0.28571429,0.20000000,1.428571,1.1677,1\n");
  // Under-represented movies with the support are rows too (lift < 1, z < 0), after the others.
  ProfileOptions one = low_support();
  one.min_movie_ratings = 1;
  const auto q = profile_clusters(d, kUsers, kLabels, 2, one);
  ASSERT_EQ(q[1].supported_movies.size(), 5u);  // items 1, 2, 4, 5, 0
  EXPECT_EQ(q[1].supported_movies.back().item, 0);  // 1 of 7 vs 3 of 8: the lowest z
  EXPECT_LT(q[1].supported_movies.back().z, 0.0);
  EXPECT_LE(q[1].lift_movies.size(), 3u);
}

// Names come from the data files: control bytes in them must not reach the terminal raw.
TEST(Profile, ReportEscapesNamesFromTheData) {
  Dataset d = tiny();
  d.titles[0] = "Alpha\x1b[31m (1990)";
  d.genre_names[0] = "Act\tion";
  d.users.occupation_names[0] = "stu\x07" "dent";
  const auto p = profile_clusters(d, kUsers, kLabels, 2, low_support());
  const std::string r = format_cluster_report(p[0]);
  EXPECT_EQ(r.find('\x1b'), std::string::npos) << r;
  EXPECT_EQ(r.find('\t'), std::string::npos) << r;
  EXPECT_EQ(r.find('\x07'), std::string::npos) << r;
  EXPECT_NE(r.find("Alpha\\x1b[31m (1990) [3]"), std::string::npos) << r;
  EXPECT_NE(r.find("Act\\x09ion (50.0%)"), std::string::npos) << r;
  EXPECT_NE(r.find("stu\\x07dent 66.7%"), std::string::npos) << r;
}

TEST(Profile, WithoutMetadata) {
  Dataset d = tiny();
  d.genre_names.clear();
  d.item_genres.clear();
  d.titles.clear();
  d.users = UserMeta{};
  const auto p = profile_clusters(d, kUsers, kLabels, 2);
  EXPECT_TRUE(p[0].genres.empty());
  EXPECT_TRUE(p[0].top_occupations.empty());
  ASSERT_FALSE(p[0].top_movies.empty());
  EXPECT_EQ(p[0].top_movies[0].title, "item 100");
  const std::string r = format_cluster_report(p[0]);
  EXPECT_NE(r.find("Top movies: item 100 [3]"), std::string::npos) << r;
  EXPECT_EQ(r.find("Top genres"), std::string::npos);
  EXPECT_EQ(r.find("Users:"), std::string::npos);
  EXPECT_DOUBLE_EQ(p[0].median_age, -1.0);
  EXPECT_TRUE(genre_counts(d, {0, 1}).empty());
  // The legend explains only what the report can show: no occupations without user data.
  const std::string all = format_cluster_report(profile_clusters(d, kUsers, kLabels, 2, low_support()));
  EXPECT_NE(all.find("[n] = the cluster's ratings of the movie)\n"), std::string::npos) << all;
  EXPECT_EQ(all.find("occupation"), std::string::npos) << all;
}

TEST(Profile, RejectsInconsistentInput) {
  const Dataset d = tiny();
  EXPECT_THROW(profile_clusters(d, kUsers, {0, 0, 1}, 2), VaeError);
  EXPECT_THROW(profile_clusters(d, kUsers, {0, 0, 2, 1, 1}, 2), VaeError);
  EXPECT_THROW(profile_clusters(d, {0, 1, 2, 3, 9}, kLabels, 2), VaeError);
  EXPECT_THROW(profile_clusters(d, kUsers, kLabels, 0), VaeError);
}

TEST(Profile, GenreCountsOfATopList) {
  const Dataset d = tiny();
  // Items 0 (A), 3 (A|D), 4 (C|D) twice: Drama 3, Action 2, Comedy 2 (tie → name).
  const auto g = genre_counts(d, {0, 3, 4, 4});
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].genre, "Drama");
  EXPECT_EQ(g[0].count, 3);
  EXPECT_EQ(g[1].genre, "Action");
  EXPECT_EQ(g[1].count, 2);
  EXPECT_EQ(g[2].genre, "Comedy");
  EXPECT_EQ(format_genre_counts(g), "Genre Counts:\n  Drama: 3\n  Action: 2\n  Comedy: 2\n");
  // Zero counts are left out.
  const auto only = genre_counts(d, {0});
  ASSERT_EQ(only.size(), 1u);
  EXPECT_EQ(only[0].genre, "Action");
  EXPECT_THROW(genre_counts(d, {6}), VaeError);
}

}  // namespace
}  // namespace vae
