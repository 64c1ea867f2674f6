// Top-N recommendations and latent codes through a trained model on its backend.
//
// A user's input row is what the model was trained on: the user's ratings on the model's
// columns, ratings below the heldout threshold dropped, 0/1 for models fitted on binary input
// (Mult-VAE, CDAE, EASE, the heldout protocol). Scoring (Model::predict), the VAE/CDAE sigmoid and
// the top-k with exclusion of the user's rated items all run on the backend in batches of at
// most max_batch rows; only the k best (index, score) pairs per user come back to the host.
// Item-based AutoRec predicts items × users: a user's scores are one column of that product,
// gathered on the backend with a one-hot GEMM, a batch of users at a time.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/model_file.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "models/model.h"
#include "models/svd.h"

namespace vae {

struct Recommendation {
  int rank = 0;           // 1-based
  int32_t item = 0;       // dataset item index
  std::string item_id;    // original id
  std::string title;      // "" without titles
  float score = 0;
  int32_t because = -1;   // --explain: the liked item that pulls this one up most (−1: none / not asked)
  float because_rating = 0;
};

struct RecommendResult {
  std::string user_id;                  // original id; "" for folded-in ratings
  std::vector<Recommendation> items;
  std::vector<std::string> warnings;    // input problems (unknown ids, malformed pairs, ...)
  std::vector<std::string> notes;       // what was done (popularity fallback, ...)
  bool popularity_fallback = false;     // no usable ratings: the most popular items instead
  int64_t input_ratings = 0;            // ratings that went into the model
};

struct RecommendOptions {
  int top = 10;
  bool include_rated = false;  // false: items the user rated are never recommended
};

// Parsed "50:5,181:4,258:3" (original item ids). Problems go to warnings, by id or by text.
struct FoldinRatings {
  std::vector<std::pair<int32_t, float>> ratings;  // dataset item index, rating; ascending items
  std::vector<std::string> warnings;
};
FoldinRatings parse_foldin_ratings(const std::string& spec, const Dataset& d);

class Recommender {
 public:
  // The model must live on be; info says what its rows and columns are (model_file_info or a
  // loaded file's info).
  Recommender(Backend<float>& be, Model<float>& model, const ModelFileInfo& info, const Dataset& d);
  ~Recommender();
  Recommender(const Recommender&) = delete;
  Recommender& operator=(const Recommender&) = delete;

  // A dataset user by original id; UsageError when the dataset has no such user.
  RecommendResult for_user(const std::string& user_id, const RecommendOptions& o);
  // Folded-in ratings of a new user ("id:rating,..."). Item-based AutoRec cannot take a new
  // user (users are its input columns): UsageError.
  RecommendResult for_ratings(const std::string& spec, const RecommendOptions& o);

  struct AllUsersSummary {
    int64_t users = 0, rows = 0, popularity_fallbacks = 0;
    static constexpr int64_t kNamedFallbacks = 5;
    std::vector<std::string> fallback_users;  // the first kNamedFallbacks of them, to name
  };
  // CSV "user_id,rank,item_id,score" for every dataset user (dataset order), streamed to
  // path.tmp and renamed at the end, so an interrupted run leaves no half file.
  AllUsersSummary write_all_users_csv(const std::string& path, const RecommendOptions& o);

  // The model's raw outputs (before the VAE/CDAE sigmoid) for new users given as (dataset item,
  // rating) lists, the model's input rule applied (threshold, 0/1): one row of d.num_items()
  // values per user, NaN for items that are not model columns. CDAE scores them without a
  // learned user vector. UsageError for item-based AutoRec.
  using FoldInRow = std::vector<std::pair<int32_t, float>>;
  int64_t num_items() const;  // of the dataset it serves
  std::vector<std::vector<float>> fold_in_outputs(const std::vector<FoldInRow>& users);

  // Item-based AutoRec: what it predicts of every model item (rows in info.row_map order) for
  // every model user column, rows × users row-major (users = info.column_map.size()); items with
  // no input ratings are listed in `empty` (their rows are the bias-only output). UsageError for
  // a user-based model.
  struct ItemOutputs {
    int64_t rows = 0, users = 0;
    std::vector<float> values;
    std::vector<bool> empty;
  };
  ItemOutputs item_based_outputs();

  // Top-k of many dataset users at once (the all-users path), results in the order given.
  std::vector<RecommendResult> for_users(const std::vector<int32_t>& users, const RecommendOptions& o);

 private:
  struct Impl;
  Impl* impl_;
};

// "Top N recommendations for user 1 ..." table (rank, item id, score, title, and a "because you
// liked" column when any item has one), warnings and notes first unless with_notes is false
// (the CLI prints those to stderr: format_recommendation_notes), then the list's "Genre Counts"
// (format_genre_counts).
std::string format_recommendations(const RecommendResult& r, const Dataset& d, const std::string& heading,
                                   bool with_notes = true);
// The "warning: ..." and "note: ..." lines of r.
std::string format_recommendation_notes(const RecommendResult& r);

// Recommendations from an SVD / SVD++ model (host code; the model is in dataset order): scores
// are the unclipped estimates μ + b_u + b_i + q_iᵀ p_u (+ SVD++'s implicit term), so ties at the
// top of the rating scale keep their order; items unknown to the model score μ + b_u, and users
// without training ratings are ranked by μ + b_i (a note says so; popularity_fallback is set).
// Top-k ties go to the lower item index. New users are folded in with SvdModel::fold_in.
class SvdRecommender {
 public:
  SvdRecommender(const SvdModel& model, const Dataset& d);
  RecommendResult for_user(const std::string& user_id, const RecommendOptions& o) const;
  RecommendResult for_ratings(const std::string& spec, const RecommendOptions& o) const;
  std::vector<RecommendResult> for_users(const std::vector<int32_t>& users, const RecommendOptions& o) const;
  // Same CSV and atomic write as Recommender::write_all_users_csv.
  Recommender::AllUsersSummary write_all_users_csv(const std::string& path, const RecommendOptions& o) const;

 private:
  RecommendResult top_of(const std::vector<float>& scores, const std::vector<int32_t>& exclude, int k) const;
  const SvdModel& m_;
  const Dataset& d_;
};

// Latent codes of dataset users (all when users is empty) for VAE-type models (vae, multvae):
// n × L μ (sample = false) or z = μ + ε·σ with ε from Philox (seed, RngStream::eps); logvar (n × L)
// when asked. UsageError for models without a latent space.
struct Embeddings {
  std::vector<int32_t> users;   // dataset user indices, one per row
  int64_t dim = 0;
  std::vector<float> z;         // n × dim
  std::vector<float> logvar;    // n × dim when requested
  int64_t empty_inputs = 0;     // users with no usable ratings (encoded from a zero row)
};
Embeddings encode_users(Backend<float>& be, Model<float>& model, const ModelFileInfo& info, const Dataset& d,
                        bool sample, bool want_logvar, std::vector<int32_t> users = {});

// The SVD user vectors (p_u, SVD++: p_u + |N(u)|^−½ Σ y_j) of every dataset user as float
// embeddings; users without training ratings get zeros and count as empty_inputs.
Embeddings svd_user_embeddings(const SvdModel& model, const Dataset& d);

bool model_has_latent(const std::string& kind);
// Throws VaeError when a score (what: "scores", "outputs") is not finite: overflow from extreme
// weights or a diverged fold-in, which a ranked list would hide.
void check_finite_score(double v, const char* what);

}  // namespace vae
