#include "analysis/profile.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/error.h"
#include "data/text_reader.h"

namespace vae {
namespace {

std::string pct(double share) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * share);
  return buf;
}

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

template <typename T>
bool distinctive(const T& s, int64_t support, int64_t min_support, const ProfileOptions& o) {
  return support >= min_support && s.lift > 1.0 && s.z >= o.min_z;
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

// ml-1m's age codes (its README): each is the lower bound of a band.
std::string age_band(double code) {
  const int c = static_cast<int>(code);
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
};

}  // namespace

double log_odds_z(int64_t a, int64_t n_in, int64_t c, int64_t n_out) {
  VAE_CHECK(a >= 0 && a <= n_in && c >= 0 && c <= n_out,
            "log_odds_z: counts " + std::to_string(a) + " of " + std::to_string(n_in) + " and " +
                std::to_string(c) + " of " + std::to_string(n_out) + " are not a 2x2 table");
  if (n_out == 0) return 0.0;
  const double x = a + 0.5, y = (n_in - a) + 0.5, u = c + 0.5, v = (n_out - c) + 0.5;
  return std::log((x * v) / (y * u)) / std::sqrt(1 / x + 1 / y + 1 / u + 1 / v);
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
    t.genre_count.assign(n_genres, 0);
    t.occupation.assign(n_occ, 0);
    return t;
  };
  std::vector<Tally> tally(k, fresh());
  Tally all = fresh();
  for (size_t u = 0; u < users.size(); ++u) {
    const int32_t user = users[u], label = labels[u];
    VAE_CHECK(user >= 0 && user < d.num_users(), "profile_clusters: user index out of range");
    VAE_CHECK(label >= 0 && label < k,
              "profile_clusters: label " + std::to_string(label) + " outside [0, k)");
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
      for (int64_t e = d.ratings.indptr[user]; e < d.ratings.indptr[user + 1]; ++e) {
        const int32_t item = d.ratings.indices[e];
        ++t->ratings;
        ++t->item_count[item];
        t->item_sum[item] += d.ratings.values[e];
        if (!genres) continue;
        for (int g = 0; g < n_genres; ++g)
          if (d.item_genres[item] >> g & 1u) {
            ++t->genre_count[g];
            ++t->genre_total;
          }
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
    p.other_users = all.users - t.users;
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
      m.z = log_odds_z(m.count, t.ratings, all.item_count[item] - m.count, all.ratings - t.ratings);
      return m;
    };
    std::vector<MovieStat> rated;
    for (int32_t i = 0; i < n_items; ++i)
      if (t.item_count[i] > 0) rated.push_back(movie(i));
    p.top_movies = top(rated, o.top_movies, movie_by_count);
    for (const auto& m : rated)
      if (m.count >= o.min_movie_ratings) p.supported_movies.push_back(m);
    std::sort(p.supported_movies.begin(), p.supported_movies.end(), by_z<MovieStat>(movie_by_lift));
    for (const auto& m : p.supported_movies)
      if (p.lift_movies.size() < static_cast<size_t>(o.top_lift) && distinctive(m, m.count, o.min_movie_ratings, o))
        p.lift_movies.push_back(m);

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
        s.z = log_odds_z(s.count, t.genre_total, all.genre_count[g] - s.count, all.genre_total - t.genre_total);
        p.genres.push_back(s);
      }
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
        if (distinctive(s, s.count, o.min_genre_ratings, o)) sup.push_back(s);
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
        s.z = log_odds_z(s.users, t.users, all.occupation[j] - s.users, all.users - t.users);
        occ.push_back(s);
      }
      p.top_occupations = top(occ, o.top_occupations, occ_by_users);
      std::vector<OccupationStat> sup;
      for (const auto& s : occ)
        if (distinctive(s, s.users, o.min_occupation_users, o)) sup.push_back(s);
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
         join(p.top_genres, [](const GenreTopMovies& g) { return shown_name(g.genre.name) + " (" + pct(g.genre.share) + ")"; }) +
         "\n";
    for (const auto& g : p.top_genres) s += "    " + shown_name(g.genre.name) + ": " + join(g.movies, movie_count) + "\n";
  } else if (!p.top_movies.empty()) {
    s += "  Top movies: " + join(p.top_movies, movie_count) + "\n";
  }
  if (!p.top_occupations.empty())
    s += "  Top occupations: " +
         join(p.top_occupations, [](const OccupationStat& o) { return shown_name(o.name) + " " + pct(o.share); }) + "\n";
  if (p.male_share >= 0 || p.median_age >= 0) {
    auto age = [&](double a) {
      if (p.age_bands) return age_band(a);
      char buf[32];
      std::snprintf(buf, sizeof buf, a == static_cast<int>(a) ? "%.0f" : "%.1f", a);
      return std::string(buf);
    };
    std::string u;
    if (p.male_share >= 0) u += pct(p.male_share) + " men (all " + pct(p.overall_male_share) + ")";
    if (p.median_age >= 0)
      u += std::string(u.empty() ? "" : ", ") + "median age " + age(p.median_age) + " (all " + age(p.overall_median_age) + ")";
    s += "  Users: " + u + "\n";
  }
  if (p.other_users == 0) return s;  // one cluster: nothing to stand out against
  if (p.lift_genres.empty() && p.lift_movies.empty() && p.lift_occupations.empty())
    return s + "  Distinctive: nothing clearly over-represented against the other users\n";
  // [n]: the cluster's ratings of the movie, or its users with the occupation (the support).
  s += "  Distinctive (lift, strongest evidence first):\n";
  if (!p.lift_genres.empty())
    s += "    genres: " + join(p.lift_genres, [](const GenreStat& g) { return shown_name(g.name) + " " + times(g.lift); }) + "\n";
  if (!p.lift_movies.empty())
    s += "    movies: " +
         join(p.lift_movies, [](const MovieStat& m) { return m.title + " " + times(m.lift) + " [" + std::to_string(m.count) + "]"; }) +
         "\n";
  if (!p.lift_occupations.empty())
    s += "    occupations: " +
         join(p.lift_occupations,
              [](const OccupationStat& o) { return shown_name(o.name) + " " + times(o.lift) + " [" + std::to_string(o.users) + "]"; }) +
         "\n";
  return s;
}

std::string format_cluster_report(const std::vector<ClusterProfile>& profiles) {
  std::string s;
  for (size_t i = 0; i < profiles.size(); ++i) s += (i ? "\n" : "") + format_cluster_report(profiles[i]);
  return s;
}

std::string cluster_lift_csv(const std::vector<ClusterProfile>& profiles, const ProfileOptions& o) {
  std::string s = "cluster,genre,lift,share,overall_share,count,z\n";
  char buf[128];
  for (const auto& p : profiles) {
    std::vector<GenreStat> g;
    for (const auto& x : p.genres)
      if (x.count >= o.min_genre_ratings) g.push_back(x);
    std::sort(g.begin(), g.end(), genre_by_lift);
    for (const auto& x : g) {
      std::snprintf(buf, sizeof buf, ",%.6f,%.6f,%.6f,%lld,%.4f\n", x.lift, x.share, x.overall_share,
                    static_cast<long long>(x.count), x.z);
      s += std::to_string(p.cluster) + "," + text::csv_field(x.name) + buf;
    }
  }
  return s;
}

std::string cluster_movies_csv(const Dataset& d, const std::vector<ClusterProfile>& profiles) {
  std::string s = "cluster,item_id,title,ratings,mean_rating,share,overall_share,lift,z\n";
  char buf[160];
  for (const auto& p : profiles)
    for (const auto& m : p.supported_movies) {
      VAE_CHECK(m.item >= 0 && m.item < d.num_items(), "cluster_movies_csv: item index out of range");
      const std::string title = d.has_titles() && static_cast<size_t>(m.item) < d.titles.size() ? d.titles[m.item] : "";
      std::snprintf(buf, sizeof buf, ",%lld,%.4f,%.8f,%.8f,%.6f,%.4f\n", static_cast<long long>(m.count), m.mean_rating,
                    m.share, m.overall_share, m.lift, m.z);
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
