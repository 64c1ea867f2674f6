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

// compare --sweep NAME=V1,V2,…: one training option at several values, each compared model
// trained once per value (a model that does not read the option runs once, as a reference).
// Several --sweep flags make a grid: a model trains once per combination of the values of the
// options it reads.
struct Sweep {
  std::string name;                 // "" = no sweep
  std::vector<std::string> values;  // as written (they label the rows and directories)
};
// The option names --sweep takes (the long flag without its dashes).
const std::vector<std::string>& sweep_names();
// "beta=1,0.001" → {beta, {1, 0.001}}; "precision=exact,fp32" (the one option of words: exact,
// fp32, tf32, bf16). UsageError for a missing '=', an unknown name, a value
// the flag itself would refuse (negative, not a number, a fraction where an integer is wanted,
// out of range) or given twice, and fewer than two values.
Sweep parse_sweep(const std::string& spec);
// Whether a model reads the option (svd/svdpp read --hidden, --lr and --lambda as their factors,
// SGD rate and regularisation).
bool sweep_applies(const std::string& name, const std::string& kind);
// Sets the option in t to a value parse_sweep accepted ("precision" is the backend's, not t's:
// the caller runs the row on a backend of that precision).
void apply_sweep(const std::string& name, const std::string& value, TrainOptions& t);
// A swept run's row and directory name: "vae_beta=0.001", on a grid "multvae_beta=0.2_dropout=0.5"
// (option names hold no '_', values no '_' either). An option named after the model loses that
// prefix: EASE's ease-lambda gives "ease_lambda=10", not "ease_ease-lambda=10".
std::string sweep_label(const std::string& kind, const std::string& name, const std::string& value);
std::string sweep_label(const std::string& kind, const std::vector<std::pair<std::string, std::string>>& settings);
// A row name compare itself writes: a model kind, or a sweep label of one.
bool is_compare_label(const std::string& label);

// RMSE and MAE are errors (lower is better); every ranking metric is better higher.
bool lower_is_better(const std::string& metric);
// The models whose outputs are ratings (AutoRec, I-AutoRec, SVD, SVD++): only these compete for
// the best RMSE and MAE; the others' are of item scores clipped to the rating scale.
bool predicts_ratings(const std::string& kind);
// A result's scores are ratings: a rating predictor's, or popularity's under the ratings
// protocol (each item's mean training rating there, not its count).
bool predicts_ratings(const TrainResult& r);

// The metrics of all results, each once, in the order they first appear.
std::vector<std::string> compare_metric_names(const std::vector<TrainResult>& results);

// A result's row name: its sweep label, else its model.
inline const std::string& row_name(const TrainResult& r) { return r.label.empty() ? r.model : r.label; }

// ---- selection on the validation users (heldout protocol) ----------------------------------
// The metric the rows are selected on: the trainer's selection metric (TrainResult::
// selection_metric: NDCG@100, or the largest --ks cut-off) of the first heldout result; "" when no
// result has validation users (seed, ratings).
std::string validation_metric(const std::vector<TrainResult>& results);
// A heldout result's value of metric on the validation users at its kept epoch (trained models:
// best_epoch; EASE: the chosen λ; popularity: its one evaluation); NaN under the other protocols
// or when nothing was scored.
double validation_value(const TrainResult& r, const std::string& metric);
// The row selected on the validation users: the highest validation_value of validation_metric
// (the first of exact ties); null without validation figures.
const TrainResult* selected_row(const std::vector<TrainResult>& results);
// What the marks of the table mean, for the text under it. Heldout: which row is selected, that
// it was chosen on the validation users, and that the test figures are reported, not used to
// choose. Seed and ratings: one line saying the '*' marks are on the test users (no validation
// set exists in that protocol), so they select nothing.
std::string format_selection_note(const std::vector<TrainResult>& results);

// One line per model: its metrics (the best of each column marked '*'), the epoch the metrics are
// from, the median seconds per training epoch ("-" where a model has no training epochs:
// popularity, EASE) and the whole training (or fitting) time. Under the heldout protocol a
// "val <metric>" column follows the model's name, and the selected row ends in "◀ selected".
std::string format_compare_table(const std::vector<TrainResult>& results);

// The models against the best of one ranking metric, user by user: each row's mean per-user
// difference from the best model with its paired 95 % interval, marked where the interval
// excludes 0. The metric is the trainer's selection metric (heldout: NDCG@100 when reported,
// else the largest cut-off's; seed: NDCG@k). Under heldout the reference is the selected row
// (selected_row: the best on the validation users), its test values compared with the others';
// the best test figure is the reference only where no row has a validation figure. The ratings
// protocol compares RMSE instead, paired
// by evaluated user (item for item-based AutoRec) over the same test ratings. Empty when fewer
// than two models have such values for the same evaluation set (SVD's --folds, no users).
std::string format_paired_differences(const std::vector<TrainResult>& results);

// The metric the rows are judged on: seed NDCG@k (the first NDCG), heldout NDCG@100 when
// reported, else the NDCG of the largest cut-off (a row's own TrainResult::selection_metric
// decides where it has one); "" when there is none.
std::string selection_metric(const std::vector<const TrainResult*>& rows);

// Notes on trained models that end level with popularity (within 2 % of its NDCG at the
// selection cut-off), below it or far below it (under half): a table alone does not say that
// such a model learned no ranking of its own. Each note gives the optimiser steps behind the
// figure and the likeliest cause: the notebook VAE's collapsed KL term, fewer than kFewSteps
// steps, or the model itself. Empty without a popularity row or a ranking metric.
std::string format_popularity_notes(const std::vector<TrainResult>& results);
// The same over rows held elsewhere (the main job's model and its popularity baseline).
std::string format_popularity_notes(const std::vector<const TrainResult*>& rows);
// A figure m within 2 % of popularity's p: the model ranks as counting ratings does.
bool level_with_popularity(double m, double p);
// The notebook VAE's posterior collapse as its figures show it (README): model "vae" at a KL
// weight (r.config.beta) of 1e-3 or more whose figure m ends level with popularity's p. Level,
// not merely below: an under-trained VAE far below popularity has another cause.
bool vae_collapsed(const TrainResult& r, double m, double p);

// The selection metric (as above) by user activity: the evaluated users cut into quartiles of
// their number of input ratings, one row per model with its mean in each group (the Mult-VAE
// paper's view: do the models differ for light and heavy users?). Empty without per-user values
// or with fewer than 8 users or a single activity level.
std::string format_activity_breakdown(const std::vector<TrainResult>& results);

// compare.csv: model, every metric, the per-user metrics' 95 % interval half-widths
// (<metric>_ci95), epoch, epoch_seconds_median, train_seconds, num_params; then, under the
// heldout protocol, val_<metric> (validation_value) and selected (1 on the selected row); then
// one column per swept option (swept, in --sweep order) with the row's value of it (its
// TrainResult::sweep_settings). Empty fields where a model has no such value (an option it does
// not read). Each run in `failed` (a model that failed to train, by its row name and sweep
// settings) follows as a row with its name and swept values only: compare.csv names every row
// the compare was asked for, so a later compare into the same folder knows which run folders
// are its own.
struct FailedRow {
  std::string name;
  std::vector<std::pair<std::string, std::string>> sweep_settings;
};
std::string compare_csv(const std::vector<TrainResult>& results, const std::vector<std::string>& swept = {},
                        const std::vector<FailedRow>& failed = {});

// compare.svg: one bar panel per metric and one for the training time, a bar per model, the best
// of each panel outlined; under heldout first a panel of the validation figure, the selected row
// outlined; subtitle: the split and device line of the table.
std::string compare_svg(const std::vector<TrainResult>& results, const std::string& subtitle);

}  // namespace vae
