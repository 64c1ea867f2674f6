// vae_gpu command line: the notebook run (bare `vae_gpu --epochs 20`), `train`, `info`, and the
// analysis commands `recommend`, `embed`, `cluster` (each trains first, or loads --model-file).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "analysis/analysis_ops.h"
#include "analysis/cluster_metrics.h"
#include "analysis/kmeans.h"
#include "analysis/model_file.h"
#include "analysis/npy.h"
#include "analysis/profile.h"
#include "analysis/recommend.h"
#include "analysis/tsne.h"
#include "backend/backend.h"
#include "data/dataset.h"
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
  bool tf32 = false;
  double lr = 0;  // 0 = the model's default (1e-3; CDAE 1e-2)
  double weight_decay = 0;
  bool adamw = false;
  std::string ks = "20,50,100";
  TrainOptions train;
  std::string model_file;
  // recommend
  std::string user;
  int top = 10;
  bool include_rated = false;
  std::string ratings;
  bool ratings_given = false;  // --ratings "" is an empty fold-in (popularity), not a missing flag
  bool all_users = false;
  // embed
  bool sample = false;
  bool logvar = false;
  // cluster
  int k = 3;
  int n_init = 10;
  int max_iter = 300;
  bool tsne = false;
  int64_t tsne_max = 10000;
  double perplexity = 30.0;
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
  if (o.device == "cpu") return make_cpu_backend<float>();
  if (o.device == "cuda") return make_cuda_backend(o.tf32);
  if (cuda_device_available() && cuda_backend_built()) return make_cuda_backend(o.tf32);
  std::cerr << (cuda_device_available() ? "note: CUDA backend not built yet; running on the CPU\n"
                                        : "note: no CUDA device found; running on the CPU\n");
  return make_cpu_backend<float>();
}

Dataset load_data(const Options& o) {
  std::string note;
  Dataset d = load_dataset(o.data, &note);
  std::cerr << note << "\n";
  return d;
}

double quantile(std::vector<int64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[static_cast<size_t>(q * (v.size() - 1) + 0.5)]);
}

int run_info(const Dataset& d) {
  const Csr& r = d.ratings;
  std::cout << "dataset   " << d.name << " (" << d.format << ", " << d.source << ")\n"
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
  return 0;
}

// Flags that shape training, resolved before any data is loaded so usage errors come first.
void prepare_training(Options& o) {
  o.train.adam.lr = o.lr;
  o.train.adam.weight_decay = o.weight_decay;
  o.train.adam.decoupled = o.adamw;
  o.train.ks = parse_int_list(o.ks, "--ks");
  o.train.seed = o.seed;
  o.train.progress_bar = isatty(fileno(stderr)) != 0;
  if (o.model_file.empty()) resolve_defaults(o.train);
}

// Analysis commands read models with room for this many rows per batch.
constexpr int64_t kAnalysisBatch = 256;

LoadedModel load_model(const Options& o, Backend<float>& be, const Dataset& d, int64_t max_batch) {
  if (!o.train.model.kind.empty())
    throw UsageError("--model and --model-file together: the file decides the model (drop --model)");
  LoadedModel lm = load_model_file(o.model_file, be, d, max_batch);
  std::cerr << "loaded " << lm.info.config.kind << " from " << o.model_file << " (trained on "
            << lm.info.dataset << ", " << lm.info.protocol << " protocol, best epoch " << lm.info.best_epoch
            << ")\n";
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

void ensure_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw DataError(dir, 0, "cannot create output directory: " + ec.message());
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

void write_user_ids(const std::string& path, const Dataset& d, const std::vector<int32_t>& users) {
  std::string csv = "row,user_id\n";
  for (size_t i = 0; i < users.size(); ++i) csv += std::to_string(i) + "," + csv_field(d.user_ids[users[i]]) + "\n";
  write_text_atomically(path, csv);
}

struct ClusterOptions {
  int k = 3, n_init = 10, max_iter = 300;
  bool tsne = false;
  int64_t tsne_max = 10000;
  double perplexity = 30.0;
  uint64_t seed = 1;
};

// Encodes every user (μ), K-Means, the profile report, t-SNE when asked; clusters.csv and
// cluster_lift.csv (and embeddings.npy, user_ids.csv when write_embeddings) into out_dir.
void cluster_report(Backend<float>& be, Model<float>& m, const ModelFileInfo& info, const Dataset& d,
                    const ClusterOptions& co, const std::string& out_dir, bool write_embeddings) {
  const Embeddings e = encode_users(be, m, info, d, /*sample=*/false, /*logvar=*/false);
  const int64_t n = static_cast<int64_t>(e.users.size());
  if (co.k > n) throw UsageError("--k " + std::to_string(co.k) + " exceeds the " + std::to_string(n) + " users");
  auto ops = make_cpu_analysis_ops();
  KMeansOptions ko;
  ko.k = co.k;
  ko.n_init = co.n_init;
  ko.max_iter = co.max_iter;
  ko.seed = co.seed;
  const KMeansResult km = kmeans(*ops, e.z, n, e.dim, ko);
  std::vector<int64_t> sizes(static_cast<size_t>(co.k), 0);
  for (int32_t l : km.labels) ++sizes[l];
  std::cout << "\nK-Means on the latent means of " << n << " users (" << e.dim << " dimensions, k = " << co.k
            << ", n_init = " << co.n_init << "): inertia " << km.inertia << " after " << km.iterations
            << " iterations\nCluster sizes:";
  for (int c = 0; c < co.k; ++c) std::cout << (c ? ", " : " ") << c << ": " << sizes[c];
  std::cout << "\n";
  if (e.empty_inputs > 0)
    std::cout << "note: " << e.empty_inputs << " users had no usable ratings and were encoded from an empty row\n";
  const std::vector<ClusterProfile> profiles = profile_clusters(d, e.users, km.labels, co.k);
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
  if (co.tsne) {
    TsneOptions to;
    to.seed = co.seed;
    to.max_points = co.tsne_max;
    to.perplexity = co.perplexity;
    const int64_t points = std::min<int64_t>(n, co.tsne_max);
    if (points < 2) throw UsageError("t-SNE needs at least 2 users");
    if (to.perplexity >= static_cast<double>(points)) {
      to.perplexity = std::max(1.0, (points - 1) / 3.0);
      std::cout << "note: perplexity lowered to " << to.perplexity << " for " << points << " points\n";
    }
    const TsneResult t = tsne(*ops, e.z, n, e.dim, to);
    xy.assign(static_cast<size_t>(2 * n), 0.0f);
    for (int64_t i = 0; i < t.n; ++i) {
      const int32_t r = t.indices[i];
      xy[2 * r] = t.y[2 * i];
      xy[2 * r + 1] = t.y[2 * i + 1];
      has_xy[r] = 1;
    }
    std::cout << "t-SNE: " << t.n << " points"
              << (t.n < n ? " (a random subsample of " + std::to_string(n) + " users; --tsne-max)" : std::string(" (all users)"))
              << ", final KL divergence " << t.kl_divergence << " after " << t.iterations << " iterations\n";
  }
  if (out_dir.empty()) return;
  ensure_dir(out_dir);
  std::ostringstream csv;
  csv << "user_id,cluster,x,y\n";
  for (int64_t i = 0; i < n; ++i) {
    csv << csv_field(d.user_ids[e.users[i]]) << "," << km.labels[i] << ",";
    if (has_xy[i]) csv << std::setprecision(7) << xy[2 * i] << "," << xy[2 * i + 1];
    else csv << ",";
    csv << "\n";
  }
  write_text_atomically(out_dir + "/clusters.csv", csv.str());
  write_text_atomically(out_dir + "/cluster_lift.csv", cluster_lift_csv(profiles));
  if (write_embeddings) {
    save_npy_f32(out_dir + "/embeddings.npy", e.z, n, e.dim);
    write_user_ids(out_dir + "/user_ids.csv", d, e.users);
  }
  std::cerr << "wrote " << out_dir << "/clusters.csv, cluster_lift.csv"
            << (write_embeddings ? ", embeddings.npy, user_ids.csv" : "") << "\n";
}

ClusterOptions cluster_options(const Options& o) {
  ClusterOptions co;
  co.k = o.k;
  co.n_init = o.n_init;
  co.max_iter = o.max_iter;
  co.tsne = o.tsne;
  co.tsne_max = o.tsne_max;
  co.perplexity = o.perplexity;
  co.seed = o.seed;
  return co;
}

int run_train(Options& o, bool main_job) {
  prepare_training(o);
  const Dataset d = load_data(o);
  if (o.train.data_dir.empty()) o.train.data_dir = d.source;
  if (is_svd_kind(o.train.model.kind)) {
    // SVD / SVD++: SGD over ratings on the host (Surprise's serial order).
    if (!o.model_file.empty()) throw UsageError("--model-file holds autoencoders; SVD models retrain in seconds");
    std::cerr << "device: cpu (SVD models train on the host)\n";
    const TrainResult r = run_svd_experiment(d, o.train, std::cout);
    std::cout << "Final metrics on " << r.eval_set << ":";
    for (const auto& kv : r.metrics) std::cout << " " << kv.first << "=" << kv.second;
    std::cout << "\n";
    if (!o.out.empty()) {
      write_run_files(o.out, r);
      std::cerr << "wrote " << o.out << "/metrics.csv, summary.json\n";
    }
    return 0;
  }
  auto be = make_backend(o);
  std::cerr << "device: " << be->name() << "\n";
  TrainResult r;
  int file_best_epoch = -1;
  if (!o.model_file.empty()) {
    // Evaluate the stored model on the split it was trained with instead of training.
    LoadedModel lm = load_model(o, *be, d, 0);
    o.train.model = ModelConfig{};
    o.train.model.kind = lm.info.config.kind;
    o.train.protocol = lm.info.protocol;
    o.train.seed = lm.info.seed;
    if (lm.info.input_threshold > 0) o.train.heldout.threshold = lm.info.input_threshold;
    o.train.batch_size = lm.info.batch_size;
    o.train.pretrained_columns = lm.info.column_map;
    o.train.pretrained_rows = lm.info.row_map;
    file_best_epoch = lm.info.best_epoch;
    r = run_experiment(*be, d, o.train, std::cout, std::move(lm.model));
  } else {
    r = run_experiment(*be, d, o.train, std::cout);
  }
  if (file_best_epoch >= 0)
    std::cout << "Model file (best epoch " << file_best_epoch << " of its training) evaluated; final metrics on "
              << r.eval_set << ":";
  else
    std::cout << "Best epoch " << r.best_epoch << "; final metrics on " << r.eval_set << ":";
  for (const auto& kv : r.metrics) std::cout << " " << kv.first << "=" << kv.second;
  std::cout << "\n";
  std::string written;
  if (!o.out.empty()) {
    write_run_files(o.out, r);
    written = "metrics.csv, summary.json";
    if (write_model_file(o.out, *be, r, d)) written += ", " + std::string(kModelFileName);
    else std::cerr << "note: " << r.model << " has no trained parameters; no " << kModelFileName << " written\n";
  }
  if (main_job && !o.no_baseline && r.model != "popularity") {
    TrainOptions b = o.train;
    b.model = ModelConfig{};
    b.model.kind = "popularity";
    b.quiet = true;
    b.pretrained_columns.clear();
    b.pretrained_rows.clear();
    TrainResult pop = run_experiment(*be, d, b, std::cout);
    print_comparison(std::cout, r, pop);
    if (!o.out.empty()) write_run_files(o.out + "/popularity", pop);
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
      cluster_report(*be, *r.model_ptr, info, d, co, o.out, /*write_embeddings=*/true);
    }
  }
  if (!written.empty()) std::cerr << "wrote " << o.out << "/" << written << "\n";
  return 0;
}

int run_recommend(Options& o) {
  prepare_training(o);
  const int modes = (!o.user.empty()) + (o.ratings_given ? 1 : 0) + (o.all_users ? 1 : 0);
  if (modes == 0) throw UsageError("recommend needs --user ID, --ratings \"item:rating,...\" or --all-users");
  if (modes > 1) throw UsageError("give only one of --user, --ratings and --all-users");
  if (o.all_users && o.out.empty()) throw UsageError("--all-users writes a CSV: give --out recs.csv");
  if (o.top < 1) throw UsageError("--top must be at least 1");
  const Dataset d = load_data(o);
  auto be = make_backend(o);
  LoadedModel lm = obtain_model(o, *be, d);
  Recommender rec(*be, *lm.model, lm.info, d);
  RecommendOptions ro;
  ro.top = o.top;
  ro.include_rated = o.include_rated;
  const std::string suffix = " (" + lm.info.config.kind + (o.include_rated ? ", rated items included" : "") + "):";
  if (o.all_users) {
    const auto s = rec.write_all_users_csv(o.out, ro);
    std::cout << "wrote " << o.out << ": " << s.rows << " recommendations for " << s.users << " users";
    if (s.popularity_fallbacks > 0)
      std::cout << " (" << s.popularity_fallbacks << " users without usable ratings got the most popular items)";
    std::cout << "\n";
    return 0;
  }
  const RecommendResult r = !o.user.empty() ? rec.for_user(o.user, ro) : rec.for_ratings(o.ratings, ro);
  const std::string who = o.user.empty() ? "the given ratings" : "user " + o.user;
  std::cout << format_recommendations(r, d, "Top " + std::to_string(o.top) + " recommendations for " + who + suffix);
  return 0;
}

int run_embed(Options& o) {
  prepare_training(o);
  if (o.out.empty()) throw UsageError("embed writes files: give --out DIR");
  const Dataset d = load_data(o);
  auto be = make_backend(o);
  LoadedModel lm = obtain_model(o, *be, d);
  const Embeddings e = encode_users(*be, *lm.model, lm.info, d, o.sample, o.logvar);
  ensure_dir(o.out);
  const int64_t n = static_cast<int64_t>(e.users.size());
  save_npy_f32(o.out + "/embeddings.npy", e.z, n, e.dim);
  if (o.logvar) save_npy_f32(o.out + "/logvar.npy", e.logvar, n, e.dim);
  write_user_ids(o.out + "/user_ids.csv", d, e.users);
  std::cout << "wrote " << o.out << "/embeddings.npy (" << n << " x " << e.dim << ", "
            << (o.sample ? "sampled z" : "mu") << ")" << (o.logvar ? ", logvar.npy" : "") << ", user_ids.csv\n";
  if (e.empty_inputs > 0)
    std::cout << "note: " << e.empty_inputs << " users had no usable ratings and were encoded from an empty row\n";
  return 0;
}

int run_cluster(Options& o) {
  prepare_training(o);
  if (o.k < 1) throw UsageError("--k must be at least 1");
  const Dataset d = load_data(o);
  auto be = make_backend(o);
  LoadedModel lm = obtain_model(o, *be, d);
  cluster_report(*be, *lm.model, lm.info, d, cluster_options(o), o.out, /*write_embeddings=*/false);
  return 0;
}

int run_info_cmd(const Options& o) {
  const Dataset d = load_data(o);
  const int rc = run_info(d);
  if (o.model_file.empty()) return rc;
  const ModelFileInfo i = read_model_file_info(o.model_file, d);
  const ModelConfig& c = i.config;
  std::cout << "model file " << o.model_file << ": " << c.kind << ", " << c.num_inputs << " "
            << (i.item_based ? "user" : "item") << " columns, hidden " << c.hidden << ", latent " << c.latent
            << ", trained on " << i.dataset << " (" << i.protocol << " protocol, seed " << i.seed
            << ", best epoch " << i.best_epoch << ")\n";
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
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
  app.add_option("--seed", o.seed, "random seed for splits, initialisation and noise");
  app.add_option("--device", o.device, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--out", o.out, "directory for metrics.csv, summary.json and artefacts");
  app.add_option("--epochs", o.train.epochs, "training epochs")->check(CLI::Range(1, 100000));
  app.add_option("--model", o.train.model.kind, "vae, autorec, i-autorec, multvae, cdae, popularity, ease, svd, svdpp")
      ->check(CLI::IsMember({"vae", "autorec", "i-autorec", "multvae", "cdae", "popularity", "ease", "svd", "svdpp"}));
  app.add_option("--protocol", o.train.protocol, "seed (the notebooks), heldout (Mult-VAE), ratings (RMSE)")
      ->check(CLI::IsMember({"seed", "heldout", "ratings"}));
  app.add_option("--batch-size", o.train.batch_size, "0 = model default")->check(CLI::Range(0, 1 << 24));
  app.add_option("--lr", o.lr, "Adam learning rate (default: 1e-3; CDAE 1e-2)")->check(CLI::NonNegativeNumber);
  app.add_option("--weight-decay", o.weight_decay, "Adam weight decay")->check(CLI::NonNegativeNumber);
  app.add_flag("--adamw", o.adamw, "decoupled weight decay (AdamW) instead of L2");
  app.add_option("--patience", o.train.patience, "early stopping patience in epochs (0 = off)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--k", o.train.k, "seed protocol cut-off K")->check(CLI::Range(1, 1000000));
  app.add_option("--ks", o.ks, "heldout protocol cut-offs, comma-separated");
  app.add_option("--hidden", o.train.model.hidden, "hidden units (0 = model default)")->check(CLI::Range(0, 1 << 20));
  app.add_option("--latent", o.train.model.latent, "latent size (0 = model default)")->check(CLI::Range(0, 1 << 20));
  app.add_option("--beta", o.train.model.beta, "KL weight (final value when annealing)")->check(CLI::NonNegativeNumber);
  app.add_option("--anneal-steps", o.train.model.anneal_steps, "linear KL annealing steps (0 = off)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--dropout", o.train.model.dropout, "input dropout (Mult-VAE, CDAE)")->check(CLI::Range(0.0, 0.99));
  app.add_option("--lambda", o.train.model.lambda, "L2 regularisation (AutoRec, CDAE; default: the model's)")->check(CLI::NonNegativeNumber);
  app.add_option("--loss,--autorec-loss", o.train.model.loss, "AutoRec: masked (observed ratings) or dense (the notebook); CDAE: bce or mse")
      ->check(CLI::IsMember({"masked", "dense", "bce", "mse"}));
  app.add_option("--act-hidden", o.train.model.act_hidden, "AutoRec hidden activation")
      ->check(CLI::IsMember({"sigmoid", "identity", "relu", "tanh"}));
  app.add_option("--act-out", o.train.model.act_out, "AutoRec output activation")
      ->check(CLI::IsMember({"identity", "sigmoid"}));
  app.add_option("--test-fraction", o.train.test_fraction, "seed protocol test users")->check(CLI::Range(0.01, 0.99));
  app.add_option("--threshold", o.train.heldout.threshold, "heldout protocol: rating >= threshold is positive");
  app.add_option("--fold", o.train.ratings_split, "ratings protocol split: random, 1..5, a, b (ml-100k files)")
      ->check(CLI::IsMember({"random", "1", "2", "3", "4", "5", "a", "b"}));
  app.add_option("--folds", o.train.folds, "ratings protocol: k-fold cross-validation, mean ± std (svd, svdpp)")
      ->check(CLI::Range(2, 100));
  app.add_option("--ease-lambda", o.train.ease_lambda, "EASE L2 (0 = grid on validation users)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--tf32", o.tf32, "allow TF32 tensor-core GEMMs on the GPU");
  app.add_flag("--no-baseline", o.no_baseline, "skip the popularity comparison of the main run");
  app.add_flag("--quiet", o.train.quiet, "only the final lines");

  app.add_option("--model-file", o.model_file,
                 "a model.safetensors written by --out: use it instead of training (every command)");

  CLI::App* train = app.add_subcommand("train", "train and evaluate one model (--model-file: evaluate it)");
  CLI::App* info = app.add_subcommand("info", "dataset summary (and the --model-file's metadata)");
  CLI::App* recommend = app.add_subcommand("recommend", "top-N recommendations for a user, new ratings or every user "
                                                      "(--model-file M, or trains first with the usual flags)");
  recommend->fallthrough();
  recommend->add_option("--user", o.user, "original user id");
  recommend->add_option("--top", o.top, "list length")->check(CLI::Range(1, 1000000));
  recommend->add_flag("--include-rated", o.include_rated, "allow items the user already rated");
  recommend->add_option("--ratings", o.ratings, "fold in a new user's ratings: \"item_id:rating,...\" (original ids)");
  recommend->add_flag("--all-users", o.all_users, "every user into the CSV given by --out (user_id,rank,item_id,score)");
  CLI::App* embed = app.add_subcommand("embed", "latent codes of every user: --out DIR gets embeddings.npy, user_ids.csv "
                                              "(--model-file M, or trains first)");
  embed->fallthrough();
  embed->add_flag("--sample", o.sample, "a sampled z = mu + eps * sigma instead of mu");
  embed->add_flag("--logvar", o.logvar, "also write logvar.npy");
  CLI::App* cluster = app.add_subcommand("cluster", "K-Means of the users' latent means, cluster profiles, t-SNE; --out DIR "
                                                "gets clusters.csv, cluster_lift.csv (--model-file M, or trains first)");
  cluster->fallthrough();
  cluster->add_option("--k", o.k, "clusters")->check(CLI::Range(1, 1000000));
  cluster->add_option("--n-init", o.n_init, "K-Means restarts")->check(CLI::Range(1, 100000));
  cluster->add_option("--max-iter", o.max_iter, "Lloyd iterations per restart")->check(CLI::Range(1, 1000000));
  cluster->add_flag("--tsne", o.tsne, "2-D t-SNE of the latent means (x, y in clusters.csv)");
  cluster->add_option("--tsne-max", o.tsne_max, "t-SNE of at most this many users (a random subsample beyond)")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 40));
  cluster->add_option("--perplexity", o.perplexity, "t-SNE perplexity")->check(CLI::PositiveNumber);
  app.require_subcommand(0, 1);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "vae_gpu: " << e.what() << "\nRun with --help for usage.\n";
    return 2;
  }

  try {
    if (info->parsed()) return run_info_cmd(o);
    if (train->parsed()) return run_train(o, false);
    if (recommend->parsed()) {
      o.ratings_given = recommend->get_option("--ratings")->count() > 0;
      return run_recommend(o);
    }
    if (embed->parsed()) return run_embed(o);
    if (cluster->parsed()) return run_cluster(o);
    return run_train(o, true);
  } catch (const UsageError& e) {
    std::cerr << "vae_gpu: " << e.what() << "\n";
    return 2;
  } catch (const DataError& e) {
    std::cerr << "vae_gpu: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "vae_gpu: error: " << e.what() << "\n";
    return 1;
  }
}
