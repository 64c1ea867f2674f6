// MovieLens (100K, 1M/10M, latest/20M/25M) and generic CSV loaders.
//
// Policies (see data/README.md):
// - Dense ids: sorted by numeric value when every id of a kind is a canonical integer (so
//   ml-100k user "1" is dense 0), else first-appearance order. Original id text is kept.
// - Only rated items and users become rows/columns; metadata files supply titles, genres and
//   user attributes, and a rated id missing from them is an error.
// - Genres: ml-100k takes u.genre (index order); ml-1m/10m a fixed list of the 18 ml-1m genres
//   ("IMAX" appended when present, an unknown name is an error); ml-latest the fixed list of
//   the 19 current MovieLens genres plus any other name found on a rated movie, in first-seen
//   order; generic item files the union over rated items in first-seen order. At most 32
//   genres (item_genres is a bit mask).
// - Blank lines are skipped, CRLF is accepted, a duplicate (user, item) pair is an error.
// - MovieLens user, item and movie ids (ratings and metadata files) are positive integers; "007"
//   is the id 7, while 0 and negative ids are errors. Generic CSV ids are free text.
// - Generic CSV columns: by the header's names when line 1 is a header that names them, else by
//   position (user, item, rating[, timestamp]); see csv_columns.
#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "core/error.h"
#include "data/dataset.h"
#include "data/text_reader.h"

namespace vae {
namespace {

namespace fs = std::filesystem;
using text::NumParse;
using text::quote;

// Whether a file that may be absent is there. A link to a missing file is neither: refused, so
// that a broken users.dat does not quietly turn ml-1m into ml-10m (half stars, no users).
bool file_present(const std::string& path) {
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(path, ec)) && !fs::exists(path, ec))
    throw DataError(path, 0, "is a link to a missing file");
  // exists() clears ec for "not there"; what is left (permission denied on the folder, say) is
  // not absence, and reporting it as "no ratings file here" would send the user looking for one.
  const bool there = fs::exists(path, ec);
  if (ec) throw DataError(path, 0, "cannot be looked up: " + ec.message());
  return there;
}
using text::trim;

std::string join_path(const std::string& dir, const char* name) {
  return (fs::path(dir) / name).string();
}

// Last component of a path, ignoring a trailing slash ("data/ml-100k/" → "ml-100k").
std::string base_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  if (p.filename().empty() || p.filename() == "." || p.filename() == "..") {
    std::error_code ec;
    fs::path a = fs::weakly_canonical(fs::absolute(path), ec);
    if (!ec) p = a;
  }
  return p.filename().string();
}

// int64 → int32 map. MovieLens ids are small positive integers, so those index a flat array
// directly; others go to an open-addressing table. (std::unordered_map allocates a node per id
// and chases a pointer per lookup, which dominated loading ml-25m's 25M ratings.)
class IntMap {
 public:
  IntMap() { rehash(1024); }
  int32_t find(int64_t key) const {
    if (key >= 0 && key < static_cast<int64_t>(direct_.size())) return direct_[key];
    if (key >= 0 && key < kDirectMax) return -1;
    for (size_t s = slot(key);; s = (s + 1) & mask_) {
      if (vals_[s] < 0) return -1;
      if (keys_[s] == key) return vals_[s];
    }
  }
  void insert(int64_t key, int32_t val) {  // key must be absent
    if (key >= 0 && key < kDirectMax) {
      if (key >= static_cast<int64_t>(direct_.size()))
        direct_.resize(
            std::min<int64_t>(kDirectMax, std::max<int64_t>(key + 1, 2 * direct_.size())), -1);
      direct_[key] = val;
      return;
    }
    if ((size_ + 1) * 2 > keys_.size()) rehash(keys_.size() * 2);
    size_t s = slot(key);
    while (vals_[s] >= 0) s = (s + 1) & mask_;
    keys_[s] = key;
    vals_[s] = val;
    ++size_;
  }

 private:
  size_t slot(int64_t key) const {
    uint64_t h = static_cast<uint64_t>(key);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return static_cast<size_t>(h) & mask_;
  }
  void rehash(size_t cap) {
    std::vector<int64_t> old_keys = std::move(keys_);
    std::vector<int32_t> old_vals = std::move(vals_);
    keys_.assign(cap, 0);
    vals_.assign(cap, -1);
    mask_ = cap - 1;
    size_ = 0;
    for (size_t s = 0; s < old_vals.size(); ++s)
      if (old_vals[s] >= 0) insert(old_keys[s], old_vals[s]);
  }
  static constexpr int64_t kDirectMax = int64_t{1} << 22;  // 16 MiB of table at most
  std::vector<int32_t> direct_;
  std::vector<int64_t> keys_;
  std::vector<int32_t> vals_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

bool looks_integer(std::string_view s) {
  size_t b = !s.empty() && s[0] == '-' ? 1 : 0;
  if (b == s.size()) return false;
  for (size_t k = b; k < s.size(); ++k)
    if (s[k] < '0' || s[k] > '9') return false;
  return true;
}

// Assigns temporary indices to ids in first-appearance order, then the dense order.
class IdTable {
 public:
  IdTable(std::string what, bool integer_only)
      : what_(std::move(what)), integer_only_(integer_only) {}

  // `record` is the index of the rating being read: kept for an id's first appearance so that
  // errors about the id can name its line later.
  int32_t intern(std::string_view field, int64_t record, const std::string& file, long line) {
    field = trim(field);
    if (field.empty()) throw DataError(file, line, "empty " + what_ + " id");
    if (looks_integer(field)) {
      int64_t v = 0;
      if (text::parse_int64(field, &v) != NumParse::kOk)
        throw DataError(file, line, what_ + " id " + quote(field) + " overflows a 64-bit integer");
      // MovieLens ids are positive integers; a leading zero ("007") is still the id 7.
      if (integer_only_ && v <= 0)
        throw DataError(file, line, what_ + " id " + quote(field) + " is not a positive integer");
      if (integer_only_ || text::is_canonical_int(field)) {
        // MovieLens files are grouped by user: most lookups repeat the previous id.
        if (last_tmp_ >= 0 && v == last_value_) return last_tmp_;
        int32_t t = ints_.find(v);
        if (t < 0) {
          t = add(field, v, record, file, line);
          ints_.insert(v, t);
        }
        last_value_ = v;
        last_tmp_ = t;
        return t;
      }
    } else if (integer_only_) {
      throw DataError(file, line, "non-numeric " + what_ + " id " + quote(field));
    }
    auto it = strs_.find(field);
    if (it != strs_.end()) return it->second;
    const int32_t t = add(field, 0, record, file, line);
    strs_.emplace(texts_.back(), t);
    return t;
  }

  int32_t size() const { return static_cast<int32_t>(texts_.size()); }

  // Fixes the dense order and returns tmp → dense; `ids` gets the original text per dense id.
  std::vector<int32_t> finish(std::vector<std::string>* ids) {
    const int32_t n = size();
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), 0);
    if (strs_.empty())
      std::sort(order_.begin(), order_.end(),
                [&](int32_t a, int32_t b) { return values_[a] < values_[b]; });
    std::vector<int32_t> remap(n);
    ids->resize(n);
    for (int32_t d = 0; d < n; ++d) {
      remap[order_[d]] = d;
      (*ids)[d] = texts_[order_[d]];
    }
    return remap;
  }
  // After finish(): numeric value (integer ids) and first rating index of a dense id.
  int64_t value(int32_t dense) const { return values_[order_[dense]]; }
  int64_t first_record(int32_t dense) const { return first_record_[order_[dense]]; }

 private:
  int32_t add(std::string_view field, int64_t v, int64_t record, const std::string& file,
              long line) {
    if (texts_.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
      throw DataError(file, line, "more than 2147483647 distinct " + what_ + " ids");
    texts_.emplace_back(field);
    values_.push_back(v);
    first_record_.push_back(record);
    return static_cast<int32_t>(texts_.size() - 1);
  }

  std::string what_;
  bool integer_only_;
  IntMap ints_;
  std::unordered_map<std::string_view, int32_t> strs_;  // keys view into texts_
  std::deque<std::string> texts_;                       // deque: stable addresses
  std::vector<int64_t> values_;
  std::vector<int64_t> first_record_;
  std::vector<int32_t> order_;  // dense → tmp
  int64_t last_value_ = 0;
  int32_t last_tmp_ = -1;
};

enum class Scale { kWhole1to5, kHalves, kAny };

float parse_rating(std::string_view f, Scale scale, const std::string& file, long line) {
  f = trim(f);
  double x = 0;
  const NumParse p = text::parse_double(f, &x);
  if (p == NumParse::kNotNumber) throw DataError(file, line, "non-numeric rating " + quote(f));
  if (p == NumParse::kOverflow || std::fabs(x) > std::numeric_limits<float>::max())
    throw DataError(file, line, "rating " + quote(f) + " is out of range");
  // Squared errors are summed in float: beyond this a user's RMSE overflows to inf, and no
  // rating scale comes near it (a timestamp read as the rating is 2e9).
  if (std::fabs(x) > kMaxRatingMagnitude)
    throw DataError(file, line, "rating " + quote(f) + " is out of range (beyond ±1e15, where squared errors overflow "
                    "the float arithmetic): check this column is the rating, or rescale it");
  // A nonzero rating that a float holds as 0 (or a denormal) would silently become "not rated".
  if (x != 0 && std::fabs(x) < std::numeric_limits<float>::min())
    throw DataError(file, line, "rating " + quote(f) + " is too close to 0 for a float (use 0, or rescale the ratings)");
  if (scale == Scale::kWhole1to5 && !(x >= 1 && x <= 5 && x == std::floor(x)))
    throw DataError(file, line, "rating " + quote(f) + " is not a whole number from 1 to 5");
  if (scale == Scale::kHalves && !(x >= 0.5 && x <= 5 && 2 * x == std::floor(2 * x)))
    throw DataError(file, line,
                    "rating " + quote(f) + " is not a half-star rating from 0.5 to 5.0");
  return static_cast<float>(x);
}

int64_t parse_timestamp(std::string_view f, const std::string& file, long line) {
  int64_t t = 0;
  f = trim(f);
  const NumParse p = text::parse_int64(f, &t);
  if (p == NumParse::kOverflow) throw DataError(file, line, "timestamp " + quote(f) + " overflows a 64-bit integer");
  if (p != NumParse::kOk) throw DataError(file, line, "timestamp " + quote(f) + " is not an integer");
  return t;
}

}  // namespace

float parse_ml100k_rating(std::string_view f, const std::string& file, long line) {
  return parse_rating(f, Scale::kWhole1to5, file, line);
}
float parse_any_rating(std::string_view f, const std::string& file, long line) {
  return parse_rating(f, Scale::kAny, file, line);
}
int64_t parse_timestamp_field(std::string_view f, const std::string& file, long line) {
  return parse_timestamp(f, file, line);
}

namespace {

// A MovieLens metadata id (u.item, u.user, movies.dat, users.dat, movies.csv): a positive
// integer, leading zeros allowed.
int64_t parse_id(std::string_view f, const char* what, const std::string& file, long line) {
  f = trim(f);
  int64_t v = 0;
  switch (text::parse_int64(f, &v)) {
    case NumParse::kOk:
      if (v <= 0)
        throw DataError(file, line,
                        std::string(what) + " " + quote(f) + " is not a positive integer");
      return v;
    case NumParse::kOverflow:
      throw DataError(file, line,
                      std::string(what) + " " + quote(f) + " overflows a 64-bit integer");
    default:
      throw DataError(file, line, "non-numeric " + std::string(what) + " " + quote(f));
  }
}

int parse_small_int(std::string_view f, const char* what, int lo, int hi, const std::string& file,
                    long line) {
  f = trim(f);
  int64_t v = 0;
  const NumParse p = text::parse_int64(f, &v);
  if (p == NumParse::kOverflow)
    throw DataError(file, line,
                    std::string(what) + " " + quote(f) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
  if (p != NumParse::kOk) throw DataError(file, line, "non-numeric " + std::string(what) + " " + quote(f));
  if (v < lo || v > hi)
    throw DataError(file, line,
                    std::string(what) + " " + quote(f) + " is outside " + std::to_string(lo) +
                        ".." + std::to_string(hi));
  return static_cast<int>(v);
}

void check_fields(const std::vector<std::string_view>& f, size_t want, const char* what,
                  const std::string& file, long line) {
  if (f.size() != want)
    throw DataError(file, line,
                    "expected " + std::to_string(want) + " fields (" + what + "), found " +
                        std::to_string(f.size()));
}

void check_utf8(std::string_view s, const std::string& file, long line) {
  const size_t bad = text::find_invalid_utf8(s);
  if (bad != std::string_view::npos)
    throw DataError(file, line,
                    "invalid UTF-8 at byte " + std::to_string(bad + 1) + " of the line");
}

// Ratings as read, with the file they came from (kept to name lines in later errors).
// 1e11 s is in the year 5138 (and -1e11 s in -1199); 1e11 ms is 1973-03-03.
constexpr int64_t kLatestPlausibleSecond = 100000000000;

struct RawRatings {
  RawRatings(const std::string& f, bool integer_ids)
      : file(f), users("user", integer_ids), items("item", integer_ids) {}
  std::string file;
  std::string buf;
  bool header = false;
  IdTable users, items;
  std::vector<int32_t> u, i;
  std::vector<float> v;
  std::vector<int64_t> t;  // each rating's time while every line gives one (see no_times)
  std::string no_times;    // why t was given up ("" while it is whole)

  void drop_times(std::string why) {
    if (!no_times.empty()) return;
    no_times = std::move(why);
    t = {};
  }

  // Sizes the arrays from the line count: growing them by doubling costs copies and page
  // faults on 25M ratings.
  void reserve_lines() {
    const auto n = static_cast<size_t>(std::count(buf.begin(), buf.end(), '\n')) + 1;
    u.reserve(n);
    i.reserve(n);
    v.reserve(n);
    t.reserve(n);
  }
  void add(std::string_view uf, std::string_view itf, float r, long line) {
    const auto k = static_cast<int64_t>(v.size());
    u.push_back(users.intern(uf, k, file, line));
    i.push_back(items.intern(itf, k, file, line));
    v.push_back(r);
  }
  // Checks the times as read; returns a note on their unit ("" for seconds). detect_units (a
  // generic CSV): stamps that as seconds would all fall after the year 5000 count milli-, micro-
  // or nanoseconds (as many exports do) and are read as whole seconds. A stamp still outside
  // ±kLatestPlausibleSecond (the years -1199..5138) is an error naming its line: mixed units or
  // a corrupt field, which would make every date and cut-off meaningless.
  std::string settle_times(bool detect_units) {
    if (t.empty()) return "";
    int64_t scale = 1;
    const int64_t lo = *std::min_element(t.begin(), t.end());
    while (detect_units && lo / scale >= kLatestPlausibleSecond && scale < 1000000000) scale *= 1000;
    const char* unit = scale == 1 ? "seconds" : scale == 1000 ? "milliseconds" : scale == 1000000 ? "microseconds" : "nanoseconds";
    for (size_t k = 0; k < t.size(); ++k) {
      const int64_t sec = t[k] / scale;
      if (sec <= kLatestPlausibleSecond && sec >= -kLatestPlausibleSecond) continue;
      const bool calendar = sec <= (int64_t{1} << 62) && sec >= -(int64_t{1} << 62);
      throw DataError(file, line_of(static_cast<int64_t>(k)),
                      "timestamp " + std::to_string(t[k]) + (calendar ? " is the date " + utc_date(sec) : " is no date") +
                          " in " + unit + " since 1970, " +
                          (!detect_units ? std::string("the unit of MovieLens stamps")
                           : scale > 1   ? std::string("the unit of the file's other stamps")
                                         : "the unit of the file's earliest stamp (" + std::to_string(lo) + ")") +
                          ": every stamp must count the same unit, within the years -1199..5138");
    }
    if (scale == 1) return "";
    for (int64_t& x : t) x /= scale;
    return std::string("its timestamps count ") + unit + " since 1970 (read as whole seconds)";
  }
  // 1-based line of rating k: re-reads the buffer (only on errors) instead of storing 8 bytes
  // per rating.
  long line_of(int64_t k) const {
    text::LineReader lr(buf);
    std::string_view l;
    int64_t idx = header ? -1 : 0;
    while (lr.next(&l)) {
      if (idx == k) return lr.line_no();
      ++idx;
    }
    return 0;
  }
};

// Dense CSR from the parsed ratings; fills the dense id lists. A repeated (user, item) pair
// is an error naming both lines.
Csr build_csr(RawRatings& raw, std::vector<std::string>* user_ids,
              std::vector<std::string>* item_ids, std::vector<int64_t>* times) {
  if (raw.v.empty())
    throw DataError(raw.file, raw.header ? 1 : 0,
                    raw.header ? "no ratings in file (its only line was read as a header: its rating field is not "
                                 "a number)"
                               : "no ratings in file");
  const std::vector<int32_t> urm = raw.users.finish(user_ids);
  const std::vector<int32_t> irm = raw.items.finish(item_ids);
  for (auto& x : raw.u) x = urm[x];
  for (auto& x : raw.i) x = irm[x];
  Csr m;
  m.rows = static_cast<int64_t>(user_ids->size());
  m.cols = static_cast<int64_t>(item_ids->size());
  m.indptr.assign(static_cast<size_t>(m.rows) + 1, 0);
  for (int32_t r : raw.u) ++m.indptr[static_cast<size_t>(r) + 1];
  for (int64_t r = 0; r < m.rows; ++r) m.indptr[r + 1] += m.indptr[r];
  m.indices.resize(raw.v.size());
  m.values.resize(raw.v.size());
  const bool timed = raw.no_times.empty() && raw.t.size() == raw.v.size();
  times->assign(timed ? raw.v.size() : 0, 0);
  {
    std::vector<int64_t> next(m.indptr.begin(), m.indptr.end() - 1);
    for (size_t k = 0; k < raw.v.size(); ++k) {
      const int64_t pos = next[raw.u[k]]++;
      m.indices[pos] = raw.i[k];
      m.values[pos] = raw.v[k];
      if (timed) (*times)[pos] = raw.t[k];
    }
  }
  struct Entry {
    int32_t col;
    float value;
    int64_t time;
  };
  std::vector<Entry> tmp;
  for (int64_t r = 0; r < m.rows; ++r) {
    const int64_t b = m.indptr[r], e = m.indptr[r + 1];
    if (!std::is_sorted(m.indices.begin() + b, m.indices.begin() + e)) {
      tmp.clear();
      for (int64_t k = b; k < e; ++k) tmp.push_back({m.indices[k], m.values[k], timed ? (*times)[k] : 0});
      std::stable_sort(tmp.begin(), tmp.end(), [](const Entry& x, const Entry& y) { return x.col < y.col; });
      for (int64_t k = b; k < e; ++k) {
        m.indices[k] = tmp[k - b].col;
        m.values[k] = tmp[k - b].value;
        if (timed) (*times)[k] = tmp[k - b].time;
      }
    }
    for (int64_t k = b + 1; k < e; ++k) {
      if (m.indices[k] != m.indices[k - 1]) continue;
      const int32_t col = m.indices[k];
      int64_t first = -1, second = -1;
      for (size_t q = 0; q < raw.v.size() && second < 0; ++q) {
        if (raw.u[q] != r || raw.i[q] != col) continue;
        (first < 0 ? first : second) = static_cast<int64_t>(q);
      }
      throw DataError(raw.file, raw.line_of(second),
                      "duplicate rating for user " + text::escape((*user_ids)[r], 60) +
                          " and item " + text::escape((*item_ids)[col], 60) +
                          " (first given on line " +
                          std::to_string(raw.line_of(first)) + ")");
    }
  }
  return m;
}

// Genre names → bit index, with a cap of 32 (item_genres is a 32-bit mask).
class GenreList {
 public:
  explicit GenreList(std::vector<std::string> fixed = {}) : names_(std::move(fixed)) {
    for (size_t g = 0; g < names_.size(); ++g) index_[names_[g]] = static_cast<int>(g);
  }
  int find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? -1 : it->second;
  }
  int add(const std::string& name, const std::string& file, long line) {
    if (names_.size() >= 32)
      throw DataError(file, line, "more than 32 distinct genres (at " + quote(name) + ")");
    index_[name] = static_cast<int>(names_.size());
    names_.push_back(name);
    return static_cast<int>(names_.size() - 1);
  }
  void rename(int g, const std::string& name) {
    index_[name] = g;
    names_[g] = name;
  }
  const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::string> names_;
  std::unordered_map<std::string, int> index_;
};

const char* const kMl1mGenres[] = {
    "Action",      "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama",     "Fantasy",   "Film-Noir",  "Horror", "Musical",
    "Mystery",     "Romance",   "Sci-Fi",    "Thriller",   "War",    "Western"};
const char* const kMlLatestGenres[] = {
    "Action",  "Adventure", "Animation", "Children", "Comedy", "Crime",   "Documentary",
    "Drama",   "Fantasy",   "Film-Noir", "Horror",   "IMAX",   "Musical", "Mystery",
    "Romance", "Sci-Fi",    "Thriller",  "War",      "Western"};
const char* const kMl100kGenres[] = {
    "unknown",     "Action", "Adventure", "Animation", "Children's", "Comedy",  "Crime",
    "Documentary", "Drama",  "Fantasy",   "Film-Noir", "Horror",     "Musical", "Mystery",
    "Romance",     "Sci-Fi", "Thriller",  "War",       "Western"};
// As the ml-1m README lists them (code 0 is '"other" or not specified').
// clang-format off
const char* const kMl1mOccupations[] = {
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer"};
// clang-format on

template <size_t N>
std::vector<std::string> to_vec(const char* const (&a)[N]) {
  return std::vector<std::string>(a, a + N);
}

struct ItemMeta {
  std::string title;
  uint32_t genres = 0;
  long line = 0;
};

struct UserRow {
  int age = 0;
  char gender = 'M';
  int occupation = 0;
  long line = 0;
};

// Records an item/user row keyed by integer id; a repeated id is an error.
template <typename Row>
void put_unique(std::unordered_map<int64_t, Row>* rows, int64_t id, Row row, const char* what,
                const std::string& file, long line) {
  auto [it, fresh] = rows->emplace(id, std::move(row));
  if (!fresh)
    throw DataError(file, line,
                    std::string("duplicate ") + what + " id " + std::to_string(id) +
                        " (first on line " + std::to_string(it->second.line) + ")");
}

// Titles and genres per dense item; a rated item without metadata is an error on the line of
// its first rating.
void attach_items(Dataset* d, const RawRatings& raw,
                  const std::unordered_map<int64_t, ItemMeta>& meta, const std::string& meta_file,
                  bool with_genres) {
  const auto n = static_cast<int32_t>(d->item_ids.size());
  d->titles.resize(n);
  if (with_genres) d->item_genres.assign(n, 0);
  for (int32_t k = 0; k < n; ++k) {
    auto it = meta.find(raw.items.value(k));
    if (it == meta.end())
      throw DataError(raw.file, raw.line_of(raw.items.first_record(k)),
                      "item " + text::escape(d->item_ids[k], 60) + " is not listed in " +
                          fs::path(meta_file).filename().string());
    d->titles[k] = it->second.title;
    if (with_genres) d->item_genres[k] = it->second.genres;
  }
}

void attach_users(Dataset* d, const RawRatings& raw,
                  const std::unordered_map<int64_t, UserRow>& rows,
                  std::vector<std::string> occupation_names, const std::string& user_file) {
  const auto n = static_cast<int32_t>(d->user_ids.size());
  UserMeta& m = d->users;
  m.age.resize(n);
  m.gender.resize(n);
  m.occupation.resize(n);
  m.occupation_names = std::move(occupation_names);
  for (int32_t k = 0; k < n; ++k) {
    auto it = rows.find(raw.users.value(k));
    if (it == rows.end())
      throw DataError(raw.file, raw.line_of(raw.users.first_record(k)),
                      "user " + text::escape(d->user_ids[k], 60) + " is not listed in " +
                          fs::path(user_file).filename().string());
    m.age[k] = it->second.age;
    m.gender[k] = it->second.gender;
    m.occupation[k] = it->second.occupation;
  }
}

char parse_gender(std::string_view f, const std::string& file, long line) {
  f = trim(f);
  if (f == "M" || f == "F") return f[0];
  throw DataError(file, line, "gender " + quote(f) + " is not M or F");
}

bool is_header(std::string_view field) {
  double x;
  return text::parse_double(trim(field), &x) == NumParse::kNotNumber;
}

// ---- generic CSV columns -------------------------------------------------------------------
// A header line maps the columns by name; without one (or with names it does not know, in an
// order that fits) they are taken by position: user, item, rating[, timestamp].

constexpr const char* kCsvRoleName[kNumCsvRoles] = {"user", "item", "rating", "timestamp"};
// Accepted header names, compared without case, spaces, '_' and '-' ("User_ID" is "userid").
// Kept short on purpose: two names of one role in a header are refused, so a broad list would
// refuse files with, say, both a movie id and a title column.
const std::vector<std::vector<std::string>>& csv_role_names() {
  static const std::vector<std::vector<std::string>> names = {
      {"user", "userid", "uid", "customer", "customerid", "reviewer", "reviewerid"},
      {"item", "itemid", "iid", "movie", "movieid", "product", "productid", "asin", "sku", "book",
       "bookid", "isbn", "track", "trackid", "song", "songid"},
      {"rating", "score", "stars", "value", "ratingvalue", "overall", "bookrating"},
      {"timestamp", "time", "ts", "date", "datetime", "unixtime", "unixreviewtime"}};
  return names;
}

int csv_role(std::string_view name) {
  std::string n;
  for (char c : name) {
    if (c == ' ' || c == '\t' || c == '_' || c == '-') continue;
    n += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  const auto& all = csv_role_names();
  for (int r = 0; r < kNumCsvRoles; ++r)
    if (std::find(all[r].begin(), all[r].end(), n) != all[r].end()) return r;
  return -1;
}

std::string join(const std::vector<std::string>& xs, const char* sep) {
  std::string s;
  for (size_t k = 0; k < xs.size(); ++k) s += (k ? sep : "") + xs[k];
  return s;
}

// Which field holds each role, and how many fields a line may have.
struct CsvColumns {
  int col[kNumCsvRoles] = {0, 1, 2, 3};  // col[kTimeCol] = -1: no timestamp column
  size_t min_fields = 3, max_fields = 4;
  bool by_header = false;  // mapped by the header's names (else by position)
  std::string rating_name;  // the header's name of the rating column when by_header
  std::string note;         // one line for the user; "" for the plain positional order
};

// Reads header line 1 (its fields `names`) of `file`. Throws DataError for a header that names
// one role twice, or names some columns but not a user, an item and a rating column in an order
// that the positional reading would also give.
CsvColumns csv_columns(const std::vector<std::string_view>& names, const std::string& file) {
  const int n = static_cast<int>(names.size());
  int found[kNumCsvRoles] = {-1, -1, -1, -1};
  std::vector<std::string> unknown;
  for (int k = 0; k < n; ++k) {
    const int r = csv_role(names[k]);
    if (r < 0) {
      unknown.push_back(quote(trim(names[k])));
      continue;
    }
    if (found[r] >= 0)
      throw DataError(file, 1,
                      "the header names the " + std::string(kCsvRoleName[r]) + " column twice: " +
                          quote(trim(names[found[r]])) + " (column " + std::to_string(found[r] + 1) + ") and " +
                          quote(trim(names[k])) + " (column " + std::to_string(k + 1) + ")");
    found[r] = k;
  }
  auto named = [&](int r) { return std::string(kCsvRoleName[r]) + "=" + text::escape(trim(names[found[r]]), 60); };
  CsvColumns c;
  // user, item, rating first (then a timestamp or any one column) reads as it always did.
  if ((n == 3 || n == 4) && found[kUserCol] == 0 && found[kItemCol] == 1 && found[kRatingCol] == 2) return c;
  if (found[kUserCol] >= 0 && found[kItemCol] >= 0 && found[kRatingCol] >= 0) {
    c.by_header = true;
    for (int r = 0; r < kNumCsvRoles; ++r) c.col[r] = found[r];
    c.rating_name = std::string(trim(names[found[kRatingCol]]));
    c.min_fields = static_cast<size_t>(std::max({3, found[kUserCol] + 1, found[kItemCol] + 1, found[kRatingCol] + 1}));
    c.max_fields = static_cast<size_t>(std::max(4, n));
    std::vector<std::string> m;
    for (int r = 0; r < kNumCsvRoles; ++r)
      if (found[r] >= 0) m.push_back(named(r));
    c.note = "note: " + file + ": columns by header: " + join(m, ", ") +
             (unknown.empty() ? "" : "; ignored: " + join(unknown, ", "));
    return c;
  }
  // Not every needed name is there: the positional reading, when the names it knows sit where
  // it would put them anyway ("user,song,plays"); otherwise the header contradicts it.
  bool fits = n == 3 || n == 4;
  for (int r = 0; r < kNumCsvRoles; ++r)
    if (found[r] >= 0 && found[r] != r) fits = false;
  if (fits) {
    std::vector<std::string> m;
    for (int r = 0; r < n; ++r) m.push_back(std::string(kCsvRoleName[r]) + "=" + text::escape(trim(names[r]), 60));
    c.note = "note: " + file + ": header names " + join(unknown, ", ") +
             " not recognised: columns taken in the order user, item, rating[, timestamp] (" + join(m, ", ") + ")";
    return c;
  }
  if (unknown.size() == names.size())  // no name known, and too many columns to take by position
    throw DataError(file, 1,
                    "expected 3 or 4 fields (user, item, rating[, timestamp]), found " + std::to_string(n) +
                        " (a header naming its user, item and rating columns may have others)");
  std::vector<std::string> have, missing, accepted;
  for (int r = 0; r < kNumCsvRoles; ++r) {
    if (found[r] >= 0) {
      have.push_back(named(r));
    } else if (r != kTimeCol) {
      missing.push_back(kCsvRoleName[r]);
      accepted.push_back(std::string(r == kItemCol ? "an " : "a ") + kCsvRoleName[r] + " column is called " +
                         join(csv_role_names()[r], ", "));
    }
  }
  throw DataError(file, 1,
                  "the header names no " + join(missing, " or ") + " column (it names " + join(have, ", ") +
                      (unknown.empty() ? "" : "; not recognised: " + join(unknown, ", ")) + "); " +
                      join(accepted, "; ") + " (case, spaces, '_' and '-' ignored)" +
                      (found[kRatingCol] < 0 ? "; a file without ratings is not read: add a rating column (1 on every line, say)"
                                             : ""));
}

void finish_dataset(Dataset* d, const std::string& source, const std::string& format) {
  d->source = source;
  d->format = format;
  d->ratings.validate();
}

}  // namespace

int csv_header_role(std::string_view name) { return csv_role(name); }

namespace {

// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

}  // namespace

bool parse_time_field(std::string_view f, int64_t* out) {
  f = trim(f);
  if (text::parse_int64(f, out) == NumParse::kOk) return true;
  auto num = [&](size_t at, size_t len, int64_t lo, int64_t hi, int64_t* v) {
    if (at + len > f.size()) return false;
    int64_t x = 0;
    for (size_t k = at; k < at + len; ++k) {
      if (f[k] < '0' || f[k] > '9') return false;
      x = 10 * x + (f[k] - '0');
    }
    *v = x;
    return x >= lo && x <= hi;
  };
  int64_t y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
  if (!num(0, 4, 0, 9999, &y) || f.size() < 10 || f[4] != '-' || !num(5, 2, 1, 12, &mo) || f[7] != '-' ||
      !num(8, 2, 1, 31, &d))
    return false;
  static const int kDays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d > kDays[mo - 1] || (mo == 2 && d == 29 && !leap)) return false;
  size_t at = 10;
  if (at < f.size()) {
    if ((f[at] != 'T' && f[at] != ' ') || !num(at + 1, 2, 0, 23, &h) || at + 3 >= f.size() || f[at + 3] != ':' ||
        !num(at + 4, 2, 0, 59, &mi))
      return false;
    at += 6;
    if (at < f.size() && f[at] == ':') {
      if (!num(at + 1, 2, 0, 60, &sec)) return false;
      at += 3;
    }
    if (at < f.size() && f[at] == 'Z') ++at;
    if (at != f.size()) return false;
  }
  *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
  return true;
}

std::string utc_date(int64_t t) {
  const std::string s = utc_time(t);
  return s.substr(0, s.find(' '));
}

std::string utc_time(int64_t t) {
  // Beyond about ±1e11 years the day arithmetic below would overflow: plain seconds.
  constexpr int64_t kPrintable = int64_t{1} << 62;
  if (t > kPrintable || t < -kPrintable) return std::to_string(t) + " s since 1970";
  // civil_from_days (Howard Hinnant), so years past 9999 or before 1970 print too.
  const int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400), sec = t - days * 86400;
  const int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097, doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9, y = yoe + era * 400 + (m <= 2);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lld", static_cast<long long>(y), static_cast<long long>(m),
                static_cast<long long>(d));
  std::string out = buf;
  if (sec != 0) {
    std::snprintf(buf, sizeof buf, " %02lld:%02lld:%02lld", static_cast<long long>(sec / 3600),
                  static_cast<long long>(sec / 60 % 60), static_cast<long long>(sec % 60));
    out += buf;
  }
  return out;
}

// ---- ml-100k ------------------------------------------------------------------------------

Dataset load_ml100k(const std::string& dir) {
  Dataset d;
  RawRatings raw(join_path(dir, "u.data"), true);
  raw.buf = text::read_file(raw.file);
  raw.reserve_lines();
  std::vector<std::string_view> f;
  {
    text::LineReader lr(raw.buf);
    std::string_view line;
    while (lr.next(&line)) {
      text::split(line, '\t', &f);
      check_fields(f, 4, "tab-separated user, item, rating, timestamp", raw.file, lr.line_no());
      const float r = parse_rating(f[2], Scale::kWhole1to5, raw.file, lr.line_no());
      const int64_t ts = parse_timestamp(f[3], raw.file, lr.line_no());
      raw.add(f[0], f[1], r, lr.line_no());
      raw.t.push_back(ts);
    }
  }
  raw.settle_times(/*detect_units=*/false);  // MovieLens counts seconds
  d.ratings = build_csr(raw, &d.user_ids, &d.item_ids, &d.rating_times);
  d.no_times = raw.no_times;

  // u.genre: name|index; optional (the 19 standard names otherwise).
  std::vector<std::string> genres = to_vec(kMl100kGenres);
  const std::string genre_file = join_path(dir, "u.genre");
  const bool have_genre_file = file_present(genre_file);
  if (have_genre_file) {
    const std::string buf = text::read_file(genre_file);
    std::vector<std::string> names;
    std::vector<long> seen;
    text::LineReader lr(buf);
    std::string_view line;
    while (lr.next(&line)) {
      text::split(line, '|', &f);
      check_fields(f, 2, "'|'-separated name, index", genre_file, lr.line_no());
      const int g = parse_small_int(f[1], "genre index", 0, 31, genre_file, lr.line_no());
      if (static_cast<size_t>(g) >= names.size()) {
        names.resize(g + 1);
        seen.resize(g + 1, 0);
      }
      if (seen[g])
        throw DataError(genre_file, lr.line_no(),
                        "genre index " + std::to_string(g) + " repeated (first on line " +
                            std::to_string(seen[g]) + ")");
      seen[g] = lr.line_no();
      names[g] = std::string(trim(f[0]));
      if (names[g].empty()) throw DataError(genre_file, lr.line_no(), "empty genre name");
      for (size_t h = 0; h < names.size(); ++h)
        if (h != static_cast<size_t>(g) && seen[h] && names[h] == names[g])
          throw DataError(genre_file, lr.line_no(),
                          "genre name '" + names[g] + "' repeated (first on line " + std::to_string(seen[h]) + ")");
    }
    for (size_t g = 0; g < names.size(); ++g)
      if (!seen[g]) throw DataError(genre_file, 0, "genre index " + std::to_string(g) + " missing");
    genres = std::move(names);
  }

  // u.item: id|title|release|video release|IMDb URL|one 0/1 flag per genre; Latin-1.
  const std::string item_file = join_path(dir, "u.item");
  {
    const std::string buf = text::read_file(item_file);
    std::unordered_map<int64_t, ItemMeta> meta;
    const size_t want = 5 + genres.size();
    text::LineReader lr(buf);
    std::string_view line;
    while (lr.next(&line)) {
      text::split(line, '|', &f);
      if (f.size() != want) {
        // Say where the expected count comes from: u.genre, when present, sets the number of
        // flag columns, so a cut or padded u.genre shows up here.
        const std::string n = std::to_string(genres.size());
        const std::string source =
            have_genre_file ? "u.genre lists " + n + " genres"
                            : "there is no u.genre, so the " + n + " standard ml-100k genres apply";
        throw DataError(item_file, lr.line_no(),
                        std::to_string(f.size()) + " '|'-separated fields, but " + source +
                            " (expected 5 + " + n + " = " + std::to_string(want) +
                            " fields: id, title, release date, video release date, IMDb URL and "
                            "one 0/1 flag per genre)");
      }
      ItemMeta m;
      m.line = lr.line_no();
      m.title = text::latin1_to_utf8(f[1]);
      for (size_t g = 0; g < genres.size(); ++g) {
        const std::string_view flag = trim(f[5 + g]);
        if (flag == "1")
          m.genres |= 1u << g;
        else if (flag != "0")
          throw DataError(item_file, lr.line_no(),
                          "genre flag " + std::to_string(g) + " (" + text::escape(genres[g], 60) +
                              ") is " +
                              quote(flag) + ", expected 0 or 1");
      }
      put_unique(&meta, parse_id(f[0], "item id", item_file, lr.line_no()), std::move(m), "item",
                 item_file, lr.line_no());
    }
    attach_items(&d, raw, meta, item_file, true);
    d.genre_names = genres;
  }

  // u.occupation (optional) and u.user (optional): id|age|gender|occupation|zip.
  const std::string user_file = join_path(dir, "u.user");
  if (file_present(user_file)) {
    std::vector<std::string> occupations;
    std::unordered_map<std::string, int> occ_index;
    const std::string occ_file = join_path(dir, "u.occupation");
    const bool fixed_occ = file_present(occ_file);
    if (fixed_occ) {
      const std::string buf = text::read_file(occ_file);
      text::LineReader lr(buf);
      std::string_view line;
      while (lr.next(&line)) {
        const std::string name(trim(line));
        if (!occ_index.emplace(name, static_cast<int>(occupations.size())).second)
          throw DataError(occ_file, lr.line_no(), "duplicate occupation " + quote(name));
        occupations.push_back(name);
      }
    }
    const std::string buf = text::read_file(user_file);
    std::unordered_map<int64_t, UserRow> rows;
    text::LineReader lr(buf);
    std::string_view line;
    while (lr.next(&line)) {
      text::split(line, '|', &f);
      check_fields(f, 5, "'|'-separated id, age, gender, occupation, zip code", user_file,
                   lr.line_no());
      UserRow u;
      u.line = lr.line_no();
      u.age = parse_small_int(f[1], "age", 0, 200, user_file, lr.line_no());
      u.gender = parse_gender(f[2], user_file, lr.line_no());
      const std::string occ(trim(f[3]));
      auto it = occ_index.find(occ);
      if (it == occ_index.end()) {
        if (fixed_occ)
          throw DataError(user_file, lr.line_no(),
                          "occupation " + quote(occ) + " is not listed in u.occupation");
        it = occ_index.emplace(occ, static_cast<int>(occupations.size())).first;
        occupations.push_back(occ);
      }
      u.occupation = it->second;
      put_unique(&rows, parse_id(f[0], "user id", user_file, lr.line_no()), u, "user", user_file,
                 lr.line_no());
    }
    attach_users(&d, raw, rows, std::move(occupations), user_file);
  }

  d.rating_min = 1.0f;
  d.rating_max = 5.0f;
  d.name = base_name(dir);
  finish_dataset(&d, dir, "ml-100k");
  return d;
}

// ---- ml-1m / ml-10m -----------------------------------------------------------------------

Dataset load_ml1m(const std::string& dir) {
  Dataset d;
  const std::string user_file = join_path(dir, "users.dat");
  // ml-10m has no users.dat and half-star ratings; ml-1m whole stars.
  const bool is_1m = file_present(user_file);
  const Scale scale = is_1m ? Scale::kWhole1to5 : Scale::kHalves;
  RawRatings raw(join_path(dir, "ratings.dat"), true);
  raw.buf = text::read_file(raw.file);
  raw.reserve_lines();
  std::vector<std::string_view> f;
  {
    text::LineReader lr(raw.buf);
    std::string_view line;
    while (lr.next(&line)) {
      text::split(line, "::", &f);
      check_fields(f, 4, "'::'-separated user, item, rating, timestamp", raw.file, lr.line_no());
      const float r = parse_rating(f[2], scale, raw.file, lr.line_no());
      const int64_t ts = parse_timestamp(f[3], raw.file, lr.line_no());
      raw.add(f[0], f[1], r, lr.line_no());
      raw.t.push_back(ts);
    }
  }
  raw.settle_times(/*detect_units=*/false);  // MovieLens counts seconds
  d.ratings = build_csr(raw, &d.user_ids, &d.item_ids, &d.rating_times);
  d.no_times = raw.no_times;

  // movies.dat: id::title::Genre1|Genre2. ml-1m is Latin-1; a file that is already valid UTF-8
  // is kept as is (Latin-1 accents essentially never form valid UTF-8).
  const std::string movie_file = join_path(dir, "movies.dat");
  {
    const std::string buf = text::read_file(movie_file);
    const bool utf8 = text::find_invalid_utf8(buf) == std::string_view::npos;
    GenreList genres(to_vec(kMl1mGenres));
    const int children = genres.find("Children's");
    bool children_named = false;
    std::unordered_map<int64_t, ItemMeta> meta;
    std::vector<std::string_view> gs;
    text::LineReader lr(buf);
    std::string_view line;
    while (lr.next(&line)) {
      // The title sits between the first and the last "::" so it may contain "::" itself.
      const size_t a = line.find("::");
      const size_t b = line.rfind("::");
      if (a == std::string_view::npos || a == b) {
        text::split(line, "::", &f);
        check_fields(f, 3, "'::'-separated id, title, genres", movie_file, lr.line_no());
      }
      ItemMeta m;
      m.line = lr.line_no();
      const std::string_view title = line.substr(a + 2, b - a - 2);
      m.title = utf8 ? std::string(title) : text::latin1_to_utf8(title);
      const std::string_view genre_field = trim(line.substr(b + 2));
      if (!genre_field.empty() && genre_field != "(no genres listed)") {
        text::split(genre_field, '|', &gs);
        for (std::string_view gv : gs) {
          std::string g(trim(gv));
          // Later MovieLens sets spell it "Children": same genre, named as the file spells it.
          if (g == "Children" || g == "Children's") {
            if (!children_named) genres.rename(children, g);
            children_named = true;
            m.genres |= 1u << children;
            continue;
          }
          int idx = genres.find(g);
          if (idx < 0 && g == "IMAX") idx = genres.add(g, movie_file, lr.line_no());
          if (idx < 0) throw DataError(movie_file, lr.line_no(), "unknown genre " + quote(g));
          m.genres |= 1u << idx;
        }
      }
      put_unique(&meta, parse_id(line.substr(0, a), "movie id", movie_file, lr.line_no()),
                 std::move(m), "movie", movie_file, lr.line_no());
    }
    attach_items(&d, raw, meta, movie_file, true);
    d.genre_names = genres.names();
  }

  // users.dat: id::gender::age::occupation::zip (ml-1m only).
  if (is_1m) {
    const std::string buf = text::read_file(user_file);
    std::unordered_map<int64_t, UserRow> rows;
    text::LineReader lr(buf);
    std::string_view line;
    while (lr.next(&line)) {
      text::split(line, "::", &f);
      check_fields(f, 5, "'::'-separated id, gender, age, occupation, zip code", user_file,
                   lr.line_no());
      UserRow u;
      u.line = lr.line_no();
      u.gender = parse_gender(f[1], user_file, lr.line_no());
      u.age = parse_small_int(f[2], "age", 0, 200, user_file, lr.line_no());
      u.occupation = parse_small_int(f[3], "occupation code", 0, 20, user_file, lr.line_no());
      put_unique(&rows, parse_id(f[0], "user id", user_file, lr.line_no()), u, "user", user_file,
                 lr.line_no());
    }
    attach_users(&d, raw, rows, to_vec(kMl1mOccupations), user_file);
  }

  d.rating_min = is_1m ? 1.0f : 0.5f;
  d.rating_max = 5.0f;
  d.name = base_name(dir);
  finish_dataset(&d, dir, "ml-1m");
  return d;
}

// ---- ml-latest / ml-20m / ml-25m ---------------------------------------------------------

// ml-latest's ratings.csv is read by position, so a header naming its columns in another order
// (an edited or re-exported file) is refused rather than read with users and movies swapped.
void check_mllatest_header(const std::vector<std::string_view>& names, const std::string& file) {
  bool in_order = true;
  for (int r = 0; r < kNumCsvRoles; ++r) in_order = in_order && csv_role(names[r]) == r;
  if (in_order) return;
  std::string got;
  for (std::string_view n : names) got += (got.empty() ? "" : ",") + std::string(trim(n));
  throw DataError(file, 1,
                  "header " + quote(got) + " is not ml-latest's userId,movieId,rating,timestamp in that order; "
                  "to read a CSV whose header names its columns in another order, give the file itself: --data " +
                      file + " (titles and genres are then not read)");
}

Dataset load_mllatest(const std::string& dir) {
  Dataset d;
  RawRatings raw(join_path(dir, "ratings.csv"), true);
  raw.buf = text::read_file(raw.file);
  raw.reserve_lines();
  std::vector<std::string_view> f;
  {
    text::LineReader lr(raw.buf);
    std::string_view line;
    bool first = true;
    while (lr.next(&line)) {
      // Ids and ratings never need CSV quoting, so a plain split keeps 25M lines fast.
      text::split(line, ',', &f);
      check_fields(f, 4, "userId, movieId, rating, timestamp", raw.file, lr.line_no());
      if (first && is_header(f[2])) {
        first = false;
        raw.header = true;
        check_mllatest_header(f, raw.file);
        continue;
      }
      first = false;
      const float r = parse_rating(f[2], Scale::kHalves, raw.file, lr.line_no());
      const int64_t ts = parse_timestamp(f[3], raw.file, lr.line_no());
      raw.add(f[0], f[1], r, lr.line_no());
      raw.t.push_back(ts);
    }
  }
  raw.settle_times(/*detect_units=*/false);  // MovieLens counts seconds
  d.ratings = build_csr(raw, &d.user_ids, &d.item_ids, &d.rating_times);
  d.no_times = raw.no_times;

  // movies.csv: movieId,title,genres; UTF-8, titles quoted when they hold commas or quotes.
  const std::string movie_file = join_path(dir, "movies.csv");
  {
    const std::string buf = text::read_file(movie_file);
    GenreList genres(to_vec(kMlLatestGenres));
    std::unordered_map<int64_t, int32_t> rated;
    for (int32_t k = 0; k < static_cast<int32_t>(d.item_ids.size()); ++k)
      rated.emplace(raw.items.value(k), k);
    std::unordered_map<int64_t, ItemMeta> meta;
    std::vector<std::string> storage;
    std::vector<std::string_view> gs;
    text::LineReader lr(buf);
    std::string_view line;
    bool first = true;
    while (lr.next(&line)) {
      check_utf8(line, movie_file, lr.line_no());
      const std::string err = text::split_csv(line, &f, &storage);
      if (!err.empty()) throw DataError(movie_file, lr.line_no(), err);
      check_fields(f, 3, "movieId, title, genres", movie_file, lr.line_no());
      if (first && !looks_integer(trim(f[0]))) {  // header line
        first = false;
        continue;
      }
      first = false;
      const int64_t id = parse_id(f[0], "movie id", movie_file, lr.line_no());
      ItemMeta m;
      m.line = lr.line_no();
      m.title = std::string(f[1]);
      const std::string_view genre_field = trim(f[2]);
      // Genres of unrated movies stay out of the list (they would name no column).
      if (rated.count(id) && !genre_field.empty() && genre_field != "(no genres listed)") {
        text::split(genre_field, '|', &gs);
        for (std::string_view gv : gs) {
          const std::string g(trim(gv));
          if (g.empty()) throw DataError(movie_file, lr.line_no(), "empty genre name");
          int idx = genres.find(g);
          if (idx < 0) idx = genres.add(g, movie_file, lr.line_no());
          m.genres |= 1u << idx;
        }
      }
      put_unique(&meta, id, std::move(m), "movie", movie_file, lr.line_no());
    }
    attach_items(&d, raw, meta, movie_file, true);
    d.genre_names = genres.names();
  }

  d.rating_min = 0.5f;
  d.rating_max = 5.0f;
  d.name = base_name(dir);
  finish_dataset(&d, dir, "ml-latest");
  return d;
}

// ---- generic CSV --------------------------------------------------------------------------

Dataset load_ratings_csv(const std::string& file, const std::string& items_file, std::string* note) {
  Dataset d;
  RawRatings raw(file, false);
  raw.buf = text::read_file(file);
  raw.reserve_lines();
  std::vector<std::string_view> f;
  std::vector<std::string> storage;
  double vmin = std::numeric_limits<double>::infinity();
  double vmax = -vmin;
  CsvColumns cols;
  {
    text::LineReader lr(raw.buf);
    std::string_view line;
    bool first = true;
    while (lr.next(&line)) {
      check_utf8(line, file, lr.line_no());
      const std::string err = text::split_csv(line, &f, &storage);
      if (!err.empty()) throw DataError(file, lr.line_no(), err);
      if (first) {
        first = false;
        // A header: its rating field (the third) is not a number. Too short a line is one when
        // it names a column, so that "user,item" is told what is missing.
        bool names_one = false;
        for (std::string_view x : f) names_one = names_one || csv_role(x) >= 0;
        if (f.size() >= 3 ? is_header(f[2]) : names_one) {
          raw.header = true;
          cols = csv_columns(f, file);
          continue;
        }
      }
      if (f.size() < cols.min_fields || f.size() > cols.max_fields) {
        if (!cols.by_header)
          throw DataError(file, lr.line_no(),
                          "expected 3 or 4 fields (user, item, rating[, timestamp]), found " +
                              std::to_string(f.size()));
        throw DataError(file, lr.line_no(),
                        "expected " +
                            (cols.min_fields == cols.max_fields
                                 ? std::to_string(cols.min_fields)
                                 : std::to_string(cols.min_fields) + " to " + std::to_string(cols.max_fields)) +
                            " fields (the columns of the header on line 1), found " + std::to_string(f.size()));
      }
      const float r = parse_rating(f[cols.col[kRatingCol]], Scale::kAny, file, lr.line_no());
      vmin = std::min<double>(vmin, r);
      vmax = std::max<double>(vmax, r);
      raw.add(f[cols.col[kUserCol]], f[cols.col[kItemCol]], r, lr.line_no());
      // Times are only needed by the timed protocols (temporal, cutoff), so a line without a readable
      // one is no error here: the times are given up, and the reason kept for those to report.
      if (raw.no_times.empty()) {
        const int tc = cols.col[kTimeCol];
        int64_t ts = 0;
        if (tc < 0)
          raw.drop_times(file + ": the header names no timestamp column");
        else if (static_cast<size_t>(tc) >= f.size())
          raw.drop_times(file + ":" + std::to_string(lr.line_no()) + ": the line has no timestamp");
        else if (!parse_time_field(f[tc], &ts))
          raw.drop_times(file + ":" + std::to_string(lr.line_no()) + ": timestamp " + quote(trim(f[tc])) +
                         " is neither an integer (seconds since 1970) nor a date (YYYY-MM-DD[ HH:MM[:SS]])");
        else
          raw.t.push_back(ts);
      }
    }
  }
  const std::string unit = raw.settle_times(/*detect_units=*/true);
  const std::string time_note = unit.empty() ? "" : "note: " + file + ": " + unit;
  d.ratings = build_csr(raw, &d.user_ids, &d.item_ids, &d.rating_times);
  d.no_times = raw.no_times;
  if (note) *note = cols.note.empty() || time_note.empty() ? cols.note + time_note : cols.note + "\n" + time_note;
  d.rating_min = static_cast<float>(vmin);
  d.rating_max = static_cast<float>(vmax);
  if (cols.by_header) d.rating_column = cols.rating_name;

  if (!items_file.empty()) {
    const std::string buf = text::read_file(items_file);
    std::unordered_map<std::string, int32_t> dense;  // original id → dense item
    dense.reserve(d.item_ids.size());
    for (size_t k = 0; k < d.item_ids.size(); ++k)
      dense.emplace(d.item_ids[k], static_cast<int32_t>(k));
    std::vector<long> seen(d.item_ids.size(), 0);
    std::vector<std::string> titles(d.item_ids.size());
    std::vector<uint32_t> item_genres(d.item_ids.size(), 0);
    GenreList genres;
    std::vector<std::string_view> gs;
    std::unordered_map<std::string, long> all_lines;  // every id, to catch duplicates
    text::LineReader lr(buf);
    std::string_view line;
    while (lr.next(&line)) {
      check_utf8(line, items_file, lr.line_no());
      const std::string err = text::split_csv(line, &f, &storage);
      if (!err.empty()) throw DataError(items_file, lr.line_no(), err);
      if (f.size() != 2 && f.size() != 3)
        throw DataError(
            items_file, lr.line_no(),
            "expected 2 or 3 fields (item, title[, genres]), found " + std::to_string(f.size()));
      const std::string id(trim(f[0]));
      if (id.empty()) throw DataError(items_file, lr.line_no(), "empty item id");
      auto [dup, fresh] = all_lines.emplace(id, lr.line_no());
      if (!fresh)
        throw DataError(items_file, lr.line_no(),
                        "duplicate item id " + quote(id) + " (first on line " +
                            std::to_string(dup->second) + ")");
      // Rows for unrated items (and a header line, whose id is no rated item) are skipped.
      auto it = dense.find(id);
      if (it == dense.end()) continue;
      const int32_t k = it->second;
      seen[k] = lr.line_no();
      titles[k] = std::string(f[1]);
      if (f.size() == 3) {
        const std::string_view genre_field = trim(f[2]);
        if (genre_field.empty() || genre_field == "(no genres listed)") continue;
        text::split(genre_field, '|', &gs);
        for (std::string_view gv : gs) {
          const std::string g(trim(gv));
          if (g.empty()) throw DataError(items_file, lr.line_no(), "empty genre name");
          int idx = genres.find(g);
          if (idx < 0) idx = genres.add(g, items_file, lr.line_no());
          item_genres[k] |= 1u << idx;
        }
      }
    }
    for (size_t k = 0; k < seen.size(); ++k)
      if (!seen[k])
        throw DataError(file, raw.line_of(raw.items.first_record(static_cast<int32_t>(k))),
                        "item " + text::escape(d.item_ids[k], 60) + " is not listed in " +
                            items_file);
    d.titles = std::move(titles);
    if (!genres.names().empty()) {
      d.genre_names = genres.names();
      d.item_genres = std::move(item_genres);
    }
  }

  // A pipe or descriptor (--data <(zcat r.csv.gz) reads /dev/fd/63) has no meaningful file
  // name: the data set is named by its path instead of "63".
  std::error_code ec;
  d.name = fs::is_regular_file(file, ec) ? fs::path(file).stem().string() : file;
  finish_dataset(&d, file, "csv");
  return d;
}

// ---- dispatch -----------------------------------------------------------------------------

Dataset load_movielens_dir(const std::string& dir) {
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  if (ec || !fs::exists(st)) throw DataError(dir, 0, "no such file or directory");
  if (!fs::is_directory(st)) throw DataError(dir, 0, "not a directory");
  if (file_present(join_path(dir, "u.data"))) return load_ml100k(dir);
  if (file_present(join_path(dir, "ratings.dat"))) return load_ml1m(dir);
  if (file_present(join_path(dir, "ratings.csv"))) return load_mllatest(dir);
  throw DataError(dir, 0,
                  "no MovieLens ratings file here (expected u.data, ratings.dat or ratings.csv; "
                  "fetch one with data/fetch_movielens.sh)");
}

Dataset load_dataset(const std::string& arg, std::string* note) {
  auto say = [&](const std::string& s) {
    if (note) *note = s;
  };
  if (arg.empty()) {
    const std::string def = "data/ml-100k";
    if (fs::is_directory(def)) {
      say("using " + def);
      return load_movielens_dir(def);
    }
    Dataset d = make_synthetic(SyntheticSpec{});
    say("no --data given and " + def + " not found: using generated data (" + d.source +
        "); run data/fetch_movielens.sh ml-100k to fetch MovieLens 100K");
    return d;
  }
  if (is_synthetic_spec(arg)) {
    Dataset d = make_synthetic(parse_synthetic_spec(arg));
    say("using generated data (" + d.source + ")");
    return d;
  }
  std::error_code ec;
  const auto st = fs::status(arg, ec);
  if (ec || !fs::exists(st)) throw DataError(arg, 0, "no such file or directory");
  if (!fs::is_directory(st)) {
    // A MovieLens ratings file named on its own: its folder holds the titles, genres and users.
    const fs::path file(arg), dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
    const std::string name = file.filename().string();
    if (name == "u.data" || name == "ratings.dat")
      throw DataError(arg, 0, std::string("is ") + (name == "u.data" ? "ml-100k" : "ml-1m / ml-10m") +
                                  "'s ratings file, not a CSV: give the MovieLens folder it belongs in, --data " +
                                  dir.string() + (fs::exists(dir / (name == "u.data" ? "u.item" : "movies.dat"), ec)
                                                      ? ""
                                                      : " (with the rest of the release's files beside it)"));
    std::string columns_note;
    Dataset d = load_ratings_csv(arg, "", &columns_note);
    std::string folder_note;
    if (name == "ratings.csv" && fs::exists(dir / "movies.csv", ec)) {
      // Only where the folder would load as ml-latest (its header names the ml-latest columns).
      std::ifstream f(arg);
      std::string head;
      std::getline(f, head);
      if (head.rfind("userId,movieId,rating", 0) == 0)
        folder_note = "; its folder also has titles and genres: --data " + dir.string() + " reads them";
    }
    say((d.name == arg ? "using " + arg + " (" + d.format + ")" : "using " + d.name + " (" + d.format + ") from " + arg) +
        folder_note + (columns_note.empty() ? "" : "\n" + columns_note));
    return d;
  }
  Dataset d = load_movielens_dir(arg);
  say(d.name == arg ? "using " + arg + " (" + d.format + ")" : "using " + d.name + " (" + d.format + ") from " + arg);
  return d;
}

}  // namespace vae
