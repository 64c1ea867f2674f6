#include "train/svd_experiment.h"

#include <chrono>
#include <cmath>
#include <iomanip>
#include <ostream>

#include "models/svd.h"

namespace vae {

bool is_svd_kind(const std::string& kind) { return kind == "svd" || kind == "svdpp"; }

namespace {

struct FoldOutcome {
  RatingErrors err;
  double seconds = 0;
  std::vector<EpochRecord> history;
};

FoldOutcome run_fold(const Dataset& d, const RatingsSplit& s, const SvdOptions& so, bool quiet, std::ostream& log) {
  using Clock = std::chrono::steady_clock;
  FoldOutcome out;
  const auto t0 = Clock::now();
  SvdModel m(s.train, d.rating_min, d.rating_max, so);
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
    if (!quiet)
      log << std::fixed << std::setprecision(4) << "Epoch [" << epoch << "/" << so.epochs << "] train-rmse "
          << train_rmse << " test-rmse " << e.rmse << " MAE " << e.mae << std::setprecision(2) << " ("
          << r.train_seconds << " s)\n"
          << std::defaultfloat;
    out.history.push_back(r);
  });
  out.err = m.evaluate(s.test);
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

}  // namespace

TrainResult run_svd_experiment(const Dataset& d, TrainOptions opt, std::ostream& log) {
  const std::string kind = opt.model.kind;
  VAE_CHECK(is_svd_kind(kind), "run_svd_experiment: not an SVD model");
  if (opt.protocol != "ratings") throw UsageError(kind + " predicts ratings: use --protocol ratings");
  if (opt.epochs < 1) throw UsageError("--epochs must be at least 1");
  SvdOptions so;
  so.plus_plus = kind == "svdpp";
  so.factors = opt.model.hidden;
  so.epochs = opt.epochs;
  so.lr = opt.adam.lr;
  if (opt.model.lambda >= 0) so.reg = opt.model.lambda;
  so.seed = opt.seed;

  TrainResult res;
  res.model = kind;
  res.protocol = "ratings";
  res.device = "cpu";  // serial SGD in Surprise's order (the GPU schedule is future work)
  res.dataset = d.name;
  std::vector<RatingsSplit> splits;
  if (opt.folds >= 2) {
    for (int f = 0; f < opt.folds; ++f) splits.push_back(split_ratings_kfold(d, opt.folds, f, opt.seed));
  } else if (opt.ratings_split == "random") {
    splits.push_back(split_ratings_random(d, 0.1, opt.seed));
  } else {
    splits.push_back(split_ratings_ml100k_fold(d, opt.data_dir.empty() ? d.source : opt.data_dir, opt.ratings_split));
  }
  if (!opt.quiet)
    log << "Training " << kind << " on cpu (" << (so.plus_plus ? "SVD++" : "SVD") << ", Surprise defaults unless set): "
        << d.num_users() << " users x " << d.num_items() << " items, " << splits.size() << " split(s)\n";
  std::vector<double> rmse, mae, secs;
  for (size_t f = 0; f < splits.size(); ++f) {
    if (!opt.quiet && splits.size() > 1) log << "Fold " << f + 1 << "/" << splits.size() << " (" << splits[f].description << ")\n";
    FoldOutcome o = run_fold(d, splits[f], so, opt.quiet, log);
    rmse.push_back(o.err.rmse);
    mae.push_back(o.err.mae);
    secs.push_back(o.seconds);
    if (f == 0) res.history = o.history;  // metrics.csv: the first fold's curve
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
  };
  // Surprise's table reports the population standard deviation over folds (numpy's std).
  auto stdev = [&](const std::vector<double>& v) {
    const double m = mean(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / static_cast<double>(v.size()));
  };
  res.metrics = {{"rmse", mean(rmse)}, {"mae", mean(mae)}};
  if (splits.size() > 1) {
    res.metrics.push_back({"rmse_std", stdev(rmse)});
    res.metrics.push_back({"mae_std", stdev(mae)});
    if (!opt.quiet) {
      log << std::fixed << std::setprecision(4) << kind << " " << splits.size() << "-fold: RMSE " << mean(rmse) << " ± "
          << stdev(rmse) << ", MAE " << mean(mae) << " ± " << stdev(mae) << std::setprecision(1) << ", " << mean(secs)
          << " s per fold\n"
          << std::defaultfloat;
    }
    res.eval_set = std::to_string(splits.size()) + "-fold cross-validation";
  } else {
    res.eval_set = splits[0].description + " (" + std::to_string(splits[0].test.nnz()) + " test ratings)";
  }
  res.best_epoch = opt.epochs;
  res.train_seconds = 0;
  for (double s : secs) res.train_seconds += s;
  res.epoch_seconds_median = res.train_seconds / static_cast<double>(splits.size() * static_cast<size_t>(opt.epochs));
  res.train_rows = d.num_users();
  res.eval_rows = d.num_users();
  return res;
}

}  // namespace vae
