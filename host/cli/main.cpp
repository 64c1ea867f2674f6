// vae_gpu command line: the options (CLI11), their checks and typo hints, the notes on options a
// run ignores, and the choice of command (the commands themselves: cmd_*.cpp).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <regex>
#include <sstream>

#include "analysis/model_file.h"
#include "analysis/recommend.h"
#include "cli/options.h"
#include "core/console_capture.h"
#include "core/temp_files.h"

namespace vae::cli {

void note_ignored_options(const Options& o, const std::vector<std::string>& compared, const std::string& command) {
  auto given = [&](const char* opt) { return o.was_given(opt); };
  // CUDA Graphs capture GPU training steps: on the CPU there are none to capture.
  const bool graph_on_cpu =
      given("--cuda-graph") &&
      (o.device == "cpu" || (o.device == "auto" && !cuda_device_available()));
  if (graph_on_cpu)
    std::cerr << "note: --cuda-graph is ignored on the CPU" << (o.device == "cpu" ? " (--device cpu)" : " (no GPU in use)")
              << "; it applies to training on a GPU\n";
  if (!o.model_file.empty()) {
    std::string ignored;
    for (const char* opt : {"--hidden", "--latent", "--epochs", "--lr", "--batch-size", "--beta", "--anneal-steps",
                            "--dropout", "--lambda", "--loss", "--act-hidden", "--act-out", "--weight-decay",
                            "--patience", "--protocol", "--ease-lambda", "--cuda-graph", "--svd-schedule",
                            "--svd-blocks", "--adamw"})
      if (given(opt) && !(graph_on_cpu && std::string(opt) == "--cuda-graph"))  // that one is noted above
        ignored += std::string(ignored.empty() ? "" : ", ") + opt;
    if (!ignored.empty())
      std::cerr << "note: with --model-file the file's own training settings and split apply; ignored: " << ignored
                << "\n";
    // recommend, similar, embed and cluster evaluate nothing: the evaluation's cut-offs and the
    // split's parameters (the file's own apply, e.g. to --explain's liked items) go unread.
    if (command == "recommend" || command == "similar" || command == "embed" || command == "cluster") {
      std::string unread;
      for (const char* opt : {"--k", "--ks", "--test-fraction", "--threshold", "--leave-last", "--test-from", "--val-from",
                              "--fold"})
        if (given(opt) && !(command == "cluster" && std::string(opt) == "--k"))  // cluster says why, itself
          unread += std::string(unread.empty() ? "" : ", ") + opt;
      if (!unread.empty())
        std::cerr << "note: " << unread << (unread.find(',') == std::string::npos ? " is" : " are")
                  << " ignored: this command evaluates nothing, and the model file's split applies\n";
    }
    return;
  }
  const std::vector<std::string> kinds =
      compared.empty() ? std::vector<std::string>{o.train.model.kind.empty() ? "vae" : o.train.model.kind} : compared;
  const std::string& kind = kinds.front();
  bool svd = is_svd_kind(kind);
  // compare keeps one protocol for all its models; one rating predictor defaults to ratings.
  const bool ratings_default = compared.empty() && !o.protocol_given && ratings_by_default(kind, o.train.folds);
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
      // The notebook VAE's fixed layers refuse --hidden outright (below), so it is not noted here.
      {"--hidden", !among({"popularity", "ease"}), "AutoRec, Mult-VAE, CDAE, SVD and SVD++"},
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
      {"--ks", is_foldin_protocol(protocol), "the heldout, temporal and cutoff protocols"},
      {"--threshold", is_foldin_protocol(protocol), "the heldout, temporal and cutoff protocols"},
      {"--leave-last", protocol == "temporal", "the temporal protocol"},
      {"--test-from", protocol == "cutoff", "the cutoff protocol"},
      {"--val-from", protocol == "cutoff", "the cutoff protocol"},
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
  if ((svd || kind == "autorec" || kind == "i-autorec") && protocol == "ratings" && o.train.folds >= 2 && given("--fold"))
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
  if (given("--adamw") && o.weight_decay == 0 &&
      std::any_of(rules.begin(), rules.end(), [](const Rule& r) { return std::string(r.opt) == "--adamw" && r.applies; }))
    std::cerr << "note: --adamw changes how --weight-decay is applied, and --weight-decay is 0: nothing to decouple; "
                 "give --weight-decay (AdamW's usual 0.01)\n";
}

namespace {

// Options compare refuses (it picks the models and trains each): left out of its help.
bool refused_by_compare(const std::string& opt) { return opt == "--model" || opt == "--model-file" || opt == "--folds"; }

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
        } catch (const std::out_of_range&) {
          // Beyond double's range either way: 1e400, or 1e-320 (a denormal stod refuses).
          const bool tiny = s.find("e-") != std::string::npos || s.find("E-") != std::string::npos;
          return "'" + s + "' is " + (tiny ? "too close to 0 to be stored" : "too large a number");
        } catch (const std::exception&) {
          return "'" + s + "' is not a number";
        }
        if (pos != s.size() || !std::isfinite(v)) return "'" + s + "' is not a finite number";
        if (open ? !(v > lo) : !(v >= lo)) {
          std::ostringstream m;
          m << "must be " << (open ? "> " : ">= ") << lo << ", got " << s;
          return m.str();
        }
        // Rates are kept in float: a positive value below its range would train with 0.
        if (open && lo == 0 && v < std::numeric_limits<float>::min())
          return "'" + s + "' is too close to 0 (a float holds nothing positive below 1.2e-38)";
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

// CLI11's words for an option given twice ("--k: At Most 1 required but received 2") or without
// its value ("--k: 1 required INT:INT in [1 - 1000000] missing") read as counts of required
// values; say what happened instead. Other parse errors keep CLI11's text.
std::string parse_error_text(const CLI::ParseError& e) {
  static const std::regex repeated(R"(^(-[^:]*): At Most 1 required but received ([0-9]+)$)");
  const std::string what = e.what();
  std::smatch m;
  if (std::regex_match(what, m, repeated))
    return m[1].str() + " was given " + m[2].str() + " times; give it once";
  // "--k: 1 required INT:INT in [1 - 1000000] missing": the option came last, without its value.
  static const std::regex missing(R"(^(-[^:]*): [0-9]+ required (.*) missing$)");
  if (std::regex_match(what, m, missing)) {
    const std::string type = m[2].str();
    return m[1].str() + " needs a value (" + type.substr(type.find(':') == std::string::npos ? 0 : type.find(':') + 1) + ")";
  }
  return what;
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
    // A word where a subcommand goes: a misspelt one, `help`, or a second subcommand.
    if (!a.empty() && a[0] != '-' && (i == 1 || std::string(argv[i - 1]).rfind("-", 0) != 0 ||
                                       std::string(argv[i - 1]).find('=') != std::string::npos)) {
      std::string near;
      bool is_sub = false;
      for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
        if (a == sub->get_name()) is_sub = true;
        else if (edit_distance(a, sub->get_name()) <= 2 && near.empty()) near = sub->get_name();
      }
      if (is_sub && seen_sub && a != seen_sub->get_name())
        hints += "hint: one subcommand a run (" + seen_sub->get_name() + " was given first)\n";
      else if (a == "help")
        hints += "hint: vae_gpu --help lists the subcommands; vae_gpu SUBCOMMAND --help gives its options\n";
      else if (!is_sub && !near.empty())
        hints += "hint: " + a + " is not a subcommand; did you mean " + near + "?\n";
      continue;
    }
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

}  // namespace

}  // namespace vae::cli

using namespace vae;
using namespace vae::cli;

namespace {
int run_main(int argc, char** argv);
}

int main(int argc, char** argv) {
  const int rc = run_main(argc, argv);
  // The results went to stdout: a write there that failed (a full disk, /dev/full) makes the
  // run a failed one, said, not a silent success.
  std::cout.flush();
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  const int err = errno;
  if (!std::cout || !flushed || std::ferror(stdout)) {
    std::cerr << "vae_gpu: standard output: write failed" << (err ? std::string(" (") + std::strerror(err) + ")" : "")
              << "; the results printed there are lost\n";
    return rc == 0 ? 1 : rc;
  }
  return rc;
}

namespace {
int run_main(int argc, char** argv) {
  note_standard_streams();         // before anything opens a file: a closed stdout stays closed
  remove_temp_files_on_signals();  // Ctrl-C or `timeout` leave no *.tmp behind
  Options o;
  CLI::App app{"vae_gpu: train, evaluate and explain autoencoder recommenders on MovieLens-style "
               "ratings (GPU when present, CPU otherwise).\nBare `vae_gpu --epochs 20` runs the "
               "notebook VAE, compares it with popularity, lists user 1's top 30 and clusters the users (k = 3)."};
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
  app.add_option("--model", o.train.model.kind, "vae (the default), autorec, i-autorec, multvae, cdae, popularity, ease, svd, svdpp")
      ->transform(CLI::IsMember(std::vector<std::string>(std::begin(kModelKinds), std::end(kModelKinds)), CLI::ignore_case));
  app.add_option("--protocol", o.train.protocol,
                 "seed (the notebooks; the default), heldout (Mult-VAE: unseen users), temporal (each user's latest "
                 "positives held out, by rating time), cutoff (one date for everyone: later ratings held out), "
                 "ratings (RMSE; the default for svd, svdpp, i-autorec)")
      ->transform(CLI::IsMember({"seed", "heldout", "temporal", "cutoff", "ratings"}, CLI::ignore_case));
  app.add_option("--batch-size", o.train.batch_size, "rows per training step: users (items for i-autorec); 0 = model default: 64; Mult-VAE 500")->check(whole_in(0, int64_t{1} << 24));
  // > 0: a rate of 0 would not train (and 0 stands for "the model's default" inside).
  app.add_option("--lr", o.lr, "Adam learning rate (default: 1e-3; CDAE 1e-2); svd/svdpp: SGD rate (0.005 / 0.007)")
      ->check(finite_at_least(0, true))
      ->default_str("model's");
  app.add_option("--weight-decay", o.weight_decay, "Adam weight decay")->check(finite_at_least(0));
  app.add_flag("--adamw", o.adamw, "decoupled weight decay (AdamW) instead of L2");
  app.add_option("--patience", o.train.patience, "early stopping patience in epochs (0 = off)")
      ->check(whole_in(0, 100000));
  app.add_option("--k", o.train.k, "seed protocol ranking cut-off K of NDCG, Recall and Coverage (cluster's number of clusters is its own --k, "
                                   "given after `cluster`)")->check(whole_in(1, 1000000));
  app.add_option("--ks", o.ks, "heldout, temporal and cutoff protocol cut-offs, comma-separated (Coverage at the first)");
  app.add_option("--hidden", o.train.model.hidden, "hidden units (0 = model default: AutoRec 500, 10 with --loss dense; Mult-VAE 600; CDAE 50; not the notebook VAE, whose layers are fixed); svd/svdpp: factors (100 / 20)")->check(whole_in(0, int64_t{1} << 20));
  app.add_option("--latent", o.train.model.latent, "latent size (0 = model default: the notebook VAE 64, Mult-VAE 200)")->check(whole_in(0, int64_t{1} << 20));
  app.add_option("--beta", o.train.model.beta,
                 "KL weight, the final value when annealing (default: the notebook VAE 1; Mult-VAE 0.2, the weight rising by "
                 "1/200 000 a step (1/--anneal-steps) until it reaches 0.2, at step 40 000; a given --beta is constant "
                 "unless --anneal-steps is given)")
      ->check(finite_at_least(0))
      ->default_str("model's");
  app.add_option("--anneal-steps", o.train.model.anneal_steps,
                 "linear KL annealing: the weight is min(beta, step / N) (0 = off, a constant beta; default: Mult-VAE "
                 "200 000 with its default beta, otherwise off)")
      ->check(whole_in(0, int64_t{1} << 40))
      ->default_str("model's");
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
  app.add_option("--threshold", o.train.heldout.threshold,
                 "heldout, temporal and cutoff protocols: rating >= threshold is positive (0: every rating)")
      ->check(finite_at_least(0));
  app.add_option("--leave-last", o.train.leave_last,
                 "temporal protocol: each user's latest N positives are the test target, the N before them the "
                 "validation target (users with fewer than max(5, 2N+1) positives only train)")
      ->check(whole_in(1, 1000000));
  app.add_option("--test-from", o.train.test_from,
                 "cutoff protocol: ratings from this time on are the test targets; a share of the ratings by time "
                 "(0.9: the latest 10 %), a date (YYYY-MM-DD[ HH:MM[:SS]], UTC) or seconds since 1970")
      ->capture_default_str();
  app.add_option("--val-from", o.train.val_from,
                 "cutoff protocol: ratings from this time to --test-from are the validation targets; the model trains "
                 "on those before it (default: as many ratings before --test-from as after it)");
  app.add_option("--fold", o.train.ratings_split, "ratings protocol split: random, 1..5, a, b (ml-100k files)")
      ->transform(CLI::IsMember(ratings_split_names(), CLI::ignore_case));
  app.add_option("--folds", o.train.folds, "ratings protocol: k-fold cross-validation, RMSE and MAE mean ± std (svd, svdpp, autorec, i-autorec)")
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
                 "first layer reads CSR batches instead of dense rows: auto (many items or a sparse matrix), on, off (under --precision exact the same sums as dense rows, in double, rounded once)")
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
  CLI::App* info = app.add_subcommand("info", "dataset summary (and the --model-file's metadata); reads only --data and "
                                                "--model-file: other options are ignored, with a note");
  CLI::App* recommend = app.add_subcommand("recommend", "top-N recommendations for a user, new ratings or every user "
                                                      "(--model-file M, or trains first with the usual flags)");
  recommend->fallthrough();
  recommend->add_option("--user", o.user, "original user id");
  recommend->add_option("--top", o.top, "list length")->check(whole_in(1, 1000000));
  recommend->add_flag("--include-rated", o.include_rated, "allow items the user already rated");
  recommend->add_option("--ratings", o.ratings,
                        "fold in a new user's ratings: \"item_id:rating,...\" (original ids), or a file of them "
                        "(@FILE, or a FILE that exists: CSV lines item_id,rating, a header allowed, whose movieId and "
                        "rating columns are used when it names them). svd/svdpp: b_u and p_u "
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
                                              "(vae, multvae; svd: the user vectors p_u; svdpp: p_u + |N(u)|^-1/2 sum of y_j, the vector its "
                                              "estimates use; --model-file M, or trains first)");
  embed->fallthrough();
  embed->add_flag("--sample", o.sample, "a sampled z = mu + eps * sigma instead of mu");
  embed->add_flag("--logvar", o.logvar, "also write logvar.npy");
  CLI::App* cluster = app.add_subcommand("cluster", "K-Means of the users' latent means (vae, multvae; svd: the user vectors p_u; svdpp: p_u with its implicit term), cluster profiles, t-SNE; --out DIR "
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
                      "comma-separated models (default: seed, heldout, temporal and cutoff protocols vae,autorec,cdae,multvae,ease,"
                      "popularity; ratings autorec,i-autorec,svd,svdpp,popularity); each model's own defaults apply "
                      "unless a flag sets them for all");
  compare->add_option("--sweep", o.sweeps,
                      "one training option at several values, NAME=V1,V2,... (NAME: beta, lr, latent, hidden, dropout, "
                      "lambda, batch-size, anneal-steps, weight-decay, epochs, ease-lambda; or precision=exact,fp32,tf32,bf16): "
                      "each model that reads it "
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
    std::cerr << "vae_gpu: " << parse_error_text(e) << "\n" << option_hints(app, argc, argv) << "Run with --help for usage.\n";
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
  o.train.notes = &std::cerr;  // stdout holds the results: epoch lines, tables, lists
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
    // Only train and the main job evaluate a --model-file.
    if (!info->parsed())
      note_ignored_options(o, {},
                           recommend->parsed() ? "recommend"
                           : similar->parsed() ? "similar"
                           : embed->parsed()   ? "embed"
                           : cluster->parsed() ? "cluster"
                                               : "");
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
    remove_created_dirs_if_empty();
    std::cerr << "vae_gpu: " << e.what() << "\n";
    return 2;
  } catch (const DataError& e) {
    remove_created_dirs_if_empty();
    std::cerr << "vae_gpu: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    remove_created_dirs_if_empty();
    // What to reduce depends on the model: SVD has no batch and no latent layer.
    const bool svd = is_svd_kind(o.train.model.kind);
    std::cerr << "vae_gpu: out of host memory: "
              << (svd ? "fewer factors (--hidden)" : "reduce --batch-size or the model (--hidden; --latent for the VAEs)")
              << ", or use a smaller data set\n";
    return 1;
  } catch (const std::exception& e) {
    remove_created_dirs_if_empty();
    std::cerr << "vae_gpu: error: " << e.what() << "\n";
    return 1;
  }
}
}  // namespace
