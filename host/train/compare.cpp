#include "train/compare.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iomanip>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "analysis/svg_plot.h"
#include "core/error.h"
#include "data/text_reader.h"
#include "train/stats.h"

namespace vae {

namespace {

// Popularity and EASE have no training epochs (TrainResult::epoch_selection is empty for them).
bool trained(const TrainResult& r) { return !r.epoch_selection.empty(); }

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

// The best value of a column: the lowest error, the highest ranking metric; NaN where none is set.
// An error column's best is among the models that predict ratings: the others' RMSE is of their
// item scores clipped to the rating scale (popularity's counts read as 5 stars, say).
double best_of(const std::vector<TrainResult>& results, const std::string& metric) {
  double best = NAN;
  for (const TrainResult& r : results) {
    const double v = r.metric(metric);
    if (std::isnan(v) || (lower_is_better(metric) && !predicts_ratings(r))) continue;
    if (std::isnan(best) || (lower_is_better(metric) ? v < best : v > best)) best = v;
  }
  return best;
}

}  // namespace

bool predicts_ratings(const std::string& kind) {
  return kind == "autorec" || kind == "i-autorec" || kind == "svd" || kind == "svdpp";
}

bool predicts_ratings(const TrainResult& r) {
  return predicts_ratings(r.model) || (r.model == "popularity" && r.protocol == "ratings");
}

std::vector<std::string> default_compare_models(const std::string& protocol) {
  if (protocol == "ratings") return {"autorec", "i-autorec", "svd", "svdpp", "popularity"};
  return {"vae", "autorec", "cdae", "multvae", "ease", "popularity"};
}

std::vector<std::string> parse_model_list(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::string m = trim(item);
    std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (m.empty()) throw UsageError("--models '" + list + "': an empty entry (write the names comma-separated)");
    if (std::find(std::begin(kModelKinds), std::end(kModelKinds), m) == std::end(kModelKinds))
      throw UsageError("--models: unknown model '" + trim(item) +
                       "' (choose from " + model_kinds_list() + ")");
    if (std::find(out.begin(), out.end(), m) != out.end())
      throw UsageError("--models: " + m + " is named twice (each model runs once, on the same split)");
    out.push_back(m);
  }
  if (!list.empty() && list.back() == ',') throw UsageError("--models '" + list + "': an empty entry at the end");
  if (out.empty()) throw UsageError("--models is empty: name at least one model");
  return out;
}

namespace {

// A swept option: how its values are read and where they go.
struct SweepOption {
  const char* name;
  bool integer;
  double lo, hi;  // accepted range (the flag's own)
  bool open_lo;   // lo itself refused
  std::vector<std::string> words = {};  // a word option's values (then no number is read)
};
const SweepOption kSweepOptions[] = {
    {"beta", false, 0, 1e300, false},        {"lr", false, 0, 1e300, true},
    {"latent", true, 1, 1 << 20, false},     {"hidden", true, 1, 1 << 20, false},
    {"dropout", false, 0, 0.99, false},      {"lambda", false, 0, 1e300, false},
    {"batch-size", true, 1, 1 << 24, false}, {"anneal-steps", true, 0, 1099511627776.0, false},
    {"weight-decay", false, 0, 1e300, false}, {"epochs", true, 1, 100000, false},
    {"ease-lambda", false, 0, 1e300, true},
    // The GEMM precision (one backend per value; on the CPU tf32 and bf16 run as fp32).
    {"precision", false, 0, 0, false, {"exact", "fp32", "tf32", "bf16"}},
};

bool is_word(const SweepOption& o, const std::string& v) {
  return std::find(o.words.begin(), o.words.end(), v) != o.words.end();
}

const SweepOption* find_sweep_option(const std::string& name) {
  for (const SweepOption& o : kSweepOptions)
    if (name == o.name) return &o;
  return nullptr;
}

// A decimal number as written on a command line ("0.001", "1e-4"), finite; no hex, nan or inf.
bool decimal_value(const std::string& v, double& x) {
  if (v.empty() || v.find_first_not_of("0123456789.eE+-") != std::string::npos) return false;
  size_t pos = 0;
  try {
    x = std::stod(v, &pos);
  } catch (const std::exception&) {
    return false;
  }
  return pos == v.size() && std::isfinite(x);
}

bool among(const std::string& kind, std::initializer_list<const char*> kinds) {
  for (const char* k : kinds)
    if (kind == k) return true;
  return false;
}

}  // namespace

const std::vector<std::string>& sweep_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const SweepOption& o : kSweepOptions) v.push_back(o.name);
    return v;
  }();
  return names;
}

Sweep parse_sweep(const std::string& spec) {
  const size_t eq = spec.find('=');
  std::string names;
  for (const std::string& n : sweep_names()) names += (names.empty() ? "" : ", ") + n;
  if (eq == std::string::npos)
    throw UsageError("--sweep '" + spec + "': write NAME=V1,V2,... (NAME one of " + names + ")");
  Sweep sw;
  sw.name = trim(spec.substr(0, eq));
  if (sw.name.rfind("--", 0) == 0) sw.name = sw.name.substr(2);
  const SweepOption* opt = find_sweep_option(sw.name);
  if (!opt) throw UsageError("--sweep: unknown option '" + sw.name + "' (one of " + names + ")");
  std::stringstream ss(spec.substr(eq + 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    const std::string v = trim(item);
    if (v.empty()) throw UsageError("--sweep " + sw.name + ": an empty value");
    if (!opt->words.empty()) {
      if (!is_word(*opt, v)) {
        std::string list;
        for (const std::string& w : opt->words) list += (list.empty() ? "" : ", ") + w;
        throw UsageError("--sweep " + sw.name + ": '" + v + "' is not one of " + list);
      }
      if (std::find(sw.values.begin(), sw.values.end(), v) != sw.values.end())
        throw UsageError("--sweep " + sw.name + ": " + v + " is given twice");
      sw.values.push_back(v);
      continue;
    }
    double x = 0;
    if (!decimal_value(v, x)) throw UsageError("--sweep " + sw.name + ": '" + v + "' is not a decimal number");
    if (opt->integer && x != std::floor(x))
      throw UsageError("--sweep " + sw.name + ": '" + v + "' is not a whole number");
    if (x < opt->lo || (opt->open_lo && x == opt->lo) || x > opt->hi) {
      std::ostringstream m;
      m << "--sweep " << sw.name << ": " << v << " is out of range (";
      // 1048576, not 1.04858e+06: the bounds are whole numbers or the flag's own decimals.
      auto bound = [](double b) {
        std::ostringstream o;
        if (b == std::floor(b) && std::fabs(b) < 1e15) o << static_cast<int64_t>(b);
        else o << b;
        return o.str();
      };
      if (opt->hi < 1e299) m << "from " << bound(opt->lo) << " to " << bound(opt->hi) << ")";
      else m << "must be " << (opt->open_lo ? "> " : ">= ") << opt->lo << ")";
      throw UsageError(m.str());
    }
    for (const std::string& w : sw.values)
      if (std::stod(w) == x) throw UsageError("--sweep " + sw.name + ": " + v + " is given twice");
    sw.values.push_back(v);
  }
  if (!spec.empty() && spec.back() == ',') throw UsageError("--sweep " + sw.name + ": an empty value at the end");
  if (sw.values.size() < 2) throw UsageError("--sweep " + sw.name + ": give at least two values (one is --" + sw.name + ")");
  return sw;
}

bool sweep_applies(const std::string& name, const std::string& kind) {
  const bool svd = among(kind, {"svd", "svdpp"}), fitted = among(kind, {"popularity", "ease"});
  if (name == "beta" || name == "anneal-steps" || name == "latent") return among(kind, {"vae", "multvae"});
  if (name == "dropout") return among(kind, {"multvae", "cdae"});
  if (name == "lambda") return among(kind, {"autorec", "i-autorec", "cdae", "svd", "svdpp"});
  if (name == "hidden") return !fitted && kind != "vae";  // the notebook VAE's layers are fixed
  if (name == "lr" || name == "epochs") return !fitted;
  if (name == "weight-decay") return !fitted && !svd;
  if (name == "batch-size") return !fitted && !svd;
  if (name == "ease-lambda") return kind == "ease";
  if (name == "precision") return !svd && kind != "popularity";  // the models that multiply matrices
  return false;
}

void apply_sweep(const std::string& name, const std::string& value, TrainOptions& t) {
  // Not a training option but the backend's: compare hands the run a backend of that precision.
  if (name == "precision") return;
  const double x = std::stod(value);
  if (name == "beta") t.model.beta = x;
  else if (name == "lr") t.adam.lr = x;
  else if (name == "latent") t.model.latent = static_cast<int>(x);
  else if (name == "hidden") t.model.hidden = static_cast<int>(x);
  else if (name == "dropout") t.model.dropout = x;
  else if (name == "lambda") t.model.lambda = x;
  else if (name == "batch-size") t.batch_size = static_cast<int64_t>(x);
  else if (name == "anneal-steps") t.model.anneal_steps = static_cast<int64_t>(x);
  else if (name == "weight-decay") t.adam.weight_decay = x;
  else if (name == "epochs") t.epochs = static_cast<int>(x);
  else if (name == "ease-lambda") t.ease_lambda = x;
  else VAE_CHECK(false, "apply_sweep: unknown option " + name);
}

std::string sweep_label(const std::string& kind, const std::string& name, const std::string& value) {
  return sweep_label(kind, {{name, value}});
}

std::string sweep_label(const std::string& kind, const std::vector<std::pair<std::string, std::string>>& settings) {
  std::string label = kind;
  for (const auto& [name, value] : settings) {
    // "ease-lambda" on an EASE row: "ease_lambda=10" (the model's name once is enough)
    const bool own = name.size() > kind.size() + 1 && name.compare(0, kind.size() + 1, kind + "-") == 0;
    label += "_" + (own ? name.substr(kind.size() + 1) : name) + "=" + value;
  }
  return label;
}

bool is_compare_label(const std::string& label) {
  if (std::find(std::begin(kModelKinds), std::end(kModelKinds), label) != std::end(kModelKinds)) return true;
  size_t us = label.find('_');
  if (us == std::string::npos) return false;
  if (std::find(std::begin(kModelKinds), std::end(kModelKinds), label.substr(0, us)) == std::end(kModelKinds)) return false;
  // One or more _NAME=VALUE parts, each option once, each value a number as --sweep takes it (so
  // never a path separator or "..").
  std::vector<std::string> seen;
  while (us != std::string::npos) {
    const size_t next = label.find('_', us + 1);
    const std::string part = label.substr(us + 1, next == std::string::npos ? std::string::npos : next - us - 1);
    const size_t eq = part.find('=');
    // An option's name, or the part after the model's own prefix ("lambda" of EASE's "ease-lambda"):
    // the inverse of the labels written above.
    const std::string name = part.substr(0, eq), kind = label.substr(0, label.find('_'));
    if (eq == std::string::npos) return false;
    const SweepOption* opt = find_sweep_option(name);
    if (!opt) opt = find_sweep_option(kind + "-" + name);
    if (!opt) return false;
    if (std::find(seen.begin(), seen.end(), part.substr(0, eq)) != seen.end()) return false;
    seen.push_back(part.substr(0, eq));
    double x = 0;
    if (opt->words.empty() ? !decimal_value(part.substr(eq + 1), x) : !is_word(*opt, part.substr(eq + 1))) return false;
    us = next;
  }
  return true;
}

bool lower_is_better(const std::string& metric) {
  return metric.rfind("rmse", 0) == 0 || metric.rfind("mae", 0) == 0;
}

std::vector<std::string> compare_metric_names(const std::vector<TrainResult>& results) {
  std::vector<std::string> names;
  for (const TrainResult& r : results)
    for (const auto& kv : r.metrics)
      if (std::find(names.begin(), names.end(), kv.first) == names.end()) names.push_back(kv.first);
  return names;
}

std::string validation_metric(const std::vector<TrainResult>& results) {
  for (const TrainResult& r : results)
    if (is_foldin_protocol(r.protocol) && !r.selection_metric.empty()) return r.selection_metric;
  return "";
}

double validation_value(const TrainResult& r, const std::string& metric) {
  if (!is_foldin_protocol(r.protocol) || metric.empty()) return NAN;
  // History holds the validation users' figures under heldout; the kept epoch's record (epoch 0:
  // EASE at its chosen λ, popularity).
  for (const EpochRecord& e : r.history)
    if (e.epoch == r.best_epoch)
      for (const auto& kv : e.metrics)
        if (kv.first == metric) return kv.second;
  return NAN;
}

const TrainResult* selected_row(const std::vector<TrainResult>& results) {
  const std::string metric = validation_metric(results);
  if (metric.empty()) return nullptr;
  const bool lower = lower_is_better(metric);
  const TrainResult* best = nullptr;
  for (const TrainResult& r : results) {
    const double v = validation_value(r, metric);
    if (!std::isfinite(v)) continue;
    const double b = best ? validation_value(*best, metric) : NAN;
    if (!best || (lower ? v < b : v > b)) best = &r;
  }
  return best;
}

std::string format_selection_note(const std::vector<TrainResult>& results) {
  if (results.empty()) return "";
  const std::string metric = validation_metric(results);
  std::ostringstream os;
  if (metric.empty()) {
    const std::string& protocol = results.front().protocol;
    os << "the * marks are the best on the test " << (protocol == "ratings" ? "ratings" : "users") << " (the "
       << protocol << " protocol has no validation set): they describe this split, they select nothing\n";
    return os.str();
  }
  const TrainResult* sel = selected_row(results);
  if (!sel) {
    os << "no row selected: no model has a validation " << metric
       << " (no validation user could be scored); the * marks are the best on the test users, reported, not a "
          "selection\n";
    return os.str();
  }
  const double v = validation_value(*sel, metric);
  std::string ties;
  for (const TrainResult& r : results)
    if (&r != sel && validation_value(r, metric) == v) ties += (ties.empty() ? "" : ", ") + row_name(r);
  char num[32];
  std::snprintf(num, sizeof num, "%.4f", v);
  os << "selected: " << row_name(*sel) << ", the best val " << metric << " (" << num << ")"
     << (ties.empty() ? "" : ", tied with " + ties + " (the first is kept)")
     << ", chosen on the validation users; the test figures are reported, not used to choose";
  // Say so where the test columns would have picked another row.
  const double t = sel->metric(metric), best_test = best_of(results, metric);
  if (std::isfinite(t) && std::isfinite(best_test) && t != best_test) {
    for (const TrainResult& r : results)
      if (r.metric(metric) == best_test) {
        os << " (the test " << metric << " column's * is on " << row_name(r)
           << ": a reported figure, not a reason to switch)";
        break;
      }
  }
  os << "\n";
  return os.str();
}

std::string format_compare_table(const std::vector<TrainResult>& results) {
  const std::vector<std::string> names = compare_metric_names(results);
  std::vector<double> best;
  for (const std::string& n : names) best.push_back(best_of(results, n));
  const std::string vmetric = validation_metric(results);
  const std::string vhead = vmetric.empty() ? "" : "val " + vmetric;
  const TrainResult* selected = selected_row(results);
  size_t wm = 5;  // "model"
  for (const TrainResult& r : results) wm = std::max(wm, row_name(r).size());
  std::ostringstream os;
  char cell[64];
  os << std::string(wm, ' ').replace(0, 5, "model");
  if (!vhead.empty()) {
    std::snprintf(cell, sizeof cell, " %*s ", static_cast<int>(vhead.size()), vhead.c_str());
    os << cell;
  }
  for (const std::string& n : names) {
    std::snprintf(cell, sizeof cell, " %*s ", static_cast<int>(std::max<size_t>(n.size(), 7)), n.c_str());
    os << cell;
  }
  os << "  epoch  s/epoch  train s\n";
  for (const TrainResult& r : results) {
    os << row_name(r) << std::string(wm - row_name(r).size(), ' ');
    if (!vhead.empty()) {
      const double v = validation_value(r, vmetric);
      if (std::isnan(v))
        std::snprintf(cell, sizeof cell, " %*s ", static_cast<int>(vhead.size()), "-");
      else
        std::snprintf(cell, sizeof cell, " %*.4f ", static_cast<int>(vhead.size()), v);
      os << cell;
    }
    for (size_t i = 0; i < names.size(); ++i) {
      const int w = static_cast<int>(std::max<size_t>(names[i].size(), 7));
      const double v = r.metric(names[i]);
      if (std::isnan(v))
        std::snprintf(cell, sizeof cell, " %*s ", w, "-");
      else  // exact equality: the mark goes to every model that ties for the best
        std::snprintf(cell, sizeof cell, " %*.4f%c", w, v, v == best[i] ? '*' : ' ');
      os << cell;
    }
    if (trained(r))
      std::snprintf(cell, sizeof cell, "  %5d  %7.3f  %7.2f", r.best_epoch, r.epoch_seconds_median, r.train_seconds);
    else
      std::snprintf(cell, sizeof cell, "  %5s  %7s  %7.2f", "-", "-", r.train_seconds);  // EASE: its solve
    os << cell << (&r == selected ? "  \xe2\x97\x80 selected" : "") << "\n";
  }
  return os.str();
}

namespace {

std::vector<const TrainResult*> row_pointers(const std::vector<TrainResult>& results) {
  std::vector<const TrainResult*> rows;
  for (const TrainResult& r : results) rows.push_back(&r);
  return rows;
}

std::string selection_metric(const std::vector<TrainResult>& results) { return vae::selection_metric(row_pointers(results)); }

}  // namespace

namespace {

// The rows of a differences list ("  name  +0.0123 ± 0.0045 *") and its footer; unit names
// what the intervals are over ("users", "items").
std::string difference_rows(const std::vector<std::pair<const TrainResult*, MeanCi>>& rows, const std::string& unit) {
  size_t w = 5;
  for (const auto& row : rows) w = std::max(w, row_name(*row.first).size());
  std::ostringstream os;
  bool marked = false, any_interval = false;
  for (const auto& [r, d] : rows) {
    os << "  " << row_name(*r) << std::string(w - row_name(*r).size(), ' ') << "  " << format_ci(d)
       << (d.excludes_zero() ? " *" : "") << "\n";
    marked = marked || d.excludes_zero();
    any_interval = any_interval || std::isfinite(d.half);
  }
  if (marked)
    os << "* the interval excludes 0: a gap larger than the spread over the " << unit << " explains\n";
  else if (any_interval)
    os << "(every interval includes 0: no gap is larger than the spread over the " << unit << " explains)\n";
  else
    os << "(too few " << unit << " for an interval)\n";
  return os.str();
}

// The ratings protocol's version: RMSE differences from the lowest RMSE, paired by evaluated row
// (user; item for item-based AutoRec). Ratings of one user are not independent, so the row is
// the unit: with x_u the difference of the two models' squared-error sums on row u's n_u
// ratings, D = MSE_a − MSE_b = Σx_u / Σn_u is a ratio over the rows, whose interval (linearised,
// as a bootstrap over rows gives it) is (U / N) times that of the mean of the residuals
// x_u − n_u·D over the U rows; RMSE_a − RMSE_b = D / (RMSE_a + RMSE_b). The best is the lowest
// RMSE among the rating predictors (predicts_ratings), as the table marks it.
std::string format_rmse_differences(const std::vector<TrainResult>& results) {
  const TrainResult* best = nullptr;
  const bool any_predictor = std::any_of(results.begin(), results.end(), [](const TrainResult& r) {
    return predicts_ratings(r) && !r.row_errors.empty() && std::isfinite(r.metric("rmse"));
  });
  for (const TrainResult& r : results)
    if (!r.row_errors.empty() && std::isfinite(r.metric("rmse")) && (!any_predictor || predicts_ratings(r)) &&
        (!best || r.metric("rmse") < best->metric("rmse")))
      best = &r;
  if (!best) return "";
  int64_t rows = 0, ratings = 0;
  for (const auto& [sse, count] : best->row_errors)
    if (count > 0) ++rows, ratings += count;
  if (ratings == 0) return "";
  auto pairs_with = [&](const TrainResult& r) {
    if (&r == best || r.row_errors.size() != best->row_errors.size() || r.eval_set != best->eval_set ||
        r.item_based != best->item_based || !std::isfinite(r.metric("rmse")))
      return false;
    for (size_t i = 0; i < r.row_errors.size(); ++i)
      if (r.row_errors[i].second != best->row_errors[i].second) return false;  // other test ratings
    return true;
  };
  std::vector<std::pair<const TrainResult*, MeanCi>> out;
  std::string unpaired;  // models with an RMSE that cannot be paired with the best's rows
  for (const TrainResult& r : results) {
    if (&r != best && std::isfinite(r.metric("rmse")) && !pairs_with(r))
      unpaired += (unpaired.empty() ? "" : ", ") + row_name(r) +
                  (r.item_based != best->item_based ? (r.item_based ? " (its rows are items)" : " (its rows are users)")
                   : r.row_errors.empty()           ? " (no per-user errors)"
                                                    : " (other test ratings)");
    if (!pairs_with(r)) continue;
    double sse = 0;
    for (size_t i = 0; i < r.row_errors.size(); ++i) sse += r.row_errors[i].first - best->row_errors[i].first;
    const double mse_diff = sse / static_cast<double>(ratings);
    std::vector<double> x;
    for (size_t i = 0; i < r.row_errors.size(); ++i)
      if (r.row_errors[i].second > 0)
        x.push_back(r.row_errors[i].first - best->row_errors[i].first -
                    static_cast<double>(r.row_errors[i].second) * mse_diff);
    const MeanCi m = mean_ci95(x);
    MeanCi d;
    d.n = m.n;
    d.mean = r.metric("rmse") - best->metric("rmse");
    d.half = static_cast<double>(rows) / static_cast<double>(ratings) * m.half / (r.metric("rmse") + best->metric("rmse"));
    out.emplace_back(&r, d);
  }
  if (out.empty())  // say why rather than leave the block out
    return unpaired.empty() ? "" : "No paired rmse differences: no other model can be paired with the best (" +
                                       row_name(*best) + "): " + unpaired + "\n";
  const char* unit = best->item_based ? "items" : "users";
  std::ostringstream os;
  os << "Differences in rmse from the best (" << row_name(*best) << ") over the " << ratings << " test ratings of "
     << rows << " " << unit << ", with a 95% interval paired by " << (best->item_based ? "item" : "user") << ":\n"
     << difference_rows(out, unit);
  if (!unpaired.empty()) os << "not paired with " << row_name(*best) << ": " << unpaired << "\n";
  return os.str();
}

}  // namespace

// The trainer's selection metric among the per-user ones: seed NDCG@k (the first NDCG), heldout
// NDCG@100 when reported, else the NDCG of the largest cut-off; "" when there is none. The
// trainer's own record of it (TrainResult::selection_metric) decides where a row has one.
std::string selection_metric(const std::vector<const TrainResult*>& rows) {
  for (const TrainResult* rp : rows) {
    const TrainResult& r = *rp;
    if (r.selection_metric.rfind("ndcg@", 0) == 0)
      for (const auto& kv : r.user_metrics)
        if (kv.first == r.selection_metric) return kv.first;
  }
  std::string metric;
  int largest = -1;
  for (const TrainResult* rp : rows)
    for (const auto& kv : rp->user_metrics) {
      if (kv.first.rfind("ndcg@", 0) != 0) continue;
      if (metric.empty()) metric = kv.first;
      const int k = std::atoi(kv.first.c_str() + 5);
      if (is_foldin_protocol(rp->protocol) && (k == 100 || (largest != 100 && k > largest))) metric = kv.first, largest = k;
    }
  return metric;
}

bool level_with_popularity(double m, double p) { return std::fabs(m / p - 1.0) < 0.02; }

bool vae_collapsed(const TrainResult& r, double m, double p) {
  return r.model == "vae" && r.config.beta >= 1e-3 && level_with_popularity(m, p);
}

std::string format_popularity_notes(const std::vector<TrainResult>& results) {
  return format_popularity_notes(row_pointers(results));
}

std::string format_popularity_notes(const std::vector<const TrainResult*>& rows) {
  const std::string metric = selection_metric(rows);
  if (metric.empty()) return "";
  const TrainResult* pop = nullptr;
  for (const TrainResult* r : rows)
    if (r->model == "popularity") pop = r;
  if (!pop) return "";
  const double p = pop->metric(metric);
  if (!(p > 0)) return "";
  std::ostringstream os;
  os << std::setprecision(4);
  for (const TrainResult* rp : rows) {
    const TrainResult& r = *rp;
    if (&r == pop || r.model == "ease" || r.eval_set != pop->eval_set) continue;
    const double m = r.metric(metric);
    if (!std::isfinite(m)) continue;
    const bool level = level_with_popularity(m, p), far = m < 0.5 * p;
    if (!level && !(m < p)) continue;
    os << "note: " << row_name(r) << " ends " << (level ? "within 2 % of" : far ? "far below" : "below") << " popularity ("
       << metric << " " << m << " vs " << p << ")";
    // How much training the figure had: few optimiser steps (Mult-VAE's batch of 500 on a few
    // hundred users is one step an epoch) explain a model short of popularity better than
    // the model does. An earlier epoch kept on the validation users is not a lack of steps.
    const int64_t updates = r.steps_per_epoch * r.best_epoch;
    const int trained_epochs = r.history.empty() ? r.best_epoch : std::max(r.best_epoch, r.history.back().epoch);
    const int64_t trained_updates = r.steps_per_epoch * trained_epochs;
    auto plural = [](int64_t n, const char* one, const char* many) { return std::to_string(n) + (n == 1 ? one : many); };
    if (updates > 0 && trained_epochs == r.best_epoch)
      os << " after " << plural(updates, " update", " updates") << " (" << plural(r.best_epoch, " epoch", " epochs")
         << " of " << plural(r.steps_per_epoch, " batch", " batches") << ")";
    else if (updates > 0)
      os << " at epoch " << r.best_epoch << " of " << trained_epochs << " trained (" << updates << " of "
         << plural(trained_updates, " update", " updates") << ", " << plural(r.steps_per_epoch, " batch", " batches")
         << " an epoch)";
    if (vae_collapsed(r, m, p))
      os << ": its KL term (--beta " << r.config.beta << ") collapses the latent code, so z carries little about the user; "
         << "--beta 0.0001 or multvae learn user tastes\n";
    else if (trained_updates > 0 && trained_updates < kFewSteps)
      os << ": few for a network; more --epochs or a smaller --batch-size give it more\n";
    else if (level)
      os << ": it learned little beyond the most popular items here\n";
    else if (far)
      os << ": it learned no useful ranking under this protocol\n";
    else
      os << ": counting ratings ranks better here\n";
  }
  return os.str();
}

std::string format_paired_differences(const std::vector<TrainResult>& results) {
  const std::string metric = selection_metric(results);
  if (metric.empty()) return format_rmse_differences(results);
  // Heldout: the row selected on the validation users. Otherwise (or where it has no users'
  // values) the best model among those with users' values of this metric.
  const TrainResult* best = selected_row(results);
  const bool selected = best && best->user_values(metric) && !best->user_values(metric)->empty();
  if (!selected) best = nullptr;
  for (const TrainResult& r : results)
    if (!selected && r.user_values(metric) && !r.user_values(metric)->empty() && std::isfinite(r.metric(metric)) &&
        (!best || r.metric(metric) > best->metric(metric)))
      best = &r;
  if (!best) return "";
  const std::vector<double>& ref = *best->user_values(metric);
  // Pairs are the same users: the same evaluation set, as many values.
  std::vector<std::pair<const TrainResult*, MeanCi>> rows;
  for (const TrainResult& r : results)
    if (&r != best && r.user_values(metric) && r.user_values(metric)->size() == ref.size() && r.eval_set == best->eval_set)
      rows.emplace_back(&r, paired_difference_ci95(*r.user_values(metric), ref));
  if (rows.empty()) return "";
  std::ostringstream os;
  if (selected)
    os << "Per-user differences in test " << metric << " from the selected row (" << row_name(*best)
       << ", the best val " << validation_metric(results) << ") over the ";
  else
    os << "Per-user differences from the best " << metric << " (" << row_name(*best) << ") over the ";
  os << rows.front().second.n << (rows.front().second.n == 1 ? " evaluated user" : " evaluated users")
     << ", mean with its paired 95% interval:\n"
     << difference_rows(rows, "users");
  return os.str();
}

std::string format_activity_breakdown(const std::vector<TrainResult>& results) {
  const std::string metric = selection_metric(results);
  if (metric.empty()) return "";
  // The users: those of the first result that has them; the rows are the results evaluated on
  // that same set.
  const TrainResult* base = nullptr;
  for (const TrainResult& r : results)
    if (r.user_values(metric) && !r.user_activity.empty() && r.user_activity.size() == r.user_values(metric)->size()) {
      base = &r;
      break;
    }
  if (!base) return "";
  const std::vector<int64_t>& act = base->user_activity;
  const size_t n = act.size();
  std::vector<int64_t> sorted = act;
  std::sort(sorted.begin(), sorted.end());
  // Quartile bounds by value, so users with equal activity share a group (groups may then
  // differ in size); equal bounds merge.
  std::vector<int64_t> upper;
  for (int q = 1; q <= 4; ++q) {
    const int64_t hi = sorted[std::min(n - 1, (n * static_cast<size_t>(q) + 3) / 4 - 1)];
    if (upper.empty() || hi > upper.back()) upper.push_back(hi);
  }
  if (n < 8 || upper.size() < 2) return "";  // too few users, or one activity for all
  std::vector<std::string> heads;
  std::vector<std::vector<size_t>> members(upper.size());
  for (size_t i = 0; i < n; ++i)
    members[std::lower_bound(upper.begin(), upper.end(), act[i]) - upper.begin()].push_back(i);
  for (size_t g = 0; g < upper.size(); ++g) {
    const int64_t lo = g == 0 ? sorted.front() : upper[g - 1] + 1;
    heads.push_back((lo == upper[g] ? std::to_string(lo) : std::to_string(lo) + "-" + std::to_string(upper[g])) + " (" +
                    std::to_string(members[g].size()) + ")");
  }
  size_t wm = 5, wc = 7;
  for (const std::string& h : heads) wc = std::max(wc, h.size());
  std::vector<const TrainResult*> rows;
  for (const TrainResult& r : results)
    if (r.user_values(metric) && r.user_values(metric)->size() == n && r.eval_set == base->eval_set) {
      rows.push_back(&r);
      wm = std::max(wm, row_name(r).size());
    }
  std::ostringstream os;
  os << metric << " by the users' number of input ratings (quartiles of the " << n << " evaluated users; users per group):\n";
  os << std::string(wm, ' ').replace(0, 5, "model");
  for (const std::string& h : heads) os << "  " << std::string(wc - h.size(), ' ') << h;
  os << "\n";
  char cell[64];
  for (const TrainResult* r : rows) {
    os << row_name(*r) << std::string(wm - row_name(*r).size(), ' ');
    const std::vector<double>& v = *r->user_values(metric);
    for (size_t g = 0; g < members.size(); ++g) {
      double sum = 0;
      for (size_t i : members[g]) sum += v[i];
      std::snprintf(cell, sizeof cell, "  %*.4f", static_cast<int>(wc), sum / static_cast<double>(members[g].size()));
      os << cell;
    }
    os << "\n";
  }
  return os.str();
}

std::string compare_csv(const std::vector<TrainResult>& results, const std::vector<std::string>& swept,
                        const std::vector<FailedRow>& failed) {
  const std::vector<std::string> names = compare_metric_names(results);
  // The per-user metrics' interval half-widths follow the metrics, as <metric>_ci95.
  std::vector<std::string> ci_names;
  for (const std::string& n : names)
    if (std::any_of(results.begin(), results.end(), [&](const TrainResult& r) { return r.user_values(n) != nullptr; }))
      ci_names.push_back(n);
  std::ostringstream os;
  os << "model";
  for (const std::string& n : names) os << "," << n;
  for (const std::string& n : ci_names) os << "," << n << "_ci95";
  os << ",epoch,epoch_seconds_median,train_seconds,num_params";
  // Appended after the columns older readers know: the validation figure and the selection
  // (heldout), then the swept options' values.
  const std::string vmetric = validation_metric(results);
  const TrainResult* selected = selected_row(results);
  if (!vmetric.empty()) os << ",val_" << vmetric << ",selected";
  const std::string head = os.str();
  const size_t figure_fields = static_cast<size_t>(std::count(head.begin(), head.end(), ','));  // after "model"
  for (const std::string& n : swept) os << "," << n;
  os << "\n";
  auto swept_fields = [&](const std::vector<std::pair<std::string, std::string>>& settings) {
    for (const std::string& n : swept) {
      os << ",";
      for (const auto& [name, value] : settings)
        if (name == n) os << value;  // a number or a word as --sweep took it: no quoting needed
    }
  };
  char num[64];
  auto field = [&](double v) { os << "," << text::csv_number(v, 17); };  // every digit: read back by programs
  for (const TrainResult& r : results) {
    os << row_name(r);
    for (const std::string& n : names) field(r.metric(n));
    for (const std::string& n : ci_names) field(r.user_values(n) ? mean_ci95(*r.user_values(n)).half : NAN);
    if (trained(r)) {
      std::snprintf(num, sizeof num, ",%d,%.6g,%.6g", r.best_epoch, r.epoch_seconds_median, r.train_seconds);
      os << num;
    } else {
      std::snprintf(num, sizeof num, ",,,%.6g", r.train_seconds);
      os << num;
    }
    os << ",";
    if (r.num_params > 0) os << r.num_params;
    if (!vmetric.empty()) {
      field(validation_value(r, vmetric));
      os << "," << (&r == selected ? "1" : "0");
    }
    swept_fields(r.sweep_settings);
    os << "\n";
  }
  for (const FailedRow& f : failed) {
    os << f.name << std::string(figure_fields, ',');
    swept_fields(f.sweep_settings);
    os << "\n";
  }
  return os.str();
}

std::string compare_svg(const std::vector<TrainResult>& results, const std::string& subtitle) {
  BarPlot p;
  p.title = "Models compared";
  p.subtitle = subtitle;
  for (const TrainResult& r : results) p.groups.push_back(row_name(r));
  if (const std::string vmetric = validation_metric(results); !vmetric.empty()) {
    BarPanel val;
    val.title = "val " + vmetric + " (the selection; the selected row outlined)";
    const TrainResult* selected = selected_row(results);
    for (const TrainResult& r : results) {
      const double v = validation_value(r, vmetric);
      val.values.push_back(std::isfinite(v) && v >= 0 ? v : NAN);
      val.best.push_back(&r == selected);
    }
    p.panels.push_back(val);
  }
  for (const std::string& n : compare_metric_names(results)) {
    BarPanel panel;
    panel.title = n + (lower_is_better(n) ? " (lower is better)" : " (higher is better)");
    const double best = best_of(results, n);
    for (const TrainResult& r : results) {
      const double v = r.metric(n);
      panel.values.push_back(std::isfinite(v) && v >= 0 ? v : NAN);  // a diverged run: no bar, "n/a"
      panel.best.push_back(v == best);
    }
    p.panels.push_back(panel);
  }
  BarPanel time;
  time.title = "training seconds";
  for (const TrainResult& r : results) {
    time.values.push_back(r.train_seconds >= 0 ? r.train_seconds : NAN);
    time.best.push_back(false);  // not a quality: no winner marked
  }
  p.panels.push_back(time);
  return bars_svg(p);
}

}  // namespace vae
