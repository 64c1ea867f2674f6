#include "train/compare.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "analysis/svg_plot.h"
#include "core/error.h"

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
double best_of(const std::vector<TrainResult>& results, const std::string& metric) {
  double best = NAN;
  for (const TrainResult& r : results) {
    const double v = r.metric(metric);
    if (std::isnan(v)) continue;
    if (std::isnan(best) || (lower_is_better(metric) ? v < best : v > best)) best = v;
  }
  return best;
}

}  // namespace

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
                       "' (choose from vae, autorec, i-autorec, multvae, cdae, popularity, ease, svd, svdpp)");
    if (std::find(out.begin(), out.end(), m) != out.end())
      throw UsageError("--models: " + m + " is named twice (each model runs once, on the same split)");
    out.push_back(m);
  }
  if (!list.empty() && list.back() == ',') throw UsageError("--models '" + list + "': an empty entry at the end");
  if (out.empty()) throw UsageError("--models is empty: name at least one model");
  return out;
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

std::string format_compare_table(const std::vector<TrainResult>& results) {
  const std::vector<std::string> names = compare_metric_names(results);
  std::vector<double> best;
  for (const std::string& n : names) best.push_back(best_of(results, n));
  size_t wm = 5;  // "model"
  for (const TrainResult& r : results) wm = std::max(wm, r.model.size());
  std::ostringstream os;
  char cell[64];
  os << std::string(wm, ' ').replace(0, 5, "model");
  for (const std::string& n : names) {
    std::snprintf(cell, sizeof cell, " %*s ", static_cast<int>(std::max<size_t>(n.size(), 7)), n.c_str());
    os << cell;
  }
  os << "  epoch  s/epoch  train s\n";
  for (const TrainResult& r : results) {
    os << r.model << std::string(wm - r.model.size(), ' ');
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
    os << cell << "\n";
  }
  return os.str();
}

std::string compare_csv(const std::vector<TrainResult>& results) {
  const std::vector<std::string> names = compare_metric_names(results);
  std::ostringstream os;
  os << "model";
  for (const std::string& n : names) os << "," << n;
  os << ",epoch,epoch_seconds_median,train_seconds,num_params\n";
  char num[64];
  for (const TrainResult& r : results) {
    os << r.model;
    for (const std::string& n : names) {
      const double v = r.metric(n);
      os << ",";
      if (!std::isnan(v)) {
        std::snprintf(num, sizeof num, "%.17g", v);  // every digit: the CSV is read back by programs
        os << num;
      }
    }
    if (trained(r)) {
      std::snprintf(num, sizeof num, ",%d,%.6g,%.6g", r.best_epoch, r.epoch_seconds_median, r.train_seconds);
      os << num;
    } else {
      std::snprintf(num, sizeof num, ",,,%.6g", r.train_seconds);
      os << num;
    }
    os << ",";
    if (r.num_params > 0) os << r.num_params;
    os << "\n";
  }
  return os.str();
}

std::string compare_svg(const std::vector<TrainResult>& results, const std::string& subtitle) {
  BarPlot p;
  p.title = "Models compared";
  p.subtitle = subtitle;
  for (const TrainResult& r : results) p.groups.push_back(r.model);
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
