#include "analysis/profile.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "data/text_reader.h"
#include "train/stats.h"

namespace vae {
namespace {

std::string times(double lift) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fx", lift);
  return buf;
}

}  // namespace

std::string shown_id(const std::string& id) { return text::escape(id, 40); }

std::string shown_title(const Dataset& d, int32_t item, const std::string& title) {
  return title.empty() ? "item " + shown_id(d.item_ids[item]) : text::escape(title, 300);
}

std::string percent_text(double share) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * share);
  return buf;
}

std::string age_text(double age, bool bands) {
  if (!bands) {
    char buf[32];
    std::snprintf(buf, sizeof buf, age == static_cast<int>(age) ? "%.0f" : "%.1f", age);
    return buf;
  }
  const int c = static_cast<int>(age);
  switch (c) {
    case 1: return "under 18";
    case 18: return "18-24";
    case 25: return "25-34";
    case 35: return "35-44";
    case 45: return "45-49";
    case 50: return "50-55";
    case 56: return "56+";
    default: return std::to_string(c);
  }
}

namespace {

// Titles are escaped when profiled; genre and occupation names come from the data files too.
std::string shown_name(const std::string& n) { return text::escape(n, 100); }

template <typename T, typename Less>
std::vector<T> top(std::vector<T> v, size_t count, Less less) {
  std::sort(v.begin(), v.end(), less);
  if (v.size() > count) v.resize(count);
  return v;
}

bool by_count(const GenreStat& a, const GenreStat& b) {
  return a.count != b.count ? a.count > b.count : a.name < b.name;
}
bool genre_by_lift(const GenreStat& a, const GenreStat& b) {
  if (a.lift != b.lift) return a.lift > b.lift;
  return by_count(a, b);
}
// The distinctive rankings: strongest evidence first, then the larger lift.
template <typename T, typename Then>
auto by_z(Then then) {
  return [then](const T& a, const T& b) {
    if (a.z != b.z) return a.z > b.z;
    return then(a, b);
  };
}
bool movie_by_count(const MovieStat& a, const MovieStat& b) {
  if (a.count != b.count) return a.count > b.count;
  if (a.mean_rating != b.mean_rating) return a.mean_rating > b.mean_rating;
  return a.item < b.item;
}
bool movie_by_lift(const MovieStat& a, const MovieStat& b) {
  return a.lift != b.lift ? a.lift > b.lift : movie_by_count(a, b);
}
bool occ_by_users(const OccupationStat& a, const OccupationStat& b) {
  return a.users != b.users ? a.users > b.users : a.name < b.name;
}
bool occ_by_lift(const OccupationStat& a, const OccupationStat& b) {
  return a.lift != b.lift ? a.lift > b.lift : occ_by_users(a, b);
}

// Marks the distinctive entries of one kind in one cluster: Benjamini–Hochberg over the one-sided
// p-values of those with the support, then lift > 1 (an entry whose share is lower is not
// distinctive however strong the evidence).
template <typename T, typename Support>
void mark_distinctive(std::vector<T>& v, Support support, int64_t min_support, bool tested, const ProfileOptions& o) {
  if (!tested) return;
  std::vector<double> p(v.size(), std::nan(""));
  for (size_t i = 0; i < v.size(); ++i)
    if (support(v[i]) >= min_support) p[i] = normal_upper_tail(v[i].z);
  const std::vector<bool> found = benjamini_hochberg(p, o.fdr);
  for (size_t i = 0; i < v.size(); ++i) v[i].distinctive = found[i] && v[i].lift > 1.0;
}

// Median of the ages; bands (ml-1m) take the lower middle band so that the result is a band.
double median(std::vector<int> v, bool bands) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  if (v.size() % 2 == 1) return v[h];
  return bands ? v[h - 1] : 0.5 * (v[h - 1] + v[h]);
}

double male_share(int64_t men, int64_t women) {
  return men + women > 0 ? static_cast<double>(men) / (men + women) : -1.0;
}


// Rating counts of one group of users (a cluster, or all clustered users together).
struct Tally {
  int64_t users = 0, ratings = 0;
  std::vector<int64_t> item_count;
  std::vector<double> item_sum;
  std::vector<int64_t> genre_count;
  int64_t genre_total = 0;
  std::vector<int64_t> occupation;
  std::vector<int> ages;
  int64_t men = 0, women = 0;
  // For share_difference_z: Σ over the raters of each item of their number of ratings; per genre
  // Σ c_u² and Σ c_u·r_u of the users' tag counts; Σ r_u² of ratings and of tags.
  std::vector<double> item_cr, genre_cc, genre_cr;
  double rating_rr = 0, tag_rr = 0;
  int64_t tag_users = 0;  // users with a genre tag: the units of the genre tests
  ShareSums movie(int32_t i) const {
    const double c = static_cast<double>(item_count[i]);
    return {static_cast<double>(users), c, static_cast<double>(ratings), c, item_cr[i], rating_rr};
  }
  ShareSums genre(int g) const {
    return {static_cast<double>(tag_users), static_cast<double>(genre_count[g]), static_cast<double>(genre_total),
            genre_cc[g], genre_cr[g], tag_rr};
  }
  ShareSums occupation_share(int j) const {
    const double c = static_cast<double>(occupation[j]), n = static_cast<double>(users);
    return {n, c, n, c, c, n};
  }
};

}  // namespace

double share_difference_z(const ShareSums& in, const ShareSums& out) {
  if (in.n < 2 || out.n < 2 || in.r <= 0 || out.r <= 0) return 0.0;
  // Σ (c − p·r)² expanded; cancellation can leave it a hair below 0.
  auto spread = [](const ShareSums& s, double p) { return std::max(0.0, s.cc - 2 * p * s.cr + p * p * s.rr); };
  const double p_in = in.c / in.r, p_out = out.c / out.r;
  const double v = spread(in, p_in) / (in.r * in.r) * (in.n / (in.n - 1)) +
                   spread(out, p_out) / (out.r * out.r) * (out.n / (out.n - 1));
  const double z_groups = v > 0 ? (p_in - p_out) / std::sqrt(v) : 0.0;
  // The same question as a randomisation test: were the cluster's users drawn at random, Σ over
  // them of e_u = c_u − p·r_u (p the pooled share) would have mean 0 and the finite-population
  // variance below. It does not take a side's spread from that side alone, which is 0 when no
  // one there has the entry (a movie only members rated would otherwise look significant).
  const ShareSums all{in.n + out.n, in.c + out.c, in.r + out.r, in.cc + out.cc, in.cr + out.cr, in.rr + out.rr};
  const double p = all.c / all.r;
  const double v_rand = in.n * out.n / all.n * spread(all, p) / (all.n - 1);
  const double z_rand = v_rand > 0 ? (in.c - p * in.r) / std::sqrt(v_rand) : 0.0;
  // Both are approximations; the weaker claim stands.
  return std::fabs(z_rand) < std::fabs(z_groups) ? z_rand : z_groups;
}

std::vector<ClusterProfile> profile_clusters(const Dataset& d, const std::vector<int32_t>& users,
                                             const std::vector<int32_t>& labels, int k,
                                             const ProfileOptions& o) {
  VAE_CHECK(k >= 1, "profile_clusters: k must be at least 1");
  VAE_CHECK(users.size() == labels.size(),
            "profile_clusters: " + std::to_string(users.size()) + " users but " +
                std::to_string(labels.size()) + " labels");
  const int64_t n_items = d.num_items();
  const int n_genres = static_cast<int>(d.genre_names.size());
  const bool genres = d.has_genres() && static_cast<int64_t>(d.item_genres.size()) == n_items;
  const bool occupations = !d.users.occupation.empty();
  const int n_occ = static_cast<int>(d.users.occupation_names.size());
  const bool ages = !d.users.age.empty(), genders = !d.users.gender.empty();
  const bool bands = d.format == "ml-1m";
  auto fresh = [&] {
    Tally t;
    t.item_count.assign(n_items, 0);
    t.item_sum.assign(n_items, 0.0);
    t.item_cr.assign(n_items, 0.0);
    t.genre_count.assign(n_genres, 0);
    t.genre_cc.assign(n_genres, 0.0);
    t.genre_cr.assign(n_genres, 0.0);
    t.occupation.assign(n_occ, 0);
    return t;
  };
  std::vector<int64_t> user_tags(n_genres);  // one user's tag count per genre
  std::vector<Tally> tally(k, fresh());
  Tally all = fresh();
  for (size_t u = 0; u < users.size(); ++u) {
    const int32_t user = users[u], label = labels[u];
    VAE_CHECK(user >= 0 && user < d.num_users(), "profile_clusters: user index out of range");
    VAE_CHECK(label >= 0 && label < k,
              "profile_clusters: label " + std::to_string(label) + " outside [0, k)");
    if (genres) {  // the user's genre tags, once for both tallies
      std::fill(user_tags.begin(), user_tags.end(), 0);
      for (int64_t e = d.ratings.indptr[user]; e < d.ratings.indptr[user + 1]; ++e)
        for (int g = 0; g < n_genres; ++g) user_tags[g] += d.item_genres[d.ratings.indices[e]] >> g & 1u;
    }
    for (Tally* t : {&tally[label], &all}) {
      ++t->users;
      if (occupations) {
        VAE_CHECK(static_cast<size_t>(user) < d.users.occupation.size(),
                  "profile_clusters: user without occupation");
        const int occ = d.users.occupation[user];
        VAE_CHECK(occ >= 0 && occ < n_occ, "profile_clusters: occupation index out of range");
        ++t->occupation[occ];
      }
      if (ages) {
        VAE_CHECK(static_cast<size_t>(user) < d.users.age.size(), "profile_clusters: user without age");
        t->ages.push_back(d.users.age[user]);
      }
      if (genders) {
        VAE_CHECK(static_cast<size_t>(user) < d.users.gender.size(), "profile_clusters: user without gender");
        t->men += d.users.gender[user] == 'M';
        t->women += d.users.gender[user] == 'F';
      }
      const double r_u = static_cast<double>(d.ratings.indptr[user + 1] - d.ratings.indptr[user]);
      t->rating_rr += r_u * r_u;
      for (int64_t e = d.ratings.indptr[user]; e < d.ratings.indptr[user + 1]; ++e) {
        const int32_t item = d.ratings.indices[e];
        ++t->ratings;
        ++t->item_count[item];
        t->item_sum[item] += d.ratings.values[e];
        t->item_cr[item] += r_u;
      }
      if (!genres) continue;
      int64_t tags_u = 0;
      for (int g = 0; g < n_genres; ++g) {
        t->genre_count[g] += user_tags[g];
        tags_u += user_tags[g];
      }
      t->genre_total += tags_u;
      t->tag_users += tags_u > 0;
      t->tag_rr += static_cast<double>(tags_u) * tags_u;
      for (int g = 0; g < n_genres; ++g) {
        t->genre_cc[g] += static_cast<double>(user_tags[g]) * user_tags[g];
        t->genre_cr[g] += static_cast<double>(user_tags[g]) * tags_u;
      }
    }
  }

  std::vector<ClusterProfile> out(k);
  for (int c = 0; c < k; ++c) {
    const Tally& t = tally[c];
    ClusterProfile& p = out[c];
    p.cluster = c;
    p.size = t.users;
    p.ratings = t.ratings;
    p.all_ratings_per_user = all.users > 0 ? static_cast<double>(all.ratings) / static_cast<double>(all.users) : 0.0;
    p.other_users = all.users - t.users;
    p.min_test_users = std::max<int64_t>(2, o.min_test_users);
    p.fdr = o.fdr;
    p.tested = t.users >= p.min_test_users && p.other_users >= p.min_test_users;
    if (t.users == 0) continue;
    if (ages) {
      p.median_age = median(t.ages, bands);
      p.overall_median_age = median(all.ages, bands);
      p.age_bands = bands;
    }
    if (genders) {
      p.male_share = male_share(t.men, t.women);
      p.overall_male_share = male_share(all.men, all.women);
    }
    auto movie = [&](int32_t item) {
      MovieStat m;
      m.item = item;
      m.title = shown_title(d, item, d.has_titles() && static_cast<size_t>(item) < d.titles.size() ? d.titles[item] : std::string());
      m.count = t.item_count[item];
      m.mean_rating = m.count ? t.item_sum[item] / m.count : 0.0;
      m.share = t.ratings ? static_cast<double>(m.count) / t.ratings : 0.0;
      m.overall_share = static_cast<double>(all.item_count[item]) / all.ratings;
      m.lift = m.overall_share > 0 ? m.share / m.overall_share : 0.0;
      m.z = p.tested ? share_difference_z(t.movie(item), all.movie(item) - t.movie(item)) : 0.0;
      return m;
    };
    std::vector<MovieStat> rated;
    for (int32_t i = 0; i < n_items; ++i)
      if (t.item_count[i] > 0) rated.push_back(movie(i));
    p.top_movies = top(rated, o.top_movies, movie_by_count);
    for (const auto& m : rated)
      if (m.count >= o.min_movie_ratings) p.supported_movies.push_back(m);
    mark_distinctive(p.supported_movies, [](const MovieStat& m) { return m.count; }, o.min_movie_ratings, p.tested, o);
    std::sort(p.supported_movies.begin(), p.supported_movies.end(), by_z<MovieStat>(movie_by_lift));
    for (const auto& m : p.supported_movies)
      if (p.lift_movies.size() < static_cast<size_t>(o.top_lift) && m.distinctive) p.lift_movies.push_back(m);

    if (genres && t.genre_total > 0) {
      for (int g = 0; g < n_genres; ++g) {
        if (t.genre_count[g] == 0) continue;
        GenreStat s;
        s.genre = g;
        s.name = d.genre_names[g];
        s.count = t.genre_count[g];
        s.share = static_cast<double>(s.count) / t.genre_total;
        s.overall_share = static_cast<double>(all.genre_count[g]) / all.genre_total;
        s.lift = s.share / s.overall_share;
        s.z = p.tested ? share_difference_z(t.genre(g), all.genre(g) - t.genre(g)) : 0.0;
        p.genres.push_back(s);
      }
      mark_distinctive(p.genres, [](const GenreStat& g) { return g.count; }, o.min_genre_ratings, p.tested, o);
      std::sort(p.genres.begin(), p.genres.end(), by_count);
      for (size_t g = 0; g < p.genres.size() && g < static_cast<size_t>(o.top_genres); ++g) {
        GenreTopMovies gm;
        gm.genre = p.genres[g];
        std::vector<MovieStat> in_genre;
        for (const auto& m : rated)
          if (d.item_genres[m.item] >> gm.genre.genre & 1u) in_genre.push_back(m);
        gm.movies = top(in_genre, o.top_movies, movie_by_count);
        p.top_genres.push_back(std::move(gm));
      }
      std::vector<GenreStat> sup;
      for (const auto& s : p.genres)
        if (s.distinctive) sup.push_back(s);
      p.lift_genres = top(sup, o.top_lift, by_z<GenreStat>(genre_by_lift));
    }

    if (occupations) {
      std::vector<OccupationStat> occ;
      for (int j = 0; j < n_occ; ++j) {
        if (t.occupation[j] == 0) continue;
        OccupationStat s;
        s.occupation = j;
        s.name = d.users.occupation_names[j];
        s.users = t.occupation[j];
        s.share = static_cast<double>(s.users) / t.users;
        s.overall_share = static_cast<double>(all.occupation[j]) / all.users;
        s.lift = s.share / s.overall_share;
        s.z = p.tested ? share_difference_z(t.occupation_share(j), all.occupation_share(j) - t.occupation_share(j)) : 0.0;
        occ.push_back(s);
      }
      mark_distinctive(occ, [](const OccupationStat& s) { return s.users; }, o.min_occupation_users, p.tested, o);
      p.top_occupations = top(occ, o.top_occupations, occ_by_users);
      std::vector<OccupationStat> sup;
      for (const auto& s : occ)
        if (s.distinctive) sup.push_back(s);
      p.lift_occupations = top(sup, o.top_lift, by_z<OccupationStat>(occ_by_lift));
    }
  }
  return out;
}

std::string format_cluster_report(const ClusterProfile& p) {
  std::string s = "Cluster " + std::to_string(p.cluster) + " (" + std::to_string(p.size) +
                  (p.size == 1 ? " user)\n" : " users)\n");
  if (p.size == 0) return s + "  (empty)\n";
  auto join = [](const auto& v, auto fmt) {
    std::string out;
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + fmt(v[i]);
    return out;
  };
  auto movie_count = [](const MovieStat& m) { return m.title + " [" + std::to_string(m.count) + "]"; };
  if (!p.top_genres.empty()) {
    s += "  Top genres: " +
         join(p.top_genres, [](const GenreTopMovies& g) { return shown_name(g.genre.name) + " (" + percent_text(g.genre.share) + ")"; }) +
         "\n";
    for (const auto& g : p.top_genres) s += "    " + shown_name(g.genre.name) + ": " + join(g.movies, movie_count) + "\n";
  } else if (!p.top_movies.empty()) {
    s += "  Top movies: " + join(p.top_movies, movie_count) + "\n";
  }
  if (!p.top_occupations.empty())
    s += "  Top occupations: " +
         join(p.top_occupations, [](const OccupationStat& o) { return shown_name(o.name) + " " + percent_text(o.share); }) + "\n";
  if (p.male_share >= 0 || p.median_age >= 0) {
    auto age = [&](double a) { return age_text(a, p.age_bands); };
    std::string u;
    if (p.male_share >= 0) u += percent_text(p.male_share) + " men (all " + percent_text(p.overall_male_share) + ")";
    if (p.median_age >= 0)
      u += std::string(u.empty() ? "" : ", ") + "median age " + age(p.median_age) + " (all " + age(p.overall_median_age) + ")";
    s += "  Users: " + u + "\n";
  }
  // How much the members rate: shares of ratings (Top genres, Distinctive movies) lean towards
  // the popular films in a cluster that rates few films each.
  auto per_user = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, v < 10 ? "%.1f" : "%.0f", v);
    return std::string(b);
  };
  s += "  Ratings: " + per_user(static_cast<double>(p.ratings) / static_cast<double>(p.size)) + " per user (all " +
       per_user(p.all_ratings_per_user) + ")\n";
  if (p.other_users == 0) return s;  // one cluster: nothing to stand out against
  if (!p.tested)
    return s + "  Distinctive: not tested (" +
           (p.size < p.other_users ? std::to_string(p.size) + (p.size == 1 ? " user" : " users") + " in the cluster"
                                   : std::to_string(p.other_users) + (p.other_users == 1 ? " user" : " users") +
                                         " outside it") +
           "; the test needs " + std::to_string(p.min_test_users) + " on each side)\n";
  if (p.lift_genres.empty() && p.lift_movies.empty() && p.lift_occupations.empty())
    return s + "  Distinctive: nothing clearly over-represented against the other users\n";
  // [n]: the cluster's ratings of the movie, or its users with the occupation (the support).
  s += "  Distinctive (lift, strongest evidence first):\n";
  // The lines show the first few; the rest are in cluster_lift.csv and cluster_movies.csv.
  auto more = [](const auto& all, size_t shown) {
    size_t n = 0;
    for (const auto& x : all) n += x.distinctive;
    return n > shown ? " (+" + std::to_string(n - shown) + " more)" : std::string();
  };
  if (!p.lift_genres.empty())
    s += "    genres: " + join(p.lift_genres, [](const GenreStat& g) { return shown_name(g.name) + " " + times(g.lift); }) +
         more(p.genres, p.lift_genres.size()) + "\n";
  if (!p.lift_movies.empty())
    s += "    movies: " +
         join(p.lift_movies, [](const MovieStat& m) { return m.title + " " + times(m.lift) + " [" + std::to_string(m.count) + "]"; }) +
         more(p.supported_movies, p.lift_movies.size()) + "\n";
  if (!p.lift_occupations.empty())
    s += "    occupations: " +
         join(p.lift_occupations,
              [](const OccupationStat& o) { return shown_name(o.name) + " " + times(o.lift) + " [" + std::to_string(o.users) + "]"; }) +
         "\n";
  return s;
}

std::string format_cluster_report(const std::vector<ClusterProfile>& profiles) {
  std::string s;
  const ClusterProfile* tested = nullptr;
  bool occupations = false;  // data without user demographics (ml-latest) has none to explain
  for (size_t i = 0; i < profiles.size(); ++i) {
    s += (i ? "\n" : "") + format_cluster_report(profiles[i]);
    if (profiles[i].tested && profiles[i].size > 0) tested = &profiles[i];
    occupations = occupations || !profiles[i].top_occupations.empty();
  }
  // Once, under the clusters: what the numbers of the Distinctive lines are.
  if (tested) {
    char rate[32];
    std::snprintf(rate, sizeof rate, "%g%%", 100.0 * tested->fdr);
    s += std::string("\n(Distinctive: a larger share of the cluster's ratings, or users, than of the other users', ") +
         "tested with users as the units at a " + rate + " false-discovery rate; lift = the cluster's share / " +
         "everyone's; [n] = the cluster's ratings of the movie" +
         (occupations ? ", or its users with the occupation" : "") + ")\n";
  }
  return s;
}

std::string cluster_lift_csv(const std::vector<ClusterProfile>& profiles, const ProfileOptions& o) {
  std::string s = "cluster,genre,lift,share,overall_share,count,z,distinctive\n";
  char buf[128];
  for (const auto& p : profiles) {
    std::vector<GenreStat> g;
    for (const auto& x : p.genres)
      if (x.count >= o.min_genre_ratings) g.push_back(x);
    std::sort(g.begin(), g.end(), genre_by_lift);
    for (const auto& x : g) {
      std::snprintf(buf, sizeof buf, ",%.6f,%.6f,%.6f,%lld,%.4f,%d\n", x.lift, x.share, x.overall_share,
                    static_cast<long long>(x.count), x.z, x.distinctive ? 1 : 0);
      s += std::to_string(p.cluster) + "," + text::csv_field(x.name) + buf;
    }
  }
  return s;
}

std::string cluster_movies_csv(const Dataset& d, const std::vector<ClusterProfile>& profiles) {
  std::string s = "cluster,item_id,title,ratings,mean_rating,share,overall_share,lift,z,distinctive\n";
  char buf[160];
  for (const auto& p : profiles)
    for (const auto& m : p.supported_movies) {
      VAE_CHECK(m.item >= 0 && m.item < d.num_items(), "cluster_movies_csv: item index out of range");
      const std::string title = d.has_titles() && static_cast<size_t>(m.item) < d.titles.size() ? d.titles[m.item] : "";
      std::snprintf(buf, sizeof buf, ",%lld,%.4f,%.8f,%.8f,%.6f,%.4f,%d\n", static_cast<long long>(m.count),
                    m.mean_rating, m.share, m.overall_share, m.lift, m.z, m.distinctive ? 1 : 0);
      s += std::to_string(p.cluster) + "," + text::csv_field(d.item_ids[m.item]) + "," + text::csv_field(title) + buf;
    }
  return s;
}

std::vector<GenreCount> genre_counts(const Dataset& d, const std::vector<int32_t>& items) {
  std::vector<GenreCount> out;
  if (!d.has_genres()) return out;
  std::vector<int64_t> c(d.genre_names.size(), 0);
  for (int32_t item : items) {
    VAE_CHECK(item >= 0 && static_cast<size_t>(item) < d.item_genres.size(),
              "genre_counts: item index " + std::to_string(item) + " out of range");
    for (size_t g = 0; g < c.size(); ++g)
      if (d.item_genres[item] >> g & 1u) ++c[g];
  }
  for (size_t g = 0; g < c.size(); ++g)
    if (c[g] > 0) out.push_back({d.genre_names[g], c[g]});
  std::sort(out.begin(), out.end(), [](const GenreCount& a, const GenreCount& b) {
    return a.count != b.count ? a.count > b.count : a.genre < b.genre;
  });
  return out;
}

std::string format_genre_counts(const std::vector<GenreCount>& counts) {
  if (counts.empty()) return "Genre Counts: (no genre metadata)\n";
  std::string s = "Genre Counts:\n";
  for (const auto& g : counts) s += "  " + g.genre + ": " + std::to_string(g.count) + "\n";
  return s;
}

}  // namespace vae
