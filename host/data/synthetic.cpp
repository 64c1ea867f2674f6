// Synthetic MovieLens-shaped data with planted taste groups, deterministic from a seed.
//
// Planted structure (the knobs are the constants below):
//  * each item has 1–3 of the 18 MovieLens genres (flattened ml-100k genre frequencies) and a
//    Zipf popularity over a random item ranking;
//  * each taste group favours one common genre (Drama, Comedy, Action, Thriller, Romance,
//    Adventure) plus 1–2 rarer ones, so with ≤ 6 groups the favoured genre sets are disjoint;
//  * a user of group g draws each rated item from the group's favoured items (items with any
//    favoured genre, popularity-weighted) with probability kFavouredShare, otherwise from all
//    items by popularity; draws repeat until the item is new to the user;
//  * the rating is round(kRatingBase + kAffinityWeight·affinity + quality + user bias + noise)
//    clamped to 1..5, affinity = share of the item's genres the group favours;
//  * user activity is kMinPerUser plus a (shifted) log-normal share of the rest, at most half
//    the catalogue per user, allocated so the total is exactly `ratings`;
//  * age, gender and occupation mixes depend on the group.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "core/error.h"
#include "core/philox.h"
#include "data/dataset.h"
#include "data/shuffle.h"
#include "train/memory_plan.h"

namespace vae {

namespace {

constexpr int kNumGenres = 18;
const char* const kGenres[kNumGenres] = {
    "Action", "Adventure", "Animation", "Children's", "Comedy",  "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",   "Musical",
    "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"};
// Square roots of the ml-100k genre counts: keeps Drama/Comedy most common without leaving the
// rare genres so small that a group favouring them runs out of items.
const double kGenreWeight[kNumGenres] = {15.8, 11.6, 6.5, 11.0, 22.5, 10.4, 7.1, 26.9, 4.7,
                                         4.9,  9.6,  7.5, 7.8,  15.7, 10.0, 15.8, 8.4, 5.2};
// The six most common genres: each group takes one of them as its main taste.
const int kMajorGenres[6] = {7, 4, 0, 15, 13, 1};

constexpr int kNumOccupations = 21;
const char* const kOccupations[kNumOccupations] = {
    "administrator", "artist",     "doctor",    "educator",  "engineer", "entertainment",
    "executive",     "healthcare", "homemaker", "lawyer",    "librarian", "marketing",
    "none",          "other",      "programmer", "retired",  "salesman", "scientist",
    "student",       "technician", "writer"};
// ml-100k occupation counts: the common background mix every group shares.
const double kOccupationWeight[kNumOccupations] = {79, 28, 7,   95, 67, 18, 32, 16, 7,  12, 51,
                                                   26, 9,  105, 66, 14, 12, 31, 196, 27, 45};
constexpr double kOccupationBoost = 150.0;  // added to each of a group's 3 typical occupations

constexpr int64_t kMinPerUser = 20;      // ml-100k's minimum ratings per user
constexpr double kActivitySigma = 0.85;  // log-normal spread of ratings per user above the min
constexpr double kActivityShift = 0.15;
constexpr double kFavouredShare = 0.8;   // chance a draw comes from the group's favoured items
constexpr double kZipfExponent = 1.0;
// Zipf–Mandelbrot offset as a share of the catalogue: flattens the head so the top film is not
// rated by nearly everyone.
constexpr double kZipfOffset = 0.005;
constexpr double kRatingBase = 2.95;
constexpr double kAffinityWeight = 1.1;
constexpr double kQualitySigma = 0.5;
constexpr double kPopularityQuality = 0.3;  // popular items rate a little higher
constexpr double kUserBiasSigma = 0.35;
constexpr double kNoiseSigma = 0.85;

const char* const kAdjectives[] = {
    "Midnight", "Silent",  "Broken",  "Golden",   "Crimson", "Hidden",  "Last",     "Lonely",
    "Savage",   "Electric", "Frozen", "Burning",  "Distant", "Wild",    "Secret",   "Lost",
    "Dark",     "Bright",  "Eternal", "Fallen",   "Hollow",  "Iron",    "Velvet",   "Silver",
    "Scarlet",  "Quiet",   "Restless", "Wicked",  "Endless", "Northern", "Southern", "Little",
    "Blue",     "Desperate", "Final", "Forgotten", "Sudden", "Strange", "Perfect",  "Sweet",
    "Cold",     "Deadly",  "Brave",   "Dancing",  "Shattered", "Rising", "Painted", "Twisted"};
const char* const kNouns[] = {
    "Harbor", "River",  "Highway", "Garden",  "Kingdom", "Shadow",  "Summer",  "Winter",
    "Empire", "Island", "Horizon", "Station", "Frontier", "Mirror", "Storm",   "Heart",
    "Valley", "Circus", "Castle",  "Canyon",  "Desert",  "Voyage",  "Promise", "Dream",
    "Planet", "Ocean",  "Stranger", "Witness", "Partner", "Angel",  "Outlaw",  "Detective",
    "City",   "Moon",   "Sun",     "Road",    "Fire",    "Rain",    "Forest",  "Bridge",
    "Secret", "Mountain", "Legend", "Journey", "Night",  "Paradise", "Game",   "Orchard"};
constexpr int kNumAdjectives = sizeof(kAdjectives) / sizeof(kAdjectives[0]);
constexpr int kNumNouns = sizeof(kNouns) / sizeof(kNouns[0]);

// Sub-streams of RngStream::synthetic; per-user streams start at kUserStreamBase.
enum : uint64_t {
  kStreamItems = 0,
  kStreamGroups = 1,
  kStreamRanking = 2,
  kStreamTitles = 3,
  kStreamUsers = 4,
  kUserStreamBase = uint64_t{1} << 40,
  kTimeStreamBase = uint64_t{2} << 40,  // per-user rating times, apart so ratings stay as they were
};

uint64_t stream_of(uint64_t sub) { return rng_stream(RngStream::synthetic, sub); }

double normal(PhiloxSeq& rng) {
  const double u1 = rng.uniform(), u2 = rng.uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// Index drawn from non-negative weights (linear scan: only used for short lists).
int draw_weighted(PhiloxSeq& rng, const double* w, int n) {
  double total = 0;
  for (int i = 0; i < n; ++i) total += w[i];
  double x = rng.uniform() * total;
  for (int i = 0; i < n; ++i) {
    if (w[i] <= 0) continue;
    if (x <= w[i]) return i;
    x -= w[i];
  }
  for (int i = n - 1; i >= 0; --i)
    if (w[i] > 0) return i;
  return 0;
}

// Walker/Vose alias table over `ids` with the given weights: O(1) draws, two words each.
struct AliasTable {
  std::vector<int32_t> ids;
  std::vector<uint32_t> threshold;  // keep column c when the coin word < threshold[c]
  std::vector<int32_t> alias;       // otherwise take alias[c]
  double total = 0;

  void build(std::vector<int32_t> items, const std::vector<double>& weight_of_item) {
    ids = std::move(items);
    const size_t n = ids.size();
    threshold.assign(n, UINT32_MAX);
    alias.resize(n);
    std::iota(alias.begin(), alias.end(), 0);
    total = 0;
    for (int32_t id : ids) total += weight_of_item[id];
    if (n == 0) return;
    std::vector<double> p(n);
    for (size_t c = 0; c < n; ++c) p[c] = weight_of_item[ids[c]] * static_cast<double>(n) / total;
    std::vector<int32_t> small, large;
    for (size_t c = 0; c < n; ++c) (p[c] < 1.0 ? small : large).push_back(static_cast<int32_t>(c));
    while (!small.empty() && !large.empty()) {
      const int32_t s = small.back(), l = large.back();
      small.pop_back();
      threshold[s] = static_cast<uint32_t>(std::min(p[s] * 4294967296.0, 4294967295.0));
      alias[s] = l;
      p[l] -= 1.0 - p[s];
      if (p[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // Leftovers are 1 up to rounding: always keep themselves (threshold stays UINT32_MAX).
  }
  int32_t draw(PhiloxSeq& rng) const {
    const uint32_t c = static_cast<uint32_t>((static_cast<uint64_t>(rng.u32()) * ids.size()) >> 32);
    return ids[rng.u32() < threshold[c] ? c : alias[c]];
  }
  bool empty() const { return ids.empty(); }
};

struct Group {
  uint32_t genre_mask = 0;
  AliasTable favoured;
  double mean_age = 30;
  double male_share = 0.7;
  double occupation_weight[kNumOccupations];
};

// Ratings per user: `base` each, the rest split in proportion to `weight` with at most `cap`
// extra per user (water-filling), rounded by largest remainder so the total is exact.
std::vector<int64_t> allocate_activity(const std::vector<double>& weight, int64_t total,
                                       int64_t base, int64_t cap) {
  const size_t n = weight.size();
  std::vector<int64_t> out(n, base);
  int64_t remaining = total - base * static_cast<int64_t>(n);
  std::vector<char> capped(n, 0);
  std::vector<double> share(n, 0.0);
  for (;;) {
    double sum = 0;
    for (size_t u = 0; u < n; ++u)
      if (!capped[u]) sum += weight[u];
    bool changed = false;
    for (size_t u = 0; u < n; ++u) {
      if (capped[u]) continue;
      share[u] = sum > 0 ? static_cast<double>(remaining) * weight[u] / sum : 0.0;
      if (share[u] >= static_cast<double>(cap)) {
        capped[u] = 1;
        out[u] += cap;
        remaining -= cap;
        changed = true;
      }
    }
    if (!changed) break;
  }
  std::vector<std::pair<double, int32_t>> frac;
  int64_t given = 0;
  for (size_t u = 0; u < n; ++u) {
    if (capped[u]) continue;
    const int64_t whole = std::min(cap, static_cast<int64_t>(std::floor(share[u])));
    out[u] += whole;
    given += whole;
    frac.emplace_back(share[u] - static_cast<double>(whole), static_cast<int32_t>(u));
  }
  // Ties broken by user index so the result never depends on the sort implementation.
  std::sort(frac.begin(), frac.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  int64_t left = remaining - given;
  for (size_t k = 0; left > 0 && k < frac.size(); ++k) {
    const int32_t u = frac[k].second;
    if (out[u] - base < cap) {
      ++out[u];
      --left;
    }
  }
  // Rounding can leave a few over when almost everyone is capped: give them to anyone with room.
  for (size_t u = 0; left > 0 && u < n; ++u) {
    const int64_t room = base + cap - out[u];
    const int64_t add = std::min(room, left);
    out[u] += add;
    left -= add;
  }
  return out;
}

// Titles handed out so far, as word-index keys rather than strings. Every title is
// "<stem> (<year>)" or, once the attempts below fail, the sequel "<stem> N (<year>)"; the words
// hold no digits and no spaces and the four stem forms differ in their fixed words, so a title's
// text is fixed by (year, form, the words the form uses) and the other way round. Checking a bit
// instead of hashing a string keeps the 16 attempts per title cheap once a year's combinations
// run out (at millions of items most titles take all 16). Sequels of one (stem, year) are only
// ever made below, in order N = 2, 3, …, so `next_part` holding the next N gives exactly the
// title that scanning N = 2, 3, … for a free one did (a scan that made generation quadratic in
// items).
constexpr int kLastYear = 1998;  // titles are from kLastYear - kMaxAge … kLastYear
constexpr int kMaxAge = 78;
constexpr int kFirstYear = kLastYear - kMaxAge;

class TitleSet {
 public:
  static constexpr uint64_t kKeysPerYear = 4ull * kNumNouns * kNumAdjectives * kNumNouns;
  // Marks the title as used; false when it already was.
  bool insert(int year, uint64_t key) {
    const size_t y = static_cast<size_t>(year - kFirstYear);
    if (y >= year_bits_.size()) year_bits_.resize(y + 1);
    std::vector<uint64_t>& bits = year_bits_[y];
    if (bits.empty()) bits.assign((kKeysPerYear + 63) / 64, 0);
    const uint64_t mask = uint64_t{1} << (key % 64);
    if (bits[key / 64] & mask) return false;
    bits[key / 64] |= mask;
    return true;
  }
  // The next free sequel number of a stem in a year (2 the first time).
  int next_part(int year, uint64_t key) {
    return next_part_.try_emplace(key_of(year, key), 2).first->second++;
  }

 private:
  static uint64_t key_of(int year, uint64_t key) {
    return static_cast<uint64_t>(year - kFirstYear) * kKeysPerYear + key;
  }
  std::vector<std::vector<uint64_t>> year_bits_;  // by year - kFirstYear
  std::unordered_map<uint64_t, int> next_part_;
};

std::string make_title(PhiloxSeq& rng, int year, TitleSet& used) {
  VAE_CHECK(year >= kFirstYear && year <= kLastYear, "make_title: year out of range");
  std::string stem;
  uint64_t key = 0;
  for (int attempt = 0; attempt < 16; ++attempt) {
    const uint32_t ai = rng.below(kNumAdjectives);
    const uint32_t n1i = rng.below(kNumNouns);
    const uint32_t n2i = rng.below(kNumNouns);
    const uint32_t form = rng.below(4);
    // (form, first, second, third word index), unused words 0.
    auto make_key = [form](uint64_t w1, uint64_t w2, uint64_t w3) {
      return ((form * kNumNouns + w1) * kNumAdjectives + w2) * kNumNouns + w3;
    };
    switch (form) {
      case 0: key = make_key(n1i, ai, 0); break;
      case 1: key = make_key(n1i, ai, 0); break;
      case 2: key = make_key(n1i, ai, n2i); break;
      default: key = make_key(n1i, 0, n2i); break;
    }
    if (!used.insert(year, key)) continue;
    const char* a = kAdjectives[ai];
    const char* n1 = kNouns[n1i];
    const char* n2 = kNouns[n2i];
    switch (form) {
      case 0: stem = std::string(a) + " " + n1; break;
      case 1: stem = std::string("The ") + a + " " + n1; break;
      case 2: stem = std::string(n1) + " of the " + a + " " + n2; break;
      default: stem = std::string("The ") + n1 + " and the " + n2; break;
    }
    return stem + " (" + std::to_string(year) + ")";
  }
  // Word combinations exhausted for this year: number the last attempt's stem like a sequel.
  const uint64_t form = key / (uint64_t{kNumNouns} * kNumAdjectives * kNumNouns);
  const uint64_t n1i = key / (uint64_t{kNumAdjectives} * kNumNouns) % kNumNouns;
  const uint64_t ai = key / kNumNouns % kNumAdjectives;
  const uint64_t n2i = key % kNumNouns;
  switch (form) {
    case 0: stem = std::string(kAdjectives[ai]) + " " + kNouns[n1i]; break;
    case 1: stem = std::string("The ") + kAdjectives[ai] + " " + kNouns[n1i]; break;
    case 2: stem = std::string(kNouns[n1i]) + " of the " + kAdjectives[ai] + " " + kNouns[n2i]; break;
    default: stem = std::string("The ") + kNouns[n1i] + " and the " + kNouns[n2i]; break;
  }
  return stem + " " + std::to_string(used.next_part(year, key)) + " (" + std::to_string(year) + ")";
}

std::string canonical_spec(const SyntheticSpec& s) {
  return "synthetic:users=" + std::to_string(s.users) + ",items=" + std::to_string(s.items) +
         ",ratings=" + std::to_string(s.ratings) + ",groups=" + std::to_string(s.groups) +
         ",seed=" + std::to_string(s.seed);
}

void check_spec(const SyntheticSpec& s) {
  constexpr int64_t kMaxDim = INT32_MAX;
  if (s.users < 1 || s.users > kMaxDim)
    throw UsageError("synthetic: users must be an integer from 1 to " + std::to_string(kMaxDim) +
                     ", got " + std::to_string(s.users));
  if (s.items < 1 || s.items > kMaxDim)
    throw UsageError("synthetic: items must be an integer from 1 to " + std::to_string(kMaxDim) +
                     ", got " + std::to_string(s.items));
  if (s.ratings < 1)
    throw UsageError("synthetic: ratings must be a positive integer, got " +
                     std::to_string(s.ratings));
  // Real MovieLens users have rated at least 20 items; a user with none would be an empty row
  // every protocol has to skip (and the heldout protocol may be left with no users at all).
  if (s.ratings < s.users)
    throw UsageError("synthetic: ratings=" + std::to_string(s.ratings) + " is fewer than users=" +
                     std::to_string(s.users) + ": every user needs at least one rating");
  if (s.ratings > s.users * s.items)
    throw UsageError("synthetic: ratings=" + std::to_string(s.ratings) + " exceeds users*items=" +
                     std::to_string(s.users * s.items));
  if (s.groups < 1 || s.groups > s.users)
    throw UsageError("synthetic: groups must be an integer from 1 to users (" +
                     std::to_string(s.users) + "), got " + std::to_string(s.groups));
}

}  // namespace

SyntheticSpec parse_synthetic_spec(const std::string& spec) {
  SyntheticSpec s;
  const std::string head = "synthetic";
  if (spec.compare(0, head.size(), head) != 0 ||
      (spec.size() > head.size() && spec[head.size()] != ':'))
    throw UsageError("synthetic spec must be 'synthetic' or 'synthetic:key=value,...', got '" +
                     spec + "'");
  if (spec.size() <= head.size() + 1) return s;
  const std::string body = spec.substr(head.size() + 1);
  std::vector<std::string> seen;
  size_t pos = 0;
  while (pos <= body.size()) {
    size_t end = body.find(',', pos);
    if (end == std::string::npos) end = body.size();
    const std::string item = body.substr(pos, end - pos);
    pos = end + 1;
    const size_t eq = item.find('=');
    if (item.empty() || eq == std::string::npos || eq == 0)
      throw UsageError("synthetic spec: expected key=value, got '" + item + "' in '" + spec + "'");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key != "users" && key != "items" && key != "ratings" && key != "groups" && key != "seed")
      throw UsageError("synthetic spec: unknown key '" + key +
                       "' (known: users, items, ratings, groups, seed)");
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      throw UsageError("synthetic spec: key '" + key + "' given twice");
    seen.push_back(key);
    // seed=0 is an ordinary seed; every size must be positive. One message for every way a
    // value can miss that ("abc", "-5", "0", "1.5", too many digits).
    const bool is_seed = key == "seed";
    const std::string wanted = "synthetic spec: " + key + " must be a " +
                               (is_seed ? "non-negative" : "positive") + " integer";
    const std::string got = value.size() > 40 ? value.substr(0, 40) + "..." : value;
    if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) {
      const bool negative = value.size() > 1 && value[0] == '-' &&
                            value.find_first_not_of("0123456789", 1) == std::string::npos;
      throw UsageError(wanted + ", got " + (negative ? got : "'" + got + "'"));
    }
    const size_t digits = value.size() - std::min(value.find_first_not_of('0'), value.size());
    if (digits > 18)
      throw UsageError(wanted + " below 10^18, got " + got);
    const int64_t v = std::stoll(value);
    if (v == 0 && !is_seed) throw UsageError(wanted + ", got " + value);
    if (key == "users") s.users = v;
    if (key == "items") s.items = v;
    if (key == "ratings") s.ratings = v;
    if (key == "groups") {
      if (v > INT32_MAX) throw UsageError("synthetic spec: groups must be an integer from 1 to users, got " + value);
      s.groups = static_cast<int>(v);
    }
    if (key == "seed") s.seed = static_cast<uint64_t>(v);
    if (end == body.size()) break;
  }
  // The default of 6 groups adapts to fewer users (each group needs one); a given value does not.
  if (std::find(seen.begin(), seen.end(), "groups") == seen.end() && s.users < s.groups)
    s.groups = static_cast<int>(s.users);
  check_spec(s);
  return s;
}

namespace {

// Host bytes the generator holds at its peak, roughly (double: the product of two 31-bit sizes
// overflows nothing here): per user its attributes, activity, bias and row bounds; per item its
// genres, rank, popularity, quality, title and a share of the title set; per (group, item) an
// alias table entry at most; per rating an index, a value and a time.
double synthetic_bytes(const SyntheticSpec& s) {
  return 64.0 * static_cast<double>(s.users) + 160.0 * static_cast<double>(s.items) +
         12.0 * static_cast<double>(s.groups) * static_cast<double>(s.items) +
         16.0 * static_cast<double>(s.ratings);
}

}  // namespace

Dataset make_synthetic(const SyntheticSpec& spec) {
  check_spec(spec);
  // Sizes within the spec's bounds can still want terabytes: refused here with a message rather
  // than left to the kernel's OOM killer (or to hours of generating titles).
  const int64_t avail = host_available_bytes();
  const double need = synthetic_bytes(spec);
  if (avail > 0 && need > static_cast<double>(avail)) {
    const auto gib = [](double b) { return std::to_string(static_cast<int64_t>(std::ceil(b / (1 << 30)))); };
    throw UsageError("synthetic: " + canonical_spec(spec) + " needs about " + gib(need) +
                     " GiB of host memory to generate, more than the " + gib(static_cast<double>(avail)) +
                     " GiB available: ask for fewer users, items, ratings or groups");
  }
  const int64_t n_users = spec.users, n_items = spec.items;
  const int n_groups = spec.groups;
  const uint64_t seed = spec.seed;

  Dataset d;
  d.name = "synthetic";
  d.format = "synthetic";
  d.source = canonical_spec(spec);
  d.rating_min = 1.0f;
  d.rating_max = 5.0f;
  d.genre_names.assign(kGenres, kGenres + kNumGenres);

  // ---- items: genres, popularity, quality, titles ----
  d.item_genres.assign(n_items, 0);
  {
    PhiloxSeq rng(seed, stream_of(kStreamItems));
    const double count_weight[3] = {0.5, 0.35, 0.15};
    for (int64_t i = 0; i < n_items; ++i) {
      const int k = 1 + draw_weighted(rng, count_weight, 3);
      double w[kNumGenres];
      std::copy(kGenreWeight, kGenreWeight + kNumGenres, w);
      uint32_t mask = 0;
      for (int j = 0; j < k; ++j) {
        const int g = draw_weighted(rng, w, kNumGenres);
        mask |= 1u << g;
        w[g] = 0;
      }
      d.item_genres[i] = mask;
    }
  }
  std::vector<int32_t> rank(n_items);
  {
    std::vector<int32_t> order(n_items);
    std::iota(order.begin(), order.end(), 0);
    philox_shuffle(order, seed, stream_of(kStreamRanking));
    for (int64_t r = 0; r < n_items; ++r) rank[order[r]] = static_cast<int32_t>(r);
  }
  std::vector<double> popularity(n_items);
  const double zipf_offset = 1.0 + kZipfOffset * static_cast<double>(n_items);
  for (int64_t i = 0; i < n_items; ++i)
    popularity[i] = std::pow(static_cast<double>(rank[i]) + zipf_offset, -kZipfExponent);
  std::vector<double> quality(n_items);
  d.titles.resize(n_items);
  {
    PhiloxSeq rng(seed, stream_of(kStreamTitles));
    TitleSet used;
    for (int64_t i = 0; i < n_items; ++i) {
      const double top = 1.0 - 2.0 * static_cast<double>(rank[i]) / static_cast<double>(n_items);
      quality[i] = kQualitySigma * normal(rng) + kPopularityQuality * top;
      // Mostly recent films, like ml-100k (median year ~1995).
      const int age = static_cast<int>(
          std::min(static_cast<double>(kMaxAge), std::floor(-7.0 * std::log(rng.uniform()))));
      d.titles[i] = make_title(rng, kLastYear - age, used);
    }
  }

  // ---- groups: favoured genres, user attribute mixes ----
  std::vector<Group> groups(n_groups);
  {
    PhiloxSeq rng(seed, stream_of(kStreamGroups));
    std::vector<int32_t> majors, minors;
    for (int g = 0; g < n_groups; ++g) {
      if (g % 6 == 0) {  // a fresh round of genre assignments every 6 groups
        majors.assign(kMajorGenres, kMajorGenres + 6);
        minors.clear();
        for (int x = 0; x < kNumGenres; ++x)
          if (std::find(majors.begin(), majors.end(), x) == majors.end()) minors.push_back(x);
        philox_shuffle(majors, seed, stream_of(kStreamGroups + 16 * (1 + g / 6)));
        philox_shuffle(minors, seed, stream_of(kStreamGroups + 16 * (1 + g / 6) + 8));
      }
      const int p = g % 6;
      const int n_minor = 1 + static_cast<int>(rng.below(2));
      uint32_t mask = 1u << majors[p];
      for (int j = 0; j < n_minor; ++j) mask |= 1u << minors[2 * p + j];
      Group& gr = groups[g];
      gr.genre_mask = mask;
      gr.mean_age = 22.0 + 22.0 * rng.uniform();
      gr.male_share = 0.5 + 0.35 * rng.uniform();
      std::copy(kOccupationWeight, kOccupationWeight + kNumOccupations, gr.occupation_weight);
      double boost[kNumOccupations] = {};
      for (int j = 0; j < 3; ++j) {
        int o;
        do o = static_cast<int>(rng.below(kNumOccupations));
        while (boost[o] > 0);
        boost[o] = kOccupationBoost;
        gr.occupation_weight[o] += kOccupationBoost;
      }
      std::vector<int32_t> fav;
      for (int64_t i = 0; i < n_items; ++i)
        if (d.item_genres[i] & mask) fav.push_back(static_cast<int32_t>(i));
      gr.favoured.build(std::move(fav), popularity);
    }
  }
  AliasTable everyone;
  {
    std::vector<int32_t> all(n_items);
    std::iota(all.begin(), all.end(), 0);
    everyone.build(std::move(all), popularity);
  }

  // ---- users: group, attributes, activity ----
  d.planted_group.resize(n_users);
  d.users.age.resize(n_users);
  d.users.gender.resize(n_users);
  d.users.occupation.resize(n_users);
  d.users.occupation_names.assign(kOccupations, kOccupations + kNumOccupations);
  std::vector<double> activity(n_users), user_bias(n_users);
  {
    PhiloxSeq rng(seed, stream_of(kStreamUsers));
    for (int64_t u = 0; u < n_users; ++u) {
      const int g = static_cast<int>(rng.below(static_cast<uint32_t>(n_groups)));
      const Group& gr = groups[g];
      d.planted_group[u] = g;
      d.users.age[u] = static_cast<int>(
          std::lround(std::clamp(gr.mean_age + 9.0 * normal(rng), 7.0, 73.0)));
      d.users.gender[u] = rng.uniform() <= gr.male_share ? 'M' : 'F';
      d.users.occupation[u] = draw_weighted(rng, gr.occupation_weight, kNumOccupations);
      // Shifted so the lightest users sit at exactly kMinPerUser, as in ml-100k.
      activity[u] = std::max(0.0, std::exp(kActivitySigma * normal(rng)) - kActivityShift);
      user_bias[u] = kUserBiasSigma * normal(rng);
    }
  }
  const int64_t base = std::min({kMinPerUser, spec.ratings / n_users, n_items});
  // Nobody rates more than half the catalogue (ml-100k's heaviest user: 44 %) unless the
  // requested density needs it.
  const int64_t per_user_cap = std::min(
      n_items, std::max(n_items / 2, 2 * ((spec.ratings + n_users - 1) / n_users)));
  const std::vector<int64_t> per_user =
      allocate_activity(activity, spec.ratings, base, std::max<int64_t>(0, per_user_cap - base));

  // ---- ratings: each user's distinct items, CSR built row by row ----
  Csr& m = d.ratings;
  m.rows = n_users;
  m.cols = n_items;
  m.indptr.assign(n_users + 1, 0);
  for (int64_t u = 0; u < n_users; ++u) m.indptr[u + 1] = m.indptr[u] + per_user[u];
  m.indices.resize(m.indptr.back());
  m.values.resize(m.indptr.back());
  std::vector<uint8_t> taken(n_items, 0);  // reused across users; cleared after each row
  const uint32_t favoured_cut = static_cast<uint32_t>(kFavouredShare * 4294967296.0);
  std::vector<std::pair<double, int32_t>> keys;
  for (int64_t u = 0; u < n_users; ++u) {
    const Group& gr = groups[d.planted_group[u]];
    PhiloxSeq rng(seed, stream_of(kUserStreamBase + static_cast<uint64_t>(u)));
    int32_t* row = m.indices.data() + m.indptr[u];
    const int64_t need = per_user[u];
    int64_t have = 0;
    // Rejection keeps popularity-weighted sampling without replacement; when a user must take
    // most of the likely items, finish with exponential keys (Efraimidis–Spirakis) instead.
    const int64_t max_draws = 30 * need + 1000;
    for (int64_t draws = 0; have < need && draws < max_draws; ++draws) {
      const bool fav = rng.u32() < favoured_cut && !gr.favoured.empty();
      const int32_t item = fav ? gr.favoured.draw(rng) : everyone.draw(rng);
      if (taken[item]) continue;
      taken[item] = 1;
      row[have++] = item;
    }
    if (have < need) {
      const double fav_total = gr.favoured.total, all_total = everyone.total;
      keys.clear();
      for (int64_t i = 0; i < n_items; ++i) {
        if (taken[i]) continue;
        double w = (1.0 - kFavouredShare) * popularity[i] / all_total;
        if ((d.item_genres[i] & gr.genre_mask) && fav_total > 0)
          w += kFavouredShare * popularity[i] / fav_total;
        keys.emplace_back(std::log(rng.uniform()) / w, static_cast<int32_t>(i));
      }
      const size_t k = static_cast<size_t>(need - have);
      std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(),
                       [](const auto& a, const auto& b) {
                         return a.first != b.first ? a.first > b.first : a.second < b.second;
                       });
      for (size_t j = 0; j < k; ++j) {
        taken[keys[j].second] = 1;
        row[have++] = keys[j].second;
      }
    }
    std::sort(row, row + need);
    float* val = m.values.data() + m.indptr[u];
    for (int64_t k = 0; k < need; ++k) {
      const int32_t i = row[k];
      taken[i] = 0;
      const uint32_t g = d.item_genres[i];
      const double affinity = static_cast<double>(__builtin_popcount(g & gr.genre_mask)) /
                              static_cast<double>(__builtin_popcount(g));
      const double pref = kRatingBase + kAffinityWeight * affinity + quality[i] + user_bias[u] +
                          kNoiseSigma * normal(rng);
      val[k] = static_cast<float>(std::clamp(std::lround(pref), 1L, 5L));
    }
  }

  // Rating times, for the temporal protocols: each user starts on a day within ml-100k's seven
  // months (from 1997-09-20) and rates their items in a random order, in sessions of ratings
  // minutes apart. One rating in eight starts a new session, the sessions starting within 0 to
  // 119 days of the first, so a global cut-off finds users on both sides of it. Their own stream, so the
  // ratings above are the same with or without them.
  d.rating_times.resize(m.indices.size());
  {
    constexpr int64_t kStart = 874724710, kSpanDays = 214, kActiveDays = 120;
    std::vector<std::pair<uint32_t, int64_t>> order;
    for (int64_t u = 0; u < n_users; ++u) {
      PhiloxSeq rng(seed, stream_of(kTimeStreamBase + static_cast<uint64_t>(u)));
      int64_t t = kStart + static_cast<int64_t>(rng.u32() % kSpanDays) * 86400 + rng.u32() % 86400;
      const int64_t active_days = rng.u32() % kActiveDays;
      const int64_t sessions = std::max<int64_t>(1, (m.indptr[u + 1] - m.indptr[u]) / 8);
      const uint64_t gap_range = static_cast<uint64_t>(2 * active_days * 86400 / sessions + 1);  // mean: span / sessions
      const int64_t last_session = t + active_days * 86400;
      order.clear();
      for (int64_t k = m.indptr[u]; k < m.indptr[u + 1]; ++k) order.emplace_back(rng.u32(), k);
      std::sort(order.begin(), order.end());  // ties (1 in 2^32) fall back to the CSR position
      for (const auto& o : order) {
        t += 30 + rng.u32() % 600;
        const uint32_t session = rng.u32();
        const auto gap = static_cast<int64_t>((session >> 3) % gap_range);
        if (session % 8 == 0 && t + gap <= last_session) t += gap;
        d.rating_times[o.second] = t;
      }
    }
  }

  d.user_ids.resize(n_users);
  for (int64_t u = 0; u < n_users; ++u) d.user_ids[u] = std::to_string(u + 1);
  d.item_ids.resize(n_items);
  for (int64_t i = 0; i < n_items; ++i) d.item_ids[i] = std::to_string(i + 1);
  m.validate();
  return d;
}

}  // namespace vae
