// Train/test splits, all deterministic from a seed through Philox stream RngStream::split.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/philox.h"
#include "data/dataset.h"
#include "data/shuffle.h"
#include "data/text_reader.h"

namespace vae {

namespace {
std::string fmt_threshold(double t) {
  std::ostringstream os;
  os << std::setprecision(6) << t;  // 3.5, 1e+300: not 300 digits
  return os.str();
}
}  // namespace

namespace {

// Sub-streams of RngStream::split; per-user fold-in shuffles start at kUserStreamBase.
enum : uint64_t {
  kStreamSeedUsers = 0,
  kStreamHeldoutUsers = 1,
  kStreamRatings = 2,
  kUserStreamBase = uint64_t{1} << 40,
  kTemporalStreamBase = uint64_t{2} << 40,  // per-user tie order of the temporal split
};

uint64_t stream_of(uint64_t sub) { return rng_stream(RngStream::split, sub); }

void check_fraction(double f, const char* what) {
  if (!(f >= 0.0 && f <= 1.0))
    throw UsageError(std::string(what) + " must be between 0 and 1, got " + std::to_string(f));
}

int64_t round_count(double fraction, int64_t n) {
  return static_cast<int64_t>(std::llround(fraction * static_cast<double>(n)));
}

// Binary CSR over the given rows (each a sorted list of columns).
Csr binary_csr(const std::vector<std::vector<int32_t>>& rows, int64_t cols) {
  Csr m;
  m.rows = static_cast<int64_t>(rows.size());
  m.cols = cols;
  m.indptr.assign(rows.size() + 1, 0);
  for (size_t r = 0; r < rows.size(); ++r)
    m.indptr[r + 1] = m.indptr[r] + static_cast<int64_t>(rows[r].size());
  m.indices.reserve(m.indptr.back());
  for (const auto& row : rows) m.indices.insert(m.indices.end(), row.begin(), row.end());
  m.values.assign(m.indices.size(), 1.0f);
  return m;
}

}  // namespace

SeedSplit split_seed(const Dataset& d, double test_fraction, uint64_t seed) {
  check_fraction(test_fraction, "test fraction");
  const int64_t n = d.num_users();
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  philox_shuffle(order, seed, stream_of(kStreamSeedUsers));
  const int64_t n_test = round_count(test_fraction, n);
  SeedSplit s;
  s.test_users.assign(order.begin(), order.begin() + n_test);
  s.train_users.assign(order.begin() + n_test, order.end());
  std::sort(s.test_users.begin(), s.test_users.end());
  std::sort(s.train_users.begin(), s.train_users.end());
  return s;
}

HeldoutSplit split_heldout(const Dataset& d, const HeldoutOptions& opt, uint64_t seed) {
  check_fraction(opt.val_fraction, "validation fraction");
  check_fraction(opt.test_fraction, "test fraction");
  check_fraction(opt.foldin_fraction, "fold-in fraction");
  const Csr& r = d.ratings;

  // Users with enough positives, in index order (then shuffled).
  auto positive = [&](int64_t k) { return opt.threshold <= 0 || r.values[k] >= opt.threshold; };
  std::vector<int32_t> kept;
  for (int64_t u = 0; u < r.rows; ++u) {
    int64_t pos = 0;
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k) pos += positive(k);
    if (pos >= opt.min_positives && pos > 0) kept.push_back(static_cast<int32_t>(u));
  }
  const int64_t n = static_cast<int64_t>(kept.size());
  if (n == 0)
    throw UsageError("no user has at least " + std::to_string(opt.min_positives) +
                     " ratings >= --threshold " + fmt_threshold(opt.threshold) + ": lower --threshold");
  philox_shuffle(kept, seed, stream_of(kStreamHeldoutUsers));
  const int64_t n_val = round_count(opt.val_fraction, n), n_test = round_count(opt.test_fraction, n);
  if (n_val + n_test >= n)
    throw UsageError("validation + test fractions leave no training users (" + std::to_string(n) +
                     " users with enough positives)");

  HeldoutSplit s;
  std::vector<int32_t> val(kept.begin(), kept.begin() + n_val);
  std::vector<int32_t> test(kept.begin() + n_val, kept.begin() + n_val + n_test);
  s.train_users.assign(kept.begin() + n_val + n_test, kept.end());
  std::sort(val.begin(), val.end());
  std::sort(test.begin(), test.end());
  std::sort(s.train_users.begin(), s.train_users.end());

  // Items the model can learn: those some training user likes.
  std::vector<int32_t> column(r.cols, -1);
  for (int32_t u : s.train_users)
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k)
      if (positive(k)) column[r.indices[k]] = 0;
  for (int64_t i = 0; i < r.cols; ++i) {
    if (column[i] < 0) continue;
    column[i] = static_cast<int32_t>(s.item_map.size());
    s.item_map.push_back(static_cast<int32_t>(i));
  }
  const int64_t n_cols = static_cast<int64_t>(s.item_map.size());
  // A user's positives as kept columns (ascending, since item_map is).
  auto columns_of = [&](int32_t u) {
    std::vector<int32_t> cols;
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k)
      if (positive(k) && column[r.indices[k]] >= 0) cols.push_back(column[r.indices[k]]);
    return cols;
  };

  std::vector<std::vector<int32_t>> rows;
  rows.reserve(s.train_users.size());
  for (int32_t u : s.train_users) rows.push_back(columns_of(u));
  s.train = binary_csr(rows, n_cols);

  // Held-out users: a random foldin_fraction of their items (≥ 1) is the input, the rest
  // (≥ 1 when there are two or more) the target.
  auto split_users = [&](const std::vector<int32_t>& users, std::vector<int32_t>& out_users,
                         Csr& foldin, Csr& target) {
    std::vector<std::vector<int32_t>> in_rows, tg_rows;
    for (int32_t u : users) {
      std::vector<int32_t> cols = columns_of(u);
      const int64_t k = static_cast<int64_t>(cols.size());
      // One usable positive (the rest on items no training user liked) leaves nothing to hold out
      // once one is folded in: an empty target would score 0 and pull the mean down.
      if (k < 2) continue;
      const int64_t n_in = std::min(std::max<int64_t>(1, round_count(opt.foldin_fraction, k)), k - 1);
      philox_shuffle(cols, seed, stream_of(kUserStreamBase + static_cast<uint64_t>(u)));
      std::vector<int32_t> in(cols.begin(), cols.begin() + n_in), tg(cols.begin() + n_in, cols.end());
      std::sort(in.begin(), in.end());
      std::sort(tg.begin(), tg.end());
      out_users.push_back(u);
      in_rows.push_back(std::move(in));
      tg_rows.push_back(std::move(tg));
    }
    foldin = binary_csr(in_rows, n_cols);
    target = binary_csr(tg_rows, n_cols);
  };
  split_users(val, s.val_users, s.val_foldin, s.val_target);
  split_users(test, s.test_users, s.test_foldin, s.test_target);
  s.too_few = r.rows - n;
  s.unusable = n_val + n_test - static_cast<int64_t>(s.val_users.size() + s.test_users.size());
  return s;
}

namespace {

void require_times(const Dataset& d, const char* what) {
  if (!d.has_times())
    throw UsageError(std::string("the ") + what + " protocol splits by rating time, and " + d.name +
                     " has no rating times" + (d.no_times.empty() ? "" : " (" + d.no_times + ")") +
                     ": use --protocol heldout or seed, or give the data a timestamp column");
}

// The temporal protocols' matrices once each rating has its part (0 train, 1 validation, 2 test):
// columns are the items liked in training; a user with a training positive trains, and is
// scored where `evaluated` says so and a target is left. Validation folds in the training
// positives, the test those plus the validation ones (a user with only the latter: kNoRow).
void fill_timed_split(const Dataset& d, const HeldoutOptions& opt, const std::vector<uint8_t>& part,
                      const std::vector<uint8_t>& evaluated, TemporalSplit& s) {
  const Csr& r = d.ratings;
  auto positive = [&](int64_t k) { return opt.threshold <= 0 || r.values[k] >= opt.threshold; };
  std::vector<int32_t> column(r.cols, -1);
  for (int64_t k = 0; k < r.nnz(); ++k)
    if (part[k] == 0 && positive(k)) column[r.indices[k]] = 0;
  for (int64_t i = 0; i < r.cols; ++i) {
    if (column[i] < 0) continue;
    column[i] = static_cast<int32_t>(s.item_map.size());
    s.item_map.push_back(static_cast<int32_t>(i));
  }
  if (s.item_map.empty()) {
    bool any = false;
    for (int64_t k = 0; k < r.nnz() && !any; ++k) any = positive(k);
    if (any) throw UsageError("no positive rating falls in the training part: move the cut later");
    throw UsageError("no rating is >= --threshold " + fmt_threshold(opt.threshold) + ": lower --threshold");
  }
  const int64_t n_cols = static_cast<int64_t>(s.item_map.size());
  // A user's positives of the given parts as kept columns (ascending, since item_map is).
  auto columns_of = [&](int64_t u, int max_part, int only_part) {
    std::vector<int32_t> cols;
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k) {
      const int p = part[k];
      if (!positive(k) || p > max_part || (only_part >= 0 && p != only_part)) continue;
      if (column[r.indices[k]] >= 0) {
        cols.push_back(column[r.indices[k]]);
      } else if (only_part > 0) {  // counted once, as a target
        ++s.dropped;
        s.dropped_test += only_part == 2;
      }
    }
    return cols;
  };
  std::vector<std::vector<int32_t>> train_rows, val_in, val_tg, test_in, test_tg;
  for (int64_t u = 0; u < r.rows; ++u) {
    std::vector<int32_t> tr = columns_of(u, 0, -1);
    bool tested = false;  // a positive in the test part
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1] && !tested; ++k) tested = part[k] == 2 && positive(k);
    if (tr.empty()) {
      // Nothing liked in training: no row to learn from or to validate on. The test can still
      // fold in what the user liked before its cut (cutoff), as heldout does for unseen users.
      if (!evaluated[u]) continue;
      std::vector<int32_t> in = columns_of(u, 1, -1);
      if (in.empty()) {
        s.unseen_users += tested;
      } else if (tested) {
        std::vector<int32_t> tt = columns_of(u, 2, 2);
        s.untrained_test_users += tt.empty();
        if (!tt.empty()) {
          s.test_users.push_back(static_cast<int32_t>(u));
          s.test_rows.push_back(kNoRow);
          test_in.push_back(std::move(in));
          test_tg.push_back(std::move(tt));
        }
      }
      continue;
    }
    const auto row = static_cast<int32_t>(s.train_users.size());
    s.train_users.push_back(static_cast<int32_t>(u));
    if (evaluated[u]) {
      std::vector<int32_t> vt = columns_of(u, 1, 1), tt = columns_of(u, 2, 2);
      s.untrained_test_users += tested && tt.empty();  // each test positive on an item no training user liked
      if (!vt.empty()) {
        s.val_users.push_back(static_cast<int32_t>(u));
        s.val_rows.push_back(row);
        val_in.push_back(tr);
        val_tg.push_back(std::move(vt));
      }
      if (!tt.empty()) {
        s.test_users.push_back(static_cast<int32_t>(u));
        s.test_rows.push_back(row);
        test_in.push_back(columns_of(u, 1, -1));
        test_tg.push_back(std::move(tt));
      }
    }
    train_rows.push_back(std::move(tr));
  }
  s.train = binary_csr(train_rows, n_cols);
  s.val_foldin = binary_csr(val_in, n_cols);
  s.val_target = binary_csr(val_tg, n_cols);
  s.test_foldin = binary_csr(test_in, n_cols);
  s.test_target = binary_csr(test_tg, n_cols);
}

}  // namespace

TemporalSplit split_temporal(const Dataset& d, const HeldoutOptions& opt, int last, uint64_t seed) {
  if (last < 1) throw UsageError("--leave-last must be at least 1, got " + std::to_string(last));
  require_times(d, "temporal");
  const Csr& r = d.ratings;
  auto positive = [&](int64_t k) { return opt.threshold <= 0 || r.values[k] >= opt.threshold; };
  const int64_t need = std::max<int64_t>({opt.min_positives, 2 * static_cast<int64_t>(last) + 1, 1});

  // Each user's positives in time order (CSR positions); a seeded shuffle first, so ratings given
  // in the same second fall in an order that favours no item id.
  std::vector<uint8_t> part(static_cast<size_t>(r.nnz()), 0);
  std::vector<uint8_t> evaluated(static_cast<size_t>(r.rows), 0);
  std::vector<int32_t> pos;  // offsets into the user's row
  for (int64_t u = 0; u < r.rows; ++u) {
    const int64_t b = r.indptr[u];
    pos.clear();
    for (int64_t k = b; k < r.indptr[u + 1]; ++k)
      if (positive(k)) pos.push_back(static_cast<int32_t>(k - b));
    if (static_cast<int64_t>(pos.size()) < need) continue;
    philox_shuffle(pos, seed, stream_of(kTemporalStreamBase + static_cast<uint64_t>(u)));
    std::stable_sort(pos.begin(), pos.end(),
                     [&](int32_t x, int32_t y) { return d.rating_times[b + x] < d.rating_times[b + y]; });
    const size_t n = pos.size();
    for (size_t j = n - 2 * last; j < n; ++j) part[b + pos[j]] = j < n - last ? 1 : 2;
    evaluated[u] = 1;
  }
  TemporalSplit s;
  s.last = last;
  fill_timed_split(d, opt, part, evaluated, s);
  return s;
}

namespace {
void check_cut_order(int64_t val_from, int64_t test_from) {
  if (val_from >= test_from)
    throw UsageError("--val-from " + utc_time(val_from) + " is not before --test-from " + utc_time(test_from) +
                     ": the validation ratings are those between the two");
}
}  // namespace

int64_t resolve_time_cut(const Dataset& d, const std::string& when, const char* option) {
  require_times(d, "cutoff");
  const std::string_view w = text::trim(when);
  int64_t t = 0;
  if (parse_time_field(w, &t)) return t;
  double f = 0;
  if (text::parse_double(w, &f) == text::NumParse::kOk && f > 0 && f < 1) {
    // The time before which a share f of the ratings falls (ties at the cut go after it).
    std::vector<int64_t> times = d.rating_times;
    // 1e-9: 0.07 × 100000 is 7000.000000000001 in doubles, whose ceiling would be one rating late.
    const auto at = static_cast<size_t>(std::min<double>(std::ceil(f * static_cast<double>(times.size()) - 1e-9),
                                                         static_cast<double>(times.size() - 1)));
    std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(at), times.end());
    return times[at];
  }
  throw UsageError(std::string(option) + " " + text::quote(w) +
                   " is neither a share of the ratings in (0, 1) (0.9: the latest 10 % come after the cut), a date "
                   "(YYYY-MM-DD[ HH:MM[:SS]], UTC) nor seconds since 1970");
}

int64_t default_val_cut(const Dataset& d, int64_t test_from) {
  require_times(d, "cutoff");
  std::vector<int64_t> times = d.rating_times;  // selected from, not sorted: ml-25m has 25 M
  const auto before = static_cast<int64_t>(
      std::count_if(times.begin(), times.end(), [&](int64_t t) { return t < test_from; }));
  const auto after = static_cast<int64_t>(times.size()) - before;
  if (after == 0)  // as many before it as after: none
    throw UsageError("--test-from " + utc_time(test_from) + " is after the last rating: no rating is left to test on; "
                     "move it earlier");
  if (before - after <= 0)
    throw UsageError("--test-from " + utc_time(test_from) + " leaves " + std::to_string(before) +
                     " ratings before it, and the default --val-from would take as many as come from it on (" +
                     std::to_string(after) + ") for validation, leaving none to train on: move --test-from later or "
                     "give --val-from");
  const auto at = times.begin() + (before - after);
  std::nth_element(times.begin(), at, times.end());
  return *at;
}

std::pair<int64_t, int64_t> resolve_cutoff(const Dataset& d, const std::string& val_from, const std::string& test_from) {
  const int64_t test = resolve_time_cut(d, test_from, "--test-from");
  const auto [first, last] = std::minmax_element(d.rating_times.begin(), d.rating_times.end());
  if (test > *last)
    throw UsageError("--test-from " + utc_time(test) + " is after the last rating (" + utc_time(*last) +
                     "): no rating is left to test on; move it earlier");
  const int64_t val = val_from.empty() ? default_val_cut(d, test) : resolve_time_cut(d, val_from, "--val-from");
  check_cut_order(val, test);
  if (val <= *first)
    throw UsageError("--val-from " + utc_time(val) + " is not after the first rating (" + utc_time(*first) +
                     "): no rating is left to train on; move it later");
  return {val, test};
}

TemporalSplit split_cutoff(const Dataset& d, const HeldoutOptions& opt, int64_t val_from, int64_t test_from) {
  require_times(d, "cutoff");
  check_cut_order(val_from, test_from);
  const Csr& r = d.ratings;
  std::vector<uint8_t> part(static_cast<size_t>(r.nnz()), 0);
  for (int64_t k = 0; k < r.nnz(); ++k) part[k] = d.rating_times[k] >= test_from ? 2 : d.rating_times[k] >= val_from;
  TemporalSplit s;
  s.last = 0;
  s.val_from = val_from;
  s.test_from = test_from;
  fill_timed_split(d, opt, part, std::vector<uint8_t>(static_cast<size_t>(r.rows), 1), s);
  return s;
}

RatingsSplit split_ratings_random(const Dataset& d, double test_fraction, uint64_t seed) {
  check_fraction(test_fraction, "test fraction");
  const Csr& r = d.ratings;
  const int64_t nnz = r.nnz();
  // Exactly round(fraction·nnz) test ratings by sequential selection sampling (Knuth's
  // Algorithm S): one draw per rating, no nnz-sized permutation.
  int64_t need = round_count(test_fraction, nnz);
  PhiloxSeq rng(seed, stream_of(kStreamRatings));
  RatingsSplit s;
  for (Csr* m : {&s.train, &s.test}) {
    m->rows = r.rows;
    m->cols = r.cols;
    m->indptr.assign(r.rows + 1, 0);
  }
  s.train.indices.reserve(nnz - need);
  s.train.values.reserve(nnz - need);
  s.test.indices.reserve(need);
  s.test.values.reserve(need);
  for (int64_t u = 0; u < r.rows; ++u) {
    for (int64_t k = r.indptr[u]; k < r.indptr[u + 1]; ++k) {
      const uint64_t left = static_cast<uint64_t>(nnz - k);
      // Uniform in [0, left) from 64 bits, so the bias is negligible even for huge nnz.
      const uint64_t x = (static_cast<uint64_t>(rng.u32()) << 32) | rng.u32();
      const uint64_t pick = static_cast<uint64_t>((static_cast<unsigned __int128>(x) * left) >> 64);
      Csr& m = pick < static_cast<uint64_t>(need) ? s.test : s.train;
      if (&m == &s.test) --need;
      m.indices.push_back(r.indices[k]);
      m.values.push_back(r.values[k]);
    }
    s.train.indptr[u + 1] = s.train.nnz();
    s.test.indptr[u + 1] = s.test.nnz();
  }
  const long test_pct = std::lround(test_fraction * 100.0);
  s.description = "random " + std::to_string(100 - test_pct) + "/" + std::to_string(test_pct);
  return s;
}

namespace {

// Original id → dataset index. ml-100k ids are integers, matched by value (so "007" in a fold
// file is user 7, as in u.data); a data set with other ids is matched by text.
class FoldIdMap {
 public:
  FoldIdMap(const std::vector<std::string>& ids, const char* what) : what_(what) {
    numeric_ = !ids.empty();
    for (size_t k = 0; k < ids.size() && numeric_; ++k) {
      int64_t v = 0;
      numeric_ = text::parse_int64(text::trim(ids[k]), &v) == text::NumParse::kOk &&
                 by_value_.emplace(v, static_cast<int32_t>(k)).second;
    }
    if (!numeric_) {
      by_value_.clear();
      by_text_.reserve(ids.size() * 2);
      for (size_t k = 0; k < ids.size(); ++k) by_text_.emplace(ids[k], static_cast<int32_t>(k));
    }
  }
  int32_t find(std::string_view field, const std::string& path, long lineno) const {
    field = text::trim(field);
    const std::string id = what_ + " id " + text::quote(field);
    if (field.empty()) throw DataError(path, lineno, "empty " + what_ + " id");
    if (!numeric_) {
      const auto it = by_text_.find(std::string(field));
      if (it == by_text_.end()) throw DataError(path, lineno, "unknown " + id + " (not in the data set)");
      return it->second;
    }
    int64_t v = 0;
    switch (text::parse_int64(field, &v)) {
      case text::NumParse::kOk:
        break;
      case text::NumParse::kOverflow:
        throw DataError(path, lineno, id + " overflows a 64-bit integer");
      default:
        throw DataError(path, lineno, "non-numeric " + id + " (ml-100k ids are positive integers)");
    }
    if (v <= 0) throw DataError(path, lineno, id + " is not a positive integer");
    const auto it = by_value_.find(v);
    if (it == by_value_.end()) throw DataError(path, lineno, "unknown " + id + " (not in the data set)");
    return it->second;
  }

 private:
  std::string what_;
  bool numeric_ = false;
  std::unordered_map<int64_t, int32_t> by_value_;
  std::unordered_map<std::string, int32_t> by_text_;
};

struct FoldReader {
  const Dataset& d;
  FoldIdMap users, items;

  explicit FoldReader(const Dataset& ds) : d(ds), users(ds.user_ids, "user"), items(ds.item_ids, "item") {}

  // Reads "user\titem\trating\ttimestamp" lines, each field as u.data's reader does (ml-100k:
  // whole stars 1 to 5; other data: a number within the data's range); `exclude` holds pairs of
  // the other file.
  Csr read(const std::string& path, std::unordered_set<uint64_t>& pairs,
           const std::unordered_set<uint64_t>* exclude) const {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw DataError(path, 0, "no such file");
    std::vector<int32_t> rs, cs;
    std::vector<float> vs;
    std::string buf;
    try {
      buf = text::read_file(path);
    } catch (const DataError&) {
      // An empty fold file is said by the caller, which knows which part it is.
      std::ifstream in(path, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      if (!std::filesystem::is_regular_file(path, ec) || bytes.find_first_not_of(" \t\r\n") != std::string::npos)
        throw;
    }
    text::LineReader lr(buf);
    std::string_view line;
    std::vector<std::string_view> f;
    const bool ml100k = d.format == "ml-100k";
    while (lr.next(&line)) {
      const long lineno = lr.line_no();
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      text::split(line, '\t', &f);
      if (f.size() != 4)
        throw DataError(path, lineno, "expected 4 tab-separated fields (user item rating timestamp), got " +
                                          std::to_string(f.size()));
      const int32_t u = users.find(f[0], path, lineno);
      const int32_t i = items.find(f[1], path, lineno);
      const float rating = ml100k ? parse_ml100k_rating(f[2], path, lineno) : parse_any_rating(f[2], path, lineno);
      if (!ml100k && !(rating >= d.rating_min && rating <= d.rating_max)) {
        char range[64];
        std::snprintf(range, sizeof range, "%g to %g", d.rating_min, d.rating_max);
        throw DataError(path, lineno, "rating " + text::quote(text::trim(f[2])) + " is outside the data's ratings, " + range);
      }
      (void)parse_timestamp_field(f[3], path, lineno);  // unused (the ratings protocol), but checked
      const uint64_t key = (static_cast<uint64_t>(u) << 32) | static_cast<uint32_t>(i);
      auto who = [&] { return "user " + text::escape(d.user_ids[u], 60); };
      auto what = [&] { return "item " + text::escape(d.item_ids[i], 60); };
      if (!pairs.insert(key).second)
        throw DataError(path, lineno, "duplicate rating of " + what() + " by " + who());
      if (exclude && exclude->count(key))
        throw DataError(path, lineno, who() + ", " + what() + " is in both the base and the test file");
      rs.push_back(u);
      cs.push_back(i);
      vs.push_back(rating);
    }
    return Csr::from_triplets(d.num_users(), d.num_items(), std::move(rs), std::move(cs), std::move(vs));
  }
};

}  // namespace

RatingsSplit split_ratings_ml100k_fold(const Dataset& d, const std::string& dir, const std::string& fold) {
  if (!is_ml100k_fold(fold)) throw UsageError("ml-100k fold must be 1-5, a or b, got '" + fold + "'");
  const std::string stem = "u" + fold;
  const std::string base = dir + "/" + stem + ".base", test = dir + "/" + stem + ".test";
  // No fold file at all: this is not ml-100k (ml-latest, ml-1m and CSV data have no fixed folds),
  // which "u1.base: cannot open file" would not tell.
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(base, ec)) {
    bool any = false;
    for (const std::string& s : kMl100kFolds)
      for (const char* ext : {".base", ".test"})
        any = any || fs::exists(dir + "/u" + s + ext, ec);
    if (!any) {
      const std::string what = fs::is_directory(dir, ec) ? "this data directory" : "this data source";
      const std::string fmt = d.format.empty() ? "" : " (" + d.format + ")";
      throw DataError(dir, 0,
                      "no " + stem + ".base here: the fold files u1.base ... u5.test, ua.base/ua.test and "
                      "ub.base/ub.test exist only in ml-100k, and " + what + fmt +
                          " has none (use --fold random for a random 90/10 split)");
    }
    throw DataError(base, 0, "no such file (this ml-100k directory lacks fold " + fold + ")");
  }
  FoldReader reader(d);
  std::unordered_set<uint64_t> base_pairs, test_pairs;
  RatingsSplit s;
  s.train = reader.read(base, base_pairs, nullptr);
  s.test = reader.read(test, test_pairs, &base_pairs);
  // An empty fold file would train on nothing, or report RMSE over no ratings (NaN).
  if (s.train.nnz() == 0) throw DataError(base, 0, "no ratings (the fold's training file is empty)");
  if (s.test.nnz() == 0) throw DataError(test, 0, "no ratings (the fold's test file is empty)");
  s.description = stem + ".base/" + stem + ".test";
  return s;
}

}  // namespace vae

namespace vae {

RatingsSplit split_ratings_kfold(const Dataset& d, int k, int fold, uint64_t seed) {
  const Csr& r = d.ratings;
  const int64_t nnz = r.nnz();
  if (k < 2) throw UsageError("--folds must be at least 2");
  if (fold < 0 || fold >= k) throw UsageError("fold " + std::to_string(fold) + " out of range for " + std::to_string(k) + " folds");
  if (nnz < k) throw UsageError("cannot cut " + std::to_string(nnz) + " ratings into " + std::to_string(k) + " folds");
  VAE_CHECK(nnz < (int64_t{1} << 31), "k-fold split: more than 2^31 ratings");
  // The same permutation for every fold (it depends on seed only), so the k test parts
  // partition the ratings.
  std::vector<int32_t> perm(static_cast<size_t>(nnz));
  for (int64_t i = 0; i < nnz; ++i) perm[i] = static_cast<int32_t>(i);
  philox_shuffle(perm, seed, rng_stream(RngStream::split, 0x6b666f6c64ull));  // "kfold"
  std::vector<uint8_t> in_test(static_cast<size_t>(nnz), 0);
  const int64_t lo = nnz * fold / k, hi = nnz * (fold + 1) / k;
  for (int64_t i = lo; i < hi; ++i) in_test[perm[i]] = 1;
  RatingsSplit s;
  for (Csr* m : {&s.train, &s.test}) {
    m->rows = r.rows;
    m->cols = r.cols;
    m->indptr.assign(r.rows + 1, 0);
  }
  for (int64_t u = 0; u < r.rows; ++u) {
    for (int64_t q = r.indptr[u]; q < r.indptr[u + 1]; ++q) {
      Csr& m = in_test[q] ? s.test : s.train;
      m.indices.push_back(r.indices[q]);
      m.values.push_back(r.values[q]);
    }
    s.train.indptr[u + 1] = s.train.nnz();
    s.test.indptr[u + 1] = s.test.nnz();
  }
  s.description = "fold " + std::to_string(fold + 1) + "/" + std::to_string(k);
  return s;
}

}  // namespace vae
