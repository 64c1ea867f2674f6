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
  for (const std::string protocol : {"seed", "heldout", "temporal", "ratings"}) {
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
  rs.push_back(result("autorec", {{"ndcg@20", 0.30}, {"rmse", 2.5}}, 20, "last"));
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
  // ndcg: the two 0.41 tie and both carry the mark; rmse: the lowest of the rating predictors
  // (AutoRec's 2.5), not EASE's 2.4, which is of item scores clipped to the scale; so no MAE mark.
  EXPECT_THAT(lines[1], HasSubstr("0.3000 "));
  EXPECT_THAT(lines[1], HasSubstr("2.5000*"));
  EXPECT_THAT(lines[2], HasSubstr("0.4100*"));
  EXPECT_THAT(lines[2], HasSubstr("2.7000 "));
  EXPECT_THAT(lines[3], HasSubstr("0.4100*"));
  EXPECT_THAT(lines[3], HasSubstr("2.4000 "));
  EXPECT_THAT(lines[3], HasSubstr("1.9000 "));
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

// A heldout row as the trainer leaves it: history holds the validation figures per epoch, metrics
// the test users' at the kept epoch.
TrainResult heldout_result(const std::string& label, std::vector<double> val_per_epoch, int best_epoch, double test,
                           std::vector<double> test_per_user) {
  TrainResult r = result("multvae", {{"ndcg@100", test}, {"recall@20", test / 2}}, best_epoch,
                         best_epoch > 0 ? "validation" : "");
  r.label = label;
  r.protocol = "heldout";
  r.selection_metric = "ndcg@100";
  r.eval_set = "4 test users (2 more for validation)";
  for (size_t e = 0; e < val_per_epoch.size(); ++e) {
    EpochRecord rec;
    rec.epoch = best_epoch > 0 ? static_cast<int>(e) + 1 : 0;
    rec.metrics = {{"recall@20", 0.01}, {"ndcg@100", val_per_epoch[e]}};
    r.history.push_back(rec);
  }
  r.user_metrics = {{"ndcg@100", std::move(test_per_user)}};
  return r;
}

// Under heldout the selected row is the best on the VALIDATION users, whatever the test columns
// say; the text says so, and the paired differences are taken from it.
TEST(Compare, HeldoutSelectsTheRowOnValidationNotTest) {
  std::vector<TrainResult> rs;
  // beta=0.1: the best validation figure at its kept epoch (0.40 at epoch 2), the lower test figure.
  rs.push_back(heldout_result("multvae_beta=0.1", {0.30, 0.40, 0.35}, 2, 0.20, {0.1, 0.2, 0.3, 0.2}));
  rs.back().sweep_settings = {{"beta", "0.1"}};
  // beta=0.4: its best epoch's validation figure is lower, its test figure higher.
  rs.push_back(heldout_result("multvae_beta=0.4", {0.38, 0.37}, 1, 0.30, {0.2, 0.3, 0.4, 0.3}));
  rs.back().sweep_settings = {{"beta", "0.4"}};
  // EASE: one evaluation at epoch 0 (its chosen λ).
  TrainResult ease = heldout_result("", {0.25}, 0, 0.25, {0.2, 0.2, 0.3, 0.3});
  ease.model = "ease";
  rs.push_back(std::move(ease));

  EXPECT_EQ(validation_metric(rs), "ndcg@100");
  EXPECT_EQ(validation_value(rs[0], "ndcg@100"), 0.40);
  EXPECT_EQ(validation_value(rs[1], "ndcg@100"), 0.38);
  EXPECT_EQ(validation_value(rs[2], "ndcg@100"), 0.25);
  ASSERT_NE(selected_row(rs), nullptr);
  EXPECT_EQ(row_name(*selected_row(rs)), "multvae_beta=0.1");

  const std::string t = format_compare_table(rs);
  std::vector<std::string> lines;
  std::istringstream in(t);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 4u) << t;
  EXPECT_THAT(lines[0], HasSubstr("val ndcg@100"));
  EXPECT_LT(lines[0].find("val ndcg@100"), lines[0].find(" ndcg@100 ", lines[0].find("val ndcg@100") + 4)) << t;
  EXPECT_THAT(lines[1], HasSubstr("0.4000 "));
  EXPECT_THAT(lines[1], HasSubstr("\xe2\x97\x80 selected"));  // the validation-best row
  EXPECT_THAT(lines[1], HasSubstr("0.2000 "));               // its test figure, not marked
  EXPECT_THAT(lines[2], Not(HasSubstr("selected")));
  EXPECT_THAT(lines[2], HasSubstr("0.3000*"));  // the test column's best is another row
  EXPECT_THAT(lines[3], Not(HasSubstr("selected")));
  EXPECT_THAT(lines[3], HasSubstr("0.2500 "));

  const std::string note = format_selection_note(rs);
  EXPECT_THAT(note, HasSubstr("selected: multvae_beta=0.1, the best val ndcg@100 (0.4000), chosen on the validation "
                              "users; the test figures are reported, not used to choose"));

  // The temporal protocol has validation users too (the same users, an earlier positive): the
  // same choice, made the same way.
  for (TrainResult& r : rs) r.protocol = "temporal";
  EXPECT_EQ(validation_metric(rs), "ndcg@100");
  EXPECT_EQ(validation_value(rs[0], "ndcg@100"), 0.40);
  ASSERT_NE(selected_row(rs), nullptr);
  EXPECT_EQ(row_name(*selected_row(rs)), "multvae_beta=0.1");
  EXPECT_EQ(format_selection_note(rs), note);
  for (TrainResult& r : rs) r.protocol = "heldout";
  EXPECT_THAT(note, HasSubstr("the test ndcg@100 column's * is on multvae_beta=0.4"));

  // The differences are from the selected row, in test figures.
  const std::string diff = format_paired_differences(rs);
  EXPECT_THAT(diff, HasSubstr("Per-user differences in test ndcg@100 from the selected row (multvae_beta=0.1, the best "
                              "val ndcg@100) over the 4 evaluated users"));
  EXPECT_THAT(diff, ::testing::ContainsRegex("\n  multvae_beta=0.4 +\\+0\\.1000"));

  // compare.csv: the old columns first, then val_ndcg@100, selected and the swept option.
  const std::string csv = compare_csv(rs, {"beta"});
  EXPECT_THAT(csv.substr(0, csv.find('\n')),
              HasSubstr(",epoch,epoch_seconds_median,train_seconds,num_params,val_ndcg@100,selected,beta"));
  const auto rows = parse_csv(csv);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(std::strtod(rows[0].at("val_ndcg@100").c_str(), nullptr), 0.40);
  EXPECT_EQ(std::strtod(rows[1].at("val_ndcg@100").c_str(), nullptr), 0.38);
  EXPECT_EQ(std::strtod(rows[2].at("val_ndcg@100").c_str(), nullptr), 0.25);
  EXPECT_EQ(rows[0].at("selected"), "1");
  EXPECT_EQ(rows[1].at("selected"), "0");
  EXPECT_EQ(rows[0].at("beta"), "0.1");
  EXPECT_EQ(rows[1].at("beta"), "0.4");
  EXPECT_EQ(rows[2].at("beta"), "");  // EASE does not read --beta
  EXPECT_EQ(std::strtod(rows[1].at("ndcg@100").c_str(), nullptr), 0.30);  // the test figures stay

  // A swept run that failed: its name and swept value, every figure empty, the same column count.
  const auto with_failed = parse_csv(compare_csv(rs, {"beta"}, {{"multvae_beta=9", {{"beta", "9"}}}}));
  ASSERT_EQ(with_failed.size(), 4u);
  EXPECT_EQ(with_failed[3].size(), with_failed[0].size());
  EXPECT_EQ(with_failed[3].at("model"), "multvae_beta=9");
  EXPECT_EQ(with_failed[3].at("beta"), "9");
  for (const std::string c : {"ndcg@100", "val_ndcg@100", "selected", "epoch", "train_seconds", "num_params"})
    EXPECT_EQ(with_failed[3].at(c), "") << c;

  // Swapped validation figures move the selection with them, not with the test columns.
  rs[1].history[0].metrics[1].second = 0.45;
  EXPECT_EQ(row_name(*selected_row(rs)), "multvae_beta=0.4");
  EXPECT_THAT(format_selection_note(rs), Not(HasSubstr("column's *")));  // test agrees now
}

// Without validation users (seed, ratings) there is no val column and no selection: one line
// says the marks are on the test users.
TEST(Compare, SeedAndRatingsMarksAreSaidToBeOnTheTestUsers) {
  std::vector<TrainResult> rs;
  rs.push_back(result("vae", {{"ndcg@20", 0.30}}, 20, "last"));
  rs.push_back(result("ease", {{"ndcg@20", 0.41}}, 0, ""));
  for (TrainResult& r : rs) {
    r.protocol = "seed";
    r.selection_metric = "ndcg@20";
    EpochRecord rec;
    rec.epoch = r.best_epoch;
    rec.metrics = {{"ndcg@20", 0.5}};
    r.history.push_back(rec);
  }
  EXPECT_EQ(validation_metric(rs), "");
  EXPECT_EQ(selected_row(rs), nullptr);
  EXPECT_TRUE(std::isnan(validation_value(rs[0], "ndcg@20")));
  EXPECT_THAT(format_compare_table(rs), Not(HasSubstr("val ")));
  EXPECT_THAT(format_compare_table(rs), Not(HasSubstr("selected")));
  EXPECT_EQ(format_selection_note(rs),
            "the * marks are the best on the test users (the seed protocol has no validation set): they describe this "
            "split, they select nothing\n");
  const std::string csv = compare_csv(rs);
  EXPECT_THAT(csv, Not(HasSubstr("val_")));
  EXPECT_THAT(csv, Not(HasSubstr("selected")));
  EXPECT_THAT(csv.substr(0, csv.find('\n')), ::testing::EndsWith(",num_params"));
  for (TrainResult& r : rs) r.protocol = "ratings";
  EXPECT_THAT(format_selection_note(rs), HasSubstr("best on the test ratings (the ratings protocol has no validation set)"));
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
  const CmdResult t = run_cli(std::string("compare --protocol temporal --models multvae,popularity --epochs 2 ") + kData);
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_THAT(t.out, HasSubstr("Models compared on the temporal protocol ("));
  EXPECT_THAT(t.out, HasSubstr("; epoch: the best on the validation users\n"));
  // The best epoch being the last says that training stopped while validation improved.
  const bool last = c.out.find("Best epoch 2 (on the validation users") != std::string::npos;
  EXPECT_NE(last || c.out.find("Best epoch 1 (on the validation users)") != std::string::npos, false) << c.out;
  EXPECT_EQ(c.out.find("; the last one: validation was still improving, more --epochs may help)") != std::string::npos,
            last)
      << c.out;
  const CmdResult e = run_cli(std::string("compare --models ease,popularity ") + kData);
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("(RMSE: the lowest among the rating predictors; ease, popularity score items, and "
                               "their RMSE is of those scores clipped to the rating scale)\n"));
  // Under the ratings protocol popularity predicts each item's mean rating: a rating predictor.
  const CmdResult r = run_cli(std::string("compare --protocol ratings --models svd,popularity --epochs 2 ") + kData);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("(RMSE, MAE: the lowest)"));
  EXPECT_THAT(r.out, Not(HasSubstr("score items")));
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
  // compare.csv names the failed model too, on a row without figures.
  const auto rows = parse_csv(read_text(d / "compare.csv"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].at("model"), "popularity");
  EXPECT_FALSE(rows[0].at("ndcg@100").empty());
  EXPECT_EQ(rows[1].at("model"), "multvae");
  EXPECT_EQ(rows[1].size(), rows[0].size());
  for (const auto& [column, value] : rows[1]) {
    if (column != "model") {
      EXPECT_EQ(value, "") << column;
    }
  }
  EXPECT_FALSE(fs::exists(d / "multvae" / "summary.json"));
  // A model that trained into the folder before and fails now keeps its earlier files.
  const std::string small = "--epochs 1 --device cpu --data synthetic:users=100,items=60000,ratings=3000 --out " + d.string();
  ASSERT_EQ(run_cli("compare --models popularity,multvae --hidden 4 --latent 2 " + small).code, 0);
  const std::string before = read_text(d / "multvae" / "summary.json");
  const CmdResult again = run_cli("compare --models popularity,multvae --hidden 1048576 " + small);
  EXPECT_EQ(again.code, 1) << again.out;
  EXPECT_THAT(again.out, HasSubstr("note: multvae failed; " + d.string() + "/multvae/ keeps its earlier compare's files"));
  EXPECT_EQ(read_text(d / "multvae" / "summary.json"), before);
  const auto kept = parse_csv(read_text(d / "compare.csv"));
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[1].at("model"), "multvae");
  EXPECT_EQ(kept[1].at("ndcg@100"), "");
  // A compare that trains it again replaces them.
  ASSERT_EQ(run_cli("compare --models popularity,multvae --hidden 3 --latent 2 " + small).code, 0);
  EXPECT_THAT(read_text(d / "multvae" / "summary.json"), HasSubstr("\"hidden\": 3"));
  EXPECT_EQ(parse_csv(read_text(d / "compare.csv")).size(), 2u);
  // Its row in compare.csv is what lets a later compare without it remove the kept folder.
  ASSERT_EQ(run_cli("compare --models popularity,multvae --hidden 1048576 " + small).code, 1);
  ASSERT_TRUE(fs::exists(d / "multvae" / "summary.json"));
  ASSERT_EQ(run_cli("compare --models popularity " + small).code, 0);
  EXPECT_FALSE(fs::exists(d / "multvae"));
  EXPECT_EQ(parse_csv(read_text(d / "compare.csv")).size(), 1u);
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

// Rerun into the same directory with fewer models: the dropped models' files go, the rest stay.
// A train run's folder is no compare's to fill (nor the reverse): refused, and left as it was.
TEST(Compare, ADroppedModelLeavesNoStaleFiles) {
  const fs::path d = temp_dir("stale");
  const fs::path other = temp_dir("stale_other");
  ASSERT_EQ(run_cli(std::string("--epochs 1 --no-tsne ") + kData + " --out " + other.string()).code, 0);
  ASSERT_TRUE(fs::exists(other / "popularity" / "summary.json"));
  const CmdResult into_train = run_cli(std::string("compare --models ease ") + kData + " --out " + other.string());
  EXPECT_EQ(into_train.code, 2) << into_train.out;
  EXPECT_THAT(into_train.out, HasSubstr("--out " + other.string() + " holds a train run's results (summary.json, "
                                        "model.safetensors): compare writes a folder of its own"));
  EXPECT_TRUE(fs::exists(other / "popularity" / "summary.json"));
  EXPECT_FALSE(fs::exists(other / "ease"));
  ASSERT_EQ(run_cli(std::string("compare --models ease,popularity ") + kData + " --out " + d.string()).code, 0);
  ASSERT_TRUE(fs::exists(d / "ease" / "summary.json"));
  const CmdResult c = run_cli(std::string("compare --models popularity ") + kData + " --out " + d.string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_FALSE(fs::exists(d / "ease" / "summary.json"));
  EXPECT_FALSE(fs::exists(d / "ease" / "metrics.csv"));
  EXPECT_FALSE(fs::exists(d / "ease"));  // the folder it emptied goes too
  EXPECT_TRUE(fs::exists(d / "popularity" / "summary.json"));
  EXPECT_EQ(parse_csv(read_text(d / "compare.csv")).size(), 1u);
  const CmdResult train = run_cli(std::string("--epochs 1 --no-tsne ") + kData + " --out " + d.string());
  EXPECT_EQ(train.code, 2) << train.out;
  EXPECT_THAT(train.out, HasSubstr("holds compare's results (compare.csv and one folder per model)"));
  EXPECT_EQ(parse_csv(read_text(d / "compare.csv")).size(), 1u);
  EXPECT_FALSE(fs::exists(d / "summary.json"));
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
  // precision takes words, the --precision flag's.
  sw = parse_sweep("precision=exact, fp32,bf16");
  EXPECT_EQ(sw.values, (std::vector<std::string>{"exact", "fp32", "bf16"}));
  EXPECT_THAT(message("precision=exact,fp16"), HasSubstr("'fp16' is not one of exact, fp32, tf32, bf16"));
  EXPECT_THAT(message("precision=exact,1"), HasSubstr("'1' is not one of"));
  EXPECT_THAT(message("precision=tf32,tf32"), HasSubstr("tf32 is given twice"));
  EXPECT_THAT(message("precision=tf32"), HasSubstr("give at least two values"));
  EXPECT_THAT(message("beta=1,exact"), HasSubstr("'exact' is not a decimal number"));
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
  EXPECT_TRUE(sweep_applies("precision", "ease"));  // its Gram matrix is a GEMM
  EXPECT_TRUE(sweep_applies("precision", "cdae"));
  EXPECT_FALSE(sweep_applies("precision", "svd"));
  for (const std::string& n : sweep_names()) {
    EXPECT_FALSE(sweep_applies(n, "popularity")) << n;
    TrainOptions t;
    if (n != "precision") apply_sweep(n, "3", t);  // every listed option has a destination
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
  // An option named after its model is not named twice in the row.
  EXPECT_EQ(sweep_label("ease", "ease-lambda", "10"), "ease_lambda=10");
  EXPECT_TRUE(is_compare_label("ease_lambda=10"));
  EXPECT_TRUE(is_compare_label("ease_ease-lambda=10"));  // an earlier compare's row: still cleaned up
  // precision's values are words: those, and no others.
  EXPECT_EQ(sweep_label("multvae", {{"beta", "0.2"}, {"precision", "tf32"}}), "multvae_beta=0.2_precision=tf32");
  EXPECT_TRUE(is_compare_label("multvae_beta=0.2_precision=tf32"));
  EXPECT_TRUE(is_compare_label("vae_precision=exact"));
  EXPECT_FALSE(is_compare_label("vae_precision=fp16"));
  EXPECT_FALSE(is_compare_label("vae_precision=0.5"));
  EXPECT_FALSE(is_compare_label("vae_beta=exact"));
}

// --sweep precision: each row on a backend of its own precision (recorded in its summary.json),
// the others on --precision's; tf32 / bf16 on the CPU are fp32 and said to be; the flag and the
// sweep together are refused.
TEST(CompareSweep, PrecisionRowsRunOnABackendOfTheirOwn) {
  const fs::path d = temp_dir("sweep_precision");
  const CmdResult c = run_cli(std::string("compare --models vae,popularity,ease --sweep precision=exact,fp32,bf16 "
                                          "--epochs 2 ") + kData + " --out " + (d / "cmp").string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("note: --sweep precision: each row multiplies at its own precision, on a cpu backend "
                               "made for it; the CPU has no tensor cores, so bf16 rows run fp32 GEMMs"));
  const auto rows = parse_csv(read_text(d / "cmp" / "compare.csv"));
  std::vector<std::string> names, column;
  for (const auto& r : rows) names.push_back(r.at("model")), column.push_back(r.at("precision"));
  EXPECT_EQ(names, (std::vector<std::string>{"vae_precision=exact", "vae_precision=fp32", "vae_precision=bf16",
                                             "popularity", "ease_precision=exact", "ease_precision=fp32",
                                             "ease_precision=bf16"}));
  EXPECT_EQ(column, (std::vector<std::string>{"exact", "fp32", "bf16", "", "exact", "fp32", "bf16"}));
  // What the backend that trained each row says of its GEMMs.
  for (const auto& [row, gemm] : std::vector<std::pair<std::string, std::string>>{
           {"vae_precision=exact", "exact"}, {"vae_precision=fp32", "fp32"}, {"vae_precision=bf16", "fp32"},
           {"ease_precision=exact", "exact"}, {"ease_precision=fp32", "fp32"}})
    EXPECT_EQ(read_json(d / "cmp" / row / "summary.json")["precision"], gemm) << row;
  // The exact row is the lone default run; the fp32 row a lone --precision fp32 run.
  for (const std::string p : {"exact", "fp32"}) {
    const fs::path lone = d / ("train_" + p);
    const CmdResult t = run_cli("train --model vae --precision " + p + " --epochs 2 " + kData +
                                " --out " + lone.string());
    ASSERT_EQ(t.code, 0) << t.out;
    EXPECT_EQ(read_json(d / "cmp" / ("vae_precision=" + p) / "summary.json")["metrics"],
              read_json(lone / "summary.json")["metrics"]) << p;
  }
  for (const std::string& args : {std::string("compare --models vae --sweep precision=exact,fp32 --precision fp32 "),
                                  std::string("compare --models vae --sweep precision=exact,fp32 --tf32 "),
                                  std::string("compare --models popularity,svd --sweep precision=exact,fp32 ")}) {
    const CmdResult r = run_cli(args + "--epochs 1 " + kData);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("[1/"))) << args;
  }
  EXPECT_THAT(run_cli(std::string("compare --models vae --sweep precision=exact,fp32 --tf32 --epochs 1 ") + kData).out,
              HasSubstr("--tf32 is also swept (--sweep precision=exact,fp32): give it once"));
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
  // anneal-steps=0 is no annealing (the default beta from the first step), 1000 anneals to it.
  const CmdResult an = run_cli(std::string("compare --models multvae --sweep anneal-steps=0,1000 --epochs 1 ") + kData +
                               " --out " + (d / "an").string());
  ASSERT_EQ(an.code, 0) << an.out;
  const nlohmann::json off = read_json(d / "an" / "multvae_anneal-steps=0" / "summary.json");
  EXPECT_EQ(off["config"]["anneal_steps"].get<int64_t>(), 0);
  EXPECT_EQ(off["config"]["beta"].get<double>(), 0.2);
  EXPECT_EQ(read_json(d / "an" / "multvae_anneal-steps=1000" / "summary.json")["config"]["anneal_steps"].get<int64_t>(),
            1000);
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

// Heldout: every row carries its validation figure at the epoch (EASE: the λ) it was kept for,
// the same figure its own metrics.csv holds at summary.json's best_epoch; the selected row is the
// best of them; compare.csv has a column per swept option; report.html shows the same table.
TEST(CompareSweep, HeldoutRowsCarryTheirValidationFigureAndTheSelection) {
  const fs::path d = temp_dir("heldout_val");
  const CmdResult c = run_cli(std::string("compare --protocol heldout --models multvae,ease,popularity --sweep "
                                          "beta=0.1,0.4 --sweep ease-lambda=10,500 --epochs 3 --seed 2 --quiet ") +
                              kData + " --out " + (d / "cmp").string());
  ASSERT_EQ(c.code, 0) << c.out;
  const auto rows = parse_csv(read_text(d / "cmp" / "compare.csv"));
  std::vector<std::string> names;
  for (const auto& r : rows) names.push_back(r.at("model"));
  ASSERT_EQ(names, (std::vector<std::string>{"multvae_beta=0.1", "multvae_beta=0.4", "ease_lambda=10",
                                             "ease_lambda=500", "popularity"}));
  double best = -1;
  std::string best_row, selected;
  for (const auto& row : rows) {
    const std::string m = row.at("model");
    const nlohmann::json summary = read_json(d / "cmp" / m / "summary.json");
    const int epoch = summary["best_epoch"].get<int>();
    std::string want;
    for (const auto& e : parse_csv(read_text(d / "cmp" / m / "metrics.csv")))
      if (std::stoi(e.at("epoch")) == epoch) want = e.at("val_ndcg@100");  // heldout: the validation users
    ASSERT_FALSE(want.empty()) << m << " has no metrics.csv row for epoch " << epoch;
    ASSERT_FALSE(row.at("val_ndcg@100").empty()) << m;
    const double got = std::strtod(row.at("val_ndcg@100").c_str(), nullptr);
    EXPECT_NEAR(got, std::stod(want), 1e-7 * std::max(1.0, std::fabs(got))) << m;  // metrics.csv has 8 digits
    EXPECT_NE(got, std::strtod(row.at("ndcg@100").c_str(), nullptr)) << m << ": the test figure, not validation";
    if (got > best) best = got, best_row = m;
    if (row.at("selected") == "1") {
      EXPECT_TRUE(selected.empty()) << "two rows selected";
      selected = m;
    } else {
      EXPECT_EQ(row.at("selected"), "0") << m;
    }
  }
  EXPECT_EQ(selected, best_row);
  // The swept options, each in its own column, empty where a model does not read it.
  EXPECT_EQ(rows[0].at("beta"), "0.1");
  EXPECT_EQ(rows[1].at("beta"), "0.4");
  EXPECT_EQ(rows[2].at("beta"), "");
  EXPECT_EQ(rows[2].at("ease-lambda"), "10");
  EXPECT_EQ(rows[3].at("ease-lambda"), "500");
  EXPECT_EQ(rows[0].at("ease-lambda"), "");
  EXPECT_EQ(rows[4].at("beta"), "");
  EXPECT_EQ(read_json(d / "cmp" / "ease_lambda=500" / "summary.json")["ease_lambda"].get<double>(), 500.0);
  // The console (and report.html, its copy): the column, the marked row and the wording.
  EXPECT_THAT(c.out, HasSubstr("val ndcg@100"));
  const size_t at = c.out.find("\n" + selected + " ", c.out.find("val ndcg@100"));  // its table row
  ASSERT_NE(at, std::string::npos) << c.out;
  EXPECT_THAT(c.out.substr(at + 1, c.out.find('\n', at + 1) - at - 1), ::testing::EndsWith("\xe2\x97\x80 selected"));
  EXPECT_EQ(c.out.find("\xe2\x97\x80 selected"), c.out.rfind("\xe2\x97\x80 selected"));  // one row only
  EXPECT_THAT(c.out, HasSubstr("* best test figure in its column; epoch: the best on the validation users\n"));
  EXPECT_THAT(c.out, HasSubstr("selected: " + selected + ", the best val ndcg@100 ("));
  EXPECT_THAT(c.out, HasSubstr("chosen on the validation users; the test figures are reported, not used to choose"));
  EXPECT_THAT(c.out, HasSubstr("Per-user differences in test ndcg@100 from the selected row (" + selected));
  EXPECT_THAT(c.out, Not(HasSubstr("they select nothing")));
  const std::string html = read_text(d / "cmp" / "report.html");
  EXPECT_THAT(html, HasSubstr("val ndcg@100"));
  EXPECT_THAT(html, HasSubstr("selected: " + selected + ", the best val ndcg@100"));
  EXPECT_THAT(read_text(d / "cmp" / "compare.svg"), HasSubstr("val ndcg@100 (the selection"));
}

// Seed protocol: no validation users, so no val column and no selection; one line says the marks
// are on the test users. The swept option still gets its column.
TEST(CompareSweep, SeedMarksAreSaidToBeOnTheTestUsers) {
  const fs::path d = temp_dir("seed_marks");
  const CmdResult c = run_cli(std::string("compare --models cdae,popularity --sweep dropout=0.2,0.5 --epochs 1 --quiet ") +
                              kData + " --out " + d.string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("\nthe * marks are the best on the test users (the seed protocol has no validation set): "
                               "they describe this split, they select nothing\n"));
  EXPECT_THAT(c.out, Not(HasSubstr("val ndcg")));
  EXPECT_THAT(c.out, Not(HasSubstr("selected")));
  const std::string csv = read_text(d / "compare.csv");
  EXPECT_THAT(csv, Not(HasSubstr("val_")));
  EXPECT_THAT(csv.substr(0, csv.find('\n')), ::testing::EndsWith(",num_params,dropout"));
  const auto rows = parse_csv(csv);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].at("dropout"), "0.2");
  EXPECT_EQ(rows[1].at("dropout"), "0.5");
  EXPECT_EQ(rows[2].at("dropout"), "");
  EXPECT_THAT(read_text(d / "report.html"), HasSubstr("they select nothing"));
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
