// vae_gpu's training commands: the main job (bare `vae_gpu --epochs 20`: train, compare with
// popularity, recommend, cluster), `train` (SVD models on their own path) and `info`.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <sstream>

#include "analysis/profile.h"
#include "analysis/recommend.h"
#include "cli/options.h"
#include "data/text_reader.h"
#include "models/vae.h"
#include "train/compare.h"

namespace vae::cli {

namespace {

// A run that trains a model into out_dir: what earlier runs derived there from
// their model — embed's files, cluster's, the main job's baseline row and clusters — would not
// describe this one's. The main job writes its own clusters and embeddings; `train` none.
void drop_derived_files(StagedFiles& staged, const std::string& out_dir, bool main_job) {
  if (out_dir.empty()) return;
  staged.remove_on_commit(out_dir + "/cluster_report.html");
  staged.remove_on_commit(out_dir + "/logvar.npy");
  if (main_job) return;
  drop_analysis_files(staged, out_dir, /*embeddings=*/true);
  drop_run_files(staged, out_dir + "/popularity");
}

// The main job's K = 3 clusters and t-SNE picture (with --out) of the users' codes.
ClusterOptions main_job_clusters(const Options& o, bool cuda) {
  ClusterOptions co;
  co.seed = o.seed;
  co.cuda = cuda;
  co.tsne = !o.out.empty() && !o.no_tsne;  // the notebooks' picture, as a file
  if (o.out.empty() && !o.no_tsne)
    std::cerr << "note: no t-SNE map without --out: give --out DIR for DIR/tsne.svg (and x, y in clusters.csv)\n";
  co.skip_if_too_few = true;  // a tiny data set still ends the job cleanly
  co.tsne_optional = true;
  // On the CPU a larger set is subsampled so the job stays quick
  // (Barnes-Hut: about 6 s at 5000 points on two cores); `cluster --tsne --tsne-max N` draws more.
  // exact --tsne-method keeps the quadratic method's 2000 (about 7 s).
  co.tsne_max = cuda ? o.tsne_max : std::min<int64_t>(o.tsne_max, o.tsne_method == "exact" ? 2000 : 5000);
  co.tsne_method = o.tsne_method;
  co.tsne_max_flag = "more users with: vae_gpu cluster --model-file '" + o.out + "/" + kModelFileName +
                     "' --tsne --tsne-max <points>";
  return co;
}

// SVD / SVD++ training: metrics, the run files and (one split) model.safetensors; the main job
// ends with user 1's top 30 like the autoencoders'.
int run_svd_train(Options& o, const Dataset& d, bool main_job) {
  const SvdRunConfig rc = svd_run_config(o);
  print_svd_device(rc, o.train.model.kind == "svdpp");
  SvdRun run = run_svd_experiment(d, o.train, rc, std::cout);
  const TrainResult& r = run.result;
  std::cout << "Final metrics on " << r.eval_set << ":";
  std::cout << format_metric_pairs(r.metrics);
  std::cout << "\n";
  StagedFiles staged;  // renamed in together at the end (the model file, report.html)
  if (!o.out.empty()) {
    stage_run_files(staged, o.out, r);
    const std::string model_path = o.out + "/" + kModelFileName;
    if (run.model) {
      save_svd_model_file(model_path + ".tmp", *run.model,
                          svd_model_file_info(*run.model, d, run.ratings_split, o.train.seed), d);
      staged.adopt(model_path);
    } else {
      std::cerr << "note: --folds trains one model per fold; no " << kModelFileName
                << " written (train without --folds to keep a model)\n";
      staged.remove_on_commit(model_path);  // an earlier run's model would not match these metrics
    }
    // SVD's main job has no popularity row (it predicts ratings, popularity ranks items): an
    // earlier autoencoder main job's would not describe this run. Its clusters are below.
    if (main_job) drop_run_files(staged, o.out + "/popularity");
    if (main_job && !run.model) drop_analysis_files(staged, o.out, /*embeddings=*/true);
    if (o.model_file.empty()) drop_derived_files(staged, o.out, main_job);  // a stored model: the same one
  }
  if (main_job && run.model && d.num_users() > 0) {
    std::string user = "1";
    if (d.find_user(user) < 0) user = d.user_ids.front();
    SvdRecommender rec(*run.model, d);
    RecommendOptions ro;
    ro.top = 30;
    ro.include_rated = true;
    const RecommendResult rr = rec.for_user(user, ro);
    std::cerr << format_recommendation_notes(rr);
    std::cout << "\n"
              << format_recommendations(rr, d,
                                        "Top 30 recommendations for user " + user + " (" + r.model +
                                            ", rated items included):",
                                        /*with_notes=*/false);
    if (!o.no_baseline)
      std::cerr << "note: no popularity comparison: " << r.model << " is scored on rating prediction (RMSE), which "
                << "popularity does not do; `vae_gpu compare --protocol ratings` sets it beside the other rating "
                   "predictors\n";
    // The notebooks' clusters, of the users' factor vectors.
    cluster_svd_report(*run.model, d, main_job_clusters(o, rc.cuda), o.out, /*write_embeddings=*/true, staged);
  }
  commit_and_report(staged, o.out);  // nothing is staged without --out
  return 0;
}

// AutoRec / I-AutoRec k-fold cross-validation of the ratings (--folds K): one model per fold, each
// trained and scored as a lone ratings-protocol run on that fold, then RMSE and MAE as mean ±
// population std over the folds (Surprise's table, as SVD's --folds). No model file is written
// (K models, none of them "the" model); metrics.csv and curves.svg hold each epoch's mean over
// the folds (mean_history): without --patience, their last epoch is the cross-validated figure.
int run_train_folds(Options& o, Backend<float>& be, const Dataset& d, bool main_job) {
  const int k = o.train.folds;
  const std::string kind = o.train.model.kind;
  std::vector<double> rmse, mae, secs, epoch_secs;
  std::vector<std::vector<EpochRecord>> histories;
  TrainResult all;
  for (int f = 0; f < k; ++f) {
    TrainOptions t = o.train;
    t.fold = f;
    const bool quiet = o.train.quiet;
    if (!quiet) std::cout << "Fold " << f + 1 << "/" << k << "\n";
    all.model_ptr.reset();  // one model alive at a time (a GPU's memory goes to the fold training)
    TrainResult r = run_experiment(be, d, t, std::cout);
    rmse.push_back(r.metric("rmse"));
    mae.push_back(r.metric("mae"));
    secs.push_back(r.train_seconds);
    for (const EpochRecord& e : r.history) epoch_secs.push_back(e.train_seconds);
    if (!quiet) {  // "(2666 test ratings)" from the fold's description
      const size_t paren = r.eval_set.find('(');
      std::cout << fold_result_line(static_cast<size_t>(f), static_cast<size_t>(k), rmse.back(), mae.back(),
                                    paren == std::string::npos ? "" : r.eval_set.substr(paren));
    }
    histories.push_back(r.history);
    if (f == 0) all = std::move(r);
    else all.model_ptr = std::move(r.model_ptr);  // summary.json's config: every fold's is the same
  }
  all.history = mean_history(histories);
  const CrossValidation cv = cross_validation(kind, rmse, mae, secs);
  double total = 0;
  for (double s : secs) total += s;
  std::sort(epoch_secs.begin(), epoch_secs.end());
  all.metrics = cv.metrics;
  all.eval_set = std::to_string(k) + "-fold cross-validation";
  all.train_seconds = total;
  all.epoch_seconds_median = epoch_secs.empty() ? 0 : epoch_secs[epoch_secs.size() / 2];
  // Per-user figures belong to one fold's test ratings: none for the whole.
  all.user_metrics.clear();
  all.row_errors.clear();
  all.eval_user_ids.clear();
  all.user_activity.clear();
  std::cout << cv.line;  // the summary: a final line, printed under --quiet too
  std::cout << "Final metrics on " << all.eval_set << ":";
  std::cout << format_metric_pairs(all.metrics);
  std::cout << "\n";
  StagedFiles staged;
  if (!o.out.empty()) {
    stage_run_files(staged, o.out, all);
    std::cerr << "note: --folds trains one model per fold; no " << kModelFileName
              << " written (train without --folds to keep a model)\n";
    staged.remove_on_commit(o.out + "/" + kModelFileName);  // an earlier run's model would not match these metrics
    if (main_job) {  // no baseline row, recommendations or clusters without one model
      drop_run_files(staged, o.out + "/popularity");
      drop_analysis_files(staged, o.out, /*embeddings=*/true);
    }
    drop_derived_files(staged, o.out, main_job);
  }
  commit_and_report(staged, o.out);
  return 0;
}

// train --model-file M --out DIR evaluates M into DIR. The folder M was trained into is refused:
// the evaluation's one-row metrics.csv would replace that run's history (and its curves).
void check_evaluation_out(const Options& o) {
  if (o.model_file.empty() || o.out.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path folder = fs::absolute(o.model_file, ec).parent_path();
  if (fs::equivalent(folder, o.out, ec) && fs::exists(fs::path(o.out) / "metrics.csv", ec))
    throw UsageError("--out " + o.out + " holds --model-file's training run: evaluating into it would replace that "
                     "run's metrics.csv, summary.json and curves.svg; give another --out (`cluster --model-file " +
                     o.model_file + " --out " + o.out + "` redoes its clusters there)");
}

// The evaluated model goes into DIR as it is: saving it again would drop its training record
// (best epoch) and change its bytes.
void stage_model_copy(StagedFiles& staged, const std::string& model_file, const std::string& out) {
  const std::string dest = out + "/" + kModelFileName;
  std::error_code ec;
  std::filesystem::copy_file(model_file, dest + ".tmp", std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) {
    const std::string why = ec.message();
    std::filesystem::remove(dest + ".tmp", ec);
    throw DataError(dest + ".tmp", 0, "cannot copy " + model_file + " here: " + why);
  }
  staged.adopt(dest);
}

// --seed given with --model-file: the file's split stands (its own seed).
void note_file_seed(const Options& o, uint64_t file_seed, bool seeds_clusters) {
  if (o.was_given("--seed") && o.train.seed != file_seed)
    std::cerr << "note: --seed " << o.train.seed << (seeds_clusters ? " seeds the clusters' K-Means and t-SNE only" : " ignored")
              << ": the model file's training split uses seed " << file_seed << "\n";
}

// train --model-file with an SVD file: its split again, evaluated without training.
int run_svd_file(Options& o, const Dataset& d) {
  LoadedSvd ls = load_svd(o, d);
  note_file_seed(o, ls.info.seed, false);
  if (o.was_given("--fold") && o.train.ratings_split != ls.info.ratings_split)
    std::cerr << "note: --fold " << o.train.ratings_split << " ignored: the model file's training split uses "
              << ls.info.ratings_split << "\n";
  const TrainResult r =
      evaluate_svd_model(d, *ls.model, ls.info.ratings_split, ls.info.seed, o.train.data_dir, o.model_file);
  std::cout << "Model file (" << ls.info.svd.epochs << (ls.info.svd.epochs == 1 ? " epoch" : " epochs") << " of training) evaluated; final metrics on " << r.eval_set
            << ":";
  std::cout << format_metric_pairs(r.metrics);
  std::cout << "\n";
  if (!o.out.empty()) {
    StagedFiles staged;
    stage_run_files(staged, o.out, r);
    stage_model_copy(staged, o.model_file, o.out);
    commit_and_report(staged, o.out);
  }
  return 0;
}

}  // namespace

std::string epoch_report(const TrainResult& r) {
  if (r.model == "popularity") return "No training epochs (popularity counts the training ratings)";
  if (r.model == "ease") return "No training epochs: EASE is solved in closed form with " + r.note;
  const std::string held = r.protocol == "ratings" ? "ratings" : "users";
  if (r.epoch_selection == "validation")
    return "Best epoch " + std::to_string(r.best_epoch) + " (on the validation users" +
           // Still improving when training stopped: more epochs may do better.
           (r.history.size() > 1 && r.best_epoch == static_cast<int>(r.history.size())
                ? "; the last one: validation was still improving, more --epochs may help)"
                : ")");
  if (r.epoch_selection == "test")
    return "Best epoch " + std::to_string(r.best_epoch) + " on the test " + held + " (--patience; the " + r.protocol +
           " protocol has no validation set)";
  if (is_foldin_protocol(r.protocol))
    return "Final epoch " + std::to_string(r.best_epoch) +
           " (no validation user could be scored at any epoch, so the last epoch is reported)";
  return "Final epoch " + std::to_string(r.best_epoch) + " (the " + r.protocol + " protocol has no validation " + held +
         ", so the last epoch is reported)";
}

int run_train(Options& o, bool main_job) {
  prepare_training(o);
  check_out_dir(o.out);
  check_out_folder_kind(o.out, /*compare=*/false);
  check_evaluation_out(o);
  const Dataset d = load_data(o);
  note_seed_protocol(o);
  if (o.train.data_dir.empty()) o.train.data_dir = d.source;
  if (!o.model_file.empty()) {
    // A stored model is evaluated as it is: flags that would train another one are refused.
    const std::string file_kind = peek_model_kind(o.model_file);
    if (!o.train.model.kind.empty() && o.train.model.kind != file_kind)
      throw UsageError("--model " + o.train.model.kind + " disagrees with --model-file " + o.model_file + " (a " +
                       file_kind + " model): drop --model");
    if (o.train.folds >= 2) throw UsageError("--folds trains one model per fold: drop it to evaluate --model-file");
    if (is_svd_kind(file_kind)) return run_svd_file(o, d);
  }
  if (is_svd_kind(o.train.model.kind)) return run_svd_train(o, d, main_job);
  // Unreadable or misordered cuts are refused before the device is set up.
  if (o.model_file.empty() && o.train.protocol == "cutoff") (void)resolve_cutoff(d, o.train.val_from, o.train.test_from);
  auto be = make_backend(o);
  std::cerr << "device: " << be->name() << " (GEMMs " << precision_name(be->gemm_precision()) << ")\n";
  if (o.train.folds >= 2) return run_train_folds(o, *be, d, main_job);
  TrainResult r;
  int file_best_epoch = -1;
  if (!o.model_file.empty()) {
    // Evaluate the stored model on the split it was trained with instead of training.
    LoadedModel lm = load_model(o, *be, d, 0);
    o.train.model = ModelConfig{};
    o.train.model.kind = lm.info.config.kind;
    o.train.protocol = lm.info.protocol;
    note_file_seed(o, lm.info.seed, main_job && model_has_latent(lm.info.config.kind));
    o.train.seed = lm.info.seed;
    // The split the model was trained on, so no evaluation user or rating is one it learned from.
    auto keep = [&o](const char* flag, auto& ours, const auto& theirs) {
      if (ours != theirs && o.was_given(flag))
        std::cerr << "note: " << flag << " " << ours << " ignored: the model file's training split uses " << theirs
                  << "\n";
      ours = theirs;
    };
    if (is_foldin_protocol(lm.info.protocol)) keep("--threshold", o.train.heldout.threshold, lm.info.input_threshold);
    if (lm.info.protocol == "temporal") keep("--leave-last", o.train.leave_last, lm.info.leave_last);
    if (lm.info.protocol == "cutoff") {
      auto keep_cut = [&](const char* flag, std::string& ours, int64_t theirs) {
        if (o.was_given(flag) && resolve_time_cut(d, ours, flag) != theirs)
          std::cerr << "note: " << flag << " " << ours << " ignored: the model file's training split cuts at "
                    << utc_time(theirs) << "\n";
        ours = std::to_string(theirs);  // seconds, which resolve_time_cut reads back exactly
      };
      keep_cut("--test-from", o.train.test_from, lm.info.test_from);
      keep_cut("--val-from", o.train.val_from, lm.info.val_from);
    }
    if (lm.info.protocol == "seed" && lm.info.test_fraction > 0)
      keep("--test-fraction", o.train.test_fraction, lm.info.test_fraction);
    if (lm.info.protocol == "ratings" && !lm.info.ratings_split.empty())
      keep("--fold", o.train.ratings_split, lm.info.ratings_split);
    o.train.batch_size = lm.info.batch_size;
    o.train.pretrained_columns = lm.info.column_map;
    o.train.pretrained_rows = lm.info.row_map;
    file_best_epoch = lm.info.best_epoch;
    r = run_experiment(*be, d, o.train, std::cout, std::move(lm.model));
    r.note = "model file " + o.model_file + " (" + kept_epoch(r.protocol, file_best_epoch) +
             " of its training) evaluated, not trained";
  } else {
    r = run_experiment(*be, d, o.train, std::cout);
  }
  if (file_best_epoch >= 0)
    std::cout << "Model file (" << kept_epoch(r.protocol, file_best_epoch) << " of its training) evaluated; final metrics on "
              << r.eval_set << ":";
  else
    std::cout << epoch_report(r) << "; final metrics on " << r.eval_set << ":";
  std::cout << format_metric_pairs(r.metrics);
  std::cout << "\n" << format_intervals(r);
  // Every file of the command is staged and renamed into --out together at the end, so a
  // failure part-way (a full disk, t-SNE out of memory) leaves the earlier run's files whole.
  StagedFiles staged;
  if (!o.out.empty()) {
    stage_run_files(staged, o.out, r);
    const std::string model_path = o.out + "/" + kModelFileName;
    if (!o.model_file.empty()) {
      stage_model_copy(staged, o.model_file, o.out);
    } else if (r.model_ptr && model_kind_saveable(r.model)) {
      save_model_file(model_path + ".tmp", *be, *r.model_ptr, model_file_info(r, d), d);
      staged.adopt(model_path);
    } else {
      std::cerr << "note: no " << kModelFileName << " for " << r.model
                << (r.model == "ease" ? " (its item-item matrix is refit in closed form in seconds: use --model ease "
                                        "with recommend and similar)"
                                      : " (it has no trained parameters)")
                << "\n";
      staged.remove_on_commit(model_path);
    }
  }
  bool collapsed = false;  // the VAE's latent code, by the popularity comparison
  if (main_job && !o.no_baseline && r.model != "popularity") {
    TrainOptions b = o.train;
    b.model = ModelConfig{};
    b.model.kind = "popularity";
    b.quiet = true;
    b.pretrained_columns.clear();
    b.pretrained_rows.clear();
    TrainResult pop = run_experiment(*be, d, b, std::cout);
    print_comparison(std::cout, r, pop);
    // A model level with or below popularity gets compare's note on why (at the notebook's KL
    // weight the VAE's posterior collapses, README; too few steps; ...) rather than a bare table.
    if (o.model_file.empty()) {
      std::cerr << format_popularity_notes(std::vector<const TrainResult*>{&r, &pop});
      // Judged on the metric the note judges (NDCG@100 under heldout), so the clusters' warning
      // below agrees with the note above.
      const std::string key = selection_metric({&r, &pop});
      if (!key.empty()) collapsed = vae_collapsed(r, r.metric(key), pop.metric(key));
    }
    if (!o.out.empty()) stage_run_files(staged, o.out + "/popularity", pop);
  } else if (main_job && !o.out.empty()) {  // no baseline this time: none from an earlier run either
    drop_run_files(staged, o.out + "/popularity");
  }
  if (main_job && r.model_ptr) {
    // The notebooks end with user 1's top 30 (rated items included) and the K = 3 clusters.
    const ModelFileInfo info = model_file_info(r, d);
    std::string user = "1";
    if (d.find_user(user) < 0 && d.num_users() > 0) user = d.user_ids.front();
    if (d.num_users() > 0) {
      Recommender rec(*be, *r.model_ptr, info, d);
      RecommendOptions ro;
      ro.top = 30;
      ro.include_rated = true;
      const RecommendResult rr = rec.for_user(user, ro);
      std::cerr << format_recommendation_notes(rr);
      std::cout << "\n"
                << format_recommendations(rr, d, "Top 30 recommendations for user " + user + " (" + r.model +
                                                     ", rated items included):",
                                          /*with_notes=*/false);
    }
    if (model_has_latent(r.model)) {
      const bool no_active = cluster_report(*be, *r.model_ptr, info, d, main_job_clusters(o, be->name() == "cuda"),
                                            o.out, /*write_embeddings=*/true, staged);
      // A collapsed code clusters into tight, well-separated blobs of noise: a high silhouette
      // says nothing about tastes there (said once: cluster_report's note when no dimension is active).
      if (collapsed && !no_active)
        std::cerr << "note: these clusters are of the collapsed latent code (see the note above): however high "
                     "their silhouette, they say little about the users; cluster a --beta 0.0001 or multvae model\n";
    } else {
      std::cerr << "note: no K-Means of the users: " << r.model << " has no per-user code to cluster (the main job "
                << "clusters the latent means of vae and multvae, and the user vectors of svd and svdpp)\n";
      if (!o.out.empty()) drop_analysis_files(staged, o.out, /*embeddings=*/true);
    }
  }
  if (o.model_file.empty()) drop_derived_files(staged, o.out, main_job);  // a stored model: the same one
  commit_and_report(staged, o.out);  // nothing is staged without --out
  return 0;
}

namespace {

double quantile(std::vector<int64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[static_cast<size_t>(q * (v.size() - 1) + 0.5)]);
}

int run_info(const Dataset& d) {
  const Csr& r = d.ratings;
  std::cout << "dataset   " << d.name << " (" << d.format << (d.source == d.name ? "" : ", " + d.source) << ")\n"
            << "users     " << d.num_users() << "\nitems     " << d.num_items() << "\nratings   "
            << d.num_ratings() << "\n"
            << std::fixed << std::setprecision(4) << "density   "
            << (d.num_users() && d.num_items()
                    ? 100.0 * d.num_ratings() / (static_cast<double>(d.num_users()) * d.num_items())
                    : 0.0)
            << " %\n";
  std::cout.unsetf(std::ios::floatfield);
  // What the timed protocols (temporal, cutoff) would split by, or why they cannot.
  if (d.has_times()) {
    const auto [lo, hi] = std::minmax_element(d.rating_times.begin(), d.rating_times.end());
    std::cout << "times     " << utc_date(*lo) << " to " << utc_date(*hi) << " (UTC)";
    // Where --protocol cutoff's defaults fall, for choosing other cuts.
    const int64_t test_from = resolve_time_cut(d, TrainOptions{}.test_from, "--test-from");
    try {
      const int64_t val_from = default_val_cut(d, test_from);
      std::cout << "; --protocol cutoff validates from " << utc_date(val_from) << ", tests from " << utc_date(test_from);
    } catch (const UsageError&) {  // too few distinct times before the cut: no default there
    }
    std::cout << "\n";
  } else {
    std::cout << "times     none" << (d.no_times.empty() ? "" : " (" + d.no_times + ")")
              << ": --protocol temporal and cutoff need them\n";
  }
  std::map<float, int64_t> hist;
  for (float v : r.values) ++hist[v];
  auto bar = [&](int64_t n) { return std::string(static_cast<size_t>(std::lround(50.0 * n / std::max<int64_t>(1, r.nnz()))), '#'); };
  // A star scale has a line per value; real-valued ratings (a CSV of scores) would have thousands:
  // those go into equal-width bins.
  constexpr size_t kMaxLevels = 20;
  constexpr int kBins = 10;
  if (hist.size() <= kMaxLevels) {
    std::cout << "rating histogram (scale " << d.rating_min << " to " << d.rating_max << ")\n";
    for (const auto& kv : hist)
      std::cout << "  " << std::setw(4) << kv.first << " " << std::setw(9) << kv.second << " " << bar(kv.second) << "\n";
  } else {
    const double lo = hist.begin()->first, hi = hist.rbegin()->first, width = (hi - lo) / kBins;
    std::vector<int64_t> bins(kBins, 0);
    for (const auto& [v, n] : hist)
      bins[std::min<size_t>(kBins - 1, static_cast<size_t>((v - lo) / width))] += n;
    std::cout << "rating histogram (scale " << d.rating_min << " to " << d.rating_max << "; " << hist.size()
              << " distinct values, in " << kBins << " equal bins)\n";
    for (int b = 0; b < kBins; ++b) {
      char label[64];
      std::snprintf(label, sizeof label, "%.4g to %.4g%s", lo + b * width, b + 1 == kBins ? hi : lo + (b + 1) * width,
                    b + 1 == kBins ? "" : " (excl.)");
      std::cout << "  " << std::setw(24) << std::left << label << std::right << " " << std::setw(9) << bins[b] << " "
                << bar(bins[b]) << "\n";
    }
  }
  std::vector<int64_t> per_user(r.rows), per_item(r.cols, 0);
  for (int64_t u = 0; u < r.rows; ++u) per_user[u] = r.row_nnz(u);
  for (int32_t c : r.indices) ++per_item[c];
  auto q = [](const char* name, const std::vector<int64_t>& v) {
    std::cout << name << " min " << quantile(v, 0) << "  25% " << quantile(v, 0.25) << "  median "
              << quantile(v, 0.5) << "  75% " << quantile(v, 0.75) << "  max " << quantile(v, 1)
              << "\n";
  };
  q("ratings per user:", per_user);
  q("ratings per item:", per_item);
  std::cout << "metadata: titles " << (d.has_titles() ? "yes" : "no") << ", genres "
            << (d.has_genres() ? std::to_string(d.genre_names.size()) : std::string("no"))
            << ", user attributes "
            << (d.users.empty() ? std::string("no")
                                : "yes (" + std::to_string(d.users.occupation_names.size()) +
                                      " occupations)")
            << ", planted groups " << (d.planted_group.empty() ? "no" : "yes") << "\n";
  // The whole data as one cluster: its genre shares, demographics and occupations.
  if (d.num_users() > 0 && (d.has_genres() || !d.users.empty())) {
    std::vector<int32_t> everyone(static_cast<size_t>(d.num_users()));
    std::iota(everyone.begin(), everyone.end(), 0);
    ProfileOptions po;
    po.top_genres = 0;
    po.top_occupations = 5;
    const ClusterProfile p = profile_clusters(d, everyone, std::vector<int32_t>(everyone.size(), 0), 1, po)[0];
    if (!p.genres.empty()) {
      std::cout << "genres (share of the ratings' genre tags):";
      for (size_t g = 0; g < p.genres.size() && g < 8; ++g)
        std::cout << (g ? ", " : " ") << text::escape(p.genres[g].name, 100) << " " << percent_text(p.genres[g].share);
      std::cout << (p.genres.size() > 8 ? ", ...\n" : "\n");
    }
    if (!d.users.empty()) {
      std::cout << "users:";
      if (p.male_share >= 0) std::cout << " " << percent_text(p.male_share) << " men,";
      if (p.median_age >= 0)
        std::cout << " median age " << age_text(p.median_age, p.age_bands) << ";";
      std::cout << " occupations";
      for (size_t j = 0; j < p.top_occupations.size(); ++j)
        std::cout << (j ? ", " : " ") << text::escape(p.top_occupations[j].name, 100) << " "
                  << percent_text(p.top_occupations[j].share);
      std::cout << "\n";
    }
  }
  return 0;
}

// The layer widths of an autoencoder, as built (the notebook VAE's hidden layers are fixed,
// whatever ModelConfig::hidden holds).
std::string layer_sizes(const ModelConfig& c) {
  const std::string in = std::to_string(c.num_inputs), h = std::to_string(c.hidden), l = std::to_string(c.latent);
  auto vae_layers = [&](const std::string& hidden_down, const std::string& hidden_up) {
    return "encoder " + in + "-" + hidden_down + "-(2 x " + l + "), decoder " + l + "-" + hidden_up + "-" + in +
           ", latent " + l;
  };
  if (c.kind == "vae") {
    const std::string h1 = std::to_string(NotebookVae<float>::kH1), h2 = std::to_string(NotebookVae<float>::kH2);
    return vae_layers(h1 + "-" + h2, h2 + "-" + h1);
  }
  if (c.kind == "multvae") return vae_layers(h, h);
  if (c.kind == "cdae") return "layers " + in + "-" + h + "-" + in + " (and a " + h + "-wide vector per training user)";
  return "layers " + in + "-" + h + "-" + in;  // AutoRec
}

}  // namespace

int run_info_cmd(const Options& o) {
  const Dataset d = load_data(o);
  const int rc = run_info(d);
  if (o.model_file.empty()) return rc;
  const ModelFileInfo i = read_model_file_info(o.model_file, d);
  const ModelConfig& c = i.config;
  if (is_svd_kind(c.kind)) {
    const SvdOptions& s = i.svd;
    std::cout << "model file " << o.model_file << ": " << c.kind << ", " << c.num_rows << " users x " << c.num_inputs
              << " items, " << s.factors << " factors, trained on " << i.dataset << " (ratings protocol, split "
              << i.ratings_split << ", seed " << i.seed << ", " << s.epochs << (s.epochs == 1 ? " epoch" : " epochs") << ", lr " << s.lr << ", reg "
              << s.reg << ", " << svd_schedule_name(s.schedule) << " schedule"
              << (s.schedule == SvdSchedule::blocked ? ", B = " + std::to_string(s.blocks) : std::string())
              << ", on " << (s.cuda ? "cuda" : "cpu") << ")\n";
    return rc;
  }
  std::cout << "model file " << o.model_file << ": " << c.kind << ", " << c.num_inputs << " "
            << (i.item_based ? "user" : "item") << " columns, " << layer_sizes(c) << ", trained on " << i.dataset
            << " (" << i.protocol << " protocol, seed " << i.seed << ", " << kept_epoch(i.protocol, i.best_epoch)
            << ")\n";
  return rc;
}

}  // namespace vae::cli
