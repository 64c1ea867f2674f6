#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <numeric>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "analysis/safetensors.h"
#include "analysis/svg_plot.h"
#include "core/philox.h"
#include "core/temp_files.h"
#include "data/shuffle.h"
#include "data/text_reader.h"
#include "models/baselines.h"
#include "train/compare.h"
#include "train/memory_plan.h"
#include "train/stats.h"

namespace vae {

namespace {

using Clock = std::chrono::steady_clock;

// EASE's lambda: the grid tried on validation users, and the value without them.
const std::vector<double> kEaseGrid = {10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0};
constexpr double kEaseDefaultLambda = 200.0;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

Csr binarized(Csr m) {
  std::fill(m.values.begin(), m.values.end(), 1.0f);
  return m;
}

std::vector<int32_t> iota_rows(int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

bool is_autoencoder(const std::string& kind) {
  return kind == "vae" || kind == "autorec" || kind == "i-autorec" || kind == "multvae" ||
         kind == "cdae";
}
bool wants_binary_input(const std::string& kind) {
  return kind == "multvae" || kind == "cdae" || kind == "ease";
}

// Rows to evaluate: the model reads `input` rows and is scored against `target` rows.
struct EvalSet {
  CsrTensor<float> input, target;
  Tensor<int32_t> rows;
  int64_t n = 0;
  // Each row's training row, when the evaluated users are training users (CDAE may then use its
  // per-user vectors): the ratings protocol's rows themselves, the timed protocols' maps (kNoRow
  // for a user with no row); empty: none.
  Tensor<int32_t> users;
};

EvalSet make_eval_set(Backend<float>& be, const Csr& input, const Csr& target,
                      const std::vector<int32_t>& user_rows = {}) {
  VAE_CHECK(input.rows == target.rows, "eval input and target differ in rows");
  VAE_CHECK(user_rows.empty() || static_cast<int64_t>(user_rows.size()) == input.rows,
            "eval set: one training row per evaluated row");
  EvalSet e;
  e.input = be.upload_csr(input);
  e.target = be.upload_csr(target);
  e.n = input.rows;
  e.rows = be.upload<int32_t>(iota_rows(e.n), e.n, 1);
  if (!user_rows.empty()) e.users = be.upload<int32_t>(user_rows, e.n, 1);
  return e;
}

// Everything the per-epoch evaluation needs, allocated once.
class Evaluator {
 public:
  // [rating_lo, rating_hi]: the data's rating scale, which RMSE clips scores to (the baselines'
  // configs carry none).
  Evaluator(Backend<float>& be, const TrainOptions& opt, int64_t batch, int64_t width, float rating_lo, float rating_hi)
      : be_(be), opt_(opt), batch_(batch), lo_(rating_lo), hi_(rating_hi) {
    scores_ = be.alloc<float>(batch, width);
    truth_ = be.alloc<float>(batch, width);
    const int kmax = std::max(opt.k, *std::max_element(opt.ks.begin(), opt.ks.end()));
    kmax_ = static_cast<int>(std::min<int64_t>(kmax, width));
    // A cut-off beyond the item count ranks every item: the same metric as k = width (recall's
    // and NDCG's denominators use min(k, |target|), and |target| <= width).
    for (int k : opt.ks) ks_ranked_.push_back(std::min(k, kmax_));
    // Coverage is measured at the protocol's first cut-off (seed: --k; heldout, temporal: the first
    // of --ks). A cut-off beyond the item count covers what every item ranked covers; it keeps its name.
    const bool foldin = is_foldin_protocol(opt.protocol);
    kcov_ = opt.protocol == "seed" ? std::min(opt.k, kmax_) : foldin ? ks_ranked_.front() : 0;
    kcov_name_ = opt.protocol == "seed" ? opt.k : foldin ? opt.ks.front() : 0;
    width_ = width;
    idx_ = be.alloc<int32_t>(batch, kmax_);
    val_ = be.alloc<float>(batch, kmax_);
    out_ = be.alloc<float>(batch, 2 * static_cast<int64_t>(opt.ks.size()) + 3);
    loss_ = be.zeros(1, 1);
  }

  // Returns (mean loss per batch, metrics in print order); per_user() then holds the users' values.
  std::pair<double, std::vector<std::pair<std::string, double>>> run(Model<float>& m, const EvalSet& e) {
    const std::string& protocol = opt_.protocol;
    std::vector<double> sums;
    std::vector<std::string> names;
    if (protocol == "seed") {
      names = {"ndcg@" + std::to_string(opt_.k), "recall@" + std::to_string(opt_.k), "ndcg@100",
               "recall@100", "rmse"};
    } else if (is_foldin_protocol(protocol)) {
      for (int k : opt_.ks) names.push_back("recall@" + std::to_string(k));
      for (int k : opt_.ks) names.push_back("ndcg@" + std::to_string(k));
    } else {
      names = {"rmse", "mae"};
    }
    sums.assign(names.size(), 0.0);
    std::vector<std::pair<double, int64_t>> rows;  // ratings: each row's squared errors and count
    // Each user's value of each per-user metric (all but RMSE and coverage), for paired tests.
    std::vector<std::vector<double>> users(protocol == "ratings" ? 0 : names.size());
    for (auto& u : users) u.reserve(static_cast<size_t>(e.n));
    double sq = 0, ab = 0, cnt = 0;
    // Catalogue coverage: the items that are in at least one evaluated user's top kcov_.
    std::vector<uint8_t> covered(kcov_ > 0 ? static_cast<size_t>(width_) : 0, 0);
    auto cover = [&](CMat<int32_t> idx, int64_t n, int k) {
      const std::vector<int32_t> h = be_.download(idx);
      for (int64_t i = 0; i < n; ++i)
        for (int j = 0; j < k; ++j)
          if (const int32_t item = h[static_cast<size_t>(i * idx.cols + j)]; item >= 0) covered[item] = 1;
    };
    be_.fill(loss_.mat(), 0.0f);
    int64_t batches = 0;
    for (int64_t r0 = 0; r0 < e.n; r0 += batch_) {
      const int64_t n = std::min(batch_, e.n - r0);
      Batch<float> b;
      b.input = e.input.view();
      b.rows = e.rows.cmat().rows_slice(r0, n);
      if (e.users.size() > 0) b.users = e.users.cmat().rows_slice(r0, n);
      b.n = n;
      ++batches;
      Mat<float> scores = scores_.mat().rows_slice(0, n);
      if (m.num_params() > 0)
        m.evaluate(b, loss_.mat(), scores);
      else
        m.predict(b, scores);
      if (protocol == "seed") {
        Mat<float> out = out_.mat().rows_slice(0, n).reshaped(n, out_.cols());
        Mat<float> o2{out.data, n, 2};
        Mat<float> truth = truth_.mat().rows_slice(0, n);
        be_.csr_rows_to_dense(e.target.view(), b.rows, truth);
        Mat<float> o3{out.data, n, 3};
        be_.rating_errors(scores, e.target.view(), b.rows, lo_, hi_, o3);
        std::vector<float> errs = be_.download(CMat<float>(o3));
        for (int64_t i = 0; i < n; ++i) {
          sq += errs[i * 3];
          cnt += errs[i * 3 + 2];
        }
        // The notebooks rank sigmoid(output); sigmoid is applied in float like theirs, so
        // saturated scores tie exactly as they do there. Baselines (popularity counts, EASE)
        // are ranked on their raw scores: squashing counts would tie every popular item.
        if (m.num_params() > 0) be_.bias_act(scores, CMat<float>{}, Act::sigmoid, scores);
        // The ranking the metrics read, as lists: every item (the notebooks exclude none).
        Mat<int32_t> top{idx_.data(), n, kcov_};
        be_.topk(scores, CsrView<float>{}, CMat<int32_t>{}, kcov_, top, Mat<float>{val_.data(), n, kcov_});
        cover(CMat<int32_t>(top), n, kcov_);
        const int kk[2] = {opt_.k, 100};
        for (int j = 0; j < 2; ++j) {
          be_.graded_metrics(scores, truth, kk[j], o2);
          std::vector<float> h = be_.download(CMat<float>(o2));
          for (int64_t i = 0; i < n; ++i) {
            sums[2 * j] += h[i * 2];
            sums[2 * j + 1] += h[i * 2 + 1];
            users[2 * j].push_back(h[i * 2]);
            users[2 * j + 1].push_back(h[i * 2 + 1]);
          }
        }
      } else if (is_foldin_protocol(protocol)) {
        const int64_t nk = static_cast<int64_t>(opt_.ks.size());
        Mat<int32_t> idx = idx_.mat().rows_slice(0, n);
        Mat<float> val = val_.mat().rows_slice(0, n);
        be_.topk(scores, e.input.view(), b.rows, kmax_, idx, val);
        Mat<float> out{out_.data(), n, 2 * nk};
        be_.heldout_metrics(idx, e.target.view(), b.rows, ks_ranked_, out);
        cover(CMat<int32_t>(idx), n, kcov_);
        std::vector<float> h = be_.download(CMat<float>(out));
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < 2 * nk; ++j) {
            sums[j] += h[i * 2 * nk + j];
            users[j].push_back(h[i * 2 * nk + j]);
          }
      } else {
        Mat<float> out{out_.data(), n, 3};
        be_.rating_errors(scores, e.target.view(), b.rows, lo_, hi_, out);
        std::vector<float> h = be_.download(CMat<float>(out));
        for (int64_t i = 0; i < n; ++i) {
          sq += h[i * 3];
          ab += h[i * 3 + 1];
          cnt += h[i * 3 + 2];
          rows.emplace_back(h[i * 3], static_cast<int64_t>(h[i * 3 + 2]));
        }
      }
    }
    std::vector<std::pair<std::string, double>> metrics;
    if (protocol == "ratings") {
      metrics = {{"rmse", cnt ? std::sqrt(sq / cnt) : NAN}, {"mae", cnt ? ab / cnt : NAN}};
    } else {
      for (size_t j = 0; j < names.size(); ++j)
        metrics.emplace_back(names[j], e.n ? sums[j] / static_cast<double>(e.n) : NAN);
      if (protocol == "seed") {
        metrics.back().second = cnt ? std::sqrt(sq / cnt) : NAN;
        users.pop_back();  // RMSE is over ratings, not users
      }
      const auto items = std::count(covered.begin(), covered.end(), uint8_t{1});
      metrics.emplace_back("coverage@" + std::to_string(kcov_name_),
                           e.n ? static_cast<double>(items) / static_cast<double>(width_) : NAN);
    }
    // --k 100 (seed) or a repeated --ks entry names a metric twice: keep one column of each.
    std::vector<std::pair<std::string, double>> unique;
    for (auto& kv : metrics)
      if (std::none_of(unique.begin(), unique.end(), [&](const auto& u) { return u.first == kv.first; }))
        unique.push_back(std::move(kv));
    metrics = std::move(unique);
    per_user_.clear();
    row_errors_ = std::move(rows);
    for (size_t j = 0; j < users.size(); ++j)
      if (std::none_of(per_user_.begin(), per_user_.end(), [&](const auto& u) { return u.first == names[j]; }))
        per_user_.emplace_back(names[j], std::move(users[j]));
    const double loss = batches && m.num_params() > 0 ? be_.read_scalar(loss_.cmat()) / batches : NAN;
    return {loss, metrics};
  }

 // The last run's per-user metrics (names as in its metrics), users in the evaluation set's order.
  const std::vector<std::pair<std::string, std::vector<double>>>& per_user() const { return per_user_; }
  // The last run's per-row squared-error sums and rating counts (ratings protocol).
  const std::vector<std::pair<double, int64_t>>& row_errors() const { return row_errors_; }

 private:
  Backend<float>& be_;
  const TrainOptions& opt_;
  std::vector<std::pair<std::string, std::vector<double>>> per_user_;
  std::vector<std::pair<double, int64_t>> row_errors_;
  int64_t batch_;
  float lo_, hi_;
  int kmax_ = 0, kcov_ = 0, kcov_name_ = 0;
  int64_t width_ = 0;
  std::vector<int> ks_ranked_;  // opt.ks, each at most kmax_
  Tensor<float> scores_, truth_, val_, out_, loss_;
  Tensor<int32_t> idx_;
};

double lookup(const std::vector<std::pair<std::string, double>>& m, const std::string& key) {
  for (const auto& kv : m)
    if (kv.first == key) return kv.second;
  return NAN;
}

std::string fmt_seconds(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f s", s);
  return b;
}

// 500 → "500", 0.5 → "0.5" (std::to_string would give "500.000000").
std::string fmt_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// "Epoch [3/20] loss train 1.0282 test 1.1480 | test NDCG@20 0.4228 ... (0.18 s)": the losses
// (the model's own objective, on its own scale), then the metrics of the evaluation set. Under
// the ratings protocol the test figure is the RMSE, shown once with the metrics.
std::string epoch_line(const EpochRecord& r, int epochs, const std::string& eval_name, bool ratings) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(4) << "Epoch [" << r.epoch << "/" << epochs << "] loss train "
     << r.train_loss;
  if (!ratings) os << " " << eval_name << " " << r.test_loss;
  if (!r.metrics.empty()) os << " | " << eval_name;
  for (const auto& kv : r.metrics) os << " " << metric_display_name(kv.first) << " " << kv.second;
  if (r.train_seconds < 0.1)  // GPU epochs take milliseconds
    os << std::setprecision(1) << " (" << 1e3 * r.train_seconds << " ms)";
  else
    os << std::setprecision(2) << " (" << r.train_seconds << " s)";
  return os.str();
}

}  // namespace

std::string metric_display_name(const std::string& key) {
  // ndcg@20 → NDCG@20, recall@20 → Recall@20, rmse → RMSE (the notebooks' spelling).
  auto at = key.find('@');
  std::string base = key.substr(0, at), rest = at == std::string::npos ? "" : key.substr(at);
  if (base == "ndcg" || base == "rmse" || base == "mae") {
    std::transform(base.begin(), base.end(), base.begin(), ::toupper);
  } else if (!base.empty()) {
    base[0] = static_cast<char>(::toupper(base[0]));
  }
  return base + rest;
}

std::string model_kinds_list() {
  std::string s;
  for (const char* k : kModelKinds) s += (s.empty() ? "" : ", ") + std::string(k);
  return s;
}

std::string format_metric_pairs(const std::vector<std::pair<std::string, double>>& metrics) {
  std::ostringstream os;
  for (const auto& kv : metrics) os << " " << kv.first << "=" << kv.second;
  return os.str();
}

double TrainResult::metric(const std::string& key) const { return lookup(metrics, key); }

const std::vector<double>* TrainResult::user_values(const std::string& key) const {
  for (const auto& kv : user_metrics)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

int64_t resolve_defaults(TrainOptions& opt) {
  ModelConfig& m = opt.model;
  if (m.kind.empty()) m.kind = "vae";
  if (std::find(std::begin(kModelKinds), std::end(kModelKinds), m.kind) == std::end(kModelKinds))
    throw UsageError("unknown model '" + m.kind +
                     "' (choose " + model_kinds_list() + ")");
  if ((m.kind == "svd" || m.kind == "svdpp") && opt.protocol != "ratings")
    throw UsageError(m.kind + " predicts ratings: use --protocol ratings");
  if (opt.folds != 0 && opt.folds < 2) throw UsageError("--folds needs at least 2 folds");
  if (opt.folds != 0 && m.kind != "svd" && m.kind != "svdpp" && m.kind != "autorec" && m.kind != "i-autorec")
    throw UsageError("--folds (k-fold cross-validation of the ratings) is for the rating predictors svd, svdpp, "
                     "autorec and i-autorec; " + m.kind + " trains on one split");
  if (opt.folds != 0 && opt.protocol != "ratings")
    throw UsageError("--folds cross-validates the ratings protocol's RMSE: use --protocol ratings, not " + opt.protocol);
  if (opt.folds != 0 && (opt.fold < 0 || opt.fold >= opt.folds))
    throw UsageError("fold " + std::to_string(opt.fold) + " of --folds " + std::to_string(opt.folds) + " does not exist");
  if (opt.protocol != "seed" && !is_foldin_protocol(opt.protocol) && opt.protocol != "ratings")
    throw UsageError("unknown protocol '" + opt.protocol + "' (choose seed, heldout, temporal, cutoff, ratings)");
  if (m.kind == "ease" && opt.protocol == "ratings")
    throw UsageError("EASE ranks items and predicts no ratings: use --protocol seed, heldout, temporal or cutoff");
  if (opt.leave_last < 1) throw UsageError("--leave-last must be at least 1");
  if (opt.epochs < 1) throw UsageError("--epochs must be at least 1");
  if (opt.k < 1) throw UsageError("--k must be at least 1");
  for (int k : opt.ks)
    if (k < 1) throw UsageError("every cut-off in --ks must be at least 1");
  if (m.kind == "i-autorec" && opt.protocol != "ratings")
    throw UsageError("i-autorec predicts ratings per item: use --protocol ratings");
  if (opt.batch_size <= 0) opt.batch_size = m.kind == "multvae" ? 500 : 64;
  // CDAE barely moves off popularity at 1e-3 within 100 epochs on ml-100k (held-out NDCG@100
  // 0.267 vs 0.430 at 1e-2), so its default is larger; every other model uses Adam's 1e-3.
  // (SVD models keep lr 0: their own SGD defaults, 0.005 / 0.007.)
  if (opt.adam.lr <= 0 && m.kind != "svd" && m.kind != "svdpp") opt.adam.lr = m.kind == "cdae" ? 1e-2 : 1e-3;
  use_sparse_input(opt.sparse_input, 0);  // validates the mode (UsageError)
  return opt.batch_size;
}

TemporalSplit split_timed(const Dataset& d, const TrainOptions& opt) {
  if (opt.protocol == "temporal") return split_temporal(d, opt.heldout, opt.leave_last, opt.seed);
  VAE_CHECK(opt.protocol == "cutoff", "split_timed: not a timed protocol");
  const auto [val_from, test_from] = resolve_cutoff(d, opt.val_from, opt.test_from);
  return split_cutoff(d, opt.heldout, val_from, test_from);
}

TrainResult run_experiment(Backend<float>& be, const Dataset& d, TrainOptions opt, std::ostream& log,
                           std::unique_ptr<Model<float>> pretrained) {
  int64_t batch = resolve_defaults(opt);
  std::ostream& notes = opt.notes ? *opt.notes : log;
  const std::string kind = opt.model.kind;
  TrainResult res;
  res.model = kind;
  res.protocol = opt.protocol;
  res.device = be.name();
  res.precision = precision_name(be.gemm_precision());
  res.dataset = d.name;

  // ---- the protocol's matrices -----------------------------------------------------------
  Csr train;
  Csr eval_input, eval_target;  // the set reported each epoch
  Csr test_input, test_target;  // final report (heldout, temporal: test users; else = eval set)
  std::vector<int32_t> eval_user_rows, test_user_rows;  // each evaluated row's training row (ratings, timed)
  bool have_val = false;
  if (opt.protocol == "seed") {
    // Its NDCG and Recall weigh each test item by its rating: a negative weight breaks both
    // (NDCG above 1, Recall below 0), so such figures are refused, not printed.
    if (d.num_ratings() > 0 && d.rating_min < 0) {
      const std::string why = d.source + ": ratings run from " + fmt_number(d.rating_min) +
                              ", and the seed protocol's NDCG and Recall weigh each test item by its rating, which "
                              "must not be negative: shift the ratings to start at 1, or use --protocol heldout, "
                              "temporal or cutoff (a rating >= --threshold is a positive) or ratings (RMSE)";
      if (opt.require_eval) throw UsageError(why);
      if (!opt.quiet) notes << "note: " << why << "\n";
    }
    SeedSplit s = split_seed(d, opt.test_fraction, opt.seed);
    // A small data set with a large --test-fraction can draw every user for the test: with
    // nothing to train on, a model would diverge on empty batches and popularity would report
    // figures of no data.
    if (s.train_users.empty())
      throw UsageError("--test-fraction " + fmt_number(opt.test_fraction) + " makes all " +
                       std::to_string(d.num_users()) +
                       " users test users and leaves none to train on: lower it, or use more data");
    train = d.ratings.select_rows(s.train_users);
    res.column_map = iota_rows(d.num_items());
    res.row_map = s.train_users;
    eval_target = d.ratings.select_rows(s.test_users);
    eval_input = eval_target;
    if (wants_binary_input(kind)) {
      train = binarized(std::move(train));
      eval_input = binarized(std::move(eval_input));
    }
    res.eval_set = std::to_string(s.test_users.size()) + " test users (full vectors)";
    for (int32_t u : s.test_users) res.eval_user_ids.push_back(d.user_ids[u]);
  } else if (is_foldin_protocol(opt.protocol)) {
    // The final metrics are the test users'; the validation users pick the epoch (or EASE's λ).
    auto take = [&](HeldoutSplit& s) {
      train = std::move(s.train);
      res.column_map = s.item_map;
      res.row_map = s.train_users;
      eval_input = std::move(s.val_foldin);
      eval_target = std::move(s.val_target);
      test_input = std::move(s.test_foldin);
      test_target = std::move(s.test_target);
      have_val = true;
      for (int32_t u : s.test_users) res.eval_user_ids.push_back(d.user_ids[u]);
    };
    if (opt.protocol == "heldout") {
      HeldoutSplit s = split_heldout(d, opt.heldout, opt.seed);
      take(s);
      // Users in no part are counted, so the parts add up to the users.
      auto users = [](int64_t n) { return std::to_string(n) + (n == 1 ? " user" : " users"); };
      std::string left_out;
      if (s.too_few > 0)
        left_out += users(s.too_few) + " with fewer than " + std::to_string(std::max(1, opt.heldout.min_positives)) +
                    " positives";
      if (s.unusable > 0)
        left_out += (left_out.empty() ? "" : " and ") + users(s.unusable) +
                    " drawn for validation or test with under 2 positives on the kept items";
      res.eval_set = std::to_string(s.test_users.size()) + " test users (" + std::to_string(s.val_users.size()) +
                     " more for validation" + (left_out.empty() ? "" : "; " + left_out + " left out") + "), " +
                     std::to_string(s.item_map.size()) + " items (of " + std::to_string(d.num_items()) +
                     ": those a training user rated as positive)";
    } else {
      TemporalSplit s = split_timed(d, opt);
      take(s);
      eval_user_rows = s.val_rows;  // the evaluated users are training users (cutoff: some test users kNoRow)
      test_user_rows = s.test_rows;
      res.val_from = s.val_from;
      res.test_from = s.test_from;
      const std::string items = std::to_string(s.item_map.size()) + " items (of " + std::to_string(d.num_items()) +
                                ": those rated as positive in training)";
      auto count = [](int64_t n, const char* one, const char* many) {
        return std::to_string(n) + " " + (n == 1 ? one : many);
      };
      const std::string dropped =
          s.dropped == 0
              ? ""
              : "; " + count(s.dropped, "held-out positive", "held-out positives") +
                    " on items no training user liked left out (" + std::to_string(s.dropped_test) + " test, " +
                    std::to_string(s.dropped - s.dropped_test) + " validation)" +
                    (s.untrained_test_users > 0
                         ? ", so " + count(s.untrained_test_users, "user", "users") + " with no other test positive " +
                               (s.untrained_test_users == 1 ? "is" : "are") + " not scored"
                         : "");
      if (opt.protocol == "temporal") {
        const std::string latest = s.last == 1 ? "latest positive" : "latest " + std::to_string(s.last) + " positives";
        res.eval_set = count(static_cast<int64_t>(s.test_users.size()), "user's ", "users' ") + latest + " for the test (the " +
                       (s.last == 1 ? "one" : std::to_string(s.last)) + " before for validation; " +
                       count(static_cast<int64_t>(s.train_users.size()), "user trains", "users train") + " on their earlier ones), " + items + dropped;
      } else {
        const auto arrived = std::count(s.test_rows.begin(), s.test_rows.end(), kNoRow);
        res.eval_set = count(static_cast<int64_t>(s.test_users.size()), "user's ", "users' ") + "positives from " + utc_time(s.test_from) +
                       " on for the test (" +
                       (arrived > 0 ? std::to_string(arrived) + " of them first liked something from " +
                                          utc_time(s.val_from) + " on; "
                                    : "") +
                       std::to_string(s.val_users.size()) + " users' from " + utc_time(s.val_from) + " for validation; " +
                       count(static_cast<int64_t>(s.train_users.size()), "user trains", "users train") + " on the ratings before), " + items + dropped +
                       (s.unseen_users > 0 ? "; " + std::to_string(s.unseen_users) +
                                                 (s.unseen_users == 1 ? " user" : " users") +
                                                 " with test positives but nothing to fold in (no positive before " +
                                                 utc_time(s.test_from) + " on an item liked in training) " +
                                                 (s.unseen_users == 1 ? "is" : "are") + " not scored"
                                           : "");
      }
    }
  } else {
    RatingsSplit s = opt.folds >= 2                  ? split_ratings_kfold(d, opt.folds, opt.fold, opt.seed)
                     : opt.ratings_split == "random" ? split_ratings_random(d, 0.1, opt.seed)
                                                     : split_ratings_ml100k_fold(d, opt.data_dir, opt.ratings_split);
    train = s.train;
    eval_target = s.test;
    res.column_map = iota_rows(d.num_items());
    res.row_map = iota_rows(d.num_users());
    if (kind == "i-autorec") {
      train = train.transpose();
      eval_target = eval_target.transpose();
      std::swap(res.column_map, res.row_map);
    }
    eval_input = train;
    eval_user_rows = iota_rows(train.rows);  // every row is evaluated as itself
    res.eval_set = s.description + " (" + std::to_string(eval_target.nnz()) + " test ratings)";
    for (int64_t r = 0; r < eval_target.rows; ++r)  // every user (item for i-autorec) is a row
      res.eval_user_ids.push_back(kind == "i-autorec" ? d.item_ids[r] : d.user_ids[r]);
  }
  res.item_based = kind == "i-autorec";
  // As fed above: the seed protocol binarises for these kinds, heldout is 0/1, ratings keeps values.
  res.binary_input = (opt.protocol == "seed" && wants_binary_input(kind)) || is_foldin_protocol(opt.protocol);
  res.input_threshold = is_foldin_protocol(opt.protocol) && opt.heldout.threshold > 0 ? opt.heldout.threshold : 0;
  res.leave_last = opt.protocol == "temporal" ? opt.leave_last : 0;
  if (!have_val) {
    test_input = eval_input;
    test_target = eval_target;
  }
  if (!res.eval_user_ids.empty())
    for (int64_t r = 0; r < test_input.rows; ++r) res.user_activity.push_back(test_input.indptr[r + 1] - test_input.indptr[r]);
  // A batch larger than every matrix it cuts would only size buffers nothing fills (one batch
  // per pass either way): clamp it, so --batch-size 16777216 means "everything at once".
  batch = std::min(batch, std::max<int64_t>({train.rows, eval_input.rows, test_input.rows, 1}));
  res.batch_size = batch;
  res.adam = opt.adam;
  res.seed = opt.seed;
  res.test_fraction = opt.test_fraction;
  res.ratings_split = opt.ratings_split;
  res.train_rows = train.rows;
  res.eval_rows = test_input.rows;
  if (test_target.nnz() == 0) {
    const std::string why =
        "the evaluation set (" + res.eval_set + ") holds no ratings to predict: every metric would be undefined (nan); "
        "use a larger data set" +
        (opt.protocol == "seed"       ? std::string(" or a larger --test-fraction")
         : opt.protocol == "temporal" ? " or a lower --threshold or --leave-last (a user is scored from " +
                                            std::to_string(std::max(opt.heldout.min_positives, 2 * opt.leave_last + 1)) +
                                            " positives up)"
         : opt.protocol == "cutoff" ? std::string(" or an earlier --test-from")
                                    : std::string());
    if (opt.require_eval) throw UsageError(why);
    notes << "note: " << why << "\n";  // kept under --quiet: it explains the final line's nan
  }
  if (!opt.quiet) {
    int kbig = 0;  // a cut-off beyond the candidates: ranked over every item, said so
    if (opt.protocol == "seed" && opt.k > train.cols) kbig = opt.k;
    if (is_foldin_protocol(opt.protocol))
      for (int k : opt.ks) kbig = std::max<int>(kbig, k > train.cols ? k : 0);
    if (kbig > 0)
      notes << "note: cut-off " << kbig << " exceeds the " << train.cols << (train.cols == 1 ? " item" : " items") << ": every item is ranked, so @" << kbig
          << " metrics equal @" << train.cols << "\n";
    if (opt.protocol == "ratings" && (kind == "vae" || kind == "multvae" || kind == "cdae"))
      notes << "note: " << kind << " scores items for ranking; its outputs are not ratings, so RMSE and MAE only "
          << "measure how far those scores lie from the rating scale\n";
  }

  ModelConfig mc = opt.model;
  mc.num_inputs = train.cols;
  mc.num_rows = train.rows;
  mc.rating_min = d.rating_min;
  mc.rating_max = d.rating_max;

  const double density = train.rows > 0 && train.cols > 0
                             ? static_cast<double>(train.nnz()) / (static_cast<double>(train.rows) * train.cols)
                             : 1.0;
  const bool sparse = use_sparse_input(opt.sparse_input, train.cols, density);
  mc.sparse_input = sparse ? "on" : "off";

  std::unique_ptr<Model<float>> model;
  const bool is_pretrained = pretrained != nullptr;
  if (!is_pretrained && is_autoencoder(kind)) {
    // Sized from the shapes before anything large is allocated: refuse what cannot fit.
    // The training CSR, the epoch order and the batch's rows (take_rows), then the eval sets.
    int64_t data_bytes = csr_device_bytes(train) + train.rows * 4 + std::min(batch, train.rows) * 4 +
                         csr_device_bytes(eval_input) +
                         csr_device_bytes(eval_target) + eval_input.rows * 4;
    if (have_val) data_bytes += csr_device_bytes(test_input) + csr_device_bytes(test_target) + test_input.rows * 4;
    const int kmax = std::max(opt.k, *std::max_element(opt.ks.begin(), opt.ks.end()));
    const MemoryPlan plan = plan_memory(mc, batch, sparse, kmax, static_cast<int>(opt.ks.size()), data_bytes);
    size_t free_b = 0, total_b = 0;
    const bool pool = be.memory_info(free_b, total_b);
    res.memory_plan = format_memory_plan(plan, be.device_name(), pool, free_b);
    if (!opt.quiet) log << res.memory_plan << "\n";
    if (pool) {
      check_memory_plan(plan, be.device_name(), free_b);
    } else if (const int64_t avail = host_available_bytes(); avail > 0) {
      check_memory_plan(plan, "this machine (available memory)", static_cast<size_t>(avail));
    }
  }
  const auto t_fit = Clock::now();  // closed-form models are fitted as they are built (EASE's solve)
  if (is_pretrained) {
    if (pretrained->kind() != kind)
      throw UsageError("the pretrained model is " + pretrained->kind() + ", not " + kind);
    if (pretrained->config().num_inputs != train.cols || pretrained->max_batch() < batch ||
        (!opt.pretrained_columns.empty() && opt.pretrained_columns != res.column_map) ||
        (!opt.pretrained_rows.empty() && opt.pretrained_rows != res.row_map))
      throw UsageError("the pretrained " + kind + " model does not fit this " + opt.protocol +
                       " split (other data, seed or threshold than it was trained with)");
    model = std::move(pretrained);
  } else if (kind == "popularity") {
    model = std::make_unique<PopularityModel<float>>(be, train, opt.protocol == "ratings", batch);
  } else if (kind == "ease") {
    // Its solve grows with items²: planned and checked before XᵀX is built.
    const EasePlan plan = plan_ease(train.cols, batch, csr_device_bytes(train) + csr_device_bytes(eval_input) +
                                                           csr_device_bytes(eval_target));
    if (!opt.quiet) log << format_ease_plan(plan, be.device_name()) << "\n";
    size_t free_b = 0, total_b = 0;
    const bool pool = be.memory_info(free_b, total_b);
    check_ease_plan(plan, be.device_name(), host_available_bytes(), pool ? static_cast<int64_t>(free_b) : 0);
    // Built at the first lambda the validation grid tries, when it runs: that solve is its first.
    model = std::make_unique<EaseModel<float>>(
        be, train, opt.ease_lambda > 0 ? opt.ease_lambda : have_val ? kEaseGrid.front() : kEaseDefaultLambda, batch);
  } else {
    model = make_model<float>(be, mc, batch);
  }
  if (!is_pretrained) model->init(opt.seed);
  res.num_params = model->num_params();
  res.sparse_input = model->sparse_input();

  EvalSet eval_set = make_eval_set(be, eval_input, eval_target, eval_user_rows);
  Evaluator evaluator(be, opt, batch, model->num_outputs(), d.rating_min, d.rating_max);
  const std::string eval_name = have_val ? "val" : "test";
  // Lower is better only for rating errors.
  // Heldout: Mult-VAE's NDCG@100, or the largest cut-off asked for when --ks leaves 100 out.
  const bool has_100 = std::find(opt.ks.begin(), opt.ks.end(), 100) != opt.ks.end();
  const std::string monitor =
      is_foldin_protocol(opt.protocol) ? "ndcg@" + std::to_string(has_100 ? 100 : *std::max_element(opt.ks.begin(), opt.ks.end()))
      : opt.protocol == "seed"  ? "ndcg@" + std::to_string(opt.k)
                                : "rmse";
  const bool lower_better = opt.protocol == "ratings";
  res.selection_metric = monitor;
  if (opt.patience > 0 && !have_val && !opt.quiet && is_autoencoder(kind) && !is_pretrained)
    notes << "note: --patience selects the epoch on the " << (opt.protocol == "seed" ? "test users" : "test ratings")
        << " (this protocol has no validation set), so the figures reported are optimistic: the test "
        << (opt.protocol == "seed" ? "users" : "ratings") << " chose them (--protocol heldout, temporal or cutoff "
        << "choose on validation users)\n";

  if (!is_autoencoder(kind) || is_pretrained) {
    // Closed-form baselines and pretrained models: no epochs. EASE picks λ on validation users when asked to.
    const auto t0 = t_fit;
    if (kind == "ease" && opt.ease_lambda <= 0 && have_val) {
      auto* ease = static_cast<EaseModel<float>*>(model.get());
      // A validation set with nothing to score gives NaN at every λ: the default λ stays then.
      double best = 0, best_l = kEaseDefaultLambda;
      bool scored = false;
      const std::vector<double>& grid = kEaseGrid;
      for (double l : grid) {
        // The first lambda was solved as the model was built (with XᵀX): timed from there.
        const auto t_l = l == grid.front() ? t_fit : Clock::now();
        ease->set_lambda(l);  // an items × items solve: minutes at tens of thousands of items
        const double v = lookup(evaluator.run(*model, eval_set).second, monitor);
        if (!opt.quiet)
          log << "EASE lambda " << l << ": validation " << metric_display_name(monitor) << " " << v << " ("
              << fmt_seconds(seconds_since(t_l)) << ")\n";
        if (std::isfinite(v) && (!scored || v > best)) best = v, best_l = l, scored = true;
      }
      if (scored && (best_l == grid.front() || best_l == grid.back()))
        notes << "note: EASE's best lambda, " << best_l << ", is at the edge of the grid (" << grid.front() << " to "
            << grid.back() << "): a better one may lie beyond it; try --ease-lambda "
            << (best_l == grid.front() ? "5 or 2" : "5000 or 10000") << "\n";
      ease->set_lambda(best_l);
      res.ease_lambda = best_l;
      res.note = "lambda " + fmt_number(best_l) +
                 (scored ? " (chosen on validation users)" : " (the default: no validation user could be scored)");
      if (!scored) notes << "note: EASE: no validation user could be scored, so lambda stays at its default " << best_l << "\n";
    } else if (kind == "ease") {
      res.ease_lambda = static_cast<EaseModel<float>*>(model.get())->lambda();
      res.note = "lambda " + fmt_number(res.ease_lambda) +
                 (opt.ease_lambda > 0 ? " (--ease-lambda)"
                                      : " (the default; the " + opt.protocol +
                                            " protocol has no validation users to choose it on)");
    } else if (is_pretrained) {
      res.note = "pretrained model evaluated, not trained";
    }
    EpochRecord r;
    r.epoch = 0;
    r.train_seconds = seconds_since(t0);
    const auto t_eval = Clock::now();
    auto [loss, metrics] = evaluator.run(*model, eval_set);
    r.eval_seconds = seconds_since(t_eval);
    r.test_loss = loss;
    r.metrics = metrics;
    res.history.push_back(r);
    res.train_seconds = r.train_seconds;
    res.best_epoch = 0;
    if (have_val) {
      EvalSet test_set = make_eval_set(be, test_input, test_target, test_user_rows);
      res.metrics = evaluator.run(*model, test_set).second;
    } else {
      res.metrics = metrics;
    }
    res.user_metrics = evaluator.per_user();
    res.row_errors = evaluator.row_errors();
    res.config = model->config();
    res.model_ptr = std::move(model);
    return res;
  }

  // ---- training ---------------------------------------------------------------------------
  CsrTensor<float> train_dev = be.upload_csr(train);
  Tensor<int32_t> order = be.alloc<int32_t>(train.rows, 1);
  Tensor<int32_t> batch_rows = be.alloc<int32_t>(std::min<int64_t>(batch, train.rows), 1);
  Tensor<float> m1 = be.zeros(1, model->num_params()), m2 = be.zeros(1, model->num_params());
  Tensor<float> best_theta = be.alloc<float>(1, model->num_params());
  Tensor<float> loss_acc = be.zeros(1, 1);
  std::vector<int32_t> perm = iota_rows(train.rows);
  const int64_t batches = (train.rows + batch - 1) / batch;
  double best_value = lower_better ? INFINITY : -INFINITY;
  int since_best = 0;
  int64_t step = 0;
  double first_batch_loss = 0;
  std::vector<double> epoch_secs;
  const auto graphs_before = be.step_graph_stats();
  const auto t_train = Clock::now();
  const bool graph_steps = opt.cuda_graph && be.supports_step_capture() && !opt.profile_ops;
  if (opt.profile_ops) be.set_op_profiling(true);
  // Profiling off again however training ends (a throw would leave later graph captures refused).
  struct ProfilingOff {
    Backend<float>& be;
    bool on;
    ~ProfilingOff() {
      try {
        if (on) be.set_op_profiling(false);
      } catch (...) {  // only refused mid-capture, which profiling rules out
      }
    }
  } profiling_off{be, opt.profile_ops};
  if (!opt.quiet)
    log << "Training " << kind << " on " << be.name() << ": " << train.rows << " rows x " << train.cols
        << " columns, " << model->num_params() << " parameters, batch " << batch << ", "
        << batches << (batches == 1 ? " step/epoch, " : " steps/epoch, ") << (model->sparse_input() ? "sparse" : "dense") << " input ("
        << opt.sparse_input << ")" << (graph_steps ? ", CUDA Graph steps" : "") << "\n";
  // An earlier run on this backend (compare's models share one) had a step refused.
  if (graph_steps && !be.step_capture_failure().empty())
    notes << "note: CUDA Graph steps are off on this device since a step was refused ("
        << be.step_capture_failure() << "); this run makes plain launches\n";
  {
    // A small data set at a large batch trains few steps: say so where it changes the outcome.
    const int64_t steps = batches * static_cast<int64_t>(opt.epochs);
    const ModelConfig& c = model->config();
    // The weight is min(beta, step / anneal_steps), steps counted from 0: the last one's.
    const double last = c.anneal_steps > 0 ? static_cast<double>(steps - 1) / static_cast<double>(c.anneal_steps) : 0;
    if (kind == "multvae" && c.anneal_steps > 0 && c.beta > 0 && last < c.beta) {
      const int64_t fits = static_cast<int64_t>(std::floor(static_cast<double>(steps - 1) / c.beta));
      notes << "note: multvae's KL weight rises by 1/" << c.anneal_steps << " a step up to beta " << c.beta
          << " (reached at step " << static_cast<int64_t>(std::ceil(c.beta * static_cast<double>(c.anneal_steps)))
          << ") and this run makes " << steps << " (" << opt.epochs << (opt.epochs == 1 ? " epoch" : " epochs")
          << " of " << batches << (batches == 1 ? " step" : " steps") << "): its last step's weight is " << last
          << "; " << (fits >= 1 ? "--anneal-steps " + std::to_string(fits) + " or less, " : std::string())
          << "more --epochs or a smaller --batch-size reach beta\n";
    } else if (steps < kFewSteps) {
      notes << "note: " << opt.epochs << (opt.epochs == 1 ? " epoch" : " epochs") << " of " << batches
          << (batches == 1 ? " step" : " steps") << (opt.epochs == 1 ? " makes" : " make") << " only " << steps
          << (steps == 1 ? " Adam step" : " Adam steps") << "; more --epochs or a smaller --batch-size train further\n";
    }
  }

  res.epoch_selection = have_val ? "validation" : opt.patience > 0 ? "test" : "last";
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    const auto t0 = Clock::now();
    perm = iota_rows(train.rows);
    philox_shuffle(perm, opt.seed, rng_stream(RngStream::shuffle, static_cast<uint64_t>(epoch)));
    be.upload_into(perm, order.mat());
    be.fill(loss_acc.mat(), 0.0f);
    for (int64_t bi = 0; bi < batches; ++bi) {
      const int64_t r0 = bi * batch, n = std::min(batch, train.rows - r0);
      Batch<float> b;
      b.input = train_dev.view();
      b.rows = batch_rows.cmat().rows_slice(0, n);
      b.users = b.rows;
      b.n = n;
      // The batch's rows are copied out of the epoch order inside the step (offset r0 is one
      // of the step's live arguments), so every step of a batch size replays one graph.
      auto ops = [&] {
        be.take_rows(order.cmat(), r0, batch_rows.mat().rows_slice(0, n));
        model->forward_backward(b, step, true, loss_acc.mat());
        be.adam_step(model->param_buffer(), model->grad_buffer(), m1.mat(), m2.mat(), opt.adam, step + 1);
      };
      if (graph_steps) {
        const bool had_failed = !be.step_capture_failure().empty();
        be.run_step(n, ops);  // one graph per batch size: the last batch has its own
        if (!had_failed && !be.step_capture_failure().empty())
          notes << (opt.progress_bar && !opt.quiet && bi > 0 ? "\n" : "") << "warning: the device refused a CUDA Graph step ("
              << be.step_capture_failure() << "); this and every later step run as plain launches (the same "
              << "results; --cuda-graph off skips the attempt)\n";
      } else {
        ops();
      }
      // The untrained model's loss on its first batch: the yardstick of a diverging run below.
      if (step == 0) first_batch_loss = be.read_scalar(loss_acc.cmat());
      ++step;
      if (opt.progress_bar && !opt.quiet) {
        const int width = 30, done = static_cast<int>(width * (bi + 1) / batches);
        log << "\rEpoch [" << epoch << "/" << opt.epochs << "] [" << std::string(done, '#')
            << std::string(width - done, '.') << "] " << (bi + 1) << "/" << batches << std::flush;
      }
    }
    EpochRecord r;
    r.epoch = epoch;
    r.train_loss = be.read_scalar(loss_acc.cmat()) / static_cast<double>(batches);
    r.train_seconds = seconds_since(t0);
    epoch_secs.push_back(r.train_seconds);
    const auto t1 = Clock::now();
    auto [loss, metrics] = evaluator.run(*model, eval_set);
    r.eval_seconds = seconds_since(t1);
    r.test_loss = loss;
    r.metrics = metrics;
    if (opt.protocol == "ratings") r.test_loss = lookup(metrics, "rmse");
    res.history.push_back(r);
    if (!opt.quiet) {
      if (opt.progress_bar) log << "\r";
      log << epoch_line(r, opt.epochs, eval_name, opt.protocol == "ratings") << "\n" << std::flush;
    }
    // An infinite evaluation loss is divergence too (Mult-VAE's first epoch can end with finite
    // training loss and overflowing weights); NaN alone may just mean nothing to evaluate.
    if (!std::isfinite(r.train_loss) || std::isinf(r.test_loss))
      throw VaeError("training diverged at epoch " + std::to_string(epoch) +
                     " (loss is not finite): lower --lr" +
                     (opt.model.beta > 1e3 ? std::string(" or --beta") : std::string()) +
                     (opt.adam.weight_decay > 1 ? " or --weight-decay (" + fmt_number(opt.adam.weight_decay) + ")"
                                                : std::string()) +
                     (d.rating_min < 0 || d.rating_max > 10
                          ? ", or check the data: its ratings run from " + fmt_number(d.rating_min) + " to " +
                                fmt_number(d.rating_max)
                          : std::string()));

    const double v = lookup(metrics, monitor);
    // The first epoch is always the best so far, so the kept weights are ones that were trained.
    // While the metric is NaN (no validation user with a target) each epoch replaces the last,
    // so a set that is never scored ends with the last epoch, not the first.
    const bool better = res.best_epoch == 0 || std::isnan(best_value) ||
                        (lower_better ? v < best_value : v > best_value);
    const bool keep_best = have_val || opt.patience > 0;
    if (better || !keep_best) {
      best_value = v;
      res.best_epoch = epoch;
      res.user_metrics = evaluator.per_user();
      res.row_errors = evaluator.row_errors();
      since_best = 0;
      if (keep_best)
        be.copy_within(best_theta.data(), model->param_buffer().data,
                       static_cast<size_t>(model->num_params()) * sizeof(float));
    } else if (opt.patience > 0 && ++since_best >= opt.patience) {
      if (!opt.quiet) log << "Early stop: no improvement in " << metric_display_name(monitor) << " for "
                          << opt.patience << " epochs; best epoch " << res.best_epoch << "\n";
      break;
    }
  }
  res.train_seconds = seconds_since(t_train);
  if ((have_val || opt.patience > 0) && std::isnan(best_value)) res.epoch_selection = "last";  // nothing scored to choose on
  // A loss climbing by orders of magnitude is a run diverging that has not overflowed yet: its
  // figures are of a broken model, whichever epoch is kept.
  if (!res.history.empty()) {
    size_t lo = 0;
    for (size_t i = 1; i < res.history.size(); ++i)
      if (res.history[i].train_loss < res.history[lo].train_loss) lo = i;
    const bool untrained = first_batch_loss > 0 && first_batch_loss < res.history[lo].train_loss;
    const double from = untrained ? first_batch_loss : res.history[lo].train_loss;
    const double last = res.history.back().train_loss;
    if (from > 0 && last > 100 * from)
      notes << "warning: the training loss rose from " << fmt_number(from)
            << (untrained ? " (the untrained model's, on its first batch)" : " (epoch " + std::to_string(res.history[lo].epoch) + ")")
            << " to " << fmt_number(last) << " (epoch " << res.history.back().epoch
            << "): the run is diverging, and its figures are of a broken model; lower --lr"
            << (opt.model.lambda > 1e3 ? " or --lambda" : "") << "\n";
  }
  if (graph_steps && !opt.quiet) {
    const auto g = be.step_graph_stats();
    log << "CUDA Graph steps: " << g.captures - graphs_before.captures << " captured, "
        << g.replays - graphs_before.replays << " replayed without capture"
        << (g.nodes > 0 ? " (" + std::to_string(g.nodes) + " graph nodes per step, " + std::to_string(g.longest_chain) +
                              " on the longest chain)"
                        : std::string())
        << (be.step_capture_failure().empty() ? "" : "; off after the device refused a step (see above)")
        << "\n";
  }
  if (opt.profile_ops) {
    const std::vector<OpTime> prof = be.op_profile();
    be.set_op_profiling(false);
    if (prof.empty())
      log << "op profile: no op ran on the " << be.name() << " backend (nothing recorded)\n";
    else
      log << (be.name() == "cpu" ? "Wall time per op over " : "Device time per op over ") << res.history.size()
          << (res.history.size() == 1 ? " epoch" : " epochs") << " (training and evaluation" << (be.name() == "cpu" ? "" : ", plain launches") << "):\n"
          << format_op_profile(prof);
  }
  std::vector<double> sorted = epoch_secs;
  std::sort(sorted.begin(), sorted.end());
  res.epoch_seconds_median = sorted.empty() ? 0 : sorted[sorted.size() / 2];
  if (have_val || opt.patience > 0) {
    be.copy_within(model->param_buffer().data, best_theta.data(),
                   static_cast<size_t>(model->num_params()) * sizeof(float));
  }
  if (have_val) {
    EvalSet test_set = make_eval_set(be, test_input, test_target, test_user_rows);
    res.metrics = evaluator.run(*model, test_set).second;
    res.user_metrics = evaluator.per_user();
  } else {
    res.metrics = res.history[res.best_epoch - 1].metrics;
  }
  res.config = model->config();
  res.steps_per_epoch = batches;
  res.model_ptr = std::move(model);
  return res;
}

namespace {

// Writes path.tmp, complete or not at all (write_binary_atomically: its own temporary, fsync,
// rename, a failed write removed); StagedFiles renames it into place.
void write_tmp(const std::string& path, const std::string& text) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw DataError(path, 0, "is a directory, not a file");
  write_binary_atomically(path + ".tmp", text);
}

}  // namespace

StagedFiles::~StagedFiles() {
  for (size_t i = 0; i < paths_.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove(paths_[i] + ".tmp", ec);
    forget_temp_file(slots_[i]);
  }
}

void StagedFiles::add(const std::string& path, const std::string& text) {
  const int slot = register_temp_file(path + ".tmp");
  try {
    write_tmp(path, text);
  } catch (...) {
    forget_temp_file(slot);
    throw;
  }
  paths_.push_back(path);
  slots_.push_back(slot);
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".svg") == 0) pictures_.emplace_back(path, text);
}

void StagedFiles::adopt(const std::string& path) {
  paths_.push_back(path);
  slots_.push_back(register_temp_file(path + ".tmp"));
}

void StagedFiles::remove_on_commit(const std::string& path, bool explained) {
  stale_.push_back(path);
  if (explained) explained_.push_back(path);
}

std::set<std::string> read_written_files(const std::string& dir) {
  std::set<std::string> names;
  std::ifstream in(dir + "/" + kWrittenFilesName);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#' && line.find('/') == std::string::npos) names.insert(line);
  return names;
}

namespace {
// Where commit() keeps an earlier file while it renames: this process's own name, so a file of
// the user's (model.safetensors.prev) is never taken for it.
std::string backup_name(const std::string& path) { return path + ".prev-" + std::to_string(::getpid()); }
}  // namespace

std::vector<std::string> StagedFiles::commit() {
  // A signal waits until the commit is done (a restore cannot run inside a signal handler).
  const DeferSignals defer;
  // What would stop a rename part-way is checked before the first one.
  for (const std::string& p : paths_) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) throw DataError(p, 0, "is a directory, not a file");
  }
  std::vector<std::string> paths, stale, dirs, explained;
  std::vector<int> slots;
  paths.swap(paths_);
  stale.swap(stale_);
  explained.swap(explained_);
  dirs.swap(dirs_);
  slots.swap(slots_);
  pictures_.clear();
  // Each earlier file is kept as a hard link path.prev-<pid> until all renames have succeeded,
  // so a rename failing part-way (a read-only or vanished file) puts the earlier run back whole
  // instead of leaving new and old files mixed. The link is never made over an existing file (a
  // user's own copy keeps its name); where one cannot be made the commit goes on without that
  // guarantee. Signals are deferred meanwhile (DeferSignals): one arriving between two renames
  // is delivered after the last, the folder whole.
  // The record of each folder this commit writes into, read before anything changes there.
  std::map<std::string, std::set<std::string>> record;  // folder → names this tool wrote there
  auto folder_of = [](const std::string& p) {
    const std::string d = std::filesystem::path(p).parent_path().string();
    return d.empty() ? std::string(".") : d;
  };
  auto name_of = [](const std::string& p) { return std::filesystem::path(p).filename().string(); };
  auto recorded = [&](const std::string& dir) -> std::set<std::string>& {
    auto it = record.find(dir);
    if (it == record.end()) it = record.emplace(dir, read_written_files(dir)).first;
    return it->second;
  };
  for (const std::string& p : paths) recorded(folder_of(p));
  enum class Before { absent, kept, unknown };
  std::vector<Before> before(paths.size(), Before::unknown);
  for (size_t i = 0; i < paths.size(); ++i) {
    const std::string prev = backup_name(paths[i]);
    std::error_code ec;
    const std::filesystem::file_type type = std::filesystem::symlink_status(paths[i], ec).type();
    if (type == std::filesystem::file_type::not_found) {  // ec is set too (ENOENT)
      before[i] = Before::absent;
    } else if (type == std::filesystem::file_type::none) {
      before[i] = Before::unknown;
    } else {
      std::filesystem::create_hard_link(paths[i], prev, ec);
      before[i] = ec ? Before::unknown : Before::kept;
    }
    std::filesystem::rename(paths[i] + ".tmp", paths[i], ec);
    forget_temp_file(slots[i]);
    if (!ec) continue;
    const std::string problem = "cannot rename " + paths[i] + ".tmp: " + ec.message();
    for (size_t j = i; j < paths.size(); ++j) {
      std::error_code ignore;
      std::filesystem::remove(paths[j] + ".tmp", ignore);
      if (j > i) forget_temp_file(slots[j]);
    }
    // Undo the renames already done, newest first.
    bool restored = true;
    if (before[i] == Before::kept) std::filesystem::remove(backup_name(paths[i]), ec);  // paths[i] unchanged
    std::string stranded;  // earlier files left under their backup name
    for (size_t j = i; j-- > 0;) {
      std::error_code undo;
      if (before[j] == Before::kept) {
        std::filesystem::rename(backup_name(paths[j]), paths[j], undo);
        if (undo) stranded += (stranded.empty() ? "" : ", ") + backup_name(paths[j]);
      } else if (before[j] == Before::absent) {
        std::filesystem::remove(paths[j], undo);
      } else {
        restored = false;
      }
      if (undo) restored = false;
    }
    if (i == 0) throw DataError(paths[i], 0, problem);
    throw DataError(paths[i], 0,
                    problem + (restored ? "; the files renamed before it were put back, so the earlier results stand"
                                        : "; files renamed before it could not all be put back" +
                                              (stranded.empty() ? std::string() : " (the earlier versions are in " + stranded + ")")));
  }
  // A replaced file that the folder's record does not list is not this tool's to lose (the
  // user's own notes.csv-turned-metrics.csv, or a run of a version before the record): its
  // backup stays, as NAME.orig (or NAME.orig-2, ...), and replaced() names it.
  for (size_t i = 0; i < paths.size(); ++i) {
    if (before[i] != Before::kept) continue;
    std::error_code ec;
    if (recorded(folder_of(paths[i])).count(name_of(paths[i]))) {
      std::filesystem::remove(backup_name(paths[i]), ec);
      continue;
    }
    std::string keep = paths[i] + ".orig";
    for (int n = 2; std::filesystem::symlink_status(keep, ec).type() != std::filesystem::file_type::not_found; ++n)
      keep = paths[i] + ".orig-" + std::to_string(n);
    std::filesystem::rename(backup_name(paths[i]), keep, ec);
    replaced_.push_back({paths[i], ec ? backup_name(paths[i]) : keep});
  }
  // An earlier run's file goes only where that folder's record lists it: a file of the same name
  // that this tool did not write (the user's own, in a folder given as --out) stays.
  for (const std::string& p : stale) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) continue;
    std::set<std::string>& names = recorded(folder_of(p));
    if (!names.count(name_of(p))) {
      kept_.push_back(p);
      continue;
    }
    if (std::filesystem::remove(p, ec)) {
      names.erase(name_of(p));
      if (std::find(explained.begin(), explained.end(), p) == explained.end()) removed_.push_back(p);
    }
  }
  for (const std::string& p : paths) recorded(folder_of(p)).insert(name_of(p));
  for (const auto& [dir, names] : record) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) continue;
    if (names.empty()) {  // nothing of ours left: no record either, so an emptied folder can go
      std::filesystem::remove(dir + "/" + kWrittenFilesName, ec);
      continue;
    }
    std::string text = std::string(kWrittenFilesHeader) + "\n";
    for (const std::string& n : names) text += n + "\n";
    try {
      write_binary_atomically(dir + "/" + kWrittenFilesName, text);
    } catch (const VaeError& e) {
      // The results are in place; only the record of them is missing.
      std::cerr << "warning: " << e.what() << "; a later run into " << dir << " will keep these files\n";
    }
  }
  // Folders whose run files went: removed when nothing else is left in them (rmdir of a
  // non-empty folder fails, and that is fine).
  for (const std::string& d : dirs) {
    std::error_code ec;
    if (std::filesystem::is_directory(d, ec) && std::filesystem::is_empty(d, ec)) std::filesystem::remove(d, ec);
  }
  return paths;
}

std::string learning_curves_svg(const TrainResult& r) {
  LinePlot p;
  p.title = r.model + " on " + r.dataset + " (" + r.protocol + " protocol)";
  const std::string eval = is_foldin_protocol(r.protocol) ? "validation" : "test";
  LinePanel loss{"loss per epoch", {{"train", {}}, {eval, {}}}};
  LinePanel met{"metrics on the " + eval + " users per epoch", {}};
  if (r.protocol == "ratings") met.title = "metrics on the test ratings per epoch";
  if (!r.history.empty())
    for (const auto& kv : r.history.front().metrics) met.series.push_back({metric_display_name(kv.first), {}});
  for (const EpochRecord& e : r.history) {
    p.x.push_back(e.epoch);
    loss.series[0].y.push_back(e.train_loss);
    loss.series[1].y.push_back(e.test_loss);
    for (size_t j = 0; j < met.series.size(); ++j)
      met.series[j].y.push_back(j < e.metrics.size() ? e.metrics[j].second : NAN);
  }
  // RMSE next to ranking metrics would flatten them: the seed protocol's RMSE stays in metrics.csv.
  if (r.protocol == "seed")
    met.series.erase(std::remove_if(met.series.begin(), met.series.end(),
                                    [](const LineSeries& sr) { return sr.name == "RMSE"; }),
                     met.series.end());
  p.panels.push_back(std::move(loss));
  if (!met.series.empty()) p.panels.push_back(std::move(met));
  // Only a chosen epoch is marked: without a validation set the last epoch is simply the last.
  if (r.best_epoch > 0 && (r.epoch_selection == "validation" || r.epoch_selection == "test")) {
    p.marker_x = r.best_epoch;
    p.marker_label = "best epoch " + std::to_string(r.best_epoch);
  }
  return lines_svg(p);
}

void drop_run_files(StagedFiles& staged, const std::string& dir) {
  for (const char* f : {"/metrics.csv", "/summary.json", "/curves.svg", "/user_metrics.csv"})
    staged.remove_on_commit(dir + f);
  staged.remove_dir_if_empty_on_commit(dir);
}

void stage_run_files(StagedFiles& staged, const std::string& dir, const TrainResult& r) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw DataError(dir, 0, "cannot create output directory: " + ec.message());

  std::ostringstream csv;
  // Under heldout each epoch is scored on the validation users (the test users' figures are
  // summary.json's): the columns say so, so nobody reads the last row as the test result.
  const std::string on = is_foldin_protocol(r.protocol) ? "val_" : "";
  csv << std::setprecision(8) << "epoch,train_loss," << (on.empty() ? "test_" : on) << "loss";
  if (!r.history.empty())
    for (const auto& kv : r.history.front().metrics) csv << "," << on << kv.first;
  csv << ",train_seconds,eval_seconds\n";
  // Empty where there is no figure (epoch 0: fitted in closed form or loaded, not trained; a
  // loss the model does not define).
  auto num = [&csv](double v) { csv << "," << text::csv_number(v, 8); };
  for (const auto& e : r.history) {
    csv << e.epoch;
    num(e.epoch == 0 ? std::nan("") : e.train_loss);
    num(e.test_loss);
    for (const auto& kv : e.metrics) num(kv.second);
    csv << "," << e.train_seconds << "," << e.eval_seconds << "\n";
  }
  staged.add(dir + "/metrics.csv", csv.str());

  nlohmann::ordered_json j;
  j["model"] = r.model;
  j["dataset"] = r.dataset;
  j["protocol"] = r.protocol;
  if (r.leave_last > 0) j["leave_last"] = r.leave_last;
  if (r.protocol == "cutoff") {
    j["val_from"] = r.val_from;
    j["test_from"] = r.test_from;
  }
  j["device"] = r.device;
  if (!r.precision.empty()) j["precision"] = r.precision;
  j["epochs"] = r.history.empty() ? 0 : r.history.back().epoch;
  j["best_epoch"] = r.best_epoch;
  if (!r.epoch_selection.empty()) j["epoch_selection"] = r.epoch_selection;
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& kv : r.metrics) m[kv.first] = std::isfinite(kv.second) ? nlohmann::ordered_json(kv.second) : nlohmann::ordered_json(nullptr);
  j["metrics"] = m;
  if (!r.user_metrics.empty()) {
    // Each per-user metric's 95 % interval half-width (mean ± ci95) over the evaluated users.
    nlohmann::ordered_json ci = nlohmann::ordered_json::object();
    int64_t users = 0;
    for (const auto& kv : r.user_metrics) {
      const MeanCi c = mean_ci95(kv.second);
      ci[kv.first] = std::isfinite(c.half) ? nlohmann::ordered_json(c.half) : nlohmann::ordered_json(nullptr);
      users = c.n;
    }
    j["metrics_ci95"] = ci;
    j["users_evaluated"] = users;
  }
  j["train_seconds"] = r.train_seconds;
  j["epoch_seconds_median"] = r.epoch_seconds_median;
  j["eval_set"] = r.eval_set;
  j["num_params"] = r.num_params;
  j["sparse_input"] = r.sparse_input;
  if (r.model == "ease" && r.ease_lambda > 0) j["ease_lambda"] = r.ease_lambda;
  // The settings trained with, defaults resolved (a sweep's directory name says only its value).
  if (r.model_ptr && !r.epoch_selection.empty()) {
    const ModelConfig& c = r.model_ptr->config();
    nlohmann::ordered_json cfg;
    if (c.hidden > 0) cfg["hidden"] = c.hidden;
    if (c.latent > 0) cfg["latent"] = c.latent;
    if (r.model == "vae" || r.model == "multvae") {
      cfg["beta"] = c.beta;
      cfg["anneal_steps"] = c.anneal_steps;
    }
    if (c.dropout >= 0 && (r.model == "multvae" || r.model == "cdae")) cfg["dropout"] = c.dropout;
    if (c.lambda >= 0 && r.model != "vae" && r.model != "multvae") cfg["lambda"] = c.lambda;
    if (!c.loss.empty()) cfg["loss"] = c.loss;
    cfg["batch_size"] = r.batch_size;
    cfg["lr"] = r.adam.lr;
    cfg["weight_decay"] = r.adam.weight_decay;
    if (r.adam.decoupled) cfg["adamw"] = true;
    cfg["seed"] = r.seed;
    j["config"] = cfg;
  }
  if (!r.note.empty()) j["note"] = r.note;
  staged.add(dir + "/summary.json", j.dump(2) + "\n");

  // Each evaluated user's metrics, for tests and plots of one's own (activity breakdowns,
  // significance between runs): user_id, input_ratings, then the per-user metrics.
  const bool per_user = !r.user_metrics.empty() && !r.eval_user_ids.empty() &&
                        r.eval_user_ids.size() == r.user_metrics.front().second.size() &&
                        r.user_activity.size() == r.eval_user_ids.size();
  if (per_user) {
    std::ostringstream u;
    u << "user_id,input_ratings";
    for (const auto& kv : r.user_metrics) u << "," << kv.first;
    u << "\n";
    char num[32];
    for (size_t i = 0; i < r.eval_user_ids.size(); ++i) {
      u << text::csv_field(r.eval_user_ids[i]) << "," << r.user_activity[i];
      for (const auto& kv : r.user_metrics) {
        std::snprintf(num, sizeof num, ",%.9g", kv.second[i]);
        u << num;
      }
      u << "\n";
    }
    staged.add(dir + "/user_metrics.csv", u.str());
  } else if (!r.row_errors.empty() && r.eval_user_ids.size() == r.row_errors.size()) {
    // The ratings protocol: each row's RMSE over its test ratings (rows without one left out).
    std::ostringstream u;
    u << (r.item_based ? "item_id" : "user_id") << ",input_ratings,test_ratings,rmse\n";
    const bool activity = r.user_activity.size() == r.row_errors.size();
    char num[32];
    for (size_t i = 0; i < r.row_errors.size(); ++i) {
      const auto [sse, count] = r.row_errors[i];
      if (count == 0) continue;
      u << text::csv_field(r.eval_user_ids[i]) << ",";
      if (activity) u << r.user_activity[i];
      std::snprintf(num, sizeof num, ",%lld,%.9g", static_cast<long long>(count), std::sqrt(sse / static_cast<double>(count)));
      u << num << "\n";
    }
    staged.add(dir + "/user_metrics.csv", u.str());
  } else {
    staged.remove_on_commit(dir + "/user_metrics.csv");  // an earlier run's users would not be this run's
  }

  // Learning curves as a picture when there is a curve to draw (trained for two epochs or more);
  // written last, and a picture that cannot be drawn costs a warning, never the run's files.
  if (r.history.size() >= 2) {
    try {
      staged.add(dir + "/curves.svg", learning_curves_svg(r));
    } catch (const VaeError& e) {
      std::cerr << "warning: " << dir << "/curves.svg not written: " << e.what() << "\n";
      staged.remove_on_commit(dir + "/curves.svg");  // an earlier run's curves would not be this run's
    }
  } else {
    staged.remove_on_commit(dir + "/curves.svg");
  }
}

std::string format_intervals(const TrainResult& r) {
  std::string out;
  int64_t users = 0;
  char cell[64];
  for (const auto& [name, values] : r.user_metrics) {
    const MeanCi c = mean_ci95(values);
    if (!std::isfinite(c.half)) continue;
    std::snprintf(cell, sizeof cell, "%s \xc2\xb1%.4f", name.c_str(), c.half);
    out += (out.empty() ? "" : ", ") + std::string(cell);
    users = c.n;
  }
  if (out.empty()) return "";
  return "95% intervals over the " + std::to_string(users) + " evaluated users: " + out + "\n";
}

void print_comparison(std::ostream& os, const TrainResult& a, const TrainResult& b) {
  const std::string diff = a.model + " - " + b.model + " (95% CI)";
  os << "\n" << std::left << std::setw(14) << "metric" << std::right << std::setw(12) << a.model
     << std::setw(12) << b.model << "    " << diff << "\n";
  int64_t users = 0;
  bool marked = false;
  for (const auto& kv : a.metrics) {
    char line[160];
    std::snprintf(line, sizeof line, "%-14s%12.4f%12.4f", metric_display_name(kv.first).c_str(), kv.second,
                  b.metric(kv.first));
    os << line;
    const std::vector<double>*ua = a.user_values(kv.first), *ub = b.user_values(kv.first);
    if (ua && ub && ua->size() == ub->size() && a.eval_set == b.eval_set) {
      const MeanCi d = paired_difference_ci95(*ua, *ub);
      users = d.n;
      os << "    " << format_ci(d) << (d.excludes_zero() ? " *" : "");
      marked = marked || d.excludes_zero();
    }
    os << "\n";
  }
  if (users > 0)
    os << "(per-user differences over the " << users << " evaluated users, paired t interval"
       << (marked ? "; * the interval excludes 0" : "; every interval includes 0") << ")\n";
  for (const auto& kv : a.metrics)
    if (kv.first.rfind("coverage@", 0) == 0) {
      const int64_t items = a.config.num_inputs;
      os << "(" << metric_display_name(kv.first) << ": the share of the " << (items > 0 ? std::to_string(items) + " " : "")
         << "items in at least one evaluated user's top " << kv.first.substr(9) << ")\n";
      break;
    }
  // The seed protocol prints the notebooks' RMSE for every model; for a ranking model it is no
  // rating error, and a newcomer reading popularity's 1.8 against the VAE's 2.8 should know.
  std::string scorers;
  for (const TrainResult* r : {&a, &b})
    if (std::isfinite(r->metric("rmse")) && !predicts_ratings(*r))
      scorers += (scorers.empty() ? "" : " and ") + r->model;
  if (!scorers.empty())
    os << "(RMSE of " << scorers << ": " << (scorers.find(" and ") == std::string::npos ? "its" : "their")
       << " item scores clipped to the rating scale, the notebooks' figure, not a rating prediction: "
       << "ranking models are judged by NDCG and Recall; RMSE is for autorec, i-autorec, svd and svdpp)\n";
}

std::string format_op_profile(const std::vector<OpTime>& prof) {
  double total = 0;
  for (const OpTime& o : prof) total += o.seconds;
  std::ostringstream os;
  char line[160];
  std::snprintf(line, sizeof line, "  %-24s %8s %11s %13s %7s\n", "op", "calls", "total ms", "per call us", "share");
  os << line;
  for (const OpTime& o : prof) {
    std::snprintf(line, sizeof line, "  %-24s %8lld %11.3f %13.2f %6.1f%%\n", o.op.c_str(),
                  static_cast<long long>(o.calls), 1e3 * o.seconds,
                  o.calls ? 1e6 * o.seconds / static_cast<double>(o.calls) : 0.0,
                  total > 0 ? 100.0 * o.seconds / total : 0.0);
    os << line;
  }
  std::snprintf(line, sizeof line, "  %-24s %8s %11.3f\n", "all ops", "", 1e3 * total);
  os << line;
  return os.str();
}

}  // namespace vae
