// `vae_gpu compare`: several models trained and evaluated on one split (same data, protocol and
// seed, hence the same test users or ratings), reported side by side as a table and a CSV.
#pragma once
#include <string>
#include <vector>

#include "train/trainer.h"

namespace vae {

// The models compared when --models is not given: every model that fits the protocol
// (ratings: the rating predictors).
std::vector<std::string> default_compare_models(const std::string& protocol);

// "vae,multvae, ease" → {"vae", "multvae", "ease"}; names are case-insensitive. Throws
// UsageError on an empty list or entry, an unknown model, or a model named twice.
std::vector<std::string> parse_model_list(const std::string& list);

// RMSE and MAE are errors (lower is better); every ranking metric is better higher.
bool lower_is_better(const std::string& metric);

// The metrics of all results, each once, in the order they first appear.
std::vector<std::string> compare_metric_names(const std::vector<TrainResult>& results);

// One line per model: its metrics (the best of each column marked '*'), the epoch the metrics are
// from, the median seconds per training epoch ("-" where a model has no training epochs:
// popularity, EASE) and the whole training (or fitting) time.
std::string format_compare_table(const std::vector<TrainResult>& results);

// compare.csv: model, every metric, epoch, epoch_seconds_median, train_seconds, num_params;
// empty fields where a model has no such value.
std::string compare_csv(const std::vector<TrainResult>& results);

// compare.svg: one bar panel per metric and one for the training time, a bar per model, the best
// of each panel outlined; subtitle: the split and device line of the table.
std::string compare_svg(const std::vector<TrainResult>& results, const std::string& subtitle);

}  // namespace vae
