// vae_gpu command line: the notebook run (bare `vae_gpu --epochs 20`), `train`, `info`, and the
// analysis commands `recommend`, `similar`, `embed`, `cluster` (each trains first, or loads --model-file).
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <new>
#include <numeric>
#include <sstream>

#include "analysis/analysis_ops.h"
#include "analysis/cluster_metrics.h"
#include "analysis/html_report.h"
#include "analysis/kmeans.h"
#include "analysis/model_file.h"
#include "analysis/npy.h"
#include "analysis/profile.h"
#include "analysis/recommend.h"
#include "analysis/similar.h"
#include "analysis/svg_plot.h"
#include "analysis/tsne.h"
#include "analysis/tsne_bh.h"
#include "backend/backend.h"
#include "core/console_capture.h"
#include "core/temp_files.h"
#include "data/dataset.h"
#include "data/text_reader.h"
#include "models/vae.h"
#include "train/compare.h"
#include "train/svd_experiment.h"
#include "train/trainer.h"

namespace vae {
bool cuda_backend_built();
}

namespace {

using namespace vae;

struct Options {
  std::string data;
  uint64_t seed = 1;
  std::string device = "auto";
  std::string out;
  bool no_baseline = false;
  bool no_tsne = false;
  std::string precision = "exact";
  double lr = 0;  // 0 = the model's default (1e-3; CDAE 1e-2)
  double weight_decay = 0;
  bool adamw = false;
  std::string ks = "20,50,100";
  TrainOptions train;
  std::string model_file;
  bool protocol_given = false;
  std::vector<std::string> given;  // every option on the command line, by long name ("--fold")
  bool was_given(const std::string& flag) const { return std::find(given.begin(), given.end(), flag) != given.end(); }
  // svd / svdpp
  std::string svd_schedule;  // "" = blocked on a GPU, serial otherwise
  int svd_blocks = 0;
  // recommend
  std::string user;
  int top = 10;
  int64_t min_ratings = 10;  // similar: items listed
  bool include_rated = false;
  std::string ratings;
  bool ratings_given = false;  // --ratings "" is an empty fold-in (popularity), not a missing flag
  bool all_users = false;
  bool explain = false;
  // similar
  std::string item;
  bool all_items = false;
  // embed
  bool sample = false;
  bool logvar = false;
  // cluster
  int k = 3;
  std::string k_range;  // "A..B": choose k by silhouette
  int n_init = 10;
  int max_iter = 300;
  bool tsne = false;
  int64_t tsne_max = 10000;
  double perplexity = 30.0;
  std::string tsne_method = "auto";
  // compare
  std::string models;  // "" = default_compare_models(protocol)
  std::vector<std::string> sweeps;  // compare --sweep, one entry per flag: "beta=1,0.001"
};

std::vector<int> parse_int_list(const std::string& s, const std::string& flag) {
  std::vector<int> v;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    try {
      size_t pos = 0;
      const int k = std::stoi(tok, &pos);
      if (pos != tok.size() || k < 1) throw std::invalid_argument("");
      v.push_back(k);
    } catch (const std::exception&) {
      throw UsageError(flag + ": '" + tok + "' is not a positive integer");
    }
  }
  if (v.empty()) throw UsageError(flag + ": empty list");
  return v;
}

// Picks the backend: --device auto uses a GPU when one is present and the CUDA backend is built.
std::unique_ptr<Backend<float>> make_backend(const Options& o) {
  const GemmPrecision p = parse_precision(o.precision);
  // The CPU has no tensor cores: tf32 / bf16 GEMMs run there as fp32 (said, not silently).
  auto cpu = [&] {
    if (p == GemmPrecision::tf32 || p == GemmPrecision::bf16)
      std::cerr << "note: --precision " << precision_name(p) << " is a GPU tensor-core format; the CPU runs fp32 GEMMs\n";
    return make_cpu_backend<float>(p);
  };
  if (o.device == "cpu") return cpu();
  if (o.device == "cuda" || (cuda_device_available() && cuda_backend_built())) {
    const int slow = cuda_fp32_per_fp64();
    if (p == GemmPrecision::exact && slow > 4)
      std::cerr << "note: this GPU runs FP64 at 1/" << slow << " of its FP32 rate, and exact GEMMs accumulate in FP64; "
                << "--precision fp32 (or tf32) is much faster, at the cost of last-bit drift from CPU runs\n";
    return make_cuda_backend(p);
  }
  std::cerr << (cuda_device_available() ? "note: CUDA backend not built yet; running on the CPU\n"
                                        : "note: no CUDA device found; running on the CPU\n");
  return cpu();
}


// Without --data, a command that reads a model file loads the data that model was trained on
// (recorded in the file) when it is still there, rather than the default data set.
Dataset load_data(const Options& o) {
  std::string arg = o.data, note;
  if (arg.empty() && !o.model_file.empty()) {
    const std::string src = peek_model_metadata(o.model_file, "dataset_source");
    std::error_code ec;
    if (is_synthetic_spec(src) || (!src.empty() && std::filesystem::exists(src, ec))) {
      arg = src;
      std::cerr << "no --data given: reading the model's training data, " << src << "\n";
    } else if (!src.empty()) {
      // Falling back to the default data would only end in "trained on other data".
      throw DataError(o.model_file, 0,
                      "trained on '" + text::escape(src, 300) + "'" +
                          ", which is no longer there: pass the training data with --data (its new location)");
    }
  }
  Dataset d = load_dataset(arg, &note);
  std::cerr << note << "\n";
  // Any finite number is a valid rating, but a scale far from MovieLens' usually means another
  // column was read as the rating (an id, a timestamp, a count), and can make training diverge.
  if (d.num_ratings() > 0 && (d.rating_min < 0 || d.rating_max > 10))
    std::cerr << "note: " << d.source << ": the ratings run from " << d.rating_min << " to " << d.rating_max
              << " (MovieLens: 0.5 to 5 stars); they are used as given: check the third column is the rating\n";
  return d;
}

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
  std::map<float, int64_t> hist;
  for (float v : r.values) ++hist[v];
  std::cout << "rating histogram (scale " << d.rating_min << "-" << d.rating_max << ")\n";
  for (const auto& kv : hist) {
    const int bar = static_cast<int>(std::lround(50.0 * kv.second / std::max<int64_t>(1, r.nnz())));
    std::cout << "  " << std::setw(4) << kv.first << " " << std::setw(9) << kv.second << " "
              << std::string(bar, '#') << "\n";
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

// Flags that shape training, resolved before any data is loaded so usage errors come first.
// The training options every model shares (compare resolves each model's defaults itself).
void apply_common_options(Options& o) {
  o.train.adam.lr = o.lr;
  o.train.adam.weight_decay = o.weight_decay;
  o.train.adam.decoupled = o.adamw;
  o.train.ks = parse_int_list(o.ks, "--ks");
  o.train.seed = o.seed;
  o.train.progress_bar = isatty(fileno(stderr)) != 0;
}

// The notebooks' protocol scores reconstruction: say so once, so its figures are not read
// against the papers' (held-out items of unseen users).
void note_seed_protocol(const Options& o) {
  if (o.train.protocol == "seed" && o.model_file.empty())
    std::cerr << "note: the seed protocol (the notebooks') feeds each test user's whole rating vector in and scores the "
                 "ranking of those same items: a reconstruction score, higher than the papers' held-out figures "
                 "(--protocol heldout)\n";
}

void prepare_training(Options& o) {
  // SVD models only predict ratings: their protocol unless another one is asked for.
  // Rating predictors (SVD, item-based AutoRec) have one protocol that fits: the default there.
  if ((is_svd_kind(o.train.model.kind) || o.train.model.kind == "i-autorec") && !o.protocol_given)
    o.train.protocol = "ratings";
  apply_common_options(o);
  if (o.model_file.empty()) resolve_defaults(o.train);
}

// "epoch N" of a model file or run: "best" only where a validation set chose it (heldout).
std::string kept_epoch(const std::string& protocol, int epoch) {
  return (protocol == "heldout" ? "best epoch " : "epoch ") + std::to_string(epoch);
}

// Analysis commands read models with room for this many rows per batch.
constexpr int64_t kAnalysisBatch = 256;

LoadedModel load_model(const Options& o, Backend<float>& be, const Dataset& d, int64_t max_batch) {
  if (!o.train.model.kind.empty())
    throw UsageError("--model and --model-file together: the file decides the model (drop --model)");
  LoadedModel lm = load_model_file(o.model_file, be, d, max_batch);
  std::cerr << "loaded " << lm.info.config.kind << " from " << o.model_file << " (trained on "
            << lm.info.dataset << ", " << lm.info.protocol << " protocol, "
            << kept_epoch(lm.info.protocol, lm.info.best_epoch) << ")\n";
  return lm;
}

// A model to analyse: loaded from --model-file, or trained now with the usual flags (training
// lines go to stderr so stdout holds only the analysis).
LoadedModel obtain_model(Options& o, Backend<float>& be, const Dataset& d) {
  if (!o.model_file.empty()) return load_model(o, be, d, kAnalysisBatch);
  if (o.train.data_dir.empty()) o.train.data_dir = d.source;
  TrainResult r = run_experiment(be, d, o.train, std::cerr);
  LoadedModel lm;
  lm.info = model_file_info(r, d);
  lm.model = std::move(r.model_ptr);
  return lm;
}

// Device and SGD schedule of an SVD run: the GPU (blocked schedule) for --device cuda, and for
// auto when a GPU is present unless the serial schedule is asked for; the CPU otherwise.
SvdRunConfig svd_run_config(const Options& o) {
  SvdRunConfig rc;
  const bool serial_asked = o.svd_schedule == "serial";
  if (o.device == "cuda") {
    if (serial_asked)
      throw UsageError("--svd-schedule serial (Surprise's order) runs on the CPU only: use --device cpu, or drop it "
                       "for the blocked schedule on the GPU");
    if (!cuda_device_available()) throw VaeError("--device cuda: no CUDA device found");
    rc.cuda = true;
  } else if (o.device == "auto") {
    rc.cuda = !serial_asked && cuda_device_available();
  }
  rc.schedule = rc.cuda || o.svd_schedule == "blocked" ? SvdSchedule::blocked : SvdSchedule::serial;
  rc.blocks = o.svd_blocks;
  check_svd_run_config(rc);  // before any data is read or model trained
  return rc;
}

// svdpp: whether an SVD++ model runs (its blocked schedule differs from Surprise's order).
void print_svd_device(const SvdRunConfig& rc, bool svdpp) {
  if (rc.cuda)
    std::cerr << "device: cuda (" << cuda_device_name() << "; blocked parallel SGD, deterministic for the seed; "
              << "--device cpu for Surprise's serial order)\n";
  else
    std::cerr << "device: cpu ("
              << (rc.schedule == SvdSchedule::serial ? "serial SGD in Surprise's order"
                                                     : "blocked SGD, the GPU schedule's CPU twin")
              << ")\n";
  if (rc.schedule == SvdSchedule::blocked && svdpp)
    std::cerr << "note: svdpp on the blocked schedule moves the y_j of a user's items once per sub-epoch "
                 "(Surprise: after every rating); --svd-schedule serial --device cpu for Surprise's exact order\n";
}

std::unique_ptr<SvdModel> train_svd(Options& o, const Dataset& d, std::ostream& log) {
  if (o.train.folds >= 2) throw UsageError("--folds trains one model per fold: drop it to analyse one model");
  const SvdRunConfig rc = svd_run_config(o);
  print_svd_device(rc, o.train.model.kind == "svdpp");
  return run_svd_experiment(d, o.train, rc, log).model;
}

LoadedSvd load_svd(const Options& o, const Dataset& d) {
  if (!o.train.model.kind.empty())
    throw UsageError("--model and --model-file together: the file decides the model (drop --model)");
  LoadedSvd ls = load_svd_model_file(o.model_file, d);
  const SvdOptions& so = ls.info.svd;
  std::cerr << "loaded " << ls.info.config.kind << " from " << o.model_file << " (trained on " << ls.info.dataset
            << ", split " << ls.info.ratings_split << ", seed " << ls.info.seed << ", " << so.epochs << " epochs, "
            << svd_schedule_name(so.schedule) << " schedule)\n";
  return ls;
}

// The kind of model an analysis command will use, known before any data is read or model trained:
// the file's (peeked; "" when unreadable, which loading then reports), else --model (default vae).
std::string analysis_kind(const Options& o) {
  if (!o.model_file.empty()) return peek_model_kind(o.model_file);
  return o.train.model.kind.empty() ? "vae" : o.train.model.kind;
}

// embed and cluster need user codes: a VAE's latent means or an SVD model's user vectors
// (refused here, before training, rather than after it).
void require_user_codes(const std::string& kind, bool posterior) {
  if (kind.empty()) return;
  if (is_svd_kind(kind)) {
    if (posterior)
      throw UsageError(kind + " has no posterior to sample from: --sample and --logvar need a VAE-type model (vae, multvae)");
    return;
  }
  if (!model_has_latent(kind))
    throw UsageError(kind + " has no latent space: embeddings and clusters need a VAE-type model (vae, multvae) or an SVD "
                     "model's user vectors (svd, svdpp)");
}

// A model for recommend / embed / cluster: an autoencoder on a backend, or an SVD model.
struct AnalysisModel {
  std::unique_ptr<Backend<float>> be;
  LoadedModel ae;
  std::unique_ptr<SvdModel> svd;
  std::string kind() const { return svd ? svd->kind() : ae.info.config.kind; }
};

AnalysisModel obtain_analysis_model(Options& o, const Dataset& d) {
  AnalysisModel a;
  if (!o.model_file.empty() && is_svd_kind(peek_model_kind(o.model_file))) {
    a.svd = std::move(load_svd(o, d).model);
    return a;
  }
  if (o.model_file.empty() && is_svd_kind(o.train.model.kind)) {
    if (o.train.data_dir.empty()) o.train.data_dir = d.source;
    a.svd = train_svd(o, d, std::cerr);
    return a;
  }
  a.be = make_backend(o);
  a.ae = obtain_model(o, *a.be, d);
  return a;
}

void ensure_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw DataError(dir, 0, "cannot create output directory: " + ec.message());
}

// Commits the staged files and says which were written ("wrote DIR/a, b, sub/c"), taken from
// what was staged so the line cannot drift from the files.
// report (a file name in dir): what the command printed and its pictures, staged last so it is
// committed with (and only with) the files it shows. cluster keeps its own page, so that a
// cluster run into a main job's folder (the README's way) leaves that run's report.html.
void commit_and_report(StagedFiles& staged, const std::string& dir, const char* report = "report.html") {
  const ConsoleCapture* capture = ConsoleCapture::active();
  if (capture && !dir.empty()) {
    std::vector<ReportPicture> pictures;
    for (const auto& [path, svg] : staged.pictures())
      pictures.push_back({std::filesystem::path(path).lexically_relative(dir).generic_string(), svg});
    staged.add(dir + "/" + report, run_report_html(capture->command(), capture->text(), pictures));
  }
  const std::vector<std::string> paths = staged.commit();
  if (paths.empty()) return;
  std::string names;
  for (const std::string& p : paths)
    names += (names.empty() ? "" : ", ") + std::filesystem::path(p).lexically_relative(dir).generic_string();
  std::cerr << "wrote " << dir << (dir.back() == '/' ? "" : "/") << names << "\n";
}


std::string user_ids_csv(const Dataset& d, const std::vector<int32_t>& users) {
  std::string csv = "row,user_id\n";
  for (size_t i = 0; i < users.size(); ++i) csv += std::to_string(i) + "," + text::csv_field(d.user_ids[users[i]]) + "\n";
  return csv;
}

struct ClusterOptions {
  int k = 3, n_init = 10, max_iter = 300;
  int k_min = 0, k_max = 0;  // k_min > 0: scan k_min..k_max and keep the best silhouette's k
  bool tsne = false;
  int64_t tsne_max = 10000;
  std::string tsne_max_flag = "--tsne-max";  // how the user asks for more points
  double perplexity = 30.0;
  std::string tsne_method = "auto";  // auto, exact or barnes-hut
  uint64_t seed = 1;
  bool cuda = false;  // K-Means / t-SNE on the GPU twin
  bool skip_if_too_few = false;  // fewer users than k: a note instead of an error (the main job)
  bool tsne_optional = false;    // the main job's picture: a failure costs a warning, not the run
};

// K-Means of the users' embeddings (`what` they are, for the report), the profile report, t-SNE
// when asked; clusters.csv, cluster_lift.csv and cluster_movies.csv (and embeddings.npy, user_ids.csv when
// write_embeddings) into out_dir, staged with the rest of the command's files.
// An earlier run's cluster analysis (and embeddings) would not describe this run's model.
void drop_analysis_files(StagedFiles& staged, const std::string& out_dir, bool embeddings) {
  for (const char* f : {"/clusters.csv", "/cluster_lift.csv", "/cluster_movies.csv", "/tsne.svg", "/k_scan.csv",
                        "/k_scan.svg"})
    staged.remove_on_commit(out_dir + f);
  if (embeddings)
    for (const char* f : {"/embeddings.npy", "/user_ids.csv"}) staged.remove_on_commit(out_dir + f);
}

// The t-SNE positions already in out_dir, when they were drawn from these very embeddings: the
// folder's embeddings.npy and user_ids.csv (the main job's) equal this run's, and its clusters.csv
// lists the same users in the same order. t-SNE does not depend on the clustering, so a new k
// recolours the map instead of removing it. False (nothing kept) on any doubt.
bool kept_tsne_positions(const std::string& out_dir, const Embeddings& e, const Dataset& d, std::vector<float>& xy,
                         std::vector<char>& has_xy) {
  namespace fs = std::filesystem;
  const int64_t n = static_cast<int64_t>(e.users.size());
  std::error_code ec;
  for (const char* f : {"/embeddings.npy", "/user_ids.csv", "/clusters.csv"})
    if (!fs::is_regular_file(out_dir + f, ec)) return false;
  std::string csv;
  try {
    if (text::read_file(out_dir + "/embeddings.npy") != npy_f32_bytes(e.z, n, e.dim) ||
        text::read_file(out_dir + "/user_ids.csv") != user_ids_csv(d, e.users))
      return false;
    csv = text::read_file(out_dir + "/clusters.csv");
  } catch (const DataError&) {
    return false;
  }
  std::istringstream in(csv);
  std::string line;
  if (!std::getline(in, line) || line != "user_id,cluster,x,y") return false;
  std::vector<float> pos(static_cast<size_t>(2 * n), 0.0f);
  std::vector<char> has(static_cast<size_t>(n), 0);
  int64_t kept = 0;
  std::vector<std::string_view> f;
  std::vector<std::string> storage;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::getline(in, line) || !text::split_csv(line, &f, &storage).empty() || f.size() != 4 ||
        f[0] != d.user_ids[e.users[i]])
      return false;
    const std::string x(f[2]), y(f[3]);
    if (x.empty() && y.empty()) continue;  // outside the t-SNE's subsample
    char* end = nullptr;
    const double xv = std::strtod(x.c_str(), &end);
    if (x.empty() || *end != '\0' || !std::isfinite(xv)) return false;
    const double yv = std::strtod(y.c_str(), &end);
    if (y.empty() || *end != '\0' || !std::isfinite(yv)) return false;
    pos[2 * i] = static_cast<float>(xv);
    pos[2 * i + 1] = static_cast<float>(yv);
    has[i] = 1;
    ++kept;
  }
  if (std::getline(in, line) || kept == 0) return false;
  xy = std::move(pos);
  has_xy = std::move(has);
  return true;
}

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

void cluster_embeddings(const Embeddings& e, const std::string& what, const Dataset& d, const ClusterOptions& co,
                        const std::string& out_dir, bool write_embeddings, StagedFiles& staged) {
  const int64_t n = static_cast<int64_t>(e.users.size());
  if (co.k > n && co.skip_if_too_few) {
    std::cout << "\nK-Means skipped: " << n << " users, fewer than k = " << co.k << "\n";
    if (!out_dir.empty()) drop_analysis_files(staged, out_dir, write_embeddings);
    return;
  }
  if (co.k_min == 0 && co.k > n)
    throw UsageError("--k " + std::to_string(co.k) + " exceeds the " + std::to_string(n) + " users");
  auto ops = make_analysis_ops(co.cuda);
  KMeansOptions ko;
  ko.k = co.k;
  ko.n_init = co.n_init;
  ko.max_iter = co.max_iter;
  ko.seed = co.seed;
  KMeansResult km;
  double silhouette = std::numeric_limits<double>::quiet_NaN();
  int64_t silhouette_rows = 0;
  constexpr int64_t kSilhouetteRows = 5000;  // O(rows²): about a second on two cores
  if (co.k_min > 0) {
    // The notebook's loop over k: the elbow of the inertia, and the silhouette to pick by.
    KScan scan = kmeans_scan(*ops, e.z, n, e.dim, co.k_min, co.k_max, ko, kSilhouetteRows);
    std::cout << "\nK-Means for k = " << co.k_min << ".." << co.k_max << " on the " << what << " of " << n
              << " users (n_init = " << co.n_init << "); silhouette over "
              << (scan.silhouette_rows < n ? "a random sample of " + std::to_string(scan.silhouette_rows) + " users"
                                           : "all users")
              << "\n   k        inertia  silhouette\n";
    std::ostringstream csv;
    csv << "k,inertia,silhouette,iterations\n";
    LinePlot plot;
    plot.title = "Choosing k: K-Means of the " + what + " of " + std::to_string(n) + " users (" + d.name + ")";
    plot.x_label = "k (clusters)";
    LinePanel inertia{"inertia (the elbow)", {{"inertia", {}}}}, sil{"silhouette score (higher is better)", {{"silhouette", {}}}};
    for (const KScanRow& row : scan.rows) {
      char line[96];
      std::snprintf(line, sizeof line, "%4d  %13.6g  %10.4f%s\n", row.k, row.inertia, row.silhouette,
                    row.k == scan.best_k ? "  <- best" : "");
      std::cout << line;
      csv << row.k << "," << std::setprecision(10) << row.inertia << "," << row.silhouette << "," << row.iterations
          << "\n";
      plot.x.push_back(row.k);
      inertia.series[0].y.push_back(row.inertia);
      sil.series[0].y.push_back(row.silhouette);
    }
    std::cout << "best silhouette at k = " << scan.best_k << "; the profiles below use it\n";
    plot.panels = {inertia, sil};
    plot.marker_x = scan.best_k;
    plot.marker_label = "k = " + std::to_string(scan.best_k);
    if (!out_dir.empty()) {
      staged.add(out_dir + "/k_scan.csv", csv.str());
      staged.add(out_dir + "/k_scan.svg", lines_svg(plot));
    }
    km = std::move(scan.best);
    silhouette_rows = scan.silhouette_rows;
    for (const KScanRow& row : scan.rows)
      if (row.k == scan.best_k) silhouette = row.silhouette;
  } else {
    km = kmeans(*ops, e.z, n, e.dim, ko);
    // How separated the clusters are, on the scale users know from sklearn (−1 to 1).
    const std::vector<int32_t> sample = silhouette_sample(n, kSilhouetteRows, co.seed);
    silhouette_rows = static_cast<int64_t>(sample.size());
    try {
      silhouette = silhouette_score(e.z, e.dim, km.labels, sample);
    } catch (const UsageError&) {  // one cluster, or as many as users: no silhouette
    }
    if (!out_dir.empty())
      for (const char* f : {"/k_scan.csv", "/k_scan.svg"}) staged.remove_on_commit(out_dir + f);  // another k's
  }
  const int k = km.k;
  std::vector<int64_t> sizes(static_cast<size_t>(k), 0);
  for (int32_t l : km.labels) ++sizes[l];
  std::cout << "\nK-Means on the " << what << " of " << n << " users (" << e.dim << " dimensions, k = " << k
            << ", n_init = " << co.n_init << "): inertia " << km.inertia << " after " << km.iterations << " iterations";
  if (std::isfinite(silhouette)) {
    std::ostringstream sil;
    sil << std::fixed << std::setprecision(4) << silhouette;
    std::cout << "; silhouette " << sil.str()
              << (silhouette_rows < n ? " (a random sample of " + std::to_string(silhouette_rows) + " users)" : "");
  }
  std::cout << "\nCluster sizes:";
  for (int c = 0; c < k; ++c) std::cout << (c ? ", " : " ") << c << ": " << sizes[c];
  std::cout << "\n";
  if (e.empty_inputs > 0)
    std::cout << "note: " << e.empty_inputs << (e.empty_inputs == 1 ? " user" : " users") << " had no usable ratings and " << (e.empty_inputs == 1 ? "was" : "were") << " encoded from an empty row\n";
  const std::vector<ClusterProfile> profiles = profile_clusters(d, e.users, km.labels, k);
  std::cout << "\n" << format_cluster_report(profiles);
  if (!d.planted_group.empty()) {
    std::vector<int32_t> planted;
    for (int32_t u : e.users) planted.push_back(d.planted_group[u]);
    std::cout << "Adjusted Rand index vs the planted groups: " << std::fixed << std::setprecision(4)
              << adjusted_rand_index(planted, km.labels) << "\n";
    std::cout.unsetf(std::ios::floatfield);
  }
  std::vector<float> xy;
  std::vector<char> has_xy(static_cast<size_t>(n), 0);
  std::string tsne_svg;  // the picture, when t-SNE ran or its positions were kept
  // The map of the users with positions (xy, has_xy), coloured by cluster.
  auto draw_tsne = [&](const std::string& subtitle) {
    ScatterPlot plot;
    plot.title = "t-SNE of the " + what + " of " + std::to_string(n) + " users (" + d.name + ")";
    plot.subtitle = subtitle;
    for (int64_t i = 0; i < n; ++i) {
      if (!has_xy[i]) continue;
      plot.xy.push_back(xy[2 * i]);
      plot.xy.push_back(xy[2 * i + 1]);
      plot.group.push_back(km.labels[i]);
    }
    for (int c = 0; c < k; ++c) {
      plot.legend.push_back("cluster " + std::to_string(c) + " (" + std::to_string(sizes[c]) + " users)");
      std::ostringstream l;  // the cluster's most distinctive genres, as in the report
      const ClusterProfile& pc = profiles[c];
      for (size_t j = 0; j < pc.lift_genres.size() && j < 3; ++j)
        l << (j ? ", " : "") << pc.lift_genres[j].name << " " << std::fixed << std::setprecision(2)
          << pc.lift_genres[j].lift << "x";
      plot.detail.push_back(l.str());
    }
    return scatter_svg(plot);
  };
  if (co.tsne) {
    TsneOptions to;
    to.seed = co.seed;
    to.max_points = co.tsne_max;
    to.perplexity = co.perplexity;
    const int64_t points = std::min<int64_t>(n, co.tsne_max);
    if (points < 2) throw UsageError("t-SNE needs at least 2 users");
    // Each point's neighbourhood holds about 3 x perplexity points: beyond (points - 1) / 3 every
    // point sees all the others and the map degenerates; below 1 it sees none.
    const double most = std::max(1.0, (points - 1) / 3.0);
    if (to.perplexity > most || to.perplexity < 1.0) {
      to.perplexity = std::clamp(to.perplexity, 1.0, most);
      std::cout << "note: perplexity set to " << to.perplexity << " (it must lie in [1, (points - 1) / 3] for "
                << points << " points)\n";
    }
    // Exact t-SNE is quadratic (about 7 s for 2000 points on two CPU cores, minutes for 10 000);
    // Barnes-Hut, sklearn's default, is O(n log n) per iteration (9-14 s for 10 000). The GPU
    // runs exact t-SNE (0.7 s for 10 000 on an H200); the CPU exact up to kExactCpuPoints, where
    // it still takes seconds and gives the oracle's map.
    constexpr int64_t kExactCpuPoints = 1000;
    const bool barnes_hut =
        co.tsne_method == "barnes-hut" || (co.tsne_method == "auto" && !co.cuda && points > kExactCpuPoints);
    const std::string method = barnes_hut ? std::string("Barnes-Hut, theta 0.5") + (co.cuda ? ", on the CPU" : "")
                                          : std::string("exact") + (co.cuda ? ", on the GPU" : "");
    // Say so before a long CPU run rather than leaving the terminal silent for minutes.
    if (!co.cuda && !barnes_hut && points > 4000)
      std::cerr << "note: exact t-SNE of " << points << " points on the CPU takes minutes (about "
                << static_cast<int64_t>(7.0 * (static_cast<double>(points) / 2000.0) * (points / 2000.0)) / 60 + 1
                << " min on two cores); --tsne-method barnes-hut takes seconds\n";
    if (barnes_hut && points > 30000)
      std::cerr << "note: Barnes-Hut t-SNE of " << points << " points on the CPU takes minutes (its neighbour "
                << "search is quadratic); --tsne-max 10000 takes seconds\n";
    TsneResult t;
    bool drawn = true;
    try {
      t = barnes_hut ? tsne_barnes_hut(e.z, n, e.dim, to) : tsne(*ops, e.z, n, e.dim, to);
    } catch (const std::bad_alloc&) {
      const std::string msg =
          barnes_hut ? "Barnes-Hut t-SNE of " + std::to_string(points) + " points does not fit in memory: lower --tsne-max"
                     : "exact t-SNE of " + std::to_string(points) + " points holds " + std::to_string(points) + " x " +
                           std::to_string(points) +
                           " affinities and does not fit in memory: lower --tsne-max or use --tsne-method barnes-hut";
      if (!co.tsne_optional) throw UsageError(msg);
      std::cerr << "warning: " << msg << "; the run goes on without the picture\n";
      drawn = false;
    }
    if (drawn) {
      xy.assign(static_cast<size_t>(2 * n), 0.0f);
      for (int64_t i = 0; i < t.n; ++i) {
        const int32_t r = t.indices[i];
        xy[2 * r] = t.y[2 * i];
        xy[2 * r + 1] = t.y[2 * i + 1];
        has_xy[r] = 1;
      }
      std::cout << "t-SNE (" << method << "): " << t.n << " points"
                << (t.n < n ? " (a random subsample of " + std::to_string(n) + " users; " + co.tsne_max_flag + ")" : std::string(" (all users)"))
                << ", final KL divergence " << t.kl_divergence << " after " << t.iterations << " iterations\n";
      std::ostringstream sub;
      sub << "coloured by K-Means cluster (k = " << k << "); " << (barnes_hut ? "Barnes-Hut, " : "exact, ")
          << "perplexity " << to.perplexity << ", KL divergence "
          << std::setprecision(4) << t.kl_divergence << " after " << t.iterations << " iterations"
          << (t.n < n ? "; a random subsample of " + std::to_string(t.n) : std::string());
      tsne_svg = draw_tsne(sub.str());
    }
  } else if (!out_dir.empty() && kept_tsne_positions(out_dir, e, d, xy, has_xy)) {
    const int64_t kept = std::count(has_xy.begin(), has_xy.end(), 1);
    std::cout << "t-SNE: kept the positions of the " << kept << " users already in " << out_dir
              << "/clusters.csv (drawn from the same embeddings), coloured by these clusters\n";
    std::ostringstream sub;
    sub << "coloured by K-Means cluster (k = " << k << "); positions kept from the t-SNE already in this folder"
        << (kept < n ? "; a random subsample of " + std::to_string(kept) : std::string());
    tsne_svg = draw_tsne(sub.str());
  }
  if (out_dir.empty()) return;
  ensure_dir(out_dir);
  std::ostringstream csv;
  csv << "user_id,cluster,x,y\n";
  for (int64_t i = 0; i < n; ++i) {
    csv << text::csv_field(d.user_ids[e.users[i]]) << "," << km.labels[i] << ",";
    if (has_xy[i]) csv << std::setprecision(7) << xy[2 * i] << "," << xy[2 * i + 1];
    else csv << ",";
    csv << "\n";
  }
  staged.add(out_dir + "/clusters.csv", csv.str());
  staged.add(out_dir + "/cluster_lift.csv", cluster_lift_csv(profiles));
  staged.add(out_dir + "/cluster_movies.csv", cluster_movies_csv(d, profiles));
  if (!tsne_svg.empty()) {
    try {
      staged.add(out_dir + "/tsne.svg", tsne_svg);
    } catch (const DataError& err) {
      if (!co.tsne_optional) throw;
      std::cerr << "warning: " << err.what() << "; the run goes on without the picture\n";
      tsne_svg.clear();
    }
  }
  if (tsne_svg.empty()) {  // clusters.csv's x, y are empty now
    std::error_code ec;
    if (std::filesystem::exists(out_dir + "/tsne.svg", ec))
      std::cerr << "note: " << out_dir << "/tsne.svg of an earlier run is removed: it was drawn from other "
                << "embeddings (or none are in the folder to compare); add --tsne to draw this run's\n";
    staged.remove_on_commit(out_dir + "/tsne.svg");
  }
  if (write_embeddings) {
    staged.add(out_dir + "/embeddings.npy", npy_f32_bytes(e.z, n, e.dim));
    staged.add(out_dir + "/user_ids.csv", user_ids_csv(d, e.users));
  }
}

// The autoencoders' report: every user's latent mean μ, clustered.
void cluster_report(Backend<float>& be, Model<float>& m, const ModelFileInfo& info, const Dataset& d,
                    const ClusterOptions& co, const std::string& out_dir, bool write_embeddings, StagedFiles& staged) {
  const Embeddings e = encode_users(be, m, info, d, /*sample=*/false, /*logvar=*/false);
  ClusterOptions on_device = co;
  on_device.cuda = be.name() == "cuda";
  cluster_embeddings(e, "latent means", d, on_device, out_dir, write_embeddings, staged);
}

ClusterOptions cluster_options(const Options& o) {
  ClusterOptions co;
  co.k = o.k;
  if (o.was_given("--k-range")) {
    // "A..B" (or "A-B"): both whole numbers, 2 ≤ A ≤ B, at most kMaxScan values.
    constexpr int kMaxScan = 50;
    const std::string& r = o.k_range;
    const size_t dots = r.find(".."), dash = r.find('-');
    const size_t at = dots != std::string::npos ? dots : dash;
    const size_t skip = dots != std::string::npos ? 2 : 1;
    auto whole = [](const std::string& t, int* v) {
      if (t.empty() || t.size() > 7 || t.find_first_not_of("0123456789") != std::string::npos) return false;
      *v = std::stoi(t);
      return true;
    };
    if (at == std::string::npos || !whole(r.substr(0, at), &co.k_min) || !whole(r.substr(at + skip), &co.k_max))
      throw UsageError("--k-range '" + text::escape(r, 40) + "': expected A..B or A-B, two whole numbers of at most 7 digits, e.g. 2..10");
    if (co.k_min < 2 || co.k_max < co.k_min)
      throw UsageError("--k-range " + text::escape(r, 40) + ": needs 2 <= A <= B (a silhouette compares two clusters or more)");
    if (co.k_max - co.k_min + 1 > kMaxScan)
      throw UsageError("--k-range " + text::escape(r, 40) + ": " + std::to_string(co.k_max - co.k_min + 1) +
                       " values of k, more than the " + std::to_string(kMaxScan) +
                       " one scan runs (each is a K-Means with --n-init restarts)");
  }
  co.n_init = o.n_init;
  co.max_iter = o.max_iter;
  co.tsne = o.tsne;
  co.tsne_max = o.tsne_max;
  co.perplexity = o.perplexity;
  co.tsne_method = o.tsne_method;
  co.seed = o.seed;
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
  for (const auto& kv : r.metrics) std::cout << " " << kv.first << "=" << kv.second;
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
    // SVD's main job has no popularity row and no cluster analysis: an earlier autoencoder main
    // job's would not describe this run.
    if (main_job) {
      drop_run_files(staged, o.out + "/popularity");
      drop_analysis_files(staged, o.out, /*embeddings=*/true);
    }
    if (o.model_file.empty()) drop_derived_files(staged, o.out, main_job);  // a stored model: the same one
  }
  if (main_job && run.model && d.num_users() > 0) {
    std::string user = "1";
    if (d.find_user(user) < 0) user = d.user_ids.front();
    SvdRecommender rec(*run.model, d);
    RecommendOptions ro;
    ro.top = 30;
    ro.include_rated = true;
    std::cout << "\n"
              << format_recommendations(rec.for_user(user, ro), d,
                                        "Top 30 recommendations for user " + user + " (" + r.model +
                                            ", rated items included):");
  }
  commit_and_report(staged, o.out);  // nothing is staged without --out
  return 0;
}

// train --model-file with an SVD file: its split again, evaluated without training.
int run_svd_file(Options& o, const Dataset& d) {
  LoadedSvd ls = load_svd(o, d);
  const TrainResult r =
      evaluate_svd_model(d, *ls.model, ls.info.ratings_split, ls.info.seed, o.train.data_dir, o.model_file);
  std::cout << "Model file (" << ls.info.svd.epochs << " epochs of training) evaluated; final metrics on " << r.eval_set
            << ":";
  for (const auto& kv : r.metrics) std::cout << " " << kv.first << "=" << kv.second;
  std::cout << "\n";
  if (!o.out.empty()) {
    StagedFiles staged;
    stage_run_files(staged, o.out, r);
    save_svd_model_file(o.out + "/" + kModelFileName + ".tmp", *ls.model, ls.info, d);
    staged.adopt(o.out + "/" + kModelFileName);
    commit_and_report(staged, o.out);
  }
  return 0;
}

// The line before the final metrics: which epoch they are from, and why that one. Only a
// validation set (heldout) chooses a best epoch; elsewhere choosing on the test data would leak,
// so the last epoch is reported (or, with --patience, the best on the test data, as asked).
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
  if (r.protocol == "heldout")
    return "Final epoch " + std::to_string(r.best_epoch) +
           " (no validation user could be scored at any epoch, so the last epoch is reported)";
  return "Final epoch " + std::to_string(r.best_epoch) + " (the " + r.protocol + " protocol has no validation " + held +
         ", so the last epoch is reported)";
}

// The output directory, made and probed before any training, so an unwritable --out fails in a
// second instead of after the run.
void check_out_dir(const std::string& dir) {
  if (dir.empty()) return;
  ensure_dir(dir);
  // A probe file of this process's own, created exclusively and never through a link, so that
  // nothing already there (a user's file, a link to one) is written or removed.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string probe =
        dir + "/.vae_gpu_write_test." + std::to_string(::getpid()) + (attempt ? "." + std::to_string(attempt) : "");
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      throw DataError(dir, 0, std::string("output directory is not writable: ") + std::strerror(errno));
    }
    const bool ok = ::write(fd, "ok", 2) == 2;
    ::close(fd);
    ::unlink(probe.c_str());
    if (!ok) throw DataError(dir, 0, "output directory is not writable (disk full?)");
    return;
  }
  throw DataError(dir, 0, "output directory: no free name for a write probe");
}

// The CSV named by --out for a command that writes one file (recommend --all-users, similar
// --all-items): not a directory, its folder made and probed before any training.
void check_out_file(const Options& o, const std::string& flags) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(o.out, ec);  // through links
  if (fs::is_directory(st)) throw DataError(o.out, 0, "is a directory: " + flags + " --out names the CSV file to write");
  if (fs::exists(st) && !fs::is_regular_file(st)) {  // /dev/stdout, a named pipe: written as it is
    if (::access(o.out.c_str(), W_OK) != 0) throw DataError(o.out, 0, std::string("not writable: ") + std::strerror(errno));
    return;
  }
  // A link's target is what gets replaced, so its folder is the one to probe.
  const fs::path parent = fs::path(link_target(o.out)).parent_path();
  check_out_dir(parent.empty() ? "." : parent.string());
}

int run_train(Options& o, bool main_job) {
  prepare_training(o);
  check_out_dir(o.out);
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
  auto be = make_backend(o);
  std::cerr << "device: " << be->name() << " (GEMMs " << precision_name(be->gemm_precision()) << ")\n";
  TrainResult r;
  int file_best_epoch = -1;
  if (!o.model_file.empty()) {
    // Evaluate the stored model on the split it was trained with instead of training.
    LoadedModel lm = load_model(o, *be, d, 0);
    o.train.model = ModelConfig{};
    o.train.model.kind = lm.info.config.kind;
    o.train.protocol = lm.info.protocol;
    o.train.seed = lm.info.seed;
    // The split the model was trained on, so no evaluation user or rating is one it learned from.
    auto keep = [&o](const char* flag, auto& ours, const auto& theirs) {
      if (ours != theirs && o.was_given(flag))
        std::cerr << "note: " << flag << " " << ours << " ignored: the model file's training split uses " << theirs
                  << "\n";
      ours = theirs;
    };
    if (lm.info.protocol == "heldout") keep("--threshold", o.train.heldout.threshold, lm.info.input_threshold);
    if (lm.info.protocol == "seed" && lm.info.test_fraction > 0)
      keep("--test-fraction", o.train.test_fraction, lm.info.test_fraction);
    if (lm.info.protocol == "ratings" && !lm.info.ratings_split.empty())
      keep("--fold", o.train.ratings_split, lm.info.ratings_split);
    o.train.batch_size = lm.info.batch_size;
    o.train.pretrained_columns = lm.info.column_map;
    o.train.pretrained_rows = lm.info.row_map;
    file_best_epoch = lm.info.best_epoch;
    r = run_experiment(*be, d, o.train, std::cout, std::move(lm.model));
  } else {
    r = run_experiment(*be, d, o.train, std::cout);
  }
  if (file_best_epoch >= 0)
    std::cout << "Model file (" << kept_epoch(r.protocol, file_best_epoch) << " of its training) evaluated; final metrics on "
              << r.eval_set << ":";
  else
    std::cout << epoch_report(r) << "; final metrics on " << r.eval_set << ":";
  for (const auto& kv : r.metrics) std::cout << " " << kv.first << "=" << kv.second;
  std::cout << "\n" << format_intervals(r);
  // Every file of the command is staged and renamed into --out together at the end, so a
  // failure part-way (a full disk, t-SNE out of memory) leaves the earlier run's files whole.
  StagedFiles staged;
  if (!o.out.empty()) {
    stage_run_files(staged, o.out, r);
    const std::string model_path = o.out + "/" + kModelFileName;
    if (r.model_ptr && model_kind_saveable(r.model)) {
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
    // At the notebook's KL weight the VAE's posterior collapses and its ranking ends level with
    // popularity (README): say what changes that rather than leave the table unexplained.
    const double beta = r.model_ptr ? r.model_ptr->config().beta : o.train.model.beta;  // the default resolved
    if (r.model == "vae" && o.model_file.empty() && beta >= 1e-3)
      for (const auto& kv : r.metrics)
        if (kv.first.rfind("ndcg@", 0) == 0) {
          // Level, not merely below: an under-trained VAE far below popularity has another cause.
          if (std::fabs(kv.second / pop.metric(kv.first) - 1.0) < 0.02) {
            std::cout << "note: the notebook VAE (--beta " << beta << ") ends level with popularity: "
                      << "its KL term collapses the latent code, so z carries little about the user; "
                      << "--beta 0.0001 or --model multvae learn user tastes\n";
            collapsed = true;
          }
          break;
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
      std::cout << "\n"
                << format_recommendations(rr, d, "Top 30 recommendations for user " + user + " (" + r.model +
                                                     ", rated items included):");
    }
    if (model_has_latent(r.model)) {
      ClusterOptions co;
      co.seed = o.seed;
      co.tsne = !o.out.empty() && !o.no_tsne;  // the notebooks' picture, as a file
      co.skip_if_too_few = true;  // a tiny data set still ends the job cleanly
      co.tsne_optional = true;
      // On the CPU a larger set is subsampled so the job stays quick
      // (Barnes-Hut: about 6 s at 5000 points on two cores); `cluster --tsne --tsne-max N` draws more.
      // exact --tsne-method keeps the quadratic method's 2000 (about 7 s).
      co.tsne_max = be->name() == "cuda" ? o.tsne_max
                                         : std::min<int64_t>(o.tsne_max, o.tsne_method == "exact" ? 2000 : 5000);
      co.tsne_method = o.tsne_method;
      co.tsne_max_flag = "more users with: vae_gpu cluster --model-file '" + o.out + "/" + kModelFileName +
                         "' --tsne --tsne-max <points>";
      cluster_report(*be, *r.model_ptr, info, d, co, o.out, /*write_embeddings=*/true, staged);
      // A collapsed code clusters into tight, well-separated blobs of noise: a high silhouette
      // says nothing about tastes there.
      if (collapsed)
        std::cout << "note: these clusters are of the collapsed latent code (see the note above): however high "
                     "their silhouette, they say little about the users; cluster a --beta 0.0001 or multvae model\n";
    } else if (!o.out.empty()) {
      drop_analysis_files(staged, o.out, /*embeddings=*/true);
    }
  }
  if (o.model_file.empty()) drop_derived_files(staged, o.out, main_job);  // a stored model: the same one
  commit_and_report(staged, o.out);  // nothing is staged without --out
  return 0;
}

// fallback_list / fallback_score: what a list is, and what its scores are, when there was no
// usable rating to give the model (the list is then not the model's).
// explain (may be null): fills each listed item's `because` from the user's ratings.
template <typename Rec>
int print_recommendations(Rec& rec, const Options& o, const Dataset& d, const std::string& kind,
                          const std::string& fallback_what, const std::string& fallback_list,
                          const std::string& fallback_score, const ItemEffects* explain) {
  RecommendOptions ro;
  ro.top = o.top;
  ro.include_rated = o.include_rated;
  const std::string suffix = " (" + kind + (o.include_rated ? ", rated items included" : "") + "):";
  if (o.all_users) {
    const auto s = rec.write_all_users_csv(o.out, ro);
    std::cout << "wrote " << o.out << ": " << s.rows << " recommendations for " << s.users << " users";
    if (s.popularity_fallbacks > 0)
      std::cout << " (" << s.popularity_fallbacks << " users without usable ratings " << fallback_what << ")";
    std::cout << "\n";
    return 0;
  }
  RecommendResult r = !o.user.empty() ? rec.for_user(o.user, ro) : rec.for_ratings(o.ratings, ro);
  if (explain && r.popularity_fallback) r.notes.push_back("--explain: no usable ratings, so nothing to explain");
  if (explain && !r.popularity_fallback) {
    FoldInRow rated;
    if (!o.user.empty()) {
      const int64_t u = d.find_user(o.user);
      for (int64_t p = d.ratings.indptr[u]; p < d.ratings.indptr[u + 1]; ++p)
        rated.emplace_back(d.ratings.indices[p], d.ratings.values[p]);
    } else {
      rated = parse_foldin_ratings(o.ratings, d).ratings;
    }
    std::vector<int32_t> items;
    for (const Recommendation& x : r.items) items.push_back(x.item);
    const std::vector<int32_t> because = explain_recommendations(*explain, items, rated, explain->liked, d.num_items());
    bool any = false;
    for (size_t t = 0; t < r.items.size(); ++t) {
      r.items[t].because = because[t];
      any = any || because[t] >= 0;
      for (const auto& [item, rating] : rated)
        if (item == because[t]) r.items[t].because_rating = rating;
    }
    char liked_buf[32];
    std::snprintf(liked_buf, sizeof liked_buf, "%g", static_cast<double>(explain->liked));
    const std::string liked = liked_buf;
    if (explain->by_similarity())
      r.notes.push_back(any ? "because you liked: of your ratings >= " + liked +
                                  ", the item most similar to it (the correlation `similar` lists; - where none is above 0)"
                            : "--explain: none of your ratings >= " + liked + " is of an item similar to these");
    else
      r.notes.push_back(any ? "because you liked: of your ratings >= " + liked + ", the one whose rating alone pulls the item's " +
                                  explain->unit + " up most, beyond what it gives the average item (- where none does)"
                            : "--explain: none of your ratings >= " + liked + " pulls any of these items up");
  }
  const std::string who = o.user.empty() ? "the given ratings" : "user " + o.user;
  // The list holds at most the items there are to recommend, and without usable ratings it is
  // the fallback ranking, not the model's: title it by what it holds.
  const std::string what = r.popularity_fallback ? fallback_list : "recommendations";
  const std::string why = r.popularity_fallback ? " (no usable ratings for " + kind + " to score; score = " +
                                                      fallback_score + (o.include_rated ? ", rated items included" : "") +
                                                      "):"
                                                : suffix;
  const std::string title = static_cast<size_t>(o.top) > r.items.size()
                                ? "All " + std::to_string(r.items.size()) + " candidates (fewer than --top " +
                                      std::to_string(o.top) + ") for " + who + why
                                : "Top " + std::to_string(o.top) + " " + what + " for " + who + why;
  std::cout << format_recommendations(r, d, title);
  return 0;
}

int run_recommend(Options& o) {
  prepare_training(o);
  const int modes = (!o.user.empty()) + (o.ratings_given ? 1 : 0) + (o.all_users ? 1 : 0);
  if (modes == 0) throw UsageError("recommend needs --user ID, --ratings \"item:rating,...\" or --all-users");
  if (modes > 1) throw UsageError("give only one of --user, --ratings and --all-users");
  if (o.all_users && o.out.empty()) throw UsageError("--all-users writes a CSV: give --out recs.csv");
  if (o.explain) {
    if (o.all_users) throw UsageError("--explain annotates one list (--user or --ratings), not --all-users");
    require_item_effects(analysis_kind(o));  // before any training
  }
  if (o.top < 1) throw UsageError("--top must be at least 1");
  if (o.all_users) check_out_file(o, "--all-users");  // the CSV's folder, before any training
  if (!o.all_users && o.was_given("--out"))
    std::cerr << "note: --out is ignored: recommend --user / --ratings prints its list (--all-users writes every "
                 "user's to --out)\n";
  const Dataset d = load_data(o);
  AnalysisModel a = obtain_analysis_model(o, d);
  if (a.svd) {
    SvdRecommender rec(*a.svd, d);
    const ItemEffects e = item_effects(*a.svd);
    return print_recommendations(rec, o, d, a.kind(), "were ranked by item bias (mu + b_i)", "items by item bias",
                                 "mu + b_i", o.explain ? &e : nullptr);
  }
  Recommender rec(*a.be, *a.ae.model, a.ae.info, d);
  std::unique_ptr<ItemEffects> e;
  if (o.explain)
    e = std::make_unique<ItemEffects>(item_effects(rec, *a.be, *a.ae.model, a.ae.info, d.rating_min, d.rating_max));
  return print_recommendations(rec, o, d, a.kind(), "got the most popular items", "most popular items",
                               "the item's number of ratings", e.get());
}

int run_similar(Options& o) {
  prepare_training(o);
  if (o.item.empty() && !o.all_items) throw UsageError("similar needs --item ID (or a part of a title) or --all-items");
  if (!o.item.empty() && o.all_items) throw UsageError("give only one of --item and --all-items");
  if (o.all_items) {
    if (o.out.empty()) throw UsageError("--all-items writes a CSV: give --out similar.csv");
    check_out_file(o, "--all-items");
  }
  // Models without item effects are refused before any data is read or model trained.
  const std::string kind = analysis_kind(o);
  require_item_effects(kind);
  const Dataset d = load_data(o);
  const int32_t item = o.all_items ? -1 : find_item_by_id_or_title(o.item, d);
  // A heldout model keeps only items some training user rated at or above the threshold: one
  // that nobody did cannot be a column, which is known before training.
  if (item >= 0 && o.model_file.empty() && o.train.protocol == "heldout" && !is_svd_kind(kind)) {
    bool positive = false;
    const Csr& r = d.ratings;
    for (int64_t p = 0; p < r.nnz() && !positive; ++p)
      positive = r.indices[p] == item && (o.train.heldout.threshold <= 0 || r.values[p] >= o.train.heldout.threshold);
    if (!positive) {
      std::ostringstream t;
      t << o.train.heldout.threshold;
      throw UsageError("item " + d.item_ids[item] + " has no rating >= --threshold " + t.str() +
                       ", so a heldout-protocol model has no column for it: lower --threshold, or use --protocol seed");
    }
  }
  AnalysisModel a = obtain_analysis_model(o, d);
  auto report = [&](const ItemEffects& e) {
    if (o.all_items) {
      const int64_t rows = write_similar_csv(e, d, o.top, o.out, o.min_ratings);
      std::cout << "wrote " << o.out << ": " << rows << " rows, the top " << o.top << " items by "
                << (e.by_similarity() ? "similarity" : "lift") << " for each of the " << e.model << " model's items\n";
    } else {
      std::cout << format_similar(e, item, most_similar(e, item, o.top, d, o.min_ratings), d, o.min_ratings);
    }
  };
  if (a.svd) {
    report(item_effects(*a.svd));
    return 0;
  }
  Recommender rec(*a.be, *a.ae.model, a.ae.info, d);
  report(item_effects(rec, *a.be, *a.ae.model, a.ae.info, d.rating_min, d.rating_max));
  return 0;
}

// embed --sample draws its noise from --seed when one is given, else from the model's own seed.
ModelFileInfo sample_info(ModelFileInfo info, const Options& o) {
  if (o.was_given("--seed")) info.seed = o.seed;
  return info;
}

int run_embed(Options& o) {
  prepare_training(o);
  if (o.out.empty()) throw UsageError("embed writes files: give --out DIR");
  require_user_codes(analysis_kind(o), o.sample || o.logvar);
  check_out_dir(o.out);
  const Dataset d = load_data(o);
  AnalysisModel a = obtain_analysis_model(o, d);
  if (a.svd && (o.sample || o.logvar))
    throw UsageError(a.kind() + " has no posterior to sample from: --sample and --logvar need a VAE-type model (vae, multvae)");
  const Embeddings e = a.svd ? svd_user_embeddings(*a.svd, d)
                             : encode_users(*a.be, *a.ae.model, sample_info(a.ae.info, o), d, o.sample, o.logvar);
  ensure_dir(o.out);
  const int64_t n = static_cast<int64_t>(e.users.size());
  StagedFiles staged;
  staged.add(o.out + "/embeddings.npy", npy_f32_bytes(e.z, n, e.dim));
  if (o.logvar) staged.add(o.out + "/logvar.npy", npy_f32_bytes(e.logvar, n, e.dim));
  else staged.remove_on_commit(o.out + "/logvar.npy");  // an earlier model's, of another shape
  staged.add(o.out + "/user_ids.csv", user_ids_csv(d, e.users));
  staged.commit();
  std::cout << "wrote " << o.out << "/embeddings.npy (" << n << " x " << e.dim << ", "
            << (a.svd ? "SVD user vectors" : o.sample ? "sampled z" : "mu") << ")" << (o.logvar ? ", logvar.npy" : "") << ", user_ids.csv\n";
  if (e.empty_inputs > 0)
    std::cout << "note: " << e.empty_inputs << (e.empty_inputs == 1 ? " user" : " users") << " had no usable ratings and " << (e.empty_inputs == 1 ? "was" : "were") << " encoded from an empty row\n";
  return 0;
}

int run_cluster(Options& o) {
  prepare_training(o);
  if (o.k < 1) throw UsageError("--k must be at least 1");
  (void)cluster_options(o);  // a malformed --k-range fails before any training
  require_user_codes(analysis_kind(o), false);
  // The main app's --k (before `cluster`) is the ranking cut-off; the clusters' k is cluster's own.
  if (o.was_given("--k"))
    std::cerr << "note: --k " << o.train.k << " before `cluster` is the seed protocol's ranking cut-off, not the "
              << "number of clusters; "
              << (o.was_given("--k-range") ? "clustering with --k-range " + text::escape(o.k_range, 40)
                                           : "clustering with k = " + std::to_string(o.k) +
                                                 (o.was_given("cluster --k")
                                                      ? std::string()
                                                      : " (give the number of clusters after the subcommand: cluster --k N)"))
              << "\n";
  // Without --out the t-SNE coordinates would go nowhere, and on the CPU it can take minutes.
  if (o.tsne && o.out.empty()) {
    std::cerr << "note: --tsne skipped: its x, y go to clusters.csv and tsne.svg under --out, and no --out was given\n";
    o.tsne = false;
  }
  check_out_dir(o.out);
  const Dataset d = load_data(o);
  AnalysisModel a = obtain_analysis_model(o, d);
  StagedFiles staged;
  // The clustered embeddings go beside the clusters (so that a later run can tell its t-SNE map
  // is of the same ones), unless the folder already holds embeddings: the same, or embed's
  // (sampled z, logvar) that are not this command's to replace.
  std::error_code ec;
  const bool write_embeddings = !o.out.empty() && !std::filesystem::exists(o.out + "/embeddings.npy", ec);
  if (a.svd) {
    ClusterOptions co = cluster_options(o);
    co.cuda = o.device != "cpu" && cuda_device_available();
    cluster_embeddings(svd_user_embeddings(*a.svd, d), "SVD user vectors (p_u" +
                           std::string(a.svd->options().plus_plus ? " + implicit term)" : ")"),
                       d, co, o.out, write_embeddings, staged);
  } else {
    cluster_report(*a.be, *a.ae.model, a.ae.info, d, cluster_options(o), o.out, write_embeddings, staged);
  }
  commit_and_report(staged, o.out, "cluster_report.html");  // nothing is staged without --out
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
              << i.ratings_split << ", seed " << i.seed << ", " << s.epochs << " epochs, lr " << s.lr << ", reg "
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

}  // namespace

// Options given that the run will not read: a note each (stderr), so nobody believes a flag took
// effect when it did not. The applicability table follows the options' help texts.
// kinds: the models the command runs (compare); empty = the one --model (default vae).
void note_ignored_options(const Options& o, const std::vector<std::string>& compared = {}) {
  auto given = [&](const char* opt) { return o.was_given(opt); };
  // CUDA Graphs capture GPU training steps: on the CPU there are none to capture.
  const bool graph_on_cpu =
      given("--cuda-graph") &&
      (o.device == "cpu" || (o.device == "auto" && !(cuda_device_available() && cuda_backend_built())));
  if (graph_on_cpu)
    std::cerr << "note: --cuda-graph is ignored on the CPU" << (o.device == "cpu" ? " (--device cpu)" : " (no GPU in use)")
              << "; it applies to training on a GPU\n";
  if (!o.model_file.empty()) {
    std::string ignored;
    for (const char* opt : {"--hidden", "--latent", "--epochs", "--lr", "--batch-size", "--beta", "--anneal-steps",
                            "--dropout", "--lambda", "--loss", "--act-hidden", "--act-out", "--weight-decay",
                            "--patience", "--protocol", "--ease-lambda", "--cuda-graph"})
      if (given(opt) && !(graph_on_cpu && std::string(opt) == "--cuda-graph"))  // that one is noted above
        ignored += std::string(ignored.empty() ? "" : ", ") + opt;
    if (!ignored.empty())
      std::cerr << "note: with --model-file the file's own training settings and split apply; ignored: " << ignored
                << "\n";
    return;
  }
  const std::vector<std::string> kinds =
      compared.empty() ? std::vector<std::string>{o.train.model.kind.empty() ? "vae" : o.train.model.kind} : compared;
  const std::string& kind = kinds.front();
  bool svd = is_svd_kind(kind);
  // compare keeps one protocol for all its models; one rating predictor defaults to ratings.
  const bool ratings_default = compared.empty() && !o.protocol_given && (svd || kind == "i-autorec");
  const std::string protocol = ratings_default ? "ratings" : o.train.protocol;
  struct Rule {
    const char* opt;
    bool applies;
    const char* where;
  };
  auto rules_for = [&](const std::string& kind) {
    const bool svd = is_svd_kind(kind);
    auto among = [&](std::initializer_list<const char*> ks) {
      for (const char* k : ks)
        if (kind == k) return true;
      return false;
    };
    return std::vector<Rule>{
      {"--loss", among({"autorec", "i-autorec", "cdae"}), "AutoRec and CDAE"},
      {"--act-hidden", among({"autorec", "i-autorec"}), "AutoRec"},
      {"--act-out", among({"autorec", "i-autorec"}), "AutoRec"},
      {"--dropout", among({"multvae", "cdae"}), "Mult-VAE and CDAE"},
      {"--lambda", among({"autorec", "i-autorec", "cdae", "svd", "svdpp"}), "AutoRec, CDAE, SVD and SVD++"},
      {"--beta", among({"vae", "multvae"}), "the VAEs"},
      {"--anneal-steps", among({"vae", "multvae"}), "the VAEs"},
      {"--latent", among({"vae", "multvae"}), "the VAEs"},
      {"--ease-lambda", kind == "ease", "EASE"},
      {"--epochs", !among({"popularity", "ease"}), "trained models (not popularity or EASE)"},
      {"--lr", !among({"popularity", "ease"}), "trained models (not popularity or EASE)"},
      {"--patience", !svd && !among({"popularity", "ease"}), "the Adam-trained models"},
      {"--weight-decay", !svd && !among({"popularity", "ease"}), "the Adam-trained models"},
      {"--adamw", !svd && !among({"popularity", "ease"}), "the Adam-trained models"},
      {"--batch-size", !svd, "the autoencoders, EASE and popularity"},
      {"--precision", !svd && kind != "popularity", "the models that multiply matrices (not SVD, SVD++ or popularity)"},
      {"--tf32", !svd && kind != "popularity", "the models that multiply matrices (not SVD, SVD++ or popularity)"},
      {"--sparse-input", among({"vae", "autorec", "i-autorec", "multvae", "cdae"}), "the autoencoders' first layer"},
      {"--svd-schedule", svd, "SVD and SVD++"},
      {"--svd-blocks", svd, "SVD and SVD++"},
      {"--k", protocol == "seed", "the seed protocol"},
      {"--test-fraction", protocol == "seed", "the seed protocol"},
      {"--ks", protocol == "heldout", "the heldout protocol"},
      {"--threshold", protocol == "heldout", "the heldout protocol"},
      {"--fold", protocol == "ratings", "the ratings protocol"},
      // graph_on_cpu: already noted above.
      {"--cuda-graph", graph_on_cpu || (!svd && !among({"popularity", "ease"})), "the Adam-trained models on a GPU"},
      {"--profile-ops", !svd && !among({"popularity", "ease"}), "the Adam-trained models"},
    };
  };
  // A flag is ignored when no model of the command reads it.
  std::vector<Rule> rules = rules_for(kind);
  std::string who = kind;
  for (size_t i = 1; i < kinds.size(); ++i) {
    const std::vector<Rule> more = rules_for(kinds[i]);
    for (size_t j = 0; j < rules.size(); ++j) rules[j].applies = rules[j].applies || more[j].applies;
    svd = svd || is_svd_kind(kinds[i]);
    who += ", " + kinds[i];
  }
  // k-fold cross-validation draws its own folds: one given split has no place in it.
  if (svd && protocol == "ratings" && o.train.folds >= 2 && given("--fold"))
    std::cerr << "note: --fold is ignored with --folds " << o.train.folds << " (cross-validation draws its own "
              << o.train.folds << " folds); drop --folds to train on --fold " << o.train.ratings_split << "\n";
  // The untrained baselines read --batch-size only as the number of users scored at a time.
  const bool baselines_only = std::all_of(kinds.begin(), kinds.end(), [](const std::string& k) {
    return k == "popularity" || k == "ease";
  });
  if (given("--batch-size") && baselines_only)
    std::cerr << "note: --batch-size only sets how many users " << who
              << " scores at a time (memory), not the results; it is the training batch of the autoencoders\n";
  for (const Rule& r : rules)
    if (given(r.opt) && !r.applies)
      std::cerr << "note: " << r.opt << " is ignored by " << who << " (" << protocol << " protocol); it applies to "
                << r.where << "\n";
}

// compare: every model on one split (same data, protocol and seed), one after another on one
// backend, then a table; --out gets compare.csv and each model's run files in DIR/<model>/.

// --loss names one family's losses (AutoRec: masked, dense; CDAE: bce, mse): the models of that
// family get it, the others keep their own default.
bool loss_fits(const std::string& kind, const std::string& loss) {
  if (loss.empty()) return true;
  if (loss == "masked" || loss == "dense") return kind == "autorec" || kind == "i-autorec";
  return kind == "cdae";
}

// The models named in DIR/compare.csv (an earlier compare into DIR), empty when there is none.
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

// Options compare refuses (it picks the models and trains each): left out of its help.
bool refused_by_compare(const std::string& opt) { return opt == "--model" || opt == "--model-file" || opt == "--folds"; }

int run_compare(Options& o) {
  if (!o.model_file.empty()) throw UsageError("compare trains each model itself: drop --model-file");
  if (!o.train.model.kind.empty())
    throw UsageError("compare takes its models from --models (comma-separated), not --model");
  if (o.train.folds != 0)
    throw UsageError("--folds runs svd/svdpp cross-validation on its own folds; compare trains every model on one split");
  const bool listed = o.was_given("--models");
  // Each --sweep flag one option; several make a grid.
  std::vector<Sweep> sweeps;
  for (const std::string& spec : o.sweeps) {
    Sweep sw = parse_sweep(spec);
    if (o.was_given("--" + sw.name))
      throw UsageError("--" + sw.name + " is also swept (--sweep " + spec + "): give it once");
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
  if (std::any_of(models.begin(), models.end(), [](const std::string& m) { return !is_svd_kind(m); })) {
    be = make_backend(o);
    std::cerr << "device: " << be->name() << " (GEMMs " << precision_name(be->gemm_precision()) << ")\n";
  }
  SvdRunConfig svd_rc;
  if (has("svd") || has("svdpp")) {
    svd_rc = svd_run_config(o);
    print_svd_device(svd_rc, has("svdpp"));
  }
  check_out_dir(o.out);
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
        r = run_experiment(*be, d, t, std::cout);
        std::cout << epoch_report(r) << "; final metrics on " << r.eval_set << ":";
      }
      for (const auto& kv : r.metrics) std::cout << " " << kv.first << "=" << kv.second;
      std::cout << "\n";
      r.label = runs[i].label;
      if (!o.out.empty()) stage_run_files(staged, o.out + "/" + name, r);
      r.model_ptr.reset();  // the next model gets the memory (a GPU's, at ml-20m scale)
      results.push_back(std::move(r));
    } catch (const std::bad_alloc&) {
      failed.push_back(name + ": out of host memory");
      std::cerr << "vae_gpu: " << failed.back() << "; going on with the other models\n";
    } catch (const std::exception& e) {
      failed.push_back(name + ": " + e.what());
      std::cerr << "vae_gpu: " << failed.back() << "; going on with the other models\n";
    }
  }
  if (results.empty()) throw VaeError("compare: every model failed (" + failed.front() + (failed.size() > 1 ? ", …)" : ")"));
  const TrainResult& first = results.front();
  const std::string split = first.protocol + " protocol (" + first.eval_set + "; seed " + std::to_string(o.seed) +
                            (be ? "; " + be->name() : "") + ")";
  std::cout << "\nModels compared on the " << split << ":\n"
            << format_compare_table(results) << "* best in its column"
            << (std::any_of(results.begin(), results.end(), [](const TrainResult& r) { return std::isfinite(r.metric("rmse")); })
                    ? " (RMSE, MAE: the lowest)"
                    : "");
  const std::string wording = compare_epoch_wording(results);
  if (!wording.empty()) std::cout << "; epoch: " << wording;
  std::cout << "\n";
  for (const TrainResult& r : results)  // one split by construction: say so if a model saw another
    if (r.eval_set != first.eval_set)
      std::cout << "note: " << row_name(r) << " was evaluated on " << r.eval_set << "\n";
  std::cout << format_paired_differences(results) << format_popularity_notes(results);
  if (const std::string by_activity = format_activity_breakdown(results); !by_activity.empty())
    std::cout << "\n" << by_activity;
  for (const std::string& f : failed) std::cout << "failed: " << f << "\n";
  if (!o.out.empty()) {
    staged.add(o.out + "/compare.csv", compare_csv(results));
    staged.add(o.out + "/compare.svg", compare_svg(results, d.name + ", " + split));
    // Models of an earlier compare into this directory that are not in this table: their files
    // go (only those: a directory shared with other runs keeps theirs).
    for (const std::string& k : earlier_compare_models(o.out))
      if (std::find_if(results.begin(), results.end(), [&](const TrainResult& r) { return row_name(r) == k; }) ==
              results.end() &&
          is_compare_label(k))
        drop_run_files(staged, o.out + "/" + k);
  }
  commit_and_report(staged, o.out);
  return failed.empty() ? 0 : 1;
}

// Real-valued options: NaN and infinities pass CLI11's range checks (every comparison with NaN
// is false), and its NonNegativeNumber prints DBL_MAX in full; these say what is wanted.
CLI::Validator finite_at_least(double lo, bool open = false) {
  return CLI::Validator(
      [lo, open](std::string& s) -> std::string {
        double v = 0;
        size_t pos = 0;
        // Decimal only: stod would read 0x10 as sixteen.
        if (s.find_first_of("xX") != std::string::npos) return "'" + s + "' is not a decimal number";
        try {
          v = std::stod(s, &pos);
        } catch (const std::exception&) {
          return "'" + s + "' is not a number";
        }
        if (pos != s.size() || !std::isfinite(v)) return "'" + s + "' is not a finite number";
        if (open ? !(v > lo) : !(v >= lo)) {
          std::ostringstream m;
          m << "must be " << (open ? "> " : ">= ") << lo << ", got " << s;
          return m.str();
        }
        return "";
      },
      open ? "NUMBER > 0" : "NUMBER >= 0");
}

// A whole number from lo to hi, written in decimal digits (CLI11's Range says "Value abc not in
// range" for a word or a fraction alike).
CLI::Validator whole_in(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        const size_t digits = s.find_first_not_of("0123456789", s[0] == '-' || s[0] == '+' ? 1 : 0);
        if (s.empty() || digits != std::string::npos || s == "-" || s == "+") return "'" + s + "' is not a whole number";
        errno = 0;
        const long long v = std::strtoll(s.c_str(), nullptr, 10);
        if (errno == ERANGE || v < lo || v > hi)
          return "must be from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got " + s;
        return "";
      },
      "INT in [" + std::to_string(lo) + " - " + std::to_string(hi) + "]");
}

// An unsigned 64-bit integer written in decimal digits (CLI11 would wrap "-1" and saturate overflow).
const CLI::Validator kUint64Digits(
    [](std::string& s) -> std::string {
      if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
        return "'" + s + "' is not a non-negative integer";
      if (s.size() > 20 || (s.size() == 20 && s > "18446744073709551615")) return "'" + s + "' exceeds 2^64 - 1";
      return "";
    },
    "UINT64");

// Edit distance of two short option names: insertions, deletions, substitutions and swaps of
// neighbouring letters (the usual typos), one each.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// After a parse error: for each --option on the command line that the tool does not know, the
// known ones it is probably a typo of; for one that belongs to a subcommand but came before it
// (or without it), where it goes.
std::string option_hints(const CLI::App& app, int argc, char** argv) {
  std::vector<std::pair<std::string, const CLI::App*>> known;  // option name, its (sub)command
  for (const CLI::Option* opt : app.get_options()) known.emplace_back(opt->get_name(), &app);
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    for (const CLI::Option* opt : sub->get_options()) known.emplace_back(opt->get_name(), sub);
  std::string hints;
  const CLI::App* seen_sub = nullptr;  // the subcommand named so far on the command line
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    // A subcommand's name counts where it was parsed as one (not as an option's value).
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
      if (a == sub->get_name() && sub->parsed()) seen_sub = sub;
    if (a.rfind("--", 0) != 0 || a.size() < 3) continue;
    a = a.substr(0, a.find('='));
    std::vector<const CLI::App*> owners;
    for (const auto& [name, owner] : known)
      if (name == a) owners.push_back(owner);
    const bool main_has = std::find(owners.begin(), owners.end(), &app) != owners.end();
    if (main_has) continue;
    if (!owners.empty()) {
      if (std::find(owners.begin(), owners.end(), seen_sub) == owners.end()) {
        std::string where;
        for (const CLI::App* s : owners) where += (where.empty() ? "" : " or ") + ("`" + s->get_name() + "`");
        hints += "hint: " + a + " belongs to " + where + ": give it after the subcommand (vae_gpu " +
                 owners.front()->get_name() + " " + a + " ...)\n";
      }
      continue;
    }
    // The nearest names within one edit for short options, two for longer ones.
    const size_t limit = a.size() <= 7 ? 1 : 2;
    size_t best = limit + 1;
    std::vector<std::string> close;
    for (const auto& [name, owner] : known) {
      if (name.size() <= 2) continue;
      const size_t dist = edit_distance(a, name);
      if (dist > limit || dist > best || std::find(close.begin(), close.end(), name) != close.end()) continue;
      if (dist < best) close.clear();
      best = dist;
      close.push_back(name);
    }
    if (!close.empty()) {
      std::string list;
      for (size_t k = 0; k < close.size() && k < 3; ++k) list += (k ? ", " : "") + close[k];
      hints += "hint: " + a + " is not an option; did you mean " + list + "?\n";
    }
  }
  return hints;
}

int main(int argc, char** argv) {
  remove_temp_files_on_signals();  // Ctrl-C or `timeout` leave no *.tmp behind
  Options o;
  CLI::App app{"vae_gpu: train, evaluate and explain autoencoder recommenders on MovieLens-style "
               "ratings (GPU when present, CPU otherwise).\nBare `vae_gpu --epochs 20` runs the "
               "notebook VAE and compares it with popularity."};
  app.set_version_flag("--version", std::string("vae_gpu ") + VAE_VERSION);
  app.fallthrough();
  app.option_defaults()->always_capture_default();
  app.add_option("--data", o.data,
                 "data directory (ml-100k, ml-1m, ml-latest...), ratings CSV, or "
                 "synthetic[:users=943,items=1682,ratings=100000,groups=6,seed=1]; default "
                 "data/ml-100k if present, else synthetic");
  app.add_option("--seed", o.seed, "random seed for splits, initialisation and noise")->check(kUint64Digits);
  app.add_option("--device", o.device, "auto, cpu or cuda")->transform(CLI::IsMember({"auto", "cpu", "cuda"}, CLI::ignore_case));
  app.add_option("--out", o.out, "directory for metrics.csv, summary.json and artefacts (recommend --all-users and "
                                "similar --all-items: the CSV file to write)");
  app.add_option("--epochs", o.train.epochs, "training epochs")->check(whole_in(1, 100000));
  app.add_option("--model", o.train.model.kind, "vae, autorec, i-autorec, multvae, cdae, popularity, ease, svd, svdpp")
      ->transform(CLI::IsMember({"vae", "autorec", "i-autorec", "multvae", "cdae", "popularity", "ease", "svd", "svdpp"}, CLI::ignore_case));
  app.add_option("--protocol", o.train.protocol, "seed (the notebooks; the default), heldout (Mult-VAE), ratings (RMSE; the default for svd, svdpp, i-autorec)")
      ->transform(CLI::IsMember({"seed", "heldout", "ratings"}, CLI::ignore_case));
  app.add_option("--batch-size", o.train.batch_size, "0 = model default")->check(whole_in(0, int64_t{1} << 24));
  app.add_option("--lr", o.lr, "Adam learning rate (default: 1e-3; CDAE 1e-2); svd/svdpp: SGD rate (0.005 / 0.007)")
      ->check(finite_at_least(0))
      ->default_str("model's");
  app.add_option("--weight-decay", o.weight_decay, "Adam weight decay")->check(finite_at_least(0));
  app.add_flag("--adamw", o.adamw, "decoupled weight decay (AdamW) instead of L2");
  app.add_option("--patience", o.train.patience, "early stopping patience in epochs (0 = off)")
      ->check(whole_in(0, 100000));
  app.add_option("--k", o.train.k, "seed protocol ranking cut-off K of NDCG, Recall and Coverage (cluster's number of clusters is its own --k, "
                                   "given after `cluster`)")->check(whole_in(1, 1000000));
  app.add_option("--ks", o.ks, "heldout protocol cut-offs, comma-separated (Coverage at the first)");
  app.add_option("--hidden", o.train.model.hidden, "hidden units (0 = model default); svd/svdpp: factors (100 / 20)")->check(whole_in(0, int64_t{1} << 20));
  app.add_option("--latent", o.train.model.latent, "latent size (0 = model default)")->check(whole_in(0, int64_t{1} << 20));
  app.add_option("--beta", o.train.model.beta,
                 "KL weight, the final value when annealing (default: the notebook VAE 1; Mult-VAE 0.2 annealed over "
                 "200 000 steps, or over --anneal-steps; a given --beta is constant unless --anneal-steps is given)")
      ->check(finite_at_least(0))
      ->default_str("model's");
  app.add_option("--anneal-steps", o.train.model.anneal_steps, "linear KL annealing steps (0 = off)")
      ->check(whole_in(0, int64_t{1} << 40));
  app.add_option("--dropout", o.train.model.dropout, "input dropout (Mult-VAE, CDAE; default 0.5)")
      ->check(finite_at_least(0) & CLI::Range(0.0, 0.99))
      ->default_str("model's");
  app.add_option("--lambda", o.train.model.lambda, "L2 regularisation (AutoRec, CDAE; svd/svdpp: SGD reg, 0.02; default: the model's)")
      ->check(finite_at_least(0))
      ->default_str("model's");
  app.add_option("--loss,--autorec-loss", o.train.model.loss, "AutoRec: masked (observed ratings) or dense (the notebook); CDAE: bce or mse")
      ->transform(CLI::IsMember({"masked", "dense", "bce", "mse"}, CLI::ignore_case));
  app.add_option("--act-hidden", o.train.model.act_hidden, "AutoRec hidden activation")
      ->transform(CLI::IsMember({"sigmoid", "identity", "relu", "tanh"}, CLI::ignore_case));
  app.add_option("--act-out", o.train.model.act_out, "AutoRec output activation")
      ->transform(CLI::IsMember({"identity", "sigmoid"}, CLI::ignore_case));
  app.add_option("--test-fraction", o.train.test_fraction, "seed protocol test users")
      ->check(finite_at_least(0) & CLI::Range(0.01, 0.99));
  app.add_option("--threshold", o.train.heldout.threshold, "heldout protocol: rating >= threshold is positive")
      ->check(finite_at_least(0));
  app.add_option("--fold", o.train.ratings_split, "ratings protocol split: random, 1..5, a, b (ml-100k files)")
      ->transform(CLI::IsMember({"random", "1", "2", "3", "4", "5", "a", "b"}, CLI::ignore_case));
  app.add_option("--folds", o.train.folds, "ratings protocol: k-fold cross-validation, mean ± std (svd, svdpp)")
      ->check(whole_in(2, 100))
      ->default_str("off");
  app.add_option("--svd-schedule", o.svd_schedule,
                 "svd/svdpp SGD order: serial (Surprise's order, CPU only) or blocked (DSGD: users and items in B "
                 "blocks each, B independent blocks at a time, seeded order inside a block; deterministic, and "
                 "bit-identical between the GPU and the CPU). Default: blocked on a GPU, serial otherwise")
      ->transform(CLI::IsMember({"serial", "blocked"}, CLI::ignore_case));
  app.add_option("--svd-blocks", o.svd_blocks, "blocked schedule: B (0 = min(264, users, items))")
      ->check(whole_in(0, 4096));
  app.add_option("--ease-lambda", o.train.ease_lambda, "EASE L2 (0 = picked from a grid 10..2000 on the validation users; 200 where there are none, as under the seed protocol)")
      ->check(finite_at_least(0));
  CLI::Option* precision_opt = app.add_option("--precision", o.precision,
                 "GEMM accumulation: exact (default: products summed in double, rounded once, so CPU and GPU "
                 "runs give the same numbers), fp32 (BLAS sgemm, faster at scale), tf32 or bf16 (GPU tensor cores, "
                 "inputs rounded to 10 or 8 mantissa bits; fp32 on the CPU)")
      ->transform(CLI::IsMember({"exact", "fp32", "tf32", "bf16"}, CLI::ignore_case));
  app.add_flag_callback("--tf32", [&o] { o.precision = "tf32"; }, "same as --precision tf32")
      ->excludes(precision_opt);  // two answers to one question: refuse rather than let the last win
  app.add_option("--sparse-input", o.train.sparse_input,
                 "first layer reads CSR batches instead of dense rows: auto (many items or a sparse matrix), on, off")
      ->transform(CLI::IsMember({"auto", "on", "off"}, CLI::ignore_case));
  app.add_option_function<std::string>(
         "--cuda-graph", [&o](const std::string& v) { o.train.cuda_graph = v == "on"; },
         "GPU training step captured and replayed as one CUDA Graph: on (default) or off (one launch per op)")
      ->transform(CLI::IsMember({"on", "off"}, CLI::ignore_case));
  app.add_flag("--profile-ops", o.train.profile_ops,
               "after training, print the time of every op: on a GPU its device time (CUDA events; plain "
               "launches meanwhile), on the CPU its wall time");
  app.add_flag("--no-baseline", o.no_baseline, "skip the popularity comparison of the main run");
  app.add_flag("--no-tsne", o.no_tsne, "skip the main run's t-SNE (done with --out: x, y in clusters.csv, tsne.svg)");
  app.add_flag("--quiet", o.train.quiet, "training prints only its final lines (no per-epoch lines)");

  app.add_option("--model-file", o.model_file,
                 "a model.safetensors written by --out: use it instead of training (every command but compare)");

  CLI::App* train = app.add_subcommand("train", "train and evaluate one model (--model-file: evaluate it)");
  CLI::App* info = app.add_subcommand("info", "dataset summary (and the --model-file's metadata)");
  CLI::App* recommend = app.add_subcommand("recommend", "top-N recommendations for a user, new ratings or every user "
                                                      "(--model-file M, or trains first with the usual flags)");
  recommend->fallthrough();
  recommend->add_option("--user", o.user, "original user id");
  recommend->add_option("--top", o.top, "list length")->check(whole_in(1, 1000000));
  recommend->add_flag("--include-rated", o.include_rated, "allow items the user already rated");
  recommend->add_option("--ratings", o.ratings,
                        "fold in a new user's ratings: \"item_id:rating,...\" (original ids). svd/svdpp: b_u and p_u "
                        "from the training SGD updates over these ratings with every item parameter fixed (from 0, "
                        "the model's epochs, lr and reg; svdpp's implicit term from the given items)");
  recommend->add_flag("--all-users", o.all_users, "every user into the CSV given by --out (user_id,rank,item_id,score)");
  recommend->add_flag("--explain", o.explain,
                      "add a \"because you liked\" column: for each item, the liked item (rated at least mid-scale, or "
                      "the heldout threshold) whose rating alone pulls its score up most beyond the average item's (the "
                      "model's own fold-in; i-autorec: the liked item most similar to it, as `similar` measures; not "
                      "with --all-users or popularity)");
  CLI::App* similar = app.add_subcommand("similar", "items most like one item: those whose score a new user's liking of "
                                                "it alone raises most beyond what liking the average item does (the "
                                                "model's own \"people who like X also like\"), with titles and genre "
                                                "counts (--model-file M, or trains first). i-autorec, which takes no new user: the items whose "
                                                "predicted ratings correlate most with its over the training users");
  similar->fallthrough();
  similar->add_option("--item", o.item, "original item id, or a part of a title (case and accents ignored, a leading article may come first: \"the matrix\"; must pick one item)");
  similar->add_option("--top", o.top, "list length")->check(whole_in(1, 1000000));
  similar->add_option("--min-ratings", o.min_ratings,
                      "list only items with at least this many ratings (a film of a few ratings gets an extreme "
                      "pull from its few users; 1 lists every item)")
      ->check(whole_in(1, int64_t{1} << 40));
  similar->add_flag("--all-items", o.all_items,
                    "every item's list into the CSV given by --out (item_id,rank,similar_item_id,lift; i-autorec: similarity)");
  CLI::App* embed = app.add_subcommand("embed", "latent codes of every user: --out DIR gets embeddings.npy, user_ids.csv "
                                              "(--model-file M, or trains first; svd/svdpp: the user vectors p_u)");
  embed->fallthrough();
  embed->add_flag("--sample", o.sample, "a sampled z = mu + eps * sigma instead of mu");
  embed->add_flag("--logvar", o.logvar, "also write logvar.npy");
  CLI::App* cluster = app.add_subcommand("cluster", "K-Means of the users' latent means, cluster profiles, t-SNE; --out DIR "
                                                "gets clusters.csv, cluster_lift.csv, cluster_movies.csv, cluster_report.html, embeddings.npy and "
                                                "user_ids.csv (unless it holds embeddings), tsne.svg (with --tsne, or "
                                                "the folder's own map recoloured) and k_scan.csv, k_scan.svg (with --k-range) "
                                                "(--model-file M, or trains first)");
  cluster->fallthrough();
  CLI::Option* k_opt = cluster->add_option("--k", o.k, "clusters")->check(whole_in(1, 1000000));
  cluster->add_option("--k-range", o.k_range,
                      "choose k: K-Means for every k in A..B (or A-B; e.g. 2..10, at most 50 values), a table of "
                      "inertia (the elbow) and silhouette score (over at most 5000 users), then the profiles at the "
                      "k of the highest silhouette; --out adds k_scan.csv and k_scan.svg")
      ->excludes(k_opt);
  cluster->add_option("--n-init", o.n_init, "K-Means restarts")->check(whole_in(1, 100000));
  cluster->add_option("--max-iter", o.max_iter, "Lloyd iterations per restart")->check(whole_in(1, 1000000));
  cluster->add_flag("--tsne", o.tsne, "2-D t-SNE of the latent means (x, y in clusters.csv, tsne.svg; needs --out)");
  cluster->add_option("--tsne-max", o.tsne_max, "t-SNE of at most this many users (a random subsample beyond)")
      ->check(whole_in(2, int64_t{1} << 40));
  cluster->add_option("--perplexity", o.perplexity, "t-SNE perplexity")->check(finite_at_least(0, true));
  CLI::App* compare = app.add_subcommand("compare", "several models on one split, side by side (a table, paired "
                                                "differences from the best, NDCG by user activity; --out DIR gets "
                                                "compare.csv, compare.svg (a bar chart per metric), report.html and each "
                                                "model's metrics.csv, summary.json, curves.svg, user_metrics.csv in "
                                                "DIR/<model>/)");
  compare->fallthrough();
  compare->add_option("--models", o.models,
                      "comma-separated models (default: seed and heldout protocols vae,autorec,cdae,multvae,ease,"
                      "popularity; ratings autorec,i-autorec,svd,svdpp,popularity); each model's own defaults apply "
                      "unless a flag sets them for all");
  compare->add_option("--sweep", o.sweeps,
                      "one training option at several values, NAME=V1,V2,... (NAME: beta, lr, latent, hidden, dropout, "
                      "lambda, batch-size, anneal-steps, weight-decay, epochs, ease-lambda): each model that reads it "
                      "trains once per value (rows and directories <model>_<NAME>=<value>), the others once; give it "
                      "again for a grid (<model>_<NAME>=<v>_<NAME2>=<w>)")
      ->expected(1)
      ->allow_extra_args(false)  // one NAME=... per flag: a second needs its own --sweep
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->default_str("");
  app.add_option("--tsne-method", o.tsne_method,
                 "t-SNE of the main job and cluster --tsne: exact (sklearn's method='exact'), barnes-hut (its default, "
                 "theta 0.5; on the CPU) or auto: exact on a GPU, and on the CPU up to 1000 points, Barnes-Hut beyond")
      ->transform(CLI::IsMember({"auto", "exact", "barnes-hut"}, CLI::ignore_case));
  app.require_subcommand(0, 1);
  // The data, model, training and device options belong to the main app (fallthrough), so a
  // subcommand's own help would show little more than --help: it lists them too.
  for (CLI::App* sub : {train, info, recommend, similar, embed, cluster, compare})
    sub->footer([&app, sub, compare] {
      std::vector<const CLI::Option*> shared;
      for (const CLI::Option* opt : app.get_options())
        // An option the subcommand defines itself (cluster's --k) means its own thing after it.
        if (opt->get_name() != "--help" && opt->get_name() != "--version" && !sub->get_option_no_throw(opt->get_name()) &&
            !(sub == compare && refused_by_compare(opt->get_name())))
          shared.push_back(opt);
      const std::string group = CLI::Formatter().make_group(
          "Options of vae_gpu, given before or after `" + sub->get_name() + "` (also listed by `vae_gpu --help`)", false,
          shared);
      return group.substr(group.find_first_not_of('\n'));
    });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "vae_gpu: " << e.what() << "\n" << option_hints(app, argc, argv) << "Run with --help for usage.\n";
    return 2;
  }

  for (const CLI::App* a : {static_cast<const CLI::App*>(&app), static_cast<const CLI::App*>(recommend),
                            static_cast<const CLI::App*>(similar),
                            static_cast<const CLI::App*>(cluster), static_cast<const CLI::App*>(embed),
                            static_cast<const CLI::App*>(compare)})
    for (const CLI::Option* opt : a->get_options())
      if (opt->count() > 0)  // cluster's --k is not the main app's: recorded as "cluster --k"
        o.given.push_back(a != &app && app.get_option_no_throw(opt->get_name()) ? a->get_name() + " " + opt->get_name()
                                                                                  : opt->get_name());
  o.protocol_given = o.was_given("--protocol");
  for (const char* opt : {"--data", "--out", "--model-file"})
    if (app.get_option(opt)->count() > 0 && app.get_option(opt)->as<std::string>().empty()) {
      std::cerr << "vae_gpu: " << opt << " was given an empty path\n";
      return 2;
    }
  if (o.was_given("--hidden") && o.train.model.hidden > 0 && o.model_file.empty() && !info->parsed() &&
      !compare->parsed() && (o.train.model.kind.empty() || o.train.model.kind == "vae")) {
    std::cerr << "vae_gpu: --hidden does not apply to the notebook VAE, whose layers are fixed at "
                 "items-512-256-2*latent (mirrored); set --latent, or use --model multvae for a chosen width\n";
    return 2;
  }
  const bool main_job = !(train->parsed() || info->parsed() || recommend->parsed() || similar->parsed() ||
                          embed->parsed() || cluster->parsed() || compare->parsed());
  // The commands that write a run folder leave report.html in it: their output, copied from here on.
  std::optional<ConsoleCapture> capture;
  if (!o.out.empty() && (main_job || train->parsed() || compare->parsed() || cluster->parsed()))
    capture.emplace(shell_command_line(argc, argv));
  // The main job's own switches, and --out where a command writes nothing: said, not dropped.
  if (!main_job)
    for (const char* flag : {"--no-baseline", "--no-tsne"})
      if (o.was_given(flag))
        std::cerr << "note: " << flag << " is ignored: it applies to the main job (vae_gpu without a command)\n";
  if (similar->parsed() && o.was_given("--out") && !o.all_items)
    std::cerr << "note: --out is ignored: similar --item prints its list (--all-items writes every item's to --out)\n";
  // t-SNE runs in the main job with --out (not --no-tsne) for a latent model, and in cluster --tsne.
  if (o.was_given("--tsne-method")) {
    std::string kind = o.train.model.kind.empty() ? "vae" : o.train.model.kind;
    if (!o.model_file.empty()) {
      try {
        kind = peek_model_kind(o.model_file);
      } catch (const std::exception&) {
        kind = "vae";  // an unreadable file is reported by the command itself
      }
    }
    const bool runs = cluster->parsed() ? o.tsne && !o.out.empty()
                                        : main_job && !o.out.empty() && !o.no_tsne && model_has_latent(kind);
    if (!runs)
      std::cerr << "note: --tsne-method is ignored: no t-SNE runs (it applies to cluster --tsne and to the main job "
                   "with --out)\n";
  }
  try {
    if (compare->parsed()) return run_compare(o);  // its notes name the models it runs
    if (!info->parsed()) note_ignored_options(o);
    if (info->parsed()) {
      std::vector<std::string> seen;
      std::string ignored;
      for (const std::string& g : o.given)
        if (g != "--data" && g != "--model-file" && g != "--no-baseline" && g != "--no-tsne" && g != "--tsne-method" &&
            std::find(seen.begin(), seen.end(), g) == seen.end()) {  // those three have their own note
          seen.push_back(g);
          ignored += (ignored.empty() ? "" : ", ") + g;
        }
      if (!ignored.empty()) std::cerr << "note: info reads only --data and --model-file; ignored: " << ignored << "\n";
    }
    if (info->parsed()) return run_info_cmd(o);
    if (train->parsed()) return run_train(o, false);
    if (recommend->parsed()) {
      o.ratings_given = o.was_given("--ratings");
      return run_recommend(o);
    }
    if (similar->parsed()) return run_similar(o);
    if (embed->parsed()) return run_embed(o);
    if (cluster->parsed()) return run_cluster(o);
    return run_train(o, true);
  } catch (const UsageError& e) {
    std::cerr << "vae_gpu: " << e.what() << "\n";
    return 2;
  } catch (const DataError& e) {
    std::cerr << "vae_gpu: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "vae_gpu: out of host memory: reduce --batch-size or the model (--hidden; --latent for the notebook "
                 "VAE), or use a smaller data set\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "vae_gpu: error: " << e.what() << "\n";
    return 1;
  }
}
