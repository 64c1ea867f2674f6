#include "train/svd_experiment.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "core/error.h"
#include "train/stats.h"

namespace vae {

namespace {

struct FoldOutcome {
  RatingErrors err;
  double seconds = 0;
  std::vector<EpochRecord> history;
  std::unique_ptr<SvdModel> model;
};

FoldOutcome run_fold(const Dataset& d, const RatingsSplit& s, const SvdOptions& so, bool quiet, std::ostream& log) {
  using Clock = std::chrono::steady_clock;
  FoldOutcome out;
  const auto t0 = Clock::now();
  out.model = std::make_unique<SvdModel>(s.train, d.rating_min, d.rating_max, so);
  SvdModel& m = *out.model;
  auto last = Clock::now();
  m.fit([&](int epoch, double train_rmse) {
    EpochRecord r;
    r.epoch = epoch;
    r.train_loss = train_rmse;
    r.train_seconds = std::chrono::duration<double>(Clock::now() - last).count();
    last = Clock::now();
    const RatingErrors e = m.evaluate(s.test);
    r.eval_seconds = std::chrono::duration<double>(Clock::now() - last).count();
    last = Clock::now();
    r.test_loss = e.rmse;
    r.metrics = {{"rmse", e.rmse}, {"mae", e.mae}};
    if (!quiet) {
      std::ostringstream line;  // its own stream: the log's precision stays as the caller set it
      // Four decimals, as the autoencoders' lines; a rating scale far off MovieLens' can make an
      // error astronomically large, which fixed notation would print in a hundred digits.
      auto num = [](double v) {
        char b[32];
        std::snprintf(b, sizeof b, std::fabs(v) < 1e6 ? "%.4f" : "%.4g", v);
        return std::string(b);
      };
      line << "Epoch [" << epoch << "/" << so.epochs << "] train RMSE " << num(train_rmse) << " | test RMSE "
           << num(e.rmse) << " MAE " << num(e.mae) << std::fixed << std::setprecision(2) << " (" << r.train_seconds
           << " s)\n";
      log << line.str();
    }
    out.history.push_back(r);
  });
  out.err = m.evaluate(s.test);
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

}  // namespace

RatingsSplit svd_ratings_split(const Dataset& d, const std::string& split, uint64_t seed, const std::string& data_dir) {
  if (split == "random") return split_ratings_random(d, kSvdTestFraction, seed);
  return split_ratings_ml100k_fold(d, data_dir.empty() ? d.source : data_dir, split);
}

void check_svd_run_config(const SvdRunConfig& rc) {
  if (rc.cuda && rc.schedule != SvdSchedule::blocked)
    throw UsageError("the serial (Surprise-order) SGD runs on the CPU only: drop --svd-schedule serial or use --device cpu");
  if (rc.blocks != 0 && rc.schedule != SvdSchedule::blocked)
    throw UsageError("--svd-blocks belongs to the blocked schedule (--svd-schedule blocked)");
}

SvdRun run_svd_experiment(const Dataset& d, TrainOptions opt, const SvdRunConfig& rc, std::ostream& log) {
  const std::string kind = opt.model.kind;
  VAE_CHECK(is_svd_kind(kind), "run_svd_experiment: not an SVD model");
  if (opt.protocol != "ratings") throw UsageError(kind + " predicts ratings: use --protocol ratings");
  if (opt.epochs < 1) throw UsageError("--epochs must be at least 1");
  check_svd_run_config(rc);
  SvdOptions so;
  so.plus_plus = kind == "svdpp";
  so.factors = opt.model.hidden;
  so.epochs = opt.epochs;
  so.lr = opt.adam.lr;
  if (opt.model.lambda >= 0) so.reg = opt.model.lambda;
  so.seed = opt.seed;
  so.schedule = rc.schedule;
  so.blocks = rc.blocks;
  so.cuda = rc.cuda;

  SvdRun run;
  TrainResult& res = run.result;
  res.model = kind;
  res.protocol = "ratings";
  res.device = rc.cuda ? "cuda" : "cpu";
  res.dataset = d.name;
  res.seed = opt.seed;
  res.batch_size = 1;
  std::vector<RatingsSplit> splits;
  if (opt.folds >= 2) {
    for (int f = 0; f < opt.folds; ++f) splits.push_back(split_ratings_kfold(d, opt.folds, f, opt.seed));
  } else {
    run.ratings_split = opt.ratings_split;
    splits.push_back(svd_ratings_split(d, opt.ratings_split, opt.seed, opt.data_dir));
  }
  if (splits.size() == 1 && splits[0].test.nnz() == 0 && opt.require_eval)
    throw UsageError(splits[0].description + " holds no test ratings: RMSE and MAE would be undefined (nan); use a "
                     "larger data set");
  std::string schedule = svd_schedule_name(rc.schedule);
  if (rc.schedule == SvdSchedule::blocked) {
    const int b = rc.blocks > 0 ? rc.blocks : default_svd_blocks(d.num_users(), d.num_items());
    schedule += " SGD, B = " + std::to_string(b) + " blocks";
  } else {
    schedule += " SGD in Surprise's order";
  }
  res.note = schedule;
  if (!opt.quiet)
    log << "Training " << kind << " on " << res.device << " (" << (so.plus_plus ? "SVD++" : "SVD") << ", " << schedule
        << ", Surprise defaults unless set): " << d.num_users() << " users x " << d.num_items() << " items, "
        << splits.size() << " split(s)\n";
  std::vector<double> rmse, mae, secs, epoch_secs;
  std::vector<std::vector<EpochRecord>> histories;
  for (size_t f = 0; f < splits.size(); ++f) {
    if (!opt.quiet && splits.size() > 1)
      log << "Fold " << f + 1 << "/" << splits.size() << " (" << splits[f].test.nnz() << " test ratings)\n";
    FoldOutcome o = run_fold(d, splits[f], so, opt.quiet, log);
    rmse.push_back(o.err.rmse);
    mae.push_back(o.err.mae);
    secs.push_back(o.seconds);
    for (const EpochRecord& e : o.history) epoch_secs.push_back(e.train_seconds);
    histories.push_back(o.history);
    if (!opt.quiet && splits.size() > 1) log << fold_result_line(f, splits.size(), o.err.rmse, o.err.mae,
                                                             "(" + std::to_string(splits[f].test.nnz()) + " test ratings)");
    if (f == 0) res.num_params = o.model->num_params();
    if (splits.size() == 1) {
      run.model = std::move(o.model);
      res.row_errors = std::move(o.err.rows);  // one split: its users can be paired with another model's
      res.eval_user_ids = d.user_ids;
      for (int64_t u = 0; u < splits[f].train.rows; ++u)
        res.user_activity.push_back(splits[f].train.indptr[u + 1] - splits[f].train.indptr[u]);
    }
  }
  res.metrics = {{"rmse", rmse.front()}, {"mae", mae.front()}};
  res.history = mean_history(histories);  // one split: its own curve
  if (splits.size() > 1) {
    const CrossValidation cv = cross_validation(kind, rmse, mae, secs);
    res.metrics = cv.metrics;
    log << cv.line;  // the summary: a final line, printed under --quiet too
    res.eval_set = std::to_string(splits.size()) + "-fold cross-validation";
  } else {
    res.eval_set = splits[0].description + " (" + std::to_string(splits[0].test.nnz()) + " test ratings)";
    if (splits[0].test.nnz() == 0)  // kept under --quiet: it explains the final line's nan
      (opt.notes ? *opt.notes : log) << "note: " << splits[0].description << " holds no test ratings: RMSE and MAE are undefined (nan)\n";
  }
  res.best_epoch = opt.epochs;
  res.epoch_selection = "last";
  res.train_seconds = 0;
  for (double s : secs) res.train_seconds += s;
  // The median SGD epoch over every fold, as the autoencoders' (train_seconds also holds the
  // per-epoch evaluation).
  std::sort(epoch_secs.begin(), epoch_secs.end());
  res.epoch_seconds_median = epoch_secs.empty() ? 0 : epoch_secs[epoch_secs.size() / 2];
  res.train_rows = d.num_users();
  res.eval_rows = d.num_users();
  return run;
}

std::vector<EpochRecord> mean_history(const std::vector<std::vector<EpochRecord>>& folds) {
  std::vector<EpochRecord> mean;
  for (size_t e = 0;; ++e) {
    EpochRecord m;
    int n = 0;
    for (const std::vector<EpochRecord>& h : folds) {
      if (e >= h.size()) continue;
      const EpochRecord& r = h[e];
      if (n == 0) {
        m = r;
      } else {
        m.train_loss += r.train_loss;
        m.test_loss += r.test_loss;
        m.train_seconds += r.train_seconds;
        m.eval_seconds += r.eval_seconds;
        VAE_CHECK(r.metrics.size() == m.metrics.size(), "mean_history: folds report different metrics");
        for (size_t j = 0; j < r.metrics.size(); ++j) m.metrics[j].second += r.metrics[j].second;
      }
      ++n;
    }
    if (n == 0) break;
    m.train_loss /= n;
    m.test_loss /= n;
    m.train_seconds /= n;
    m.eval_seconds /= n;
    for (auto& kv : m.metrics) kv.second /= n;
    mean.push_back(std::move(m));
  }
  return mean;
}

std::string fold_result_line(size_t fold, size_t folds, double rmse, double mae, const std::string& tested) {
  std::ostringstream line;
  line << std::fixed << std::setprecision(4) << "Fold " << fold + 1 << "/" << folds << ": RMSE " << rmse << ", MAE " << mae
       << (tested.empty() ? "" : " " + tested) << "\n";
  return line.str();
}

CrossValidation cross_validation(const std::string& kind, const std::vector<double>& rmse,
                                 const std::vector<double>& mae, const std::vector<double>& seconds) {
  // Surprise's table reports the population standard deviation over folds (numpy's std).
  const MeanStd r = mean_pstd(rmse), a = mean_pstd(mae);
  CrossValidation cv;
  cv.metrics = {{"rmse", r.mean}, {"mae", a.mean}, {"rmse_std", r.std}, {"mae_std", a.std}};
  std::ostringstream line;
  line << std::fixed << std::setprecision(4) << kind << " " << rmse.size() << "-fold: RMSE " << r.mean << " ± " << r.std
       << ", MAE " << a.mean << " ± " << a.std << " (mean ± std over the folds; ± elsewhere is a 95 % interval)"
       << std::setprecision(1) << ", " << mean_pstd(seconds).mean
       << " s per fold\n";
  cv.line = line.str();
  return cv;
}

TrainResult evaluate_svd_model(const Dataset& d, const SvdModel& m, const std::string& split, uint64_t seed,
                               const std::string& data_dir, const std::string& file) {
  const RatingsSplit s = svd_ratings_split(d, split, seed, data_dir);
  if (!m.trained_on(s.train))
    throw DataError(file, 0, "the model's training ratings differ from the '" + split + "' split (seed " +
                                 std::to_string(seed) + ") of " + d.name + ": cannot evaluate it on that split");
  TrainResult r;
  r.model = m.kind();
  r.protocol = "ratings";
  r.device = "cpu";
  r.dataset = d.name;
  r.seed = seed;
  r.batch_size = 1;
  r.best_epoch = m.options().epochs;
  r.num_params = m.num_params();
  const RatingErrors e = m.evaluate(s.test);
  r.metrics = {{"rmse", e.rmse}, {"mae", e.mae}};
  EpochRecord rec;
  rec.epoch = 0;
  rec.test_loss = e.rmse;
  rec.metrics = r.metrics;
  r.history.push_back(rec);
  r.eval_set = s.description + " (" + std::to_string(s.test.nnz()) + " test ratings)";
  r.train_rows = d.num_users();
  r.eval_rows = d.num_users();
  return r;
}

}  // namespace vae
