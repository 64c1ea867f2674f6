// `vae_gpu compare`: the model list, the table and CSV, and end to end that every model is
// trained on the very split a lone `train` run uses.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <regex>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "core/error.h"
#include "train/compare.h"
#include "train/stats.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace vae;

TrainResult result(const std::string& model, std::vector<std::pair<std::string, double>> metrics, int epoch,
                   const std::string& selection) {
  TrainResult r;
  r.model = model;
  r.metrics = std::move(metrics);
  r.best_epoch = epoch;
  r.epoch_selection = selection;
  r.epoch_seconds_median = 0.25;
  r.train_seconds = 1.5;
  r.num_params = selection.empty() ? 0 : 1234;
  return r;
}

using cli_test::parse_csv;

TEST(Compare, ModelListsAreReadAndCheckedUpFront) {
  EXPECT_EQ(parse_model_list("vae"), std::vector<std::string>{"vae"});
  EXPECT_EQ(parse_model_list(" MultVAE, ease ,popularity"), (std::vector<std::string>{"multvae", "ease", "popularity"}));
  auto refused = [](const std::string& list, const std::string& why) {
    try {
      parse_model_list(list);
      ADD_FAILURE() << "accepted '" << list << "'";
    } catch (const UsageError& e) {
      EXPECT_THAT(e.what(), HasSubstr(why)) << list;
    }
  };
  refused("vae,gpt", "unknown model 'gpt'");
  refused("vae,ease,vae", "vae is named twice");
  refused("vae,,ease", "empty entry");
  refused("vae,", "empty entry");
  refused("", "empty");
  refused(" , ", "empty entry");
}

// Each protocol's default list holds only models that run under it.
TEST(Compare, DefaultListsFitTheirProtocols) {
  for (const std::string protocol : {"seed", "heldout", "ratings"}) {
    const std::vector<std::string> models = default_compare_models(protocol);
    EXPECT_GE(models.size(), 4u) << protocol;
    for (const std::string& m : models) {
      TrainOptions t;
      t.protocol = protocol;
      t.model.kind = m;
      EXPECT_NO_THROW(resolve_defaults(t)) << m << " under " << protocol;
    }
  }
  // The rating predictors lead the ratings list; the item rankers are not in it.
  const auto ratings = default_compare_models("ratings");
  EXPECT_EQ(std::count(ratings.begin(), ratings.end(), "svd"), 1);
  EXPECT_EQ(std::count(ratings.begin(), ratings.end(), "ease"), 0);
}

TEST(Compare, TableMarksTheBestOfEachColumnAndTies) {
  std::vector<TrainResult> rs;
  rs.push_back(result("vae", {{"ndcg@20", 0.30}, {"rmse", 2.5}}, 20, "last"));
  rs.push_back(result("multvae", {{"ndcg@20", 0.41}, {"rmse", 2.7}}, 12, "validation"));
  rs.push_back(result("ease", {{"ndcg@20", 0.41}, {"rmse", 2.4}, {"mae", 1.9}}, 0, ""));
  EXPECT_EQ(compare_metric_names(rs), (std::vector<std::string>{"ndcg@20", "rmse", "mae"}));
  EXPECT_TRUE(lower_is_better("rmse"));
  EXPECT_TRUE(lower_is_better("mae_std"));
  EXPECT_FALSE(lower_is_better("ndcg@20"));
  EXPECT_FALSE(lower_is_better("recall@100"));
  const std::string t = format_compare_table(rs);
  std::vector<std::string> lines;
  std::istringstream in(t);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u) << t;
  EXPECT_THAT(lines[0], HasSubstr("model"));
  EXPECT_THAT(lines[0], HasSubstr("s/epoch"));
  // ndcg: the two 0.41 tie and both carry the mark; rmse: the lowest (EASE's 2.4) does.
  EXPECT_THAT(lines[1], HasSubstr("0.3000 "));
  EXPECT_THAT(lines[1], HasSubstr("2.5000 "));
  EXPECT_THAT(lines[2], HasSubstr("0.4100*"));
  EXPECT_THAT(lines[2], HasSubstr("2.7000 "));
  EXPECT_THAT(lines[3], HasSubstr("0.4100*"));
  EXPECT_THAT(lines[3], HasSubstr("2.4000*"));
  EXPECT_THAT(lines[3], HasSubstr("1.9000*"));
  // A metric a model lacks, and the epoch columns of a model that has no epochs, read "-".
  EXPECT_THAT(lines[1], HasSubstr(" - "));
  EXPECT_THAT(lines[3], HasSubstr("     -        -     1.50"));
  EXPECT_THAT(lines[2], HasSubstr("   12    0.250     1.50"));
  // Every line is as wide as the header, so the columns line up.
  for (const std::string& l : lines) EXPECT_EQ(l.size(), lines[0].size()) << "\n" << t;
}

TEST(Compare, CsvHoldsEveryDigitAndLeavesAbsentValuesEmpty) {
  std::vector<TrainResult> rs;
  rs.push_back(result("autorec", {{"rmse", 0.1 + 0.2}}, 3, "last"));
  rs.push_back(result("popularity", {{"rmse", 1.0 / 3.0}, {"mae", 0.75}}, 0, ""));
  const auto rows = parse_csv(compare_csv(rs));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].at("model"), "autorec");
  EXPECT_EQ(std::strtod(rows[0].at("rmse").c_str(), nullptr), 0.1 + 0.2);  // round-trips exactly
  EXPECT_EQ(rows[0].at("mae"), "");
  EXPECT_EQ(rows[0].at("epoch"), "3");
  EXPECT_EQ(rows[0].at("num_params"), "1234");
  EXPECT_EQ(std::strtod(rows[1].at("rmse").c_str(), nullptr), 1.0 / 3.0);
  EXPECT_EQ(rows[1].at("epoch"), "");
  EXPECT_EQ(rows[1].at("epoch_seconds_median"), "");
  EXPECT_EQ(rows[1].at("train_seconds"), "1.5");
  EXPECT_EQ(rows[1].at("num_params"), "");
  EXPECT_EQ(rows[0].count("rmse_ci95"), 0u);  // RMSE is over ratings: no per-user interval

  // Per-user metrics add their interval's half-width beside the other columns.
  rs[1].user_metrics = {{"mae", {0.5, 1.0}}};
  const auto with_ci = parse_csv(compare_csv(rs));
  EXPECT_EQ(with_ci[0].at("mae_ci95"), "");
  EXPECT_EQ(std::strtod(with_ci[1].at("mae_ci95").c_str(), nullptr), mean_ci95({0.5, 1.0}).half);
}

// ---- end to end ------------------------------------------------------------------------------

using cli_test::CmdResult;
using cli_test::run_cli;

const char* kData = "--data synthetic:users=160,items=240,ratings=6000,groups=4,seed=5 --device cpu";

using cli_test::read_json;
using cli_test::read_text;

fs::path temp_dir(const std::string& name) { return cli_test::fresh_dir("compare_" + name); }

// Each model of a comparison gets exactly the metrics a lone `train` of it gets: same split,
// same seed, nothing carried over from the model before it.
TEST(Compare, EveryModelMatchesItsOwnTrainRun) {
  const fs::path d = temp_dir("e2e");
  const CmdResult c = run_cli(std::string("compare --models cdae,popularity,vae --epochs 2 --seed 7 ") + kData +
                              " --out " + (d / "cmp").string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("[1/3] cdae"));
  EXPECT_THAT(c.out, HasSubstr("[3/3] vae"));
  EXPECT_THAT(c.out, HasSubstr("Models compared on the seed protocol"));
  const auto rows = parse_csv(read_text(d / "cmp" / "compare.csv"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].at("model"), "cdae");
  EXPECT_EQ(rows[1].at("model"), "popularity");
  EXPECT_EQ(rows[2].at("model"), "vae");
  for (const auto& row : rows) {
    const std::string m = row.at("model");
    const fs::path lone = d / ("train_" + m);
    const CmdResult t = run_cli("train --model " + m + " --epochs 2 --seed 7 " + kData + " --out " + lone.string());
    ASSERT_EQ(t.code, 0) << t.out;
    const nlohmann::json want = read_json(lone / "summary.json");
    const nlohmann::json got = read_json(d / "cmp" / m / "summary.json");
    EXPECT_EQ(got["metrics"], want["metrics"]) << m;
    ASSERT_FALSE(want["metrics"].empty());
    for (const auto& [key, value] : want["metrics"].items())
      EXPECT_EQ(std::strtod(row.at(key).c_str(), nullptr), value.get<double>()) << m << " " << key;
    ASSERT_FALSE(want["metrics_ci95"].empty()) << m;
    for (const auto& [key, value] : want["metrics_ci95"].items())
      EXPECT_EQ(std::strtod(row.at(key + "_ci95").c_str(), nullptr), value.get<double>()) << m << " " << key;
  }
  EXPECT_EQ(rows[0].at("epoch"), "2");
  EXPECT_EQ(rows[1].at("epoch"), "");
  // The picture: one bar per model in every metric's panel and in the time panel.
  const std::string svg = read_text(d / "cmp" / "compare.svg");
  size_t metrics = rows[0].size() - 5;  // model, epoch, epoch_seconds_median, train_seconds, num_params
  for (const auto& kv : rows[0])
    if (kv.first.size() > 5 && kv.first.compare(kv.first.size() - 5, 5, "_ci95") == 0) --metrics;  // intervals
  size_t bars = 0;
  for (size_t p = svg.find("<rect class=\"bar"); p != std::string::npos; p = svg.find("<rect class=\"bar", p + 1)) ++bars;
  EXPECT_EQ(bars, 3 * (metrics + 1));
  EXPECT_THAT(svg, HasSubstr("ndcg@20 (higher is better)"));
  EXPECT_THAT(svg, HasSubstr("rmse (lower is better)"));
}

TEST(Compare, RatingsProtocolComparesTheRatingPredictors) {
  const CmdResult c = run_cli(std::string("compare --protocol ratings --models svd,autorec,popularity --epochs 2 ") + kData);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("Models compared on the ratings protocol (random 90/10"));
  EXPECT_THAT(c.out, ::testing::ContainsRegex("svd +[0-9.]+\\*? +[0-9.]+"));
  EXPECT_THAT(c.out, ::testing::Not(HasSubstr("was evaluated on")));  // one split for all three
  // RMSE differences paired by user: SVD (its own evaluation) and the autoencoder's evaluator
  // pair up, so both have rows under whichever is best.
  EXPECT_THAT(c.out, ::testing::ContainsRegex("Differences in rmse from the best \\((svd|autorec|popularity)\\) over the "
                                              "[0-9]+ test ratings of [0-9]+ users, with a 95% interval paired by user:"));
  int listed = 0;
  for (const char* m : {"svd", "autorec", "popularity"})
    listed += std::regex_search(c.out, std::regex(std::string("\n  ") + m + " +[-+][0-9.]+ \xc2\xb1 [0-9.]+"));
  EXPECT_EQ(listed, 2) << c.out;  // everyone but the best
  // One --epochs serves every model: where it moves SVD off its 20, a note says so.
  EXPECT_THAT(c.out, HasSubstr("note: --epochs 2 applies to every model here, svd included (their own default is 20 "
                               "SGD epochs"));
}

TEST(Compare, ModelsThatCannotRunAreRefusedBeforeAnyTraining) {
  const CmdResult a = run_cli(std::string("compare --models vae,svd --epochs 1 ") + kData);
  EXPECT_EQ(a.code, 2);
  EXPECT_THAT(a.out, HasSubstr("svd predicts ratings: use --protocol ratings (or leave svd out of --models)"));
  EXPECT_THAT(a.out, ::testing::Not(HasSubstr("[1/2]")));
  const CmdResult b = run_cli(std::string("compare --model vae ") + kData);
  EXPECT_EQ(b.code, 2);
  EXPECT_THAT(b.out, HasSubstr("not --model"));
  const CmdResult e = run_cli(std::string("compare --models vae,nope ") + kData);
  EXPECT_EQ(e.code, 2);
  EXPECT_THAT(e.out, HasSubstr("unknown model 'nope'"));
  const CmdResult f = run_cli(std::string("compare --protocol ratings --models svd --folds 3 ") + kData);
  EXPECT_EQ(f.code, 2);
  EXPECT_THAT(f.out, HasSubstr("--folds"));
  const CmdResult g = run_cli(std::string("compare --models \"\" ") + kData);  // not "the defaults"
  EXPECT_EQ(g.code, 2);
  EXPECT_THAT(g.out, HasSubstr("--models is empty"));
  const CmdResult h = run_cli(std::string("compare --models cdae,multvae --loss masked ") + kData);
  EXPECT_EQ(h.code, 2);
  EXPECT_THAT(h.out, HasSubstr("--loss masked is AutoRec's and no compared model is one"));
  const CmdResult k = run_cli(std::string("compare --protocol ratings --models autorec,svd --svd-blocks 4 ") + kData);
  EXPECT_EQ(k.code, 2);
  EXPECT_THAT(k.out, HasSubstr("--svd-blocks belongs to the blocked schedule"));
  for (const CmdResult* r : {&a, &b, &e, &f, &g, &h, &k}) EXPECT_THAT(r->out, ::testing::Not(HasSubstr("[1/")));
}

// --loss goes to the family whose loss it names; the other family keeps its default.
TEST(Compare, LossGoesToTheFamilyItNames) {
  const fs::path d = temp_dir("loss");
  const CmdResult c = run_cli(std::string("compare --models autorec,cdae --loss mse --epochs 1 ") + kData + " --out " +
                              d.string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("note: --loss mse is CDAE's; autorec keeps its default loss"));
  for (const std::string m : {"autorec", "cdae"}) {
    const CmdResult t = run_cli("train --model " + m + (m == "cdae" ? " --loss mse" : "") + " --epochs 1 " + kData +
                                " --out " + (d / ("lone_" + m)).string());
    ASSERT_EQ(t.code, 0) << t.out;
    EXPECT_EQ(read_json(d / m / "summary.json")["metrics"], read_json(d / ("lone_" + m) / "summary.json")["metrics"]) << m;
  }
}

// Only rating predictors named: the ratings protocol, as train picks it for each of them.
TEST(Compare, RatingPredictorsAloneDefaultToTheRatingsProtocol) {
  const CmdResult c = run_cli(std::string("compare --models svd,i-autorec --epochs 1 ") + kData);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("Models compared on the ratings protocol"));
}

// The footnote says how the shown epochs were picked: --patience picks on the test data.
TEST(Compare, TheFootnoteSaysHowEachEpochWasPicked) {
  const CmdResult a = run_cli(std::string("compare --models cdae,popularity --epochs 2 ") + kData);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_THAT(a.out, HasSubstr("; epoch: the last trained\n"));
  const CmdResult b = run_cli(std::string("compare --models cdae --epochs 3 --patience 1 ") + kData);
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_THAT(b.out, HasSubstr("; epoch: the best on the test users (--patience)\n"));
  const CmdResult c = run_cli(std::string("compare --protocol heldout --models multvae --epochs 2 ") + kData);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("; epoch: the best on the validation users\n"));
  EXPECT_THAT(c.out, Not(HasSubstr("(RMSE, MAE: the lowest)")));  // no RMSE column under heldout
  // The best epoch being the last says that training stopped while validation improved.
  const bool last = c.out.find("Best epoch 2 (on the validation users") != std::string::npos;
  EXPECT_NE(last || c.out.find("Best epoch 1 (on the validation users)") != std::string::npos, false) << c.out;
  EXPECT_EQ(c.out.find("; the last one: validation was still improving, more --epochs may help)") != std::string::npos,
            last)
      << c.out;
  const CmdResult e = run_cli(std::string("compare --models ease,popularity ") + kData);
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("(RMSE, MAE: the lowest)\n"));
}

// A model that fails while being built or trained (here: a memory plan no machine meets) costs
// its own row only; the run reports it, keeps the others' results and exits 1.
TEST(Compare, AFailingModelCostsOnlyItsOwnRow) {
  const fs::path d = temp_dir("fail");
  const CmdResult c = run_cli("compare --models popularity,multvae --hidden 1048576 --epochs 1 --device cpu "
                              "--data synthetic:users=100,items=60000,ratings=3000 --out " + d.string());
  EXPECT_EQ(c.code, 1) << c.out;
  EXPECT_THAT(c.out, HasSubstr("failed: multvae: memory plan"));
  EXPECT_THAT(c.out, HasSubstr("going on with the other models"));
  const auto rows = parse_csv(read_text(d / "compare.csv"));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].at("model"), "popularity");
  EXPECT_FALSE(fs::exists(d / "multvae" / "summary.json"));
  const CmdResult all = run_cli("compare --models multvae --hidden 1048576 --epochs 1 --device cpu "
                                "--data synthetic:users=100,items=60000,ratings=3000");
  EXPECT_EQ(all.code, 1);
  EXPECT_THAT(all.out, HasSubstr("every model failed"));
}

// Without a GPU, --device cuda is refused before the first model trains (with one, it runs).
TEST(Compare, AMissingGpuIsRefusedBeforeAnyModelTrains) {
  const CmdResult c = run_cli("compare --models popularity,vae --epochs 1 --device cuda "
                              "--data synthetic:users=50,items=60,ratings=900");
  if (c.code == 0) {
    EXPECT_THAT(c.out, HasSubstr("; cuda)"));
    return;
  }
  EXPECT_EQ(c.code, 1) << c.out;
  EXPECT_THAT(c.out, HasSubstr("--device cuda"));
  EXPECT_THAT(c.out, ::testing::Not(HasSubstr("[1/2]")));
}

// A flag no compared model reads is noted; one that some model reads is not.
TEST(Compare, FlagsNoComparedModelReadsAreNoted) {
  const CmdResult c =
      run_cli(std::string("compare --models vae,popularity --epochs 1 --dropout 0.3 --beta 0.5 ") + kData);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("note: --dropout is ignored by vae, popularity"));
  EXPECT_THAT(c.out, ::testing::Not(HasSubstr("--beta is ignored")));
}

// Rerun into the same directory with fewer models: the dropped models' files go, the rest stay;
// files no compare wrote (a main job's popularity/) are left alone.
TEST(Compare, ADroppedModelLeavesNoStaleFiles) {
  const fs::path d = temp_dir("stale");
  const fs::path other = temp_dir("stale_other");
  ASSERT_EQ(run_cli(std::string("--epochs 1 --no-tsne ") + kData + " --out " + other.string()).code, 0);
  ASSERT_TRUE(fs::exists(other / "popularity" / "summary.json"));
  ASSERT_EQ(run_cli(std::string("compare --models ease ") + kData + " --out " + other.string()).code, 0);
  EXPECT_TRUE(fs::exists(other / "popularity" / "summary.json"));
  ASSERT_EQ(run_cli(std::string("compare --models ease,popularity ") + kData + " --out " + d.string()).code, 0);
  ASSERT_TRUE(fs::exists(d / "ease" / "summary.json"));
  const CmdResult c = run_cli(std::string("compare --models popularity ") + kData + " --out " + d.string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_FALSE(fs::exists(d / "ease" / "summary.json"));
  EXPECT_FALSE(fs::exists(d / "ease" / "metrics.csv"));
  EXPECT_FALSE(fs::exists(d / "ease"));  // the folder it emptied goes too
  EXPECT_TRUE(fs::exists(d / "popularity" / "summary.json"));
  EXPECT_EQ(parse_csv(read_text(d / "compare.csv")).size(), 1u);
}

// --sweep: parsed and checked like the flag it sweeps, before anything runs.
TEST(CompareSweep, SpecsAreReadAndCheckedLikeTheirFlags) {
  Sweep sw = parse_sweep("beta=1, 0.001,1e-4");
  EXPECT_EQ(sw.name, "beta");
  EXPECT_EQ(sw.values, (std::vector<std::string>{"1", "0.001", "1e-4"}));
  EXPECT_EQ(parse_sweep("--latent=8,16").name, "latent");
  auto message = [](const std::string& spec) {
    try {
      parse_sweep(spec);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(message("beta"), HasSubstr("write NAME=V1,V2,..."));
  EXPECT_THAT(message("colour=1,2"), HasSubstr("unknown option 'colour' (one of beta, lr,"));
  EXPECT_THAT(message("beta=1"), HasSubstr("give at least two values"));
  EXPECT_THAT(message("beta=1,1.0"), HasSubstr("1.0 is given twice"));
  EXPECT_THAT(message("beta=1,,2"), HasSubstr("an empty value"));
  EXPECT_THAT(message("beta=1,2,"), HasSubstr("an empty value at the end"));
  EXPECT_THAT(message("beta=1,x"), HasSubstr("'x' is not a decimal number"));
  EXPECT_THAT(message("beta=1,0x10"), HasSubstr("'0x10' is not a decimal number"));
  EXPECT_THAT(message("beta=1,nan"), HasSubstr("'nan' is not a decimal number"));
  EXPECT_THAT(message("beta=1,-2"), HasSubstr("-2 is out of range (must be >= 0)"));
  EXPECT_THAT(message("lr=0,0.1"), HasSubstr("0 is out of range (must be > 0)"));  // 0 would mean the default
  EXPECT_THAT(message("latent=8,2.5"), HasSubstr("'2.5' is not a whole number"));
  EXPECT_THAT(message("dropout=0.5,1"), HasSubstr("1 is out of range (from 0 to 0.99)"));
  EXPECT_THAT(message("epochs=1,100001"), HasSubstr("100001 is out of range (from 1 to 100000)"));
}

TEST(CompareSweep, EachOptionGoesToTheModelsThatReadIt) {
  EXPECT_TRUE(sweep_applies("beta", "vae"));
  EXPECT_TRUE(sweep_applies("beta", "multvae"));
  EXPECT_FALSE(sweep_applies("beta", "cdae"));
  EXPECT_TRUE(sweep_applies("dropout", "cdae"));
  EXPECT_FALSE(sweep_applies("dropout", "vae"));
  EXPECT_FALSE(sweep_applies("hidden", "vae"));  // fixed layers
  EXPECT_TRUE(sweep_applies("hidden", "svd"));   // its factors
  EXPECT_FALSE(sweep_applies("lr", "ease"));
  EXPECT_TRUE(sweep_applies("ease-lambda", "ease"));
  EXPECT_FALSE(sweep_applies("batch-size", "svdpp"));
  for (const std::string& n : sweep_names()) {
    EXPECT_FALSE(sweep_applies(n, "popularity")) << n;
    TrainOptions t;
    apply_sweep(n, "3", t);  // every listed option has a destination
  }
  TrainOptions t;
  apply_sweep("beta", "0.25", t);
  apply_sweep("batch-size", "32", t);
  apply_sweep("ease-lambda", "150", t);
  EXPECT_EQ(t.model.beta, 0.25);
  EXPECT_EQ(t.batch_size, 32);
  EXPECT_EQ(t.ease_lambda, 150);
  EXPECT_EQ(sweep_label("vae", "beta", "0.001"), "vae_beta=0.001");
  EXPECT_TRUE(is_compare_label("vae_beta=0.001"));
  EXPECT_TRUE(is_compare_label("ease"));
  EXPECT_FALSE(is_compare_label("vae_beta=../x"));
  EXPECT_FALSE(is_compare_label("notes"));
  EXPECT_FALSE(is_compare_label("vae_colour=1"));
  // Grid rows: one _NAME=VALUE part per option.
  EXPECT_EQ(sweep_label("multvae", {{"beta", "0.2"}, {"dropout", "0.5"}}), "multvae_beta=0.2_dropout=0.5");
  EXPECT_TRUE(is_compare_label("multvae_beta=0.2_dropout=0.5"));
  EXPECT_TRUE(is_compare_label("cdae_batch-size=32_weight-decay=1e-5"));
  EXPECT_FALSE(is_compare_label("multvae_beta=0.2_colour=1"));
  EXPECT_FALSE(is_compare_label("multvae_beta=0.2_"));
  EXPECT_FALSE(is_compare_label("multvae_beta=0.2_dropout=../x"));
  EXPECT_FALSE(is_compare_label("vae_beta=."));  // not numbers
  EXPECT_FALSE(is_compare_label("vae_beta=e"));
  EXPECT_FALSE(is_compare_label("multvae_beta=1_beta=2"));  // an option twice
}

// Each swept row is exactly a lone `train` with that value; a model that does not read the
// option runs once; a later sweep into the same directory removes the rows it no longer has.
TEST(CompareSweep, EachSweptRowIsItsOwnTrainRun) {
  const fs::path d = temp_dir("sweep");
  const CmdResult c = run_cli(std::string("compare --models vae,popularity --sweep beta=1,0.0001 --epochs 2 --seed 3 ") +
                              kData + " --out " + (d / "cmp").string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("note: --sweep beta: popularity runs once, as a reference (not reading --beta)"));
  EXPECT_THAT(c.out, HasSubstr("[1/3] vae_beta=1\n"));
  EXPECT_THAT(c.out, HasSubstr("[2/3] vae_beta=0.0001\n"));
  EXPECT_THAT(c.out, HasSubstr("\nvae_beta=0.0001 "));
  const auto rows = parse_csv(read_text(d / "cmp" / "compare.csv"));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].at("model"), "vae_beta=1");
  EXPECT_EQ(rows[1].at("model"), "vae_beta=0.0001");
  EXPECT_EQ(rows[2].at("model"), "popularity");
  for (const char* beta : {"1", "0.0001"}) {
    const fs::path lone = d / (std::string("train_") + beta);
    const CmdResult t = run_cli(std::string("train --model vae --beta ") + beta + " --epochs 2 --seed 3 " + kData +
                                " --out " + lone.string());
    ASSERT_EQ(t.code, 0) << t.out;
    const nlohmann::json want = read_json(lone / "summary.json");
    const nlohmann::json got = read_json(d / "cmp" / (std::string("vae_beta=") + beta) / "summary.json");
    EXPECT_EQ(got["metrics"], want["metrics"]) << beta;
    EXPECT_EQ(got["model"], "vae");
    EXPECT_EQ(got["config"]["beta"].get<double>(), std::stod(beta));  // the settings are recorded
  }
  EXPECT_NE(rows[0].at("ndcg@20"), rows[1].at("ndcg@20"));  // the value was really applied
  std::ofstream(d / "cmp" / "vae_beta=1" / "mine.txt") << "a user's own notes\n";
  const CmdResult again = run_cli(std::string("compare --models vae,popularity --sweep beta=0.5,0.25 --epochs 1 ") +
                                  kData + " --out " + (d / "cmp").string());
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_FALSE(fs::exists(d / "cmp" / "vae_beta=0.0001"));  // its files and the emptied folder
  EXPECT_FALSE(fs::exists(d / "cmp" / "vae_beta=1" / "summary.json"));
  EXPECT_TRUE(fs::exists(d / "cmp" / "vae_beta=1" / "mine.txt"));  // a folder with other files stays
  EXPECT_TRUE(fs::exists(d / "cmp" / "vae_beta=0.5" / "summary.json"));
  EXPECT_TRUE(fs::exists(d / "cmp" / "popularity" / "summary.json"));
  // Mult-VAE's row for β = 1 trains with β = 1, not with the default annealed 0.2.
  const CmdResult mv = run_cli(std::string("compare --models multvae --sweep beta=1,0.5 --epochs 1 ") + kData +
                               " --out " + (d / "mv").string());
  ASSERT_EQ(mv.code, 0) << mv.out;
  const nlohmann::json one = read_json(d / "mv" / "multvae_beta=1" / "summary.json");
  EXPECT_EQ(one["config"]["beta"].get<double>(), 1.0);
  EXPECT_EQ(one["config"]["anneal_steps"].get<int64_t>(), 0);
}

// Two --sweep flags: a grid over the options each model reads, the last varying fastest; every
// cell is a lone `train` with both values; a model reading one of them varies that one alone.
TEST(CompareSweep, TwoSweepsMakeAGrid) {
  const fs::path d = temp_dir("grid");
  const CmdResult c = run_cli(std::string("compare --models multvae,cdae --sweep dropout=0.2,0.6 --sweep beta=0.1,0.4 "
                                          "--epochs 2 --seed 4 ") + kData + " --out " + (d / "cmp").string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("note: --sweep: cdae reads only dropout; its rows vary that alone"));
  const auto rows = parse_csv(read_text(d / "cmp" / "compare.csv"));
  std::vector<std::string> names;
  for (const auto& r : rows) names.push_back(r.at("model"));
  EXPECT_EQ(names, (std::vector<std::string>{"multvae_dropout=0.2_beta=0.1", "multvae_dropout=0.2_beta=0.4",
                                             "multvae_dropout=0.6_beta=0.1", "multvae_dropout=0.6_beta=0.4",
                                             "cdae_dropout=0.2", "cdae_dropout=0.6"}));
  const fs::path lone = d / "lone";
  const CmdResult t = run_cli(std::string("train --model multvae --dropout 0.6 --beta 0.1 --epochs 2 --seed 4 ") + kData +
                              " --out " + lone.string());
  ASSERT_EQ(t.code, 0) << t.out;
  const nlohmann::json cell = read_json(d / "cmp" / "multvae_dropout=0.6_beta=0.1" / "summary.json");
  EXPECT_EQ(cell["metrics"], read_json(lone / "summary.json")["metrics"]);
  EXPECT_EQ(cell["config"]["dropout"].get<double>(), 0.6);
  EXPECT_EQ(cell["config"]["beta"].get<double>(), 0.1);
  // A later one-option sweep into the folder takes the grid's rows away.
  const CmdResult after = run_cli(std::string("compare --models multvae --sweep beta=0.1,0.4 --epochs 1 ") + kData +
                                  " --out " + (d / "cmp").string());
  ASSERT_EQ(after.code, 0) << after.out;
  EXPECT_FALSE(fs::exists(d / "cmp" / "multvae_dropout=0.6_beta=0.1"));
  EXPECT_FALSE(fs::exists(d / "cmp" / "cdae_dropout=0.2"));
  EXPECT_TRUE(fs::exists(d / "cmp" / "multvae_beta=0.1" / "summary.json"));
  // One option twice, or swept and set, or two in one flag: refused before anything trains.
  for (const std::string& args : {std::string("compare --models multvae --sweep beta=1,2 --sweep beta=3,4 "),
                                  std::string("compare --models multvae --sweep beta=1,2 dropout=0.1,0.2 "),
                                  std::string("compare --models multvae --sweep beta=1,2 --sweep dropout=0.1,0.2 --dropout 0.3 "),
                                  std::string("compare --models vae --sweep beta=1,2 --sweep dropout=0.1,0.2 ")}) {
    const CmdResult r = run_cli(args + "--epochs 1 " + kData);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("[1/"))) << args;
  }
}

TEST(CompareSweep, SweepsNoModelCanTakeAreRefusedBeforeAnyTraining) {
  for (const std::string& args : {std::string("compare --models ease,popularity --sweep beta=1,2 "),
                                  std::string("compare --sweep beta=1,2 --beta 0.5 "),
                                  std::string("compare --models vae --sweep latent=8,0 "),
                                  std::string("compare --models vae --sweep hidden=8,16 ")}) {
    const CmdResult r = run_cli(args + "--epochs 1 " + kData);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("[1/"))) << args;
  }
  // Unlisted, the defaults that read the option.
  const CmdResult r = run_cli(std::string("compare --sweep dropout=0.2,0.5 --epochs 1 ") + kData);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: --sweep dropout without --models: the default models that read --dropout "
                               "(not vae, autorec, ease, popularity;"));
  EXPECT_THAT(r.out, HasSubstr("[1/4] cdae_dropout=0.2"));
  EXPECT_THAT(r.out, HasSubstr("[4/4] multvae_dropout=0.5"));
}

}  // namespace
