// vae_gpu compare: every model on one split (same data, protocol and seed), one after another on one
// backend, then a table; --out gets compare.csv and each model's run files in DIR/<model>/.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>

#include "cli/options.h"
#include "train/compare.h"

namespace vae::cli {

namespace {

// --loss names one family's losses (AutoRec: masked, dense; CDAE: bce, mse): the models of that
// family get it, the others keep their own default.
bool loss_fits(const std::string& kind, const std::string& loss) {
  if (loss.empty()) return true;
  if (loss == "masked" || loss == "dense") return kind == "autorec" || kind == "i-autorec";
  return kind == "cdae";
}

// The models named in DIR/compare.csv (an earlier compare into DIR), empty when there is none.
// Only the first column is read: later versions append columns, never move it.
std::vector<std::string> earlier_compare_models(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream f(dir + "/compare.csv");
  std::string line;
  if (!std::getline(f, line) || line.rfind("model,", 0) != 0) return out;
  while (std::getline(f, line)) out.push_back(line.substr(0, line.find(',')));
  return out;
}

// The table's footnote: how each shown epoch was picked, from the results themselves.
std::string compare_epoch_wording(const std::vector<TrainResult>& results) {
  std::vector<std::string> parts;
  auto add = [&](const std::string& p) {
    if (std::find(parts.begin(), parts.end(), p) == parts.end()) parts.push_back(p);
  };
  for (const TrainResult& r : results) {
    if (r.epoch_selection == "validation") add("the best on the validation users");
    if (r.epoch_selection == "test")
      add(std::string("the best on the test ") + (r.protocol == "ratings" ? "ratings" : "users") + " (--patience)");
    if (r.epoch_selection == "last") add("the last trained");
  }
  std::string w;
  for (size_t i = 0; i < parts.size(); ++i) w += (i ? "; " : "") + parts[i];
  return w;
}

// Whether the table has an MAE column (the ratings protocol's rows).
bool has_mae(const std::vector<TrainResult>& results) {
  return std::any_of(results.begin(), results.end(), [](const TrainResult& r) { return std::isfinite(r.metric("mae")); });
}

// The rows whose RMSE is not a rating error, named where the table has any.
std::string ranking_only_note(const std::vector<TrainResult>& results) {
  std::vector<std::string> kinds;  // once each, sweeps having a row per value
  for (const TrainResult& r : results)
    if (std::isfinite(r.metric("rmse")) && !predicts_ratings(r) &&
        std::find(kinds.begin(), kinds.end(), r.model) == kinds.end())
      kinds.push_back(r.model);
  std::string names;
  for (const std::string& k : kinds) names += (names.empty() ? "" : ", ") + k;
  const bool mae = has_mae(results);
  const std::string errors = mae ? "RMSE and MAE" : "RMSE";
  return names.empty() ? ""
                       : " among the rating predictors; " + names + (kinds.size() == 1 ? " scores items, and its " : " score items, and their ") +
                             errors + (mae ? " are" : " is") + " of those scores clipped to the rating scale";
}

}  // namespace

int run_compare(Options& o) {
  if (!o.model_file.empty()) throw UsageError("compare trains each model itself: drop --model-file");
  if (!o.train.model.kind.empty())
    throw UsageError("compare takes its models from --models (comma-separated), not --model");
  if (o.train.folds != 0)
    throw UsageError("--folds cross-validates one model (train --folds: svd, svdpp, autorec, i-autorec); compare trains every model on one split");
  const bool listed = o.was_given("--models");
  // Each --sweep flag one option; several make a grid.
  std::vector<Sweep> sweeps;
  for (const std::string& spec : o.sweeps) {
    Sweep sw = parse_sweep(spec);
    // The flag it sweeps, or --tf32 (--precision tf32 by another name), set beside it.
    const std::string set = o.was_given("--" + sw.name)                            ? "--" + sw.name
                            : sw.name == "precision" && o.was_given("--tf32") ? "--tf32"
                                                                                     : "";
    if (!set.empty()) throw UsageError(set + " is also swept (--sweep " + spec + "): give it once");
    for (const Sweep& other : sweeps)
      if (other.name == sw.name) throw UsageError("--sweep " + sw.name + " is given twice: list its values in one");
    sweeps.push_back(std::move(sw));
  }
  std::string swept;  // "beta" or "beta, dropout"
  for (const Sweep& sw : sweeps) swept += (swept.empty() ? "" : ", ") + sw.name;
  std::vector<std::string> models = listed ? parse_model_list(o.models) : default_compare_models(o.train.protocol);
  // One --epochs serves every trained model: say so where it moves SVD off its own default
  // (20 SGD epochs; 60 Adam epochs for AutoRec are 3 times too many for it, and it overfits).
  if (o.was_given("--epochs")) {
    std::string svds;
    for (const std::string& m : models)
      if (is_svd_kind(m)) svds += (svds.empty() ? "" : ", ") + m;
    if (!svds.empty() && o.train.epochs != 20)
      std::cerr << "note: --epochs " << o.train.epochs << " applies to every model here, " << svds
                << " included (their own default is 20 SGD epochs; compare them at it in a run of their own)\n";
  }
  // The swept options a model reads, in the order given.
  auto swept_by = [&](const std::string& m) {
    std::vector<const Sweep*> out;
    for (const Sweep& sw : sweeps)
      if (sweep_applies(sw.name, m)) out.push_back(&sw);
    return out;
  };
  if (!sweeps.empty()) {
    auto reads = [&](const std::string& m) { return !swept_by(m).empty(); };
    for (const Sweep& sw : sweeps)
      if (std::none_of(models.begin(), models.end(), [&](const std::string& m) { return sweep_applies(sw.name, m); }))
        throw UsageError("--sweep " + sw.name + ": " + (listed ? "no model in --models" : "no default model") +
                         " reads --" + sw.name);
    // Unlisted, the defaults that read an option; listed, the others run once as references.
    if (!listed) {
      std::string left;
      for (const std::string& m : models)
        if (!reads(m)) left += (left.empty() ? "" : ", ") + m;
      models.erase(std::remove_if(models.begin(), models.end(), [&](const std::string& m) { return !reads(m); }),
                   models.end());
      if (!left.empty())
        std::cerr << "note: --sweep " << swept << " without --models: the default models that read "
                  << (sweeps.size() > 1 ? "one of them" : "--" + swept) << " (not " << left
                  << "; name them in --models to run them once beside)\n";
    }
    std::string once;
    for (const std::string& m : models)
      if (!reads(m)) once += (once.empty() ? "" : ", ") + m;
    if (!once.empty())
      std::cerr << "note: --sweep " << swept << ": " << once << " run" << (once.find(',') == std::string::npos ? "s" : "")
                << " once, as a reference (not reading " << (sweeps.size() > 1 ? "any of them" : "--" + swept) << ")\n";
    // On a grid, a model that reads only some of the options varies those.
    if (sweeps.size() > 1)
      for (const std::string& m : models) {
        const auto own = swept_by(m);
        if (own.empty() || own.size() == sweeps.size()) continue;
        std::string names;
        for (const Sweep* sw : own) names += (names.empty() ? "" : ", ") + sw->name;
        std::cerr << "note: --sweep: " << m << " reads only " << names << "; its rows vary that alone\n";
      }
  }
  auto has = [&](const char* k) { return std::find(models.begin(), models.end(), k) != models.end(); };
  // Only rating predictors named: their protocol, as `train` picks it for one of them.
  if (listed && !o.protocol_given &&
      std::all_of(models.begin(), models.end(), [](const std::string& m) { return is_svd_kind(m) || m == "i-autorec"; }))
    o.train.protocol = "ratings";
  apply_common_options(o);
  note_seed_protocol(o);
  const std::string loss = o.train.model.loss;
  if (!loss.empty() && std::none_of(models.begin(), models.end(), [&](const std::string& m) { return loss_fits(m, loss); }))
    throw UsageError("--loss " + loss + " is " + (loss_fits("cdae", loss) ? "CDAE's" : "AutoRec's") +
                     " and no compared model is one");
  // The runs: each model once, or once per combination of the swept values it reads (the last
  // option varying fastest).
  struct Run {
    std::string kind, label;  // label "" = the model's own name
    std::vector<std::pair<std::string, std::string>> settings;
    const std::string& name() const { return label.empty() ? kind : label; }
  };
  std::vector<Run> runs;
  for (const std::string& m : models) {
    const auto own = swept_by(m);
    if (own.empty()) {
      runs.push_back({m, "", {}});
      continue;
    }
    std::vector<size_t> at(own.size(), 0);
    while (true) {
      Run run{m, "", {}};
      for (size_t j = 0; j < own.size(); ++j) run.settings.emplace_back(own[j]->name, own[j]->values[at[j]]);
      run.label = sweep_label(m, run.settings);
      runs.push_back(std::move(run));
      size_t j = own.size();
      while (j > 0 && ++at[j - 1] == own[j - 1]->values.size()) at[--j] = 0;
      if (j == 0) break;
    }
  }
  auto options_of = [&](const Run& run) {
    TrainOptions t = o.train;
    t.model.kind = run.kind;
    for (const auto& [name, value] : run.settings) apply_sweep(name, value, t);
    return t;
  };
  // Every run is checked against the protocol and the flags before the first one trains.
  for (const Run& run : runs) {
    TrainOptions t = options_of(run);
    try {
      resolve_defaults(t);
    } catch (const UsageError& e) {
      throw UsageError(std::string(e.what()) + " (or leave " + run.kind + " out of --models)");
    }
  }
  note_ignored_options(o, models);
  std::string keep;  // the models with a loss of their own that --loss does not name
  for (const std::string& m : models)
    if (!loss.empty() && (m == "autorec" || m == "i-autorec" || m == "cdae") && !loss_fits(m, loss))
      keep += (keep.empty() ? "" : ", ") + m;
  if (!keep.empty())
    std::cerr << "note: --loss " << loss << " is " << (loss_fits("cdae", loss) ? "CDAE's" : "AutoRec's") << "; " << keep
              << " keep" << (keep.find(',') == std::string::npos ? "s its" : " their") << " default loss\n";
  if (o.was_given("--hidden") && has("vae"))
    std::cerr << "note: --hidden leaves the notebook VAE at its fixed layers (items-512-256-2*latent)"
              << (models.size() > 1 ? "; it sets the width of the others" : "") << "\n";
  if ((has("svd") || has("svdpp")) && models.size() > 1)
    for (const char* f : {"--hidden", "--lr", "--lambda"})
      if (o.was_given(f))
        std::cerr << "note: for svd/svdpp " << f << " is "
                  << (std::string(f) == "--hidden" ? "the number of factors"
                      : std::string(f) == "--lr"   ? "the SGD learning rate"
                                                   : "the SGD regularisation")
                  << "; for the autoencoders it keeps its usual meaning\n";
  // The devices before the data, so that a missing GPU is refused before anything is loaded or trained.
  std::unique_ptr<Backend<float>> be;
  std::string be_precision = o.precision;  // as asked: the CPU runs tf32 and bf16 as fp32
  if (std::any_of(models.begin(), models.end(), [](const std::string& m) { return !is_svd_kind(m); })) {
    be = make_backend(o);
    std::cerr << "device: " << be->name() << " (GEMMs " << precision_name(be->gemm_precision()) << ")\n";
  }
  const std::string device = be ? be->name() : "";
  // A row's GEMM precision: its swept value, else --precision.
  auto precision_of = [&](const Run& run) {
    for (const auto& [name, value] : run.settings)
      if (name == "precision") return value;
    return o.precision;
  };
  if (be && std::any_of(sweeps.begin(), sweeps.end(), [](const Sweep& sw) { return sw.name == "precision"; })) {
    std::cerr << "note: --sweep precision: each row multiplies at its own precision, on a " << be->name()
              << " backend made for it";
    if (be->name() == "cpu") {
      std::string same;
      for (const Run& run : runs)
        if (const std::string p = precision_of(run); (p == "tf32" || p == "bf16") && same.find(p) == std::string::npos)
          same += (same.empty() ? "" : " and ") + p;
      if (!same.empty()) std::cerr << "; the CPU has no tensor cores, so " << same << " rows run fp32 GEMMs";
    }
    std::cerr << "\n";
  }
  SvdRunConfig svd_rc;
  if (has("svd") || has("svdpp")) {
    svd_rc = svd_run_config(o);
    print_svd_device(svd_rc, has("svdpp"));
  }
  check_out_dir(o.out);
  check_out_folder_kind(o.out, /*compare=*/true);
  if (!o.out.empty())
    for (const Run& run : runs) {
      const std::string dir = o.out + "/" + run.name();
      if (std::filesystem::exists(dir) && !std::filesystem::is_directory(dir))
        throw DataError(dir, 0, "exists and is not a directory (compare writes " + run.name() + "'s run files there)");
    }
  const Dataset d = load_data(o);
  if (o.train.data_dir.empty()) o.train.data_dir = d.source;
  std::vector<TrainResult> results;
  std::vector<std::string> failed;  // "model: why"
  std::vector<FailedRow> failed_rows;  // compare.csv's rows without figures
  StagedFiles staged;
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::string& m = runs[i].kind;
    const std::string& name = runs[i].name();
    std::cout << (i ? "\n" : "") << "[" << i + 1 << "/" << runs.size() << "] " << name << "\n";
    TrainOptions t = options_of(runs[i]);
    if (!loss_fits(m, t.model.loss)) t.model.loss.clear();
    // A model that fails while training (out of memory at its size, say) costs only its own row.
    try {
      TrainResult r;
      if (is_svd_kind(m)) {
        r = std::move(run_svd_experiment(d, t, svd_rc, std::cout).result);
        std::cout << "Final metrics on " << r.eval_set << ":";
      } else {
        if (const std::string p = precision_of(runs[i]); p != be_precision || !be) {
          be.reset();  // one backend at a time: the row gets the GPU's memory
          be_precision = p;
          be = device == "cpu" ? make_cpu_backend<float>(parse_precision(p)) : make_cuda_backend(parse_precision(p));
        }
        r = run_experiment(*be, d, t, std::cout);
        std::cout << epoch_report(r) << "; final metrics on " << r.eval_set << ":";
      }
      std::cout << format_metric_pairs(r.metrics);
      std::cout << "\n";
      r.label = runs[i].label;
      r.sweep_settings = runs[i].settings;
      if (!o.out.empty()) stage_run_files(staged, o.out + "/" + name, r);
      r.model_ptr.reset();  // the next model gets the memory (a GPU's, at ml-20m scale)
      results.push_back(std::move(r));
    } catch (const std::bad_alloc&) {
      failed_rows.push_back({name, runs[i].settings});
      failed.push_back(name + ": out of host memory");
      std::cerr << "vae_gpu: " << failed.back() << "; going on with the other models\n";
    } catch (const std::exception& e) {
      failed_rows.push_back({name, runs[i].settings});
      failed.push_back(name + ": " + e.what());
      std::cerr << "vae_gpu: " << failed.back() << "; going on with the other models\n";
    }
  }
  if (results.empty()) throw VaeError("compare: every model failed (" + failed.front() + (failed.size() > 1 ? ", …)" : ")"));
  const TrainResult& first = results.front();
  const std::string split = first.protocol + " protocol (" + first.eval_set + "; seed " + std::to_string(o.seed) +
                            (device.empty() ? "" : "; " + device) + ")";
  std::cout << "\nModels compared on the " << split << ":\n"
            << format_compare_table(results)
            << (validation_metric(results).empty() ? "* best in its column" : "* best test figure in its column")
            << (std::any_of(results.begin(), results.end(), [](const TrainResult& r) { return std::isfinite(r.metric("rmse")); })
                    ? std::string(has_mae(results) ? " (RMSE, MAE: the lowest" : " (RMSE: the lowest") +
                          ranking_only_note(results) + ")"
                    : "");
  const std::string wording = compare_epoch_wording(results);
  if (!wording.empty()) std::cout << "; epoch: " << wording;
  std::cout << "\n" << format_selection_note(results);
  for (const TrainResult& r : results)  // one split by construction: say so if a model saw another
    if (r.eval_set != first.eval_set)
      std::cerr << "note: " << row_name(r) << " was evaluated on " << r.eval_set << "\n";
  std::cout << format_paired_differences(results) << format_popularity_notes(results);
  if (const std::string by_activity = format_activity_breakdown(results); !by_activity.empty())
    std::cout << "\n" << by_activity;
  for (const std::string& f : failed) std::cout << "failed: " << f << "\n";
  if (!o.out.empty()) {
    std::vector<std::string> swept_names;
    for (const Sweep& sw : sweeps) swept_names.push_back(sw.name);
    staged.add(o.out + "/compare.csv", compare_csv(results, swept_names, failed_rows));
    staged.add(o.out + "/compare.svg", compare_svg(results, d.name + ", " + split));
    // Models of an earlier compare into this directory that are not in this table: their files
    // go (only those: a directory shared with other runs keeps theirs). A model that failed this
    // time keeps the files of its earlier run: a failure loses nothing already written.
    for (const std::string& k : earlier_compare_models(o.out)) {
      if (std::find_if(results.begin(), results.end(), [&](const TrainResult& r) { return row_name(r) == k; }) !=
              results.end() ||
          !is_compare_label(k))
        continue;
      if (std::any_of(failed_rows.begin(), failed_rows.end(), [&](const FailedRow& f) { return f.name == k; })) {
        if (std::filesystem::exists(o.out + "/" + k + "/summary.json"))
          std::cerr << "note: " << k << " failed; " << o.out << "/" << k
                    << "/ keeps its earlier compare's files (its compare.csv row is empty; a compare that trains "
                    << k << " replaces them)\n";
        continue;
      }
      drop_run_files(staged, o.out + "/" + k);
    }
  }
  commit_and_report(staged, o.out);
  return failed.empty() ? 0 : 1;
}

}  // namespace vae::cli
