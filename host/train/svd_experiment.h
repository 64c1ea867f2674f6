// SVD / SVD++ runs in the ratings protocol: one split (random 90/10 or an ml-100k fold) or
// k-fold cross-validation reporting mean ± std like Surprise's benchmark table.
#pragma once
#include <iosfwd>
#include <memory>
#include <string>

#include "models/svd.h"
#include "train/trainer.h"

namespace vae {

// The held-out share of the random ratings split (as the autoencoders' ratings protocol).
inline constexpr double kSvdTestFraction = 0.1;

struct SvdRunConfig {
  SvdSchedule schedule = SvdSchedule::serial;
  int blocks = 0;     // blocked: B (0 = default_svd_blocks)
  bool cuda = false;  // blocked schedule on the GPU
};

// UsageError for a schedule that cannot run as asked (serial on the GPU; --svd-blocks without
// the blocked schedule).
void check_svd_run_config(const SvdRunConfig& rc);

struct SvdRun {
  TrainResult result;
  std::unique_ptr<SvdModel> model;  // the single split's model; null with k-fold (k models)
  std::string ratings_split;        // "random" or the ml-100k fold, for the model file
};

// k-fold cross-validation's figures from each fold's RMSE and MAE (Surprise's table: mean and
// population std): the metrics rmse, mae, rmse_std, mae_std, and the line
// "KIND K-fold: RMSE m ± s, MAE m ± s (mean ± std ...), T s per fold" (seconds: each fold's training).
struct CrossValidation {
  std::vector<std::pair<std::string, double>> metrics;
  std::string line;
};
// "Fold 2/5: RMSE 0.9374, MAE 0.7392 (20000 test ratings)\n": one fold's result, as every
// --folds run prints it after the fold.
// tested: "(20000 test ratings)", or "" where the count is not known.
std::string fold_result_line(size_t fold, size_t folds, double rmse, double mae, const std::string& tested);
CrossValidation cross_validation(const std::string& kind, const std::vector<double>& rmse,
                                 const std::vector<double>& mae, const std::vector<double>& seconds);

// k-fold cross-validation's learning curve: each epoch's losses, metrics and seconds averaged
// over the folds that reached it (all of them unless --patience stopped some early), for
// metrics.csv and curves.svg to agree with the cross-validated figures.
std::vector<EpochRecord> mean_history(const std::vector<std::vector<EpochRecord>>& folds);

// opt.model: hidden = factors (0 = default), lambda = reg (< 0 = 0.02); opt.adam.lr = SGD
// learning rate (0 = default); opt.folds ≥ 2 runs k-fold cross-validation.
SvdRun run_svd_experiment(const Dataset& d, TrainOptions opt, const SvdRunConfig& rc, std::ostream& log);

// The split a model was trained on: "random" (kSvdTestFraction from seed) or an ml-100k fold
// "1".."5", "a", "b" read from data_dir.
RatingsSplit svd_ratings_split(const Dataset& d, const std::string& split, uint64_t seed, const std::string& data_dir);

// A stored model evaluated on the split it names (file: for messages). DataError when the split
// does not reproduce the model's training ratings.
TrainResult evaluate_svd_model(const Dataset& d, const SvdModel& m, const std::string& split, uint64_t seed,
                               const std::string& data_dir, const std::string& file);

}  // namespace vae
