// The helpers more than one vae_gpu command uses (declared in options.h).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>
#include <sstream>

#include "analysis/html_report.h"
#include "analysis/safetensors.h"
#include "cli/options.h"
#include "core/console_capture.h"
#include "core/temp_files.h"
#include "data/text_reader.h"

namespace vae::cli {

namespace {

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

}  // namespace

std::unique_ptr<Backend<float>> make_backend(const Options& o) {
  const GemmPrecision p = parse_precision(o.precision);
  // The CPU has no tensor cores: tf32 / bf16 GEMMs run there as fp32 (said, not silently).
  auto cpu = [&] {
    if (p == GemmPrecision::tf32 || p == GemmPrecision::bf16)
      std::cerr << "note: --precision " << precision_name(p) << " is a GPU tensor-core format; the CPU runs fp32 GEMMs\n";
    return make_cpu_backend<float>(p);
  };
  if (o.device == "cpu") return cpu();
  if (o.device == "cuda" || cuda_device_available()) {
    const int slow = cuda_fp32_per_fp64();
    if (p == GemmPrecision::exact && slow > 4)
      std::cerr << "note: this GPU runs FP64 at 1/" << slow << " of its FP32 rate, and exact GEMMs accumulate in FP64; "
                << "--precision fp32 (or tf32) is much faster, at the cost of last-bit drift from CPU runs\n";
    return make_cuda_backend(p);
  }
  std::cerr << "note: no CUDA device found; running on the CPU\n";
  return cpu();
}

Dataset load_data(const Options& o) {
  // A missing or broken model file is said first, before any word about the data.
  if (!o.model_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(std::filesystem::symlink_status(o.model_file, ec)))
      throw DataError(o.model_file, 0, "no such file");
    // Its header alone when sound (the load reads it whole later); whole, to name the fault, when not.
    if (peek_model_kind(o.model_file).empty()) (void)load_safetensors(o.model_file);
  }
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
              << " (MovieLens: 0.5 to 5 stars); they are used as given: check "
              << (d.rating_column.empty() ? std::string("the third column") : "column " + text::quote(d.rating_column))
              << " is the rating\n";
  // The autoencoders' input is the dense rating vector, where 0 stands for "not rated".
  const auto zeros = std::count(d.ratings.values.begin(), d.ratings.values.end(), 0.0f);
  if (zeros > 0)
    std::cerr << "note: " << d.source << ": " << zeros << (zeros == 1 ? " rating is 0" : " ratings are 0")
              << ", which the autoencoders' rating vectors cannot tell from no rating (popularity, EASE, SVD and "
              << "RMSE count them); shift the scale to start at 1 if 0 is a real rating\n";
  return d;
}

void apply_common_options(Options& o) {
  o.train.adam.lr = o.lr;
  o.train.adam.weight_decay = o.weight_decay;
  o.train.adam.decoupled = o.adamw;
  o.train.ks = parse_int_list(o.ks, "--ks");
  o.train.seed = o.seed;
  o.train.progress_bar = isatty(fileno(stderr)) != 0;
}

void note_seed_protocol(const Options& o) {
  if (o.train.protocol == "seed" && o.model_file.empty())
    std::cerr << "note: the seed protocol (the notebooks') feeds each test user's whole rating vector in and scores the "
                 "ranking of those same items: a reconstruction score, higher than the papers' held-out figures "
                 "(--protocol heldout)\n";
}

void prepare_training(Options& o) {
  // Where only the ratings protocol fits (ratings_by_default), it is the default.
  if (ratings_by_default(o.train.model.kind, o.train.folds) && !o.protocol_given) o.train.protocol = "ratings";
  apply_common_options(o);
  if (o.model_file.empty()) resolve_defaults(o.train);
}

std::string kept_epoch(const std::string& protocol, int epoch) {
  return (is_foldin_protocol(protocol) ? "best epoch " : "epoch ") + std::to_string(epoch);
}

namespace {
// The file decides the model: a --model naming the same kind is redundant, another one an error.
void require_file_kind(const Options& o, const std::string& file_kind) {
  if (!o.train.model.kind.empty() && o.train.model.kind != file_kind)
    throw UsageError("--model " + o.train.model.kind + " disagrees with --model-file " + o.model_file + " (a " +
                     file_kind + " model): drop --model");
}
}  // namespace

LoadedModel load_model(const Options& o, Backend<float>& be, const Dataset& d, int64_t max_batch) {
  LoadedModel lm = load_model_file(o.model_file, be, d, max_batch);
  require_file_kind(o, lm.info.config.kind);
  std::cerr << "loaded " << lm.info.config.kind << " from " << o.model_file << " (trained on "
            << lm.info.dataset << ", " << lm.info.protocol << " protocol, "
            << kept_epoch(lm.info.protocol, lm.info.best_epoch) << ")\n";
  return lm;
}

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

LoadedSvd load_svd(const Options& o, const Dataset& d) {
  LoadedSvd ls = load_svd_model_file(o.model_file, d);
  require_file_kind(o, ls.info.config.kind);
  const SvdOptions& so = ls.info.svd;
  std::cerr << "loaded " << ls.info.config.kind << " from " << o.model_file << " (trained on " << ls.info.dataset
            << ", split " << ls.info.ratings_split << ", seed " << ls.info.seed << ", " << so.epochs << (so.epochs == 1 ? " epoch, " : " epochs, ")
            << svd_schedule_name(so.schedule) << " schedule)\n";
  return ls;
}

namespace {
std::vector<std::string>& created_dirs() {  // deepest first, as ensure_dir made them
  static std::vector<std::string> dirs;
  return dirs;
}
}  // namespace

void ensure_dir(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> missing;
  for (std::filesystem::path p = dir; !p.empty() && !std::filesystem::exists(std::filesystem::symlink_status(p, ec));
       p = p.parent_path()) {
    missing.push_back(p.string());
    if (p == p.parent_path()) break;
  }
  std::filesystem::create_directories(dir, ec);
  if (ec) throw DataError(dir, 0, "cannot create output directory: " + ec.message());
  created_dirs().insert(created_dirs().end(), missing.begin(), missing.end());
}

void remove_created_dirs_if_empty() {
  for (const std::string& d : created_dirs()) {
    std::error_code ec;
    if (std::filesystem::is_directory(d, ec) && std::filesystem::is_empty(d, ec)) std::filesystem::remove(d, ec);
  }
  created_dirs().clear();
}

namespace {
// An exclusive flock on the folder, kept (its descriptor open) until the process ends. A folder
// this process already locked (compare's, then a model's inside it; the same folder twice)
// passes: flock would refuse a second descriptor of this very process.
void lock_out_dir(const std::string& dir) {
  static std::set<std::pair<dev_t, ino_t>> held;
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // the probe below reports an unusable folder
  struct stat st {};
  if (::fstat(fd, &st) != 0 || held.count({st.st_dev, st.st_ino})) {
    ::close(fd);
    return;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK)
      throw DataError(dir, 0, "another vae_gpu run is writing to this folder; wait for it to end, or give another --out");
    return;  // a file system without flock: no lock, as before
  }
  held.insert({st.st_dev, st.st_ino});  // fd stays open: the lock lasts as long as the process
}
}  // namespace

void check_out_dir(const std::string& dir, bool lock) {
  if (dir.empty()) return;
  ensure_dir(dir);
  if (lock) {
    lock_out_dir(dir);
    // Held by this run now: what killed runs left in it (and its model folders) can go.
    remove_dead_temporaries(dir);
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (it->is_directory(ec) && !it->is_symlink(ec)) remove_dead_temporaries(it->path().string());
  }
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

void check_out_folder_kind(const std::string& dir, bool compare) {
  if (dir.empty()) return;
  const std::set<std::string> ours = read_written_files(dir);
  if (compare && (ours.count("summary.json") || ours.count("model.safetensors")))
    throw UsageError("--out " + dir + " holds a train run's results (summary.json, model.safetensors): compare writes " +
                     "a folder of its own (compare.csv and one folder per model), so give it another --out");
  if (!compare && ours.count("compare.csv"))
    throw UsageError("--out " + dir + " holds compare's results (compare.csv and one folder per model), which a train " +
                     "run would leave half replaced: give it another --out");
}

namespace {
// "DIR/a, b, sub/c": the paths relative to dir, after it once.
std::string listed_files(const std::string& dir, const std::vector<std::string>& paths) {
  std::string names;
  for (const std::string& p : paths)
    names += (names.empty() ? "" : ", ") + std::filesystem::path(p).lexically_relative(dir).generic_string();
  return dir + (dir.back() == '/' ? "" : "/") + names;
}
}  // namespace

void commit_and_report(StagedFiles& staged, const std::string& dir, const char* report) {
  const ConsoleCapture* capture = ConsoleCapture::active();
  if (capture && !dir.empty()) {
    std::vector<ReportPicture> pictures;
    for (const auto& [path, svg] : staged.pictures())
      pictures.push_back({std::filesystem::path(path).lexically_relative(dir).generic_string(), svg});
    staged.add(dir + "/" + report, run_report_html(capture->command(), capture->text(), pictures));
  }
  const std::vector<std::string> paths = staged.commit();
  auto list = [&dir](const std::vector<std::string>& ps) { return listed_files(dir, ps); };
  if (!paths.empty()) std::cerr << "wrote " << list(paths) << "\n";
  // A trained model or an analysis going away is said, not done silently.
  if (!staged.removed().empty())
    std::cerr << "removed " << list(staged.removed()) << " (an earlier run's, which this run does not produce)\n";
  note_kept_files(staged, dir);
}

void note_kept_files(const StagedFiles& staged, const std::string& dir) {
  for (const auto& [path, kept_as] : staged.replaced())
    std::cerr << "note: " << path << " was there, and no earlier run of vae_gpu is recorded as writing it ("
              << kWrittenFilesName << "): this run's " << std::filesystem::path(path).filename().string()
              << " replaced it, and it is kept as " << kept_as << "\n";
  if (staged.kept().empty()) return;
  std::cerr << "note: kept " << listed_files(dir, staged.kept()) << ": this run does not produce " << (staged.kept().size() == 1 ? "it" : "them") << ", but no earlier run "
            << "of vae_gpu is recorded as writing " << (staged.kept().size() == 1 ? "it" : "them") << " ("
            << kWrittenFilesName << "), so " << (staged.kept().size() == 1 ? "it is" : "they are")
            << " not this run's to remove; delete by hand if stale\n";
}

void drop_analysis_files(StagedFiles& staged, const std::string& out_dir, bool embeddings) {
  for (const char* f : {"/clusters.csv", "/cluster_lift.csv", "/cluster_movies.csv", "/tsne.svg", "/k_scan.csv",
                        "/k_scan.svg"})
    staged.remove_on_commit(out_dir + f);
  if (embeddings)
    for (const char* f : {"/embeddings.npy", "/user_ids.csv"}) staged.remove_on_commit(out_dir + f);
}

}  // namespace vae::cli
