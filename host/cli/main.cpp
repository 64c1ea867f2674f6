// vae_gpu command line: the notebook run (bare `vae_gpu --epochs 20`), `train`, `info`.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "backend/backend.h"
#include "data/dataset.h"
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
  double lr = 1e-3;
  double weight_decay = 0;
  bool adamw = false;
  std::string ks = "20,50,100";
  TrainOptions train;
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

int run_info(const Options& o) {
  const Dataset d = load_data(o);
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

int run_train(Options& o, bool main_job) {
  o.train.adam.lr = o.lr;
  o.train.adam.weight_decay = o.weight_decay;
  o.train.adam.decoupled = o.adamw;
  o.train.ks = parse_int_list(o.ks, "--ks");
  o.train.seed = o.seed;
  o.train.progress_bar = isatty(fileno(stderr)) != 0;
  resolve_defaults(o.train);  // usage errors before any data is loaded
  const Dataset d = load_data(o);
  if (o.train.data_dir.empty()) o.train.data_dir = d.source;
  auto be = make_backend(o);
  std::cerr << "device: " << be->name() << "\n";
  TrainResult r = run_experiment(*be, d, o.train, std::cout);
  std::cout << "Best epoch " << r.best_epoch << "; final metrics on " << r.eval_set << ":";
  for (const auto& kv : r.metrics) std::cout << " " << kv.first << "=" << kv.second;
  std::cout << "\n";
  if (!o.out.empty()) write_run_files(o.out, r);
  if (main_job && !o.no_baseline && o.train.model.kind != "popularity") {
    TrainOptions b = o.train;
    b.model = ModelConfig{};
    b.model.kind = "popularity";
    b.quiet = true;
    TrainResult pop = run_experiment(*be, d, b, std::cout);
    print_comparison(std::cout, r, pop);
    if (!o.out.empty()) write_run_files(o.out + "/popularity", pop);
  }
  if (!o.out.empty()) std::cerr << "wrote " << o.out << "/metrics.csv and summary.json\n";
  return 0;
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
  app.add_option("--model", o.train.model.kind, "vae, autorec, i-autorec, multvae, cdae, popularity, ease")
      ->check(CLI::IsMember({"vae", "autorec", "i-autorec", "multvae", "cdae", "popularity", "ease"}));
  app.add_option("--protocol", o.train.protocol, "seed (the notebooks), heldout (Mult-VAE), ratings (RMSE)")
      ->check(CLI::IsMember({"seed", "heldout", "ratings"}));
  app.add_option("--batch-size", o.train.batch_size, "0 = model default")->check(CLI::Range(0, 1 << 24));
  app.add_option("--lr", o.lr, "Adam learning rate")->check(CLI::PositiveNumber);
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
  app.add_option("--lambda", o.train.model.lambda, "L2 regularisation (AutoRec, CDAE)")->check(CLI::NonNegativeNumber);
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
  app.add_option("--ease-lambda", o.train.ease_lambda, "EASE L2 (0 = grid on validation users)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--tf32", o.tf32, "allow TF32 tensor-core GEMMs on the GPU");
  app.add_flag("--no-baseline", o.no_baseline, "skip the popularity comparison of the main run");
  app.add_flag("--quiet", o.train.quiet, "only the final lines");

  CLI::App* train = app.add_subcommand("train", "train and evaluate one model");
  CLI::App* info = app.add_subcommand("info", "dataset summary");
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
    if (info->parsed()) return run_info(o);
    if (train->parsed()) return run_train(o, false);
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
