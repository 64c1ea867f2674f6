// vae_gpu command line: the parsed options and what more than one command uses (data, backend and
// model loading, SVD devices, output folders, staged files, the cluster report).
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "analysis/model_file.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "train/svd_experiment.h"
#include "train/trainer.h"

namespace vae::cli {

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

// Picks the backend: --device auto uses a GPU when one is present and the CUDA backend is built.
std::unique_ptr<Backend<float>> make_backend(const Options& o);

// Without --data, a command that reads a model file loads the data that model was trained on
// (recorded in the file) when it is still there, rather than the default data set.
Dataset load_data(const Options& o);

// Flags that shape training, resolved before any data is loaded so usage errors come first.
// The training options every model shares (compare resolves each model's defaults itself).
void apply_common_options(Options& o);

// The notebooks' protocol scores reconstruction: say so once, so its figures are not read
// against the papers' (held-out items of unseen users).
void note_seed_protocol(const Options& o);

// The ratings protocol is the default where it is the only one that fits: the rating predictors
// (SVD, SVD++, item-based AutoRec) and AutoRec under --folds (cross-validation of the ratings).
inline bool ratings_by_default(const std::string& kind, int folds) {
  return is_svd_kind(kind) || kind == "i-autorec" || (kind == "autorec" && folds >= 2);
}

void prepare_training(Options& o);

// "epoch N" of a model file or run: "best" only where a validation set chose it (heldout).
std::string kept_epoch(const std::string& protocol, int epoch);

LoadedModel load_model(const Options& o, Backend<float>& be, const Dataset& d, int64_t max_batch);

// Device and SGD schedule of an SVD run: the GPU (blocked schedule) for --device cuda, and for
// auto when a GPU is present unless the serial schedule is asked for; the CPU otherwise.
SvdRunConfig svd_run_config(const Options& o);

// svdpp: whether an SVD++ model runs (its blocked schedule differs from Surprise's order).
void print_svd_device(const SvdRunConfig& rc, bool svdpp);

LoadedSvd load_svd(const Options& o, const Dataset& d);

// Made with any missing parents; those it made are remembered, so that a run that fails
// (remove_created_dirs_if_empty, in main's error paths) leaves no empty folder behind.
void ensure_dir(const std::string& dir);
void remove_created_dirs_if_empty();

// The output directory, made and probed before any training, so an unwritable --out fails in a
// second instead of after the run. lock: the folder is the run's own (train, compare, embed,
// cluster): an exclusive lock on it, held until the process ends, refuses a second run into the
// same folder at once (DataError) instead of letting the two mix their files there.
void check_out_dir(const std::string& dir, bool lock = true);
// compare and train each write a folder of their own kind: a folder this tool is recorded as
// filling with the other's results is refused (UsageError) rather than left half replaced.
void check_out_folder_kind(const std::string& dir, bool compare);

// Commits the staged files and says which were written ("wrote DIR/a, b, sub/c"), taken from
// what was staged so the line cannot drift from the files.
// report (a file name in dir): what the command printed and its pictures, staged last so it is
// committed with (and only with) the files it shows. cluster keeps its own page, so that a
// cluster run into a main job's folder (the README's way) leaves that run's report.html.
void commit_and_report(StagedFiles& staged, const std::string& dir, const char* report = "report.html");

// The "note: kept ..." line for the files a commit did not remove because no earlier run of the
// tool is recorded as writing them (StagedFiles::kept), and a note for each such file a new one
// replaced (StagedFiles::replaced: kept as NAME.orig).
void note_kept_files(const StagedFiles& staged, const std::string& dir);

// An earlier run's cluster analysis (and embeddings) would not describe this run's model.
void drop_analysis_files(StagedFiles& staged, const std::string& out_dir, bool embeddings);

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

// The autoencoders' report: every user's latent mean μ, clustered, after a line with the number
// of active latent dimensions; true (with a note) when none is: a collapsed code.
bool cluster_report(Backend<float>& be, Model<float>& m, const ModelFileInfo& info, const Dataset& d,
                    const ClusterOptions& co, const std::string& out_dir, bool write_embeddings, StagedFiles& staged);

// SVD's and SVD++'s: every user's vector p_u (SVD++: with its implicit term), clustered.
void cluster_svd_report(const SvdModel& m, const Dataset& d, const ClusterOptions& co, const std::string& out_dir,
                        bool write_embeddings, StagedFiles& staged);

// The line before the final metrics: which epoch they are from, and why that one. Only a
// validation set (heldout) chooses a best epoch; elsewhere choosing on the test data would leak,
// so the last epoch is reported (or, with --patience, the best on the test data, as asked).
std::string epoch_report(const TrainResult& r);

// Options given that the run will not read: a note each (stderr), so nobody believes a flag took
// effect when it did not. The applicability table follows the options' help texts.
// kinds: the models the command runs (compare); empty = the one --model (default vae).
// command: the subcommand ("" for the main job, train and compare), for what a --model-file leaves unread.
void note_ignored_options(const Options& o, const std::vector<std::string>& compared = {},
                          const std::string& command = "");

// The commands (main.cpp picks one); each returns the exit status. cmd_train.cpp:
int run_train(Options& o, bool main_job);
int run_info_cmd(const Options& o);
// cmd_analysis.cpp:
int run_recommend(Options& o);
int run_similar(Options& o);
int run_embed(Options& o);
int run_cluster(Options& o);
// cmd_compare.cpp:
int run_compare(Options& o);

}  // namespace vae::cli
