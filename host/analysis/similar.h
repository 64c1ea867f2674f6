// Items like a given item, and the rated item behind a recommendation, both read from what the
// trained model itself does: the effect of a liked item is how much a new user's liking that
// one item (alone, at the top of the rating scale) raises each item's output over a user with no
// ratings — the model's "people who like X also like". One definition serves every model:
//   vae, cdae (BCE) — the change in the item's logit (before the sigmoid recommend applies);
//   multvae — the change in the item's logit (= its log-probability, up to one constant);
//   autorec, cdae (MSE) — the change in the predicted rating;
//   ease — exactly B[i][j] (its scores are X·B);
//   svd, svdpp — the change in r̂ after the fold-in's SGD updates (b_u and p_u from that rating).
// Item-based AutoRec cannot take a new user: its items are compared instead by what it predicts
// of them for its training users — the correlation over users of two items' predicted ratings,
// each user's and each item's mean prediction taken out (so neither a generous rater nor a
// well-liked item makes items alike). Popularity (no item depends on another) is refused.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "analysis/recommend.h"
#include "data/dataset.h"
#include "models/svd.h"

namespace vae {

using FoldInRow = Recommender::FoldInRow;  // (dataset item, rating) pairs of one new user

struct ItemEffects {
  std::string model;  // kind
  std::string unit;   // what the output is ("logit", "predicted rating", ...)
  float like = 5.0f;   // the rating `similar` folds in: the data's top rating
  float liked = 3.0f;  // --explain's likes: ratings at or above this (the input threshold, else mid-scale)
  // Outputs for new users: one row of num_items values each, NaN where the model has no column.
  std::function<std::vector<std::vector<float>>(const std::vector<FoldInRow>&)> outputs;
  int64_t chunk = 256;  // users per outputs() call (bounds memory: rows × items floats)
  // Item-based AutoRec instead of outputs: for each given dataset item, every dataset item's
  // similarity to it (NaN off the compared items, which are `items`).
  std::function<std::vector<std::vector<double>>(const std::vector<int32_t>&)> similarity;
  std::vector<int32_t> items;  // with similarity: the items compared (ascending)
  int64_t users = 0;           // with similarity: over how many users
  bool by_similarity() const { return static_cast<bool>(similarity); }
};

// UsageError for a model kind without item effects (popularity), so that a command refuses it
// before training.
void require_item_effects(const std::string& kind);

// An autoencoder's or EASE's effects through rec (which must serve model with info). EASE's are
// read from its B directly (X·B with 0/1 rows: each used rating adds its item's row of B).
// Item-based AutoRec's are similarities (see above), from its full items × users predictions;
// UsageError when those would exceed max_values floats.
ItemEffects item_effects(Recommender& rec, Backend<float>& be, Model<float>& model, const ModelFileInfo& info,
                         float rating_min, float rating_max, int64_t max_values = int64_t(1) << 29);
ItemEffects item_effects(const SvdModel& model);

// An item named on the command line: its original id, or else a case-insensitive part of one
// title (an exact title wins over parts). UsageError when nothing matches or several titles do
// (up to ten are listed with their ids).
int32_t find_item_by_id_or_title(const std::string& query, const Dataset& d);

struct SimilarItem {
  int rank = 0;
  int32_t item = 0;  // dataset item index
  double effect = 0;
};

// The top items whose output the given item's like raises most over the average item's like
// (lift; itself excluded), best first; ties go to the lower dataset item index. Lifts are
// centred over the items (a shift common to all of them is taken out), so 0 is a typical pull.
// By similarity instead when e has one. Only items with at least min_ratings ratings in d are
// listed (the lifts are still centred over all the model's items): a film of one or two ratings
// gets an extreme pull from the few users it has. UsageError when the model does not take the
// item as input (not one of its columns).
std::vector<SimilarItem> most_similar(const ItemEffects& e, int32_t item, int top, const Dataset& d,
                                      int64_t min_ratings = 1);

// Per dataset item, whether it has min_ratings ratings in d (empty: every item, min_ratings <= 1).
std::vector<char> listable(const Dataset& d, int64_t min_ratings);

// Every model item's top lifts, streamed to the CSV `path` ("item_id,rank,similar_item_id,lift",
// or similarity, model items in dataset order) and renamed into place when complete; returns the
// rows written. Costs one outputs() row per model item twice (the average, then the lists).
int64_t write_similar_csv(const ItemEffects& e, const Dataset& d, int top, const std::string& path,
                          int64_t min_ratings = 1);

// Heading, then rank, item id, effect, the item's number of ratings, title; then the list's
// genre counts. min_ratings > 1: a line says that items with fewer ratings were not listed.
std::string format_similar(const ItemEffects& e, int32_t item, const std::vector<SimilarItem>& list,
                           const Dataset& d, int64_t min_ratings = 1);

// For each recommended item: among the user's liked items (rated at least `liked`), the one
// whose rating alone pulls it up most — the rise in its output, less the rise that rating gives
// the average item (a shift shared by all items, such as SVD's user bias, explains none of
// them) — or −1 when no liked item pulls it above that (or none is a model column). Ties go to
// the lower item index. By similarity instead when e has one: the liked item most similar to it,
// if any is above 0.
std::vector<int32_t> explain_recommendations(const ItemEffects& e, const std::vector<int32_t>& recommended,
                                             const FoldInRow& rated, float liked, int64_t num_items);

}  // namespace vae
