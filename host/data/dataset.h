// In-memory rating data: dense re-indexed users × items CSR plus the metadata that the
// analysis prints (titles, genres, user attributes). Original ids are kept for output.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"  // kNoRow

namespace vae {

// Host CSR matrix, float values, column indices ascending within each row.
struct Csr {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int64_t> indptr{0};  // rows + 1 entries
  std::vector<int32_t> indices;
  std::vector<float> values;

  int64_t nnz() const { return static_cast<int64_t>(indices.size()); }
  int64_t row_nnz(int64_t r) const { return indptr[r + 1] - indptr[r]; }
  // (cols × rows) transpose, still sorted.
  Csr transpose() const;
  // The given rows, in that order (a new CSR with rows.size() rows).
  Csr select_rows(const std::vector<int32_t>& rows) const;
  // Throws VaeError naming the first broken invariant (monotone indptr, sorted unique in-range
  // indices, sizes agree).
  void validate() const;
  // Build from (row, col, value) triplets; duplicates must have been resolved before.
  static Csr from_triplets(int64_t rows, int64_t cols, std::vector<int32_t> r,
                           std::vector<int32_t> c, std::vector<float> v);
};

// Per-user attributes when the format has them (ml-100k u.user, ml-1m users.dat, synthetic).
struct UserMeta {
  std::vector<int> age;         // years
  std::vector<char> gender;     // 'M' / 'F'
  std::vector<int> occupation;  // index into occupation_names
  std::vector<std::string> occupation_names;
  bool empty() const { return age.empty(); }
};

struct Dataset {
  std::string name;    // e.g. "ml-100k", "ml-latest-small", "synthetic(users=943,...)"
  std::string source;  // directory, file or synthetic spec it came from
  std::string format;  // "ml-100k", "ml-1m", "ml-latest", "csv", "synthetic"

  std::vector<std::string> user_ids;  // original id of each dense user index
  std::vector<std::string> item_ids;  // original id of each dense item index
  Csr ratings;                        // users × items
  float rating_min = 1.0f;            // the format's rating scale
  float rating_max = 5.0f;
  std::string rating_column;  // generic CSV: the header's name of the rating column when the
                              // header chose it ("" = the third column)
  // When each rating was given (seconds since 1970, UTC), parallel to ratings.indices; empty when
  // the data has no usable timestamps, and then no_times says why (naming the file and line).
  std::vector<int64_t> rating_times;
  std::string no_times;
  bool has_times() const { return !rating_times.empty() && rating_times.size() == ratings.indices.size(); }

  // Item metadata (empty vectors when the format has none).
  std::vector<std::string> titles;          // per item
  std::vector<std::string> genre_names;     // e.g. the 19 ml-100k genres
  std::vector<uint32_t> item_genres;        // per item, bit g set = genre_names[g]
  UserMeta users;

  // Synthetic data only: the planted taste group of each user (for scoring clusters).
  std::vector<int> planted_group;

  int64_t num_users() const { return ratings.rows; }
  int64_t num_items() const { return ratings.cols; }
  int64_t num_ratings() const { return ratings.nnz(); }
  bool has_titles() const { return !titles.empty(); }
  bool has_genres() const { return !genre_names.empty(); }
  // Dense index of an original id, or −1.
  int64_t find_user(const std::string& id) const;
  int64_t find_item(const std::string& id) const;
  // Order-independent FNV-1a fingerprint of the rating matrix and ids (model files refer to it).
  std::string fingerprint() const;
};

// ---- loading ---------------------------------------------------------------------------
// Detects the format from the files in dir (u.data → ml-100k, ratings.dat → ml-1m/10m,
// ratings.csv + movies.csv → ml-latest/20m/25m) or loads a single generic ratings CSV file.
// Every malformed input throws DataError naming the file, the line and the problem.
// Duplicate (user, item) pairs are an error (MovieLens never has them; silently keeping one
// would hide a broken file).
Dataset load_movielens_dir(const std::string& dir);
Dataset load_ml100k(const std::string& dir);
Dataset load_ml1m(const std::string& dir);      // also ml-10m (ratings 0.5–5, no users.dat)
Dataset load_mllatest(const std::string& dir);  // ml-latest-small, ml-20m, ml-25m
// Generic CSV: user,item,rating[,timestamp], optional header, integer or string ids;
// items_file (optional): item,title[,genres with '|']. A header line maps the columns by name
// (userId, movieId, score, ...; other columns ignored); one whose names it does not know keeps
// the positional order. `note` (optional) gets a line saying how the columns were read when that
// is not plainly user, item, rating[, timestamp], else "".
Dataset load_ratings_csv(const std::string& file, const std::string& items_file = "",
                         std::string* note = nullptr);
// The columns a generic-CSV header can name.
enum CsvRole { kUserCol, kItemCol, kRatingCol, kTimeCol, kNumCsvRoles };
// What a generic-CSV header name stands for (compared without case, spaces, '_' and '-'): a
// CsvRole, or -1 for none of them.
int csv_header_role(std::string_view name);

// ---- synthetic data --------------------------------------------------------------------
struct SyntheticSpec {
  int64_t users = 943;
  int64_t items = 1682;
  int64_t ratings = 100000;
  int groups = 6;
  uint64_t seed = 1;
};
// Parses "synthetic" or "synthetic:users=943,items=1682,ratings=100000,groups=6,seed=1".
SyntheticSpec parse_synthetic_spec(const std::string& spec);  // throws UsageError
// Whether a --data argument (or a recorded data source) names the synthetic generator.
inline bool is_synthetic_spec(const std::string& arg) { return arg == "synthetic" || arg.rfind("synthetic:", 0) == 0; }
Dataset make_synthetic(const SyntheticSpec& spec);

// --data argument resolution: "synthetic[:...]", a directory, or a CSV file; "" = default
// (data/ml-100k under the working directory if present, else synthetic). `note` says which.
Dataset load_dataset(const std::string& arg, std::string* note = nullptr);

// ---- splits (all deterministic from seed) ------------------------------------------------
// The reference notebooks: test_fraction of users drawn at random hold their full vectors.
struct SeedSplit {
  std::vector<int32_t> train_users;  // ascending dense user indices
  std::vector<int32_t> test_users;
};
SeedSplit split_seed(const Dataset& d, double test_fraction, uint64_t seed);

// Mult-VAE strong generalisation. Matrices are over the kept items (item_map: column → dataset
// item index); values are binary (1) after thresholding.
struct HeldoutSplit {
  std::vector<int32_t> item_map;
  std::vector<int32_t> train_users, val_users, test_users;  // dataset user indices
  Csr train;                       // train_users × kept items
  Csr val_foldin, val_target;      // val_users × kept items
  Csr test_foldin, test_target;    // test_users × kept items
  // Users in no part: fewer than min_positives positives; drawn for validation or test but with
  // under two positives on the kept items (nothing to fold in and hold out).
  int64_t too_few = 0, unusable = 0;
};
struct HeldoutOptions {
  double threshold = 4.0;  // rating ≥ threshold → 1; ≤ 0 keeps every rating as positive
  int min_positives = 5;
  double val_fraction = 0.1;
  double test_fraction = 0.2;
  double foldin_fraction = 0.8;
};
HeldoutSplit split_heldout(const Dataset& d, const HeldoutOptions& opt, uint64_t seed);

// Temporal leave-last-out (weak generalisation): every user with at least
// max(min_positives, 2·last + 1) positives has their `last` latest positives as the test
// target and the `last` before them as the validation target; everything earlier is training.
// Every user trains (the evaluated ones on their earlier positives only), so the val and test
// users are training users: *_rows gives each one's row in `train` (kNoRow for a cutoff test
// user who liked nothing before --val-from). Validation folds in the training positives, the
// test those plus the validation ones. Ties in time are ordered by a
// seeded shuffle. Targets on items no one trained on are dropped (the model has no column for
// them); dropped counts how many. Throws UsageError when the data has no timestamps.
struct TemporalSplit : HeldoutSplit {
  std::vector<int32_t> val_rows, test_rows;  // row in train of each val / test user
  int64_t dropped = 0;                       // held-out positives on items absent from training
  int64_t dropped_test = 0;                  // those of them that were test targets
  int64_t untrained_test_users = 0;          // users with test positives, every one of them dropped
  int64_t unseen_users = 0;  // cutoff: users with test positives but none before --test-from
  int last = 1;              // temporal: positives held out per user; cutoff: 0
  int64_t val_from = 0, test_from = 0;  // cutoff: the two cuts, seconds since 1970
};
TemporalSplit split_temporal(const Dataset& d, const HeldoutOptions& opt, int last, uint64_t seed);
// Global temporal cut-off, one date for everyone: ratings before val_from train, those in
// [val_from, test_from) are the validation targets, later ones the test targets, each user folding
// in what they liked before the cut (as in split_temporal). A test user who liked something only
// from val_from on has no training row (test_rows: kNoRow) and is scored on that; one who liked
// nothing before test_from has nothing to fold in and is only counted (unseen_users). No seed:
// the cut alone decides.
TemporalSplit split_cutoff(const Dataset& d, const HeldoutOptions& opt, int64_t val_from, int64_t test_from);
// A cut given as a share of the ratings in (0, 1) ("0.9": the latest 10 % of the ratings by time
// come after it), a date (YYYY-MM-DD[ HH:MM[:SS]], UTC) or integer seconds since 1970. `option`
// names it in errors.
int64_t resolve_time_cut(const Dataset& d, const std::string& when, const char* option);
// The validation cut when none is given: as many ratings between it and test_from as from
// test_from on.
int64_t default_val_cut(const Dataset& d, int64_t test_from);
// --val-from and --test-from as the two cuts {val_from, test_from} (val_from "": the default),
// refused unless val_from < test_from.
std::pair<int64_t, int64_t> resolve_cutoff(const Dataset& d, const std::string& val_from, const std::string& test_from);
// The protocols whose evaluated users split into fold-in input and held-out target items, with
// validation users choosing the epoch: heldout (other users), temporal and cutoff (the same
// users, later).
inline bool is_timed_protocol(const std::string& p) { return p == "temporal" || p == "cutoff"; }
inline bool is_foldin_protocol(const std::string& p) { return p == "heldout" || is_timed_protocol(p); }

// Fields of a rating line, as the loaders read them (the ml-100k fold files too); errors name
// file and line. ml-100k: a whole number from 1 to 5; any: a finite float.
// The largest |rating| a loader accepts (squared errors are summed in float).
inline constexpr double kMaxRatingMagnitude = 1e15;
float parse_ml100k_rating(std::string_view f, const std::string& file, long line);
float parse_any_rating(std::string_view f, const std::string& file, long line);
int64_t parse_timestamp_field(std::string_view f, const std::string& file, long line);  // any int64

// Times: integer seconds since 1970, or an ISO date "YYYY-MM-DD[(T| )HH:MM[:SS]][Z]" read as UTC.
// false for anything else.
bool parse_time_field(std::string_view f, int64_t* out);
std::string utc_date(int64_t t);  // "YYYY-MM-DD"
std::string utc_time(int64_t t);  // "YYYY-MM-DD", with " HH:MM:SS" unless at midnight

// Rating prediction: train/test over the same users × items shape.
struct RatingsSplit {
  Csr train;
  Csr test;
  std::string description;  // "random 90/10" or "u1.base/u1.test"
};
RatingsSplit split_ratings_random(const Dataset& d, double test_fraction, uint64_t seed);
// k-fold cross-validation (Surprise's KFold): the ratings are shuffled once from seed and cut
// into k equal parts; fold f (0-based) tests on part f and trains on the rest.
RatingsSplit split_ratings_kfold(const Dataset& d, int k, int fold, uint64_t seed);
// ml-100k's given folds: fold 1–5 → uN.base/uN.test, fold 'a'/'b' → ua/ub. ratings_split_names()
// lists what --fold (and a model file's ratings_split) may name: "random" and those folds.
inline const std::vector<std::string> kMl100kFolds = {"1", "2", "3", "4", "5", "a", "b"};
inline bool is_ml100k_fold(const std::string& s) {
  for (const std::string& f : kMl100kFolds)
    if (s == f) return true;
  return false;
}
inline std::vector<std::string> ratings_split_names() {
  std::vector<std::string> v{"random"};
  v.insert(v.end(), kMl100kFolds.begin(), kMl100kFolds.end());
  return v;
}
RatingsSplit split_ratings_ml100k_fold(const Dataset& d, const std::string& dir, const std::string& fold);

}  // namespace vae
