// Experiment driver: builds the protocol's split, trains a model with Adam over shuffled
// batches, evaluates every epoch, keeps the best epoch's weights and reports metrics.
#pragma once
#include <iosfwd>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "data/dataset.h"
#include "models/model.h"

namespace vae {

// Adam's settings with lr 0, "not given": resolve_defaults puts the model's own rate there.
inline AdamConfig adam_with_model_lr() {
  AdamConfig a;
  a.lr = 0;
  return a;
}

// Every model the tool trains (--model), in the order the help lists them.
inline constexpr const char* kModelKinds[] = {"vae",        "autorec", "i-autorec", "multvae", "cdae",
                                              "popularity", "ease",    "svd",       "svdpp"};
// "vae, autorec, ..., svdpp": kModelKinds for messages.
std::string model_kinds_list();

struct TrainOptions {
  std::string protocol = "seed";  // seed | heldout | temporal | cutoff | ratings
  int epochs = 20;
  int64_t batch_size = 0;  // 0 = the model's default (VAE/AutoRec/CDAE 64, Mult-VAE 500)
  AdamConfig adam = adam_with_model_lr();  // lr 0 = the model's default (resolve_defaults)
  uint64_t seed = 1;
  int patience = 0;  // > 0: stop after this many epochs without improvement
  int k = 20;        // seed protocol cut-off (metrics are also reported at 100)
  std::vector<int> ks{20, 50, 100};  // heldout, temporal and cutoff protocol cut-offs
  double test_fraction = 0.2;        // seed protocol
  HeldoutOptions heldout;            // heldout; temporal reads threshold and min_positives, cutoff threshold
  int leave_last = 1;                // temporal: latest positives per user held out for test (as many for validation)
  // cutoff: when the test ratings start (resolve_time_cut: a share of the ratings by time, a date or
  // seconds), and the validation ones ("": as many ratings before the test cut as after it).
  std::string test_from = "0.9", val_from;
  std::string ratings_split = "random";  // random | 1..5 | a | b (ml-100k's given folds)
  std::string data_dir;                  // where uN.base/uN.test live for fold splits
  int folds = 0;                         // ≥ 2: k-fold cross-validation (SVD, SVD++, AutoRec, I-AutoRec)
  int fold = 0;                          // with folds ≥ 2: the fold run_experiment holds out (0-based)
  double ease_lambda = 0;                // 0 = chosen on validation users (heldout) / 200
  bool progress_bar = false;             // per-batch bar (TTY) instead of only epoch lines
  bool quiet = false;
  // An evaluation set with nothing to predict makes every metric nan: train, compare and the main
  // job refuse it (their figures would be meaningless); a command that trains only to serve the
  // model (recommend, similar, embed, cluster) goes on with a note.
  bool require_eval = true;
  // Where notes and warnings go (the CLI: stderr, so stdout holds the results); null: log.
  std::ostream* notes = nullptr;
  // First layer on the batch's CSR rows (--sparse-input): auto | on | off. auto = on when the
  // model has ≥ kSparseInputMinColumns inputs or the training matrix is sparser than
  // kSparseInputMaxDensity (models/model.h). Overrides model.sparse_input.
  std::string sparse_input = "auto";
  // Each training step (forward, loss, backward, Adam) captured and replayed as one CUDA Graph
  // per batch size on backends that support it (--cuda-graph on|off). Same results either way.
  bool cuda_graph = true;
  // Time per op over training and its per-epoch evaluation, printed after training
  // (--profile-ops): device time on a GPU (plain launches meanwhile), wall time on the CPU.
  bool profile_ops = false;
  ModelConfig model;                     // model.kind selects the model
  // With a pretrained model (run_experiment's last argument): the column / row maps it was
  // trained with; the split must reproduce them (same data, protocol, seed, threshold).
  std::vector<int32_t> pretrained_columns, pretrained_rows;
};

struct EpochRecord {
  int epoch = 0;
  double train_loss = 0;
  double test_loss = 0;
  std::vector<std::pair<std::string, double>> metrics;  // in print order
  double train_seconds = 0;
  double eval_seconds = 0;
};

struct TrainResult {
  std::string model, protocol, device, dataset, eval_set;
  std::string label;  // compare --sweep: the row's name ("vae_beta=0.001"); "" = the model's
  // compare --sweep: the swept options this row reads, with its values ({"beta", "0.001"}).
  std::vector<std::pair<std::string, std::string>> sweep_settings;
  std::vector<EpochRecord> history;
  int best_epoch = 0;
  // How best_epoch was picked, so reports word it truthfully: "validation" (heldout), "test"
  // (--patience without a validation set), "last" (no selection: the last epoch trained), ""
  // (nothing trained: popularity, EASE, a pretrained model).
  std::string epoch_selection;
  // The metric the trainer selects on (the epoch; EASE's λ): heldout NDCG@100 (or the largest
  // --ks cut-off), seed NDCG@k, ratings RMSE. Under heldout, history holds its value on the
  // validation users, so history's record of best_epoch is the figure the row was kept for.
  std::string selection_metric;
  double ease_lambda = 0;  // EASE: the λ used (chosen on the grid or given)
  std::vector<std::pair<std::string, double>> metrics;  // final (best epoch; test users)
  // The final metrics' per-user values (not RMSE or coverage), users in one fixed order of the
  // evaluation set, so two models of one split can be compared user by user (paired).
  std::vector<std::pair<std::string, std::vector<double>>> user_metrics;
  // The evaluated users of user_metrics, in its order: their ids and how many input ratings each
  // gave the model (seed: all their ratings; heldout: the fold-in part).
  std::vector<std::string> eval_user_ids;
  std::vector<int64_t> user_activity;
  // Ratings protocol: per evaluated row (a user; an item for i-autorec) its squared-error sum and
  // number of test ratings, so RMSEs can be compared row by row.
  std::vector<std::pair<double, int64_t>> row_errors;
  double train_seconds = 0;
  double epoch_seconds_median = 0;
  int64_t train_rows = 0, eval_rows = 0, num_params = 0;
  std::string note;  // e.g. chosen EASE λ
  double metric(const std::string& key) const;  // NaN when absent
  // A metric's per-user values (user_metrics), null when absent.
  const std::vector<double>* user_values(const std::string& key) const;
  std::unique_ptr<Model<float>> model_ptr;       // the trained model (best epoch's weights)
  ModelConfig config;  // its settings, defaults resolved (kept after model_ptr is released)
  int64_t steps_per_epoch = 0;  // optimiser steps (batches) per training epoch; 0 = not trained

  // What the model's rows and columns stand for (model files, recommendations, embeddings).
  std::vector<int32_t> column_map;  // model column → dataset item index (i-autorec: user index)
  std::vector<int32_t> row_map;     // training matrix row → dataset user index (i-autorec: item)
  bool item_based = false;          // i-autorec: rows are items, columns users
  bool binary_input = false;        // the model saw 0/1 rows (seed: multvae, cdae, ease; heldout)
  double input_threshold = 0;       // heldout, temporal: ratings below this were no input (0 = all kept)
  int leave_last = 0;               // temporal: latest positives held out per user (0: other protocols)
  int64_t val_from = 0, test_from = 0;  // cutoff: the cuts, seconds since 1970 (both 0: other protocols)
  int64_t batch_size = 0;
  AdamConfig adam;  // the optimiser as resolved (the model's default lr filled in)
  uint64_t seed = 0;
  double test_fraction = 0;    // the split trained on (seed protocol)
  std::string ratings_split;   // the split trained on (ratings protocol)
  bool sparse_input = false;        // the first layer read CSR batches
  std::string precision;            // the backend's GEMM precision (exact, fp32, tf32, bf16)
  std::string memory_plan;          // the plan line printed before training (autoencoders)
};

// Fills model defaults for kind (batch size, hidden sizes, Mult-VAE β annealing, …) that the
// user left at 0; returns the batch size to use.
int64_t resolve_defaults(TrainOptions& opt);

// The temporal or cutoff protocol's split of d under opt.
TemporalSplit split_timed(const Dataset& d, const TrainOptions& opt);

// Fewer optimiser steps than this train a network too little to judge it: a run that makes
// fewer says so (and compare's notes name it as the cause of a model short of popularity).
constexpr int64_t kFewSteps = 100;

// The --profile-ops table: one line per op, largest device time first, with its share.
std::string format_op_profile(const std::vector<OpTime>& prof);

// pretrained (optional): a model already trained on this split (e.g. loaded from a model file);
// it is evaluated once, as epoch 0, instead of being trained.
TrainResult run_experiment(Backend<float>& be, const Dataset& d, TrainOptions opt, std::ostream& log,
                           std::unique_ptr<Model<float>> pretrained = nullptr);

// Files written as path.tmp and renamed into place together by commit(): until then the old
// files stand, and a StagedFiles destroyed without commit() removes its temporaries, so a run
// that fails part-way (a full disk while writing the model file) leaves the earlier results
// whole and consistent. add() throws DataError naming the file. A run folder's files are the
// run's own: a symbolic link among them is replaced (a stale link to a file is unlinked, its
// target kept), never written through,
// so a folder of links into another run (`cp -rs`) cannot change that run. One-file outputs
// (write_atomically) do write through a link: there the link is the user's name for the file.
// Each folder StagedFiles writes into keeps a record of the files this tool wrote there
// (kWrittenFilesName, one name a line), so that a later run removes only those: a file of the
// same name that the user put there is never taken for an earlier run's, and one that a new
// file replaces is kept beside it as NAME.orig (replaced()).
inline constexpr const char* kWrittenFilesName = ".vae_gpu_files";
inline constexpr const char* kWrittenFilesHeader =
    "# files vae_gpu wrote in this folder: a later run removes only these when it does not produce them";
std::set<std::string> read_written_files(const std::string& dir);  // empty without a record

class StagedFiles {
 public:
  StagedFiles() = default;
  StagedFiles(StagedFiles&&) = default;
  StagedFiles& operator=(StagedFiles&&) = delete;
  StagedFiles(const StagedFiles&) = delete;
  ~StagedFiles();
  void add(const std::string& path, const std::string& text);
  // path.tmp was written by another writer (the model file): renamed with the rest.
  void adopt(const std::string& path);
  // A file of an earlier run that this one does not produce (model.safetensors after --folds,
  // logvar.npy, tsne.svg): removed at commit, so nothing stale sits beside the new results.
  // explained: a note has already said why it goes, so removed() does not list it again.
  void remove_on_commit(const std::string& path, bool explained = false);
  // A folder emptied by those removals: removed at commit too, when nothing else is left in it.
  void remove_dir_if_empty_on_commit(const std::string& dir) { dirs_.push_back(dir); }
  // Returns the paths put in place, in staging order (what a "wrote ..." line names).
  std::vector<std::string> commit();
  // The staged *.svg files (path, text), for the run's report.
  const std::vector<std::pair<std::string, std::string>>& pictures() const { return pictures_; }
  // The earlier runs' files commit() removed (those that were there), to name them.
  const std::vector<std::string>& removed() const { return removed_; }
  // Files commit() was to remove but kept: not in their folder's record (the user's own).
  const std::vector<std::string>& kept() const { return kept_; }
  // Files commit() wrote over that their folder's record does not list: (path, where the
  // earlier file now is — path.orig unless that name was taken).
  const std::vector<std::pair<std::string, std::string>>& replaced() const { return replaced_; }

 private:
  std::vector<std::string> paths_, stale_, dirs_, removed_, kept_;
  std::vector<std::string> explained_;  // stale paths a note already named
  std::vector<std::pair<std::string, std::string>> replaced_;
  std::vector<std::pair<std::string, std::string>> pictures_;
  std::vector<int> slots_;  // the temporaries' entries in the signal-cleanup list (core/temp_files.h)
};

// metrics.csv (one row per epoch), summary.json, curves.svg (two epochs or more) and
// user_metrics.csv (each evaluated user's ranking metrics, or under the ratings protocol each
// row's RMSE over its test ratings) into dir
// (created if needed), staged: the caller commits them once everything else of the run (the
// model file) has been written.
void stage_run_files(StagedFiles& staged, const std::string& dir, const TrainResult& r);
// The files stage_run_files writes into dir, removed at commit (a model this run leaves out).
void drop_run_files(StagedFiles& staged, const std::string& dir);

// curves.svg: loss (train and test/validation) and the evaluation metrics per epoch, the best
// epoch marked. stage_run_files writes it for runs of two epochs or more.
std::string learning_curves_svg(const TrainResult& r);

// "95% intervals over the N evaluated users: ndcg@20 ±0.0312, …\n" for the per-user metrics of
// r's final metrics; "" when there are none or fewer than two users.
std::string format_intervals(const TrainResult& r);

// The bare `vae_gpu --epochs N` summary: model and popularity side by side.
void print_comparison(std::ostream& os, const TrainResult& model, const TrainResult& baseline);
// " key=value key=value": final metrics as the "final metrics on ...:" lines print them.
std::string format_metric_pairs(const std::vector<std::pair<std::string, double>>& metrics);
// A metric key as the tables print it: ndcg@20 → NDCG@20, recall@20 → Recall@20, rmse → RMSE.
std::string metric_display_name(const std::string& key);

}  // namespace vae
