// Cluster profiles for the analysis report (the notebooks' "Cluster k" blocks): size, genre
// shares of the members' ratings, the most-rated movies of the top genres, occupations, and the
// "distinctive" entries: those over-represented in the cluster, with their lift (share in the
// cluster ÷ share over all clustered users), so that clusters dominated by the globally popular
// Drama/Comedy/Star Wars still show what sets them apart. Lift alone would list the rarest
// entries first (a movie rated by five users, all in one cluster, has the largest lift there,
// and in a cluster holding most users every such movie ties at the maximum), so an entry must
// pass a test against the other clustered users (share_difference_z, with users as the units,
// and Benjamini–Hochberg over all the entries of its kind tested in the cluster), and the
// rankings go by the strength of that evidence.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace vae {

struct GenreStat {
  int genre = 0;              // index into Dataset::genre_names
  std::string name;
  int64_t count = 0;          // member ratings of items carrying this genre
  double share = 0;           // count ÷ Σ over genres of count (a movie counts once per genre)
  double overall_share = 0;   // the same over all clustered users
  double lift = 0;            // share ÷ overall_share
  double z = 0;               // the cluster's share against the other users' (share_difference_z;
                              // 0 in a cluster not tested)
  bool distinctive = false;   // over-represented: lift > 1, enough support, a discovery (see ProfileOptions)
};

struct MovieStat {
  int32_t item = 0;           // dataset item index
  std::string title;          // title, or "item <original id>" without titles
  int64_t count = 0;          // member ratings
  double mean_rating = 0;     // members' mean rating
  double share = 0;           // count ÷ member ratings
  double overall_share = 0;   // the same over all clustered users
  double lift = 0;
  double z = 0;               // as GenreStat::z, over ratings
  bool distinctive = false;
};

struct OccupationStat {
  int occupation = 0;         // index into UserMeta::occupation_names
  std::string name;
  int64_t users = 0;          // members with this occupation
  double share = 0;           // users ÷ cluster size
  double overall_share = 0;   // over all clustered users
  double lift = 0;
  double z = 0;               // as GenreStat::z, over users
  bool distinctive = false;
};

struct GenreTopMovies {
  GenreStat genre;
  std::vector<MovieStat> movies;  // by count desc, then mean rating desc, then item index
};

struct ClusterProfile {
  int cluster = 0;
  int64_t size = 0;                             // users
  int64_t ratings = 0;                          // their ratings
  double all_ratings_per_user = 0;              // the mean over all clustered users (beside ratings / size)
  int64_t other_users = 0;                      // clustered users outside this cluster
  bool tested = false;                          // both sides had min_test_users (ProfileOptions)
  int64_t min_test_users = 0;                   // that threshold, for the report
  double fdr = 0;                               // the false-discovery rate it was tested at
  std::vector<GenreStat> genres;                // every genre with count > 0, by count desc, name
  std::vector<GenreTopMovies> top_genres;       // the first top_genres of `genres`, with movies
  std::vector<MovieStat> top_movies;            // most rated overall (for data without genres)
  std::vector<OccupationStat> top_occupations;  // by users desc, then name (empty without users)
  // Demographics (-1 without user metadata): the share of men among members whose gender is
  // given, and the members' median age (the mean of the two middle ages of an even count; ml-1m
  // gives the lower bound of an age band instead, and the median is then the lower middle band,
  // age_bands true); each next to the same over all clustered users.
  double male_share = -1, overall_male_share = -1;
  double median_age = -1, overall_median_age = -1;
  bool age_bands = false;
  // The distinctive entries (the first top_lift): by z desc, then lift desc.
  std::vector<GenreStat> lift_genres;           // support ≥ min_genre_ratings
  std::vector<MovieStat> lift_movies;           // support ≥ min_movie_ratings
  std::vector<MovieStat> supported_movies;      // every movie with that support, by z desc (the CSV)
  std::vector<OccupationStat> lift_occupations; // support ≥ min_occupation_users
};

struct ProfileOptions {
  int top_genres = 3;
  int top_movies = 3;          // per top genre
  int top_occupations = 5;
  int top_lift = 3;            // entries in each lift ranking
  // Lift of a rare item is noise (one rating can give a lift of 50): require this support
  // inside the cluster before an entry may appear in a lift ranking.
  int64_t min_genre_ratings = 5;
  int64_t min_movie_ratings = 5;
  int64_t min_occupation_users = 3;
  // False-discovery rate of the distinctive entries: an entry with the support is tested one-sided
  // (its z), and Benjamini–Hochberg at this rate runs over all the entries of its kind tested in
  // the cluster (about a thousand movies on ml-100k: without it, random clusters would always
  // show some). 1 keeps every over-represented entry.
  double fdr = 0.05;
  // Users each side (the cluster, the other users) must have before anything is tested: with
  // fewer the z of a few users is far from normal (random 10-user clusters of ml-100k would show
  // a "distinctive" movie a third of the time; from 30 users on, under 5 %).
  int64_t min_test_users = 30;
};

// Sums over the users of one group for a share Σc / Σr, where user u contributes c_u of the
// feature (ratings of a movie, tags of a genre, 1 for an occupation) out of r_u (the user's
// ratings, tags, or 1).
struct ShareSums {
  double n = 0;           // users
  double c = 0, r = 0;    // Σ c_u, Σ r_u
  double cc = 0, cr = 0;  // Σ c_u², Σ c_u·r_u
  double rr = 0;          // Σ r_u²
  ShareSums operator-(const ShareSums& o) const {
    return {n - o.n, c - o.c, r - o.r, cc - o.cc, cr - o.cr, rr - o.rr};
  }
};
// z of the difference between two groups' shares p = Σc / Σr, with users as the units (a user's
// ratings are not independent of each other: a heavy rater of comedies raises every comedy's
// count). Two estimates, and the one nearer 0 is returned:
//  - each share's variance is the ratio estimator's, Σ_u (c_u − p·r_u)² / (Σ r)², times
//    n / (n − 1) for n users (for occupations, r_u = 1, the unpooled two-proportion z);
//  - the randomisation z: Σ over the first group of c_u − p·r_u (p the pooled share), over its
//    standard deviation were that group's n_in users drawn at random from all N:
//    n_in·n_out / N · Σ_all (c_u − p·r_u)² / (N − 1). The first alone is overconfident when
//    nobody in one group has the entry (that group's variance is then 0).
// Positive: the first share is larger. 0 when either group has fewer than 2 users or nothing
// (r = 0), or a variance is 0.
double share_difference_z(const ShareSums& in, const ShareSums& out);

// users: dataset user indices that were clustered; labels[i] ∈ [0, k) is the cluster of users[i].
// Returns k profiles (empty clusters included, size 0). VaeError on size mismatch, a label out of
// range or a user index out of range.
std::vector<ClusterProfile> profile_clusters(const Dataset& d, const std::vector<int32_t>& users,
                                             const std::vector<int32_t>& labels, int k,
                                             const ProfileOptions& o = {});

// "Cluster 0 (312 users)\n  Top genres: Drama (25.1%), ...\n    Drama: Star Wars (1977) [120], ...\n
//  Top occupations: student 21.3%, ...\n  Distinctive (lift, strongest evidence first):\n
//    genres: ...\n    movies: ...\n    occupations: ...\n" (a line each for the kinds that have one)
std::string format_cluster_report(const ClusterProfile& p);
// The clusters one after another, and a line saying what the Distinctive numbers are.
std::string format_cluster_report(const std::vector<ClusterProfile>& profiles);

// cluster_lift.csv as tools/plot_run.py reads it: header "cluster,genre,lift,share,overall_share,count,z,distinctive",
// one row per (cluster, genre) with count ≥ min_genre_ratings, clusters ascending, lift desc
// (every supported genre, over- and under-represented alike; distinctive 1 for those the report
// lists as such, z for the rest).
std::string cluster_lift_csv(const std::vector<ClusterProfile>& profiles,
                             const ProfileOptions& o = {});

// cluster_movies.csv: header "cluster,item_id,title,ratings,mean_rating,share,overall_share,lift,z,distinctive",
// one row per (cluster, movie) the cluster rated at least min_movie_ratings times, clusters
// ascending, z desc (over- and under-represented alike): the whole table behind "Distinctive",
// for pandas. Titles as the data has them, CSV-quoted.
std::string cluster_movies_csv(const Dataset& d, const std::vector<ClusterProfile>& profiles);

// An item id and title as a terminal table shows them (recommend, similar): control bytes escaped
// (they come from data files), long text cut; an empty title shows as "item <id>".
std::string shown_id(const std::string& id);
std::string shown_title(const Dataset& d, int32_t item, const std::string& title);

// A share as the reports print it: 0.2083 → "20.8%".
std::string percent_text(double share);
// An age as the reports print it: "31", "31.5", or with bands (ml-1m, whose age codes are band
// starts as its README lists them) the band, "25-34".
std::string age_text(double age, bool bands);

// The notebooks' "Genre Counts" of a top-N list: genres of the given dataset items counted (an
// item counts once per genre it has), zero counts left out, sorted by count desc then name.
struct GenreCount {
  std::string genre;
  int64_t count = 0;
};
std::vector<GenreCount> genre_counts(const Dataset& d, const std::vector<int32_t>& items);
// "Genre Counts:\n  Drama: 4\n  Comedy: 3\n..." (a note when the dataset has no genres).
std::string format_genre_counts(const std::vector<GenreCount>& counts);

}  // namespace vae
