// End-to-end tests of the vae_gpu binary: exit codes, messages, run files, determinism.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <regex>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "cli_runner.h"
#include "train/trainer.h"
#include "data/text_reader.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using cli_test::CmdResult;
using cli_test::read_text;
using cli_test::run_cli;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / ("vae_cli_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

const char* kSmall = "--data synthetic:users=200,items=300,ratings=8000,groups=4,seed=3 --device cpu";

TEST(Cli, VersionAndHelpExitZero) {
  CmdResult v = run_cli("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_THAT(v.out, HasSubstr("vae_gpu "));
  CmdResult h = run_cli("--help");
  EXPECT_EQ(h.code, 0);
  EXPECT_THAT(h.out, HasSubstr("--epochs"));
  EXPECT_THAT(h.out, HasSubstr("--device"));
}

// The help states the model defaults that 0 stands for, and they are the ones training uses:
// Mult-VAE's batch, hidden and latent sizes in its parameter count and training line, CDAE's.
TEST(Cli, HelpGivesTheModelDefaultsTrainingUses) {
  const CmdResult h = run_cli("--help");
  ASSERT_EQ(h.code, 0);
  std::smatch m;
  auto number = [&](const std::string& pattern) {
    const std::string flat = std::regex_replace(h.out, std::regex("\\s+"), " ");
    EXPECT_TRUE(std::regex_search(flat, m, std::regex(pattern))) << pattern << "\n" << h.out;
    return m.empty() ? int64_t{-1} : std::stoll(m[1]);
  };
  const int64_t batch = number("--batch-size [^\\n]*?model default: 64; Mult-VAE ([0-9]+)");
  const int64_t hidden = number("--hidden [^\\n]*?model default: AutoRec 500, 10 with --loss dense; Mult-VAE ([0-9]+)");
  const int64_t cdae_hidden = number("--hidden [^\\n]*?CDAE ([0-9]+)");
  const int64_t latent = number("--latent [^\\n]*?the notebook VAE 64, Mult-VAE ([0-9]+)");
  const std::string data = " --epochs 1 --device cpu --data synthetic:users=1300,items=90,ratings=20000";
  const CmdResult mult = run_cli("train --model multvae" + data);
  ASSERT_EQ(mult.code, 0) << mult.out;
  ASSERT_TRUE(std::regex_search(mult.out, m, std::regex("Training multvae on cpu: [0-9]+ rows x ([0-9]+) columns, ([0-9]+) parameters, batch ([0-9]+)")))
      << mult.out;
  const int64_t items = std::stoll(m[1]);
  EXPECT_EQ(std::stoll(m[2]), items * hidden + hidden + hidden * 2 * latent + 2 * latent + latent * hidden + hidden +
                                  hidden * items + items);
  EXPECT_EQ(std::stoll(m[3]), batch);
  const CmdResult cdae = run_cli("train --model cdae" + data);
  ASSERT_EQ(cdae.code, 0) << cdae.out;
  ASSERT_TRUE(std::regex_search(cdae.out, m, std::regex("Training cdae on cpu: ([0-9]+) rows x ([0-9]+) columns, ([0-9]+) parameters, batch 64")))
      << cdae.out;
  const int64_t users = std::stoll(m[1]), cols = std::stoll(m[2]);
  EXPECT_EQ(std::stoll(m[3]), cols * cdae_hidden + users * cdae_hidden + cdae_hidden + cdae_hidden * cols + cols);
}

TEST(Cli, UnknownFlagAndBadValuesExitTwo) {
  CmdResult a = run_cli("--no-such-flag");
  EXPECT_EQ(a.code, 2);
  EXPECT_THAT(a.out, HasSubstr("no-such-flag"));
  CmdResult b = run_cli("--epochs zero");
  EXPECT_EQ(b.code, 2);
  EXPECT_THAT(b.out, HasSubstr("vae_gpu: --epochs: 'zero' is not a whole number"));
  CmdResult c = run_cli("--device tpu");
  EXPECT_EQ(c.code, 2);
  EXPECT_THAT(c.out, HasSubstr("vae_gpu: --device: tpu not in {auto,cpu,cuda}"));
  CmdResult d = run_cli("--epochs 0");
  EXPECT_EQ(d.code, 2);
  EXPECT_THAT(d.out, HasSubstr("vae_gpu: --epochs: must be from 1 to 100000, got 0"));
  CmdResult e = run_cli("train --model nosuchmodel");
  EXPECT_EQ(e.code, 2);
  EXPECT_THAT(e.out, HasSubstr("vae_gpu: --model: nosuchmodel not in {vae,autorec,i-autorec,multvae,cdae,popularity,ease,svd,svdpp}"));
  CmdResult f = run_cli("train --model i-autorec --protocol seed " + std::string(kSmall));
  EXPECT_EQ(f.code, 2);
  EXPECT_THAT(f.out, HasSubstr("ratings"));
  CmdResult g = run_cli("--data synthetic:users=-5");
  EXPECT_EQ(g.code, 2);
  EXPECT_THAT(g.out, HasSubstr("vae_gpu: synthetic spec: users must be a positive integer, got -5"));
  CmdResult h = run_cli("--tf32 --precision fp32");  // contradicting precisions
  EXPECT_EQ(h.code, 2);
  EXPECT_THAT(h.out, HasSubstr("excludes"));
}

// Choices are matched whatever their case and recorded in the canonical spelling.
TEST(Cli, ChoicesIgnoreCase) {
  fs::path dir = temp_dir("choices_case");
  CmdResult r = run_cli("train --model VAE --precision FP32 --protocol Seed --epochs 1 --quiet " +
                        std::string(kSmall) + " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json s = read_json(dir / "summary.json");
  EXPECT_EQ(s["model"], "vae");
  EXPECT_EQ(s["precision"], "fp32");
  EXPECT_EQ(s["protocol"], "seed");
}

// Every ranking metric is a mean over the evaluated users: summary.json gives its 95 % interval,
// and the main job's comparison the paired difference from popularity user by user.
TEST(Cli, MetricsComeWithTheirIntervals) {
  fs::path dir = temp_dir("intervals");
  CmdResult r = run_cli("--epochs 2 --no-tsne " + std::string(kSmall) + " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("vae - popularity (95% CI)\n"));
  EXPECT_THAT(r.out, HasSubstr("(per-user differences over the 40 evaluated users, paired t interval"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nNDCG@20 +[0-9.]+ +[0-9.]+ +[-+][0-9.]+ \xc2\xb1 [0-9.]+"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nRMSE +[0-9.]+ +[0-9.]+\n"));  // over ratings: no interval
  // Neither model predicts ratings: the table says what their RMSE is.
  EXPECT_THAT(r.out, HasSubstr("(RMSE of vae and popularity: their item scores clipped to the rating scale"));
  const nlohmann::json s = read_json(dir / "summary.json");
  EXPECT_EQ(s["users_evaluated"], 40);
  for (const char* m : {"ndcg@20", "recall@20", "ndcg@100", "recall@100"}) {
    ASSERT_TRUE(s["metrics_ci95"].contains(m)) << s.dump();
    EXPECT_GT(s["metrics_ci95"][m].get<double>(), 0.0) << m;
    EXPECT_LT(s["metrics_ci95"][m].get<double>(), 0.5) << m;
  }
  // The run prints them under its final metrics, as summary.json has them.
  char printed[64];
  std::snprintf(printed, sizeof printed, "ndcg@20 \xc2\xb1%.4f, recall@20 \xc2\xb1%.4f",
                s["metrics_ci95"]["ndcg@20"].get<double>(), s["metrics_ci95"]["recall@20"].get<double>());
  EXPECT_THAT(r.out, HasSubstr(std::string("\n95% intervals over the 40 evaluated users: ") + printed));
  EXPECT_FALSE(s["metrics_ci95"].contains("rmse"));
  EXPECT_FALSE(s["metrics_ci95"].contains("coverage@20"));
  const nlohmann::json p = read_json(dir / "popularity" / "summary.json");
  EXPECT_EQ(p["users_evaluated"], 40);

  // user_metrics.csv: one row per evaluated user, whose columns average to the summary's metrics.
  EXPECT_EQ(read_text(dir / "user_metrics.csv").rfind("user_id,input_ratings,ndcg@20,recall@20,ndcg@100,recall@100\n", 0), 0u);
  const auto users = cli_test::parse_csv(read_text(dir / "user_metrics.csv"));
  EXPECT_EQ(users.size(), 40u);
  for (const char* name : {"ndcg@20", "recall@20", "ndcg@100", "recall@100"}) {
    double sum = 0;
    for (const auto& u : users) sum += std::stod(u.at(name));
    EXPECT_NEAR(sum / static_cast<double>(users.size()), s["metrics"][name].get<double>(), 1e-7) << name;
  }
  for (const auto& u : users) EXPECT_GT(std::stoi(u.at("input_ratings")), 0);
  // No evaluated user (two users, both drawn for training): refused, no folder of nothing.
  fs::path none = temp_dir("intervals_none");
  fs::remove_all(none);
  const CmdResult no_users = run_cli("train --epochs 1 --quiet --device cpu --data "
                                     "synthetic:users=2,items=30,ratings=20,groups=1 --out " + none.string());
  EXPECT_EQ(no_users.code, 2) << no_users.out;
  EXPECT_THAT(no_users.out, HasSubstr("holds no ratings to predict"));
  EXPECT_FALSE(fs::exists(none));
  // Under the ratings protocol each row's RMSE over its test ratings: SVD (its own evaluation),
  // AutoRec (the trainer's) by user, item-based AutoRec by item; together they give the RMSE.
  for (const char* model : {"svd", "autorec", "i-autorec"}) {
    const fs::path rd = temp_dir(std::string("row_rmse_") + model);
    ASSERT_EQ(run_cli(std::string("train --model ") + model + " --protocol ratings --epochs 1 --quiet " + kSmall +
                      " --out " + rd.string()).code,
              0);
    const std::string text = read_text(rd / "user_metrics.csv");
    EXPECT_EQ(text.substr(0, text.find('\n')), std::string(model) == "i-autorec" ? "item_id,input_ratings,test_ratings,rmse"
                                                                              : "user_id,input_ratings,test_ratings,rmse");
    double sse = 0, n = 0;
    for (const auto& row : cli_test::parse_csv(text)) {
      EXPECT_GE(std::stoi(row.at("input_ratings")), 0) << model;
      const double count = std::stod(row.at("test_ratings")), rmse = std::stod(row.at("rmse"));
      EXPECT_GT(count, 0) << model;  // rows without a test rating are left out
      sse += count * rmse * rmse;
      n += count;
    }
    EXPECT_NEAR(std::sqrt(sse / n), read_json(rd / "summary.json")["metrics"]["rmse"].get<double>(), 1e-6) << model;
  }
  // A later run without per-user values into the folder (SVD's --folds) takes the file away.
  ASSERT_EQ(run_cli("train --model svd --folds 2 --epochs 1 --quiet " + std::string(kSmall) + " --out " + dir.string()).code, 0);
  EXPECT_FALSE(fs::exists(dir / "user_metrics.csv"));
}

// Item-based AutoRec and SVD only predict ratings: without --protocol they get the ratings one.
TEST(Cli, RatingModelsDefaultToTheRatingsProtocol) {
  for (const char* model : {"i-autorec", "svd"}) {
    fs::path d = temp_dir(std::string("proto_") + model);
    CmdResult r = run_cli(std::string("train --model ") + model + " --epochs 1 " + kSmall + " --out " + d.string());
    ASSERT_EQ(r.code, 0) << model << ": " << r.out;
    EXPECT_EQ(read_json(d / "summary.json")["protocol"], "ratings") << model;
  }
}

// An --out that cannot be made fails before any training, naming the directory.
TEST(Cli, UnusableOutDirFailsBeforeTraining) {
  fs::path d = temp_dir("out_is_file");
  fs::create_directories(d);
  {
    std::ofstream f(d / "file");
    f << "x";
  }
  const std::string out = (d / "file" / "run").string();
  CmdResult r = run_cli("--epochs 2 " + std::string(kSmall) + " --out " + out);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr(out));
  EXPECT_THAT(r.out, Not(HasSubstr("Epoch [1/2]")));
}

// A data set too small to hold anything out is refused before training by the commands whose
// point is the figures (their metrics would all be nan), naming the way out; a command that
// trains only to serve the model still does, with the note.
TEST(Cli, TinyDataIsRefusedRatherThanGivingNanFigures) {
  fs::path d = temp_dir("tiny");
  fs::create_directories(d);
  const fs::path csv = d / "two.csv";
  {
    std::ofstream f(csv);
    f << "user,item,rating\n1,1,5\n1,2,3\n2,2,4\n2,3,1\n";
  }
  CmdResult m = run_cli("--epochs 2 --device cpu --data " + csv.string() + " --out " + (d / "main").string());
  EXPECT_EQ(m.code, 2) << m.out;
  EXPECT_THAT(m.out, HasSubstr("vae_gpu: the evaluation set (0 test users (full vectors)) holds no ratings to predict: every "
                               "metric would be undefined (nan); use a larger data set or a larger --test-fraction"));
  EXPECT_THAT(m.out, ::testing::Not(HasSubstr("Epoch [")));
  EXPECT_FALSE(fs::exists(d / "main"));
  CmdResult s = run_cli("train --model svd --epochs 2 --data " + csv.string() + " --out " + (d / "svd" / "a").string());
  EXPECT_EQ(s.code, 2) << s.out;
  EXPECT_THAT(s.out, HasSubstr("holds no test ratings: RMSE and MAE would be undefined (nan); use a larger data set"));
  EXPECT_FALSE(fs::exists(d / "svd"));  // the folders it made for --out, parents too, go again
  const CmdResult c = run_cli("compare --models popularity,ease --epochs 1 --data " + csv.string());
  EXPECT_NE(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("holds no ratings to predict"));
  // recommend trains to serve: the note, and the list.
  const CmdResult r = run_cli("recommend --user 1 --top 2 --epochs 1 --quiet --device cpu --data " + csv.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: the evaluation set"));
  EXPECT_THAT(r.out, HasSubstr("candidates (fewer than --top 2) for user 1 (vae):"));
  const CmdResult rs = run_cli("recommend --model svd --user 1 --top 2 --epochs 1 --quiet --data " + csv.string());
  ASSERT_EQ(rs.code, 0) << rs.out;
  EXPECT_THAT(rs.out, HasSubstr("holds no test ratings: RMSE and MAE are undefined (nan)"));
  fs::remove_all(d);
}

TEST(Cli, MissingAndMalformedDataNameFileAndLine) {
  CmdResult a = run_cli("info --data /nonexistent/dir/xyz");
  EXPECT_NE(a.code, 0);
  EXPECT_THAT(a.out, HasSubstr("/nonexistent/dir/xyz"));
  fs::path d = temp_dir("bad");
  {
    std::ofstream f(d / "ratings.csv");
    f << "user,item,rating\n1,10,4\n2,11,x\n";
  }
  CmdResult b = run_cli("info --data " + (d / "ratings.csv").string());
  EXPECT_NE(b.code, 0);
  EXPECT_THAT(b.out, HasSubstr("ratings.csv:3"));
  EXPECT_THAT(b.out, ::testing::Not(HasSubstr("terminate")));
}

TEST(Cli, InfoPrintsSummary) {
  CmdResult r = run_cli(std::string("info ") + kSmall);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("users     200"));
  EXPECT_THAT(r.out, HasSubstr("items     300"));
  EXPECT_THAT(r.out, HasSubstr("ratings per user"));
  EXPECT_THAT(r.out, HasSubstr("rating histogram"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\ntimes     1997-(09|1[0-2])-[0-9]{2} to 1998-0[1-9]-[0-9]{2} \\(UTC\\); "
                                              "--protocol cutoff validates from 199[78]-[0-9]{2}-[0-9]{2}, tests from "
                                              "1998-[0-9]{2}-[0-9]{2}\n"));
  const fs::path d = temp_dir("info_times");
  std::ofstream(d / "r.csv") << "a,x,4\n";
  const CmdResult none = run_cli("info --data " + (d / "r.csv").string());
  ASSERT_EQ(none.code, 0) << none.out;
  EXPECT_THAT(none.out, HasSubstr("times     none (" + (d / "r.csv").string() + ":1: the line has no timestamp"));
  // All at one time: no cut leaves ratings on both sides, so no default cuts are printed.
  std::ofstream(d / "one.csv") << "a,x,4,5\nb,x,3,5\n";
  const CmdResult one = run_cli("info --data " + (d / "one.csv").string());
  ASSERT_EQ(one.code, 0) << one.out;
  EXPECT_THAT(one.out, HasSubstr("times     1970-01-01 to 1970-01-01 (UTC)\n"));
  // Real-valued ratings: ten equal bins, not a line per distinct value. 0.00 .. 0.99 by 0.01
  // (100 values, ten in each bin).
  {
    std::ofstream f(d / "scores.csv");
    for (int k = 0; k < 100; ++k) f << "u" << k % 7 << ",i" << k << "," << k / 100.0 + 1 << "\n";
  }
  const CmdResult scores = run_cli("info --data " + (d / "scores.csv").string());
  ASSERT_EQ(scores.code, 0) << scores.out;
  EXPECT_THAT(scores.out, HasSubstr("rating histogram (scale 1 to 1.99; 100 distinct values, in 10 equal bins)\n"));
  EXPECT_THAT(scores.out, ::testing::ContainsRegex("\n  1 to 1\\.099 \\(excl\\.\\) +10 #####\n"));
  EXPECT_THAT(scores.out, ::testing::ContainsRegex("\n  1\\.891 to 1\\.99 +10 #####\n"));
  fs::remove_all(d);
}

TEST(Cli, TrainWritesRunFilesAndIsDeterministic) {
  fs::path d1 = temp_dir("run1"), d2 = temp_dir("run2"), d3 = temp_dir("run3");
  const std::string base = std::string("--epochs 3 ") + kSmall + " --quiet --seed 5 --out ";
  CmdResult a = run_cli(base + d1.string());
  ASSERT_EQ(a.code, 0) << a.out;
  CmdResult b = run_cli(base + d2.string());
  ASSERT_EQ(b.code, 0) << b.out;
  CmdResult c = run_cli(std::string("--epochs 3 ") + kSmall + " --quiet --seed 6 --out " + d3.string());
  ASSERT_EQ(c.code, 0) << c.out;

  const nlohmann::json s1 = read_json(d1 / "summary.json"), s2 = read_json(d2 / "summary.json"),
                       s3 = read_json(d3 / "summary.json");
  for (const char* key : {"model", "dataset", "protocol", "device", "epochs", "best_epoch", "metrics",
                          "train_seconds", "epoch_seconds_median"})
    EXPECT_TRUE(s1.contains(key)) << key;
  EXPECT_EQ(s1["model"], "vae");
  EXPECT_EQ(s1["protocol"], "seed");
  EXPECT_EQ(s1["epochs"], 3);
  for (const char* m : {"ndcg@20", "recall@20", "ndcg@100", "rmse"}) EXPECT_TRUE(s1["metrics"].contains(m)) << m;
  EXPECT_EQ(s1["metrics"], s2["metrics"]);  // same seed, same numbers
  EXPECT_NE(s1["metrics"], s3["metrics"]);  // another seed, another split and init

  std::ifstream csv(d1 / "metrics.csv");
  std::string header, line;
  std::getline(csv, header);
  EXPECT_THAT(header, HasSubstr("epoch,train_loss,test_loss,ndcg@20"));
  int rows = 0;
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, 3);
  // The main job also reports popularity on the same split.
  EXPECT_TRUE(fs::exists(d1 / "popularity" / "summary.json"));
}

// The notebook's line (epoch, train and test loss, NDCG, Recall), its figures labelled: which are
// losses, and which set the metrics are of (validation users under heldout). Under the ratings
// protocol the test figure is the RMSE, printed once; SVD trains on the RMSE itself.
TEST(Cli, EpochLinesLookLikeTheNotebook) {
  CmdResult r = run_cli(std::string("--epochs 2 ") + kSmall);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "Epoch \\[2/2\\] loss train [0-9.]+ test [0-9.]+ \\| test NDCG@20 [0-9.]+ Recall@20 [0-9.]+"));
  const CmdResult val = run_cli(std::string("train --model multvae --protocol heldout --epochs 1 ") + kSmall);
  ASSERT_EQ(val.code, 0) << val.out;
  EXPECT_THAT(val.out, ::testing::ContainsRegex("Epoch \\[1/1\\] loss train [0-9.]+ val [0-9.]+ \\| val Recall@20 [0-9.]+"));
  const CmdResult rat = run_cli(std::string("train --model autorec --protocol ratings --epochs 1 ") + kSmall);
  ASSERT_EQ(rat.code, 0) << rat.out;
  EXPECT_THAT(rat.out, ::testing::ContainsRegex("Epoch \\[1/1\\] loss train [0-9.]+ \\| test RMSE [0-9.]+ MAE [0-9.]+ \\("));
  const CmdResult svd = run_cli(std::string("train --model svd --epochs 1 ") + kSmall);
  ASSERT_EQ(svd.code, 0) << svd.out;
  EXPECT_THAT(svd.out, ::testing::ContainsRegex("Epoch \\[1/1\\] train RMSE [0-9.]+ \\| test RMSE [0-9.]+ MAE [0-9.]+ \\("));
  EXPECT_THAT(r.out, HasSubstr("popularity"));
  EXPECT_THAT(r.out, HasSubstr("synthetic"));
}

// --device cuda never falls back to the CPU: without a GPU it fails naming the option, before
// any training; with one it runs there.
TEST(Cli, DeviceCudaWithoutGpuIsAClearError) {
  const CmdResult r = run_cli(std::string("--epochs 1 --data synthetic:users=50,items=60,ratings=900 --device cuda"));
  if (vae::cuda_device_available()) {
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("device: cuda"));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("running on the CPU")));
  } else {
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("vae_gpu: error: --device cuda: no CUDA device is available (use --device cpu or auto)"));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("Epoch [")));
  }
}

// Under heldout, users with fewer positives than a fold-in needs are in no part: the evaluation
// set names them, so train, validation and test users add up to everyone.
TEST(Cli, HeldoutCountsTheUsersItLeavesOut) {
  const fs::path dir = temp_dir("heldout_left_out");
  {
    std::ofstream c(dir / "r.csv");
    c << "user,item,rating\n";
    for (int u = 1; u <= 40; ++u)
      for (int i = 1; i <= 12; ++i) c << u << "," << ((u * 7 + i * 3) % 30 + 1) * 100 + i << ",5\n";
    for (int u = 41; u <= 43; ++u) c << u << ",101,5\n" << u << ",202,4\n";  // two positives each
  }
  const CmdResult r = run_cli("train --model popularity --protocol heldout --quiet --data " + (dir / "r.csv").string() +
                              " --out " + (dir / "run").string());
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string set = read_json(dir / "run" / "summary.json")["eval_set"];
  std::smatch m;
  ASSERT_TRUE(std::regex_search(set, m, std::regex("^([0-9]+) test users \\(([0-9]+) more for validation; 3 users with "
                                                   "fewer than 5 positives and ([0-9]+) users? drawn for validation or "
                                                   "test with under 2 positives on the kept items left out\\)")))
      << set;
  // 40 users had enough positives: 20 % drawn for test and 10 % for validation (8 and 4), those
  // of them without two positives on items a training user liked left out.
  EXPECT_EQ(std::stoi(m[1]) + std::stoi(m[2]) + std::stoi(m[3]), 12) << set;
  fs::remove_all(dir);
}

// What a run killed outright leaves (its temporaries, named by its PID) is removed by the next
// run into the folder, subfolders included; a live process's temporaries, and the user's own
// files that merely look alike, stay.
TEST(Cli, TheNextRunRemovesTemporariesOfKilledRuns) {
  const fs::path dir = temp_dir("dead_temporaries");
  fs::create_directories(dir / "popularity");
  const pid_t dead = fork();  // a PID that has exited
  if (dead == 0) _exit(0);
  ASSERT_GT(dead, 0);
  waitpid(dead, nullptr, 0);
  const std::string d = std::to_string(dead), live = std::to_string(getpid());
  const std::vector<fs::path> gone = {dir / ("clusters.csv.tmp.tmp." + d + ".8"), dir / ("metrics.csv.tmp." + d + ".0"),
                                      dir / "popularity" / ("summary.json.tmp.tmp." + d + ".2")};
  const std::vector<fs::path> kept = {dir / ("model.safetensors.tmp.tmp." + live + ".1"), dir / "notes.tmp.txt",
                                      dir / ("report.tmp." + d)};
  for (const fs::path& p : gone) std::ofstream(p) << "half";
  for (const fs::path& p : kept) std::ofstream(p) << "keep";
  const CmdResult r = run_cli("train --quiet --epochs 1 --out " + dir.string() + " " + kSmall);
  ASSERT_EQ(r.code, 0) << r.out;
  for (const fs::path& p : gone) EXPECT_FALSE(fs::exists(p)) << p;
  for (const fs::path& p : kept) EXPECT_TRUE(fs::exists(p)) << p;
  // recommend --all-users: its CSV's own dead temporaries only.
  const fs::path csv = dir / "recs.csv", stale = dir / ("recs.csv.tmp." + d + ".0"), other = dir / ("other.csv.tmp." + d + ".0");
  std::ofstream(stale) << "half";
  std::ofstream(other) << "half";
  const CmdResult rec = run_cli("recommend --all-users --top 3 --model-file " + (dir / "model.safetensors").string() + " " +
                                kSmall + " --out " + csv.string());
  ASSERT_EQ(rec.code, 0) << rec.out;
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(other));
  fs::remove_all(dir);
}

// Results lost on a full standard output (/dev/full) make a failed run, said on stderr, not a
// silent exit 0.
TEST(Cli, AFailedWriteToStandardOutputFailsTheRun) {
  const fs::path dir = temp_dir("stdout_full");
  const fs::path err = dir / "err.txt";
  for (const std::string& args : {std::string("info ") + kSmall, std::string("--version")}) {
    const int status = std::system((std::string(VAE_CLI_PATH) + " " + args + " >/dev/full 2>" + err.string()).c_str());
    ASSERT_TRUE(WIFEXITED(status)) << args;
    EXPECT_EQ(WEXITSTATUS(status), 1) << args;
    EXPECT_THAT(read_text(err), HasSubstr("vae_gpu: standard output: write failed; the results printed there are lost"))
        << args;
  }
  fs::remove_all(dir);
}

// A folder another run is writing (its lock held, here by the test itself) is refused before
// training, naming it; the folder's files are not touched. Once the lock is gone the run goes on.
TEST(Cli, AFolderAnotherRunIsWritingIsRefused) {
  const fs::path dir = temp_dir("locked_out");
  const std::string data = " --data synthetic:users=200,items=100,ratings=4000 --device cpu --epochs 1 --quiet";
  ASSERT_EQ(run_cli("train --out " + dir.string() + data).code, 0);
  const std::string before = read_text(dir / "summary.json");
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const CmdResult r = run_cli("train --seed 5 --out " + dir.string() + data);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr(dir.string() + ": another vae_gpu run is writing to this folder; wait for it to end, or give "
                               "another --out"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("Training")));
  EXPECT_EQ(read_text(dir / "summary.json"), before);
  ::close(fd);
  const CmdResult again = run_cli("train --seed 5 --out " + dir.string() + data);
  EXPECT_EQ(again.code, 0) << again.out;
  fs::remove_all(dir);
}

// A signal during the commit (the renames of a finished run's files into --out) waits for the
// commit to end: the folder then holds the new run whole, not new files beside old ones, and no
// backup (.prev-PID) is left. strace makes the signal arrive at the third hard link, the backup
// of the third earlier file (skipped where strace is missing or cannot trace).
TEST(Cli, ASignalDuringTheCommitLeavesTheNewRunWhole) {
  if (std::system("strace -o /dev/null true >/dev/null 2>&1") != 0) GTEST_SKIP() << "strace cannot trace here";
  const fs::path dir = temp_dir("signal_commit");
  const std::string data = " --data synthetic:users=300,items=200,ratings=8000 --device cpu --epochs 2 --no-tsne";
  ASSERT_EQ(run_cli("--seed 2 --out " + (dir / "ref").string() + data).code, 0);
  ASSERT_EQ(run_cli("--seed 1 --out " + (dir / "run").string() + data).code, 0);
  const std::string cmd = "strace -f -o /dev/null -e inject=link:signal=SIGINT:when=3 " + std::string(VAE_CLI_PATH) +
                          " --seed 2 --out " + (dir / "run").string() + data + " >/dev/null 2>" + (dir / "err.txt").string();
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 130) << read_text(dir / "err.txt");  // died of SIGINT, after the commit
  EXPECT_THAT(read_text(dir / "err.txt"), HasSubstr("vae_gpu: interrupted (no half-written file is left behind)"));
  for (const char* f : {"model.safetensors", "clusters.csv", "embeddings.npy", "user_metrics.csv", "popularity/user_metrics.csv"})
    EXPECT_EQ(read_text(dir / "run" / f), read_text(dir / "ref" / f)) << f << " is not the new run's";
  for (const auto& e : fs::recursive_directory_iterator(dir / "run"))
    EXPECT_EQ(e.path().filename().string().find(".prev-"), std::string::npos) << e.path();
  fs::remove_all(dir);
}

// --precision: exact by default, recorded in summary.json; fp32 and --tf32 (fp32 on the CPU) are
// other runs of the same model, near but not equal; a bad value is a usage error.
TEST(Cli, PrecisionIsRecordedAndSelectsTheGemm) {
  fs::path de = temp_dir("prec_exact"), df = temp_dir("prec_fp32"), dt = temp_dir("prec_tf32");
  const std::string base = std::string("--epochs 3 --no-baseline --quiet ") + kSmall + " --out ";
  CmdResult e = run_cli(base + de.string());
  ASSERT_EQ(e.code, 0) << e.out;
  CmdResult f = run_cli("--precision fp32 " + base + df.string());
  ASSERT_EQ(f.code, 0) << f.out;
  CmdResult t = run_cli("--tf32 " + base + dt.string());
  ASSERT_EQ(t.code, 0) << t.out;
  const nlohmann::json se = read_json(de / "summary.json"), sf = read_json(df / "summary.json"),
                       st = read_json(dt / "summary.json");
  EXPECT_EQ(se["precision"], "exact");
  EXPECT_EQ(sf["precision"], "fp32");
  EXPECT_EQ(st["precision"], "fp32");  // no TF32 on the CPU
  EXPECT_EQ(st["metrics"], sf["metrics"]);
  const double ne = se["metrics"]["ndcg@20"].get<double>(), nf = sf["metrics"]["ndcg@20"].get<double>();
  EXPECT_NEAR(ne, nf, 0.02);
  CmdResult bad = run_cli("--precision fp16 " + base + de.string());
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.out, HasSubstr("precision"));
}

// The issue's bar, end to end on a small set: with the default exact GEMMs the GPU run prints
// the CPU run's metrics (expected equal; asserted to 5e-4, which a stray last-bit flip stays in).
TEST(Cli, DefaultPrecisionGivesTheCpuMetricsOnTheGpu) {
  if (!vae::cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  fs::path dc = temp_dir("parity_cpu"), dg = temp_dir("parity_cuda");
  const std::string base =
      "--epochs 5 --no-baseline --quiet --data synthetic:users=400,items=900,ratings=30000,groups=4,seed=3 --out ";
  CmdResult c = run_cli("--device cpu " + base + dc.string());
  ASSERT_EQ(c.code, 0) << c.out;
  CmdResult g = run_cli("--device cuda " + base + dg.string());
  ASSERT_EQ(g.code, 0) << g.out;
  const nlohmann::json sc = read_json(dc / "summary.json"), sg = read_json(dg / "summary.json");
  EXPECT_EQ(sg["device"], "cuda");
  // The bar is the issue's "same metrics to 3 decimals" (float GEMMs missed it by 1e-3 to 2e-3
  // on ml-100k). Exact GEMMs should give the very same numbers, but the GPU's double exp/log
  // may differ from glibc's in the last double bit and, once in a while, flip a float or a
  // ranking tie; the largest difference is printed for the record.
  double worst = 0.0;
  for (auto it = sc["metrics"].begin(); it != sc["metrics"].end(); ++it) {
    if (!it.value().is_number()) continue;
    const double diff = std::fabs(sg["metrics"][it.key()].get<double>() - it.value().get<double>());
    worst = std::max(worst, diff);
    // Coverage counts items (1/900 each): a flipped tie at one list's end may move it by one.
    const double tol = it.key().rfind("coverage@", 0) == 0 ? 1.0 / 900 + 1e-12 : 5e-4;
    EXPECT_LE(diff, tol) << it.key() << ": cuda " << sg["metrics"][it.key()] << " cpu " << it.value();
  }
  std::cout << "largest CPU/GPU metric difference: " << worst << "\n";
}


// Option values that no run can mean: refused while parsing (exit 2), with what was wrong.
TEST(Cli, NonsenseOptionValuesAreRefusedUpFront) {
  for (const char* bad : {"--lr nan", "--beta inf", "--lr -1", "--weight-decay -nan", "--dropout nan",
                          "--seed -1", "--seed 99999999999999999999999", "--seed 1e3", "--lr 0x10"}) {
    const CmdResult r = run_cli(std::string(bad) + " --epochs 1 " + kSmall);
    EXPECT_EQ(r.code, 2) << bad << "\n" << r.out;
    EXPECT_LT(r.out.size(), 400u) << bad << ": a short message, not a 309-digit bound\n" << r.out;
  }
  const CmdResult lr = run_cli(std::string("--lr nan --epochs 1 ") + kSmall);
  EXPECT_THAT(lr.out, HasSubstr("finite"));
  EXPECT_THAT(run_cli(std::string("--lr 0x10 --epochs 1 ") + kSmall).out, HasSubstr("'0x10' is not a decimal number"));
  // An EASE lambda that zeroes every weight in float would rank by item order: refused.
  const CmdResult ease = run_cli(std::string("train --model ease --ease-lambda 1e300 ") + kSmall);
  EXPECT_EQ(ease.code, 2) << ease.out;
  EXPECT_THAT(ease.out, HasSubstr("EASE: lambda 1e+300 is so large that every item weight is 0 in float"));
  // A rate a float stores as 0 would train nothing; beyond double's range is said as such.
  const CmdResult tiny = run_cli(std::string("--lr 1e-50 --epochs 1 ") + kSmall);
  EXPECT_EQ(tiny.code, 2) << tiny.out;
  EXPECT_THAT(tiny.out, HasSubstr("--lr: '1e-50' is too close to 0"));
  EXPECT_THAT(run_cli(std::string("--beta 1e400 --epochs 1 ") + kSmall).out, HasSubstr("'1e400' is too large a number"));
  // Whole-number options say which of the two things is wrong.
  EXPECT_THAT(run_cli("--epochs abc " + std::string(kSmall)).out, HasSubstr("--epochs: 'abc' is not a whole number"));
  EXPECT_THAT(run_cli("--epochs 2.5 " + std::string(kSmall)).out, HasSubstr("--epochs: '2.5' is not a whole number"));
  EXPECT_THAT(run_cli("--epochs 0x10 " + std::string(kSmall)).out, HasSubstr("'0x10' is not a whole number"));
  EXPECT_THAT(run_cli("--epochs 0 " + std::string(kSmall)).out, HasSubstr("--epochs: must be from 1 to 100000, got 0"));
  EXPECT_THAT(run_cli("--hidden 99999999999999999999 " + std::string(kSmall)).out,
              HasSubstr("must be from 0 to 1048576, got 99999999999999999999"));
  const CmdResult h = run_cli(std::string("--hidden 50 --epochs 1 ") + kSmall);  // the notebook VAE
  EXPECT_EQ(h.code, 2) << h.out;
  EXPECT_THAT(h.out, HasSubstr("--latent"));
  for (const char* empty : {"--data ''", "--out ''"}) {
    const CmdResult r = run_cli(std::string(empty) + " --epochs 1 --device cpu");
    EXPECT_EQ(r.code, 2) << empty << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr("empty path"));
  }
  const CmdResult ok = run_cli(std::string("--seed 18446744073709551615 --epochs 1 --no-baseline --no-tsne ") + kSmall);
  EXPECT_EQ(ok.code, 0) << ok.out;
}

// A model too large for this machine's memory is refused before anything is allocated, naming
// what to reduce; a batch larger than the data only means "everything at once".
TEST(Cli, SizesBeyondTheMachineAreRefusedAndHugeBatchesClamped) {
  const CmdResult big = run_cli(
      "train --model autorec --hidden 1048576 --epochs 1 --data synthetic:users=50,items=100000,ratings=2000 "
      "--device cpu");
  EXPECT_EQ(big.code, 2) << big.out;
  EXPECT_THAT(big.out, HasSubstr("--hidden"));
  fs::path dir = temp_dir("huge_batch");
  const CmdResult all = run_cli(std::string("train --batch-size 16777216 --epochs 1 --quiet ") + kSmall +
                                " --out " + dir.string());
  ASSERT_EQ(all.code, 0) << all.out;
  EXPECT_EQ(read_json(dir / "summary.json")["epochs"], 1);
}

// A run that fails while writing its model file leaves the earlier run's files as they were
// (metrics and summary still describe the model beside them) and no temporaries.
TEST(Cli, AFailedModelWriteKeepsTheEarlierRunFilesWhole) {
  fs::path dir = temp_dir("staged");
  const std::string base = std::string("train --epochs 1 --quiet ") + kSmall + " --out " + dir.string();
  ASSERT_EQ(run_cli(base).code, 0);
  std::ifstream f(dir / "summary.json");
  const std::string before((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  fs::remove(dir / "model.safetensors");
  fs::create_directories(dir / "model.safetensors" / "blocker");  // the model file cannot be written
  const CmdResult r = run_cli(base + " --seed 7");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("model.safetensors"));
  std::ifstream g(dir / "summary.json");
  const std::string after((std::istreambuf_iterator<char>(g)), std::istreambuf_iterator<char>());
  EXPECT_EQ(after, before);
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_NE(e.path().extension(), ".tmp") << e.path();
}


// --top beyond the candidates lists them all and says so, rather than titling 24 items "Top 100000".
TEST(Cli, TopBeyondTheCandidatesIsTitledByWhatItHolds) {
  const CmdResult r = run_cli(
      "recommend --user 1 --top 100000 --epochs 1 --quiet --device cpu --data synthetic:users=50,items=40,ratings=800");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("candidates (fewer than --top 100000) for user 1"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("Top 100000")));
}


std::string slurp_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// The main job renames all its files into --out together at the end: a failure after training
// (here clusters.csv cannot be written) leaves the earlier run's files, all of them, as they
// were, and no temporaries. The t-SNE picture alone failing costs a warning, not the run.
TEST(Cli, AMainJobFailingLateKeepsEveryEarlierFile) {
  fs::path dir = temp_dir("late_fail");
  const std::string base = std::string("--epochs 2 --no-baseline ") + kSmall + " --out " + dir.string();
  ASSERT_EQ(run_cli(base).code, 0);
  const std::string summary = slurp_file(dir / "summary.json"), emb = slurp_file(dir / "embeddings.npy");
  const std::string clusters = slurp_file(dir / "clusters.csv");
  ASSERT_FALSE(emb.empty());
  const std::string lift = slurp_file(dir / "cluster_lift.csv");
  fs::remove(dir / "clusters.csv");
  fs::create_directories(dir / "clusters.csv" / "blocker");
  const CmdResult r = run_cli(base + " --seed 9");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("clusters.csv"));
  EXPECT_EQ(slurp_file(dir / "summary.json"), summary);
  EXPECT_EQ(slurp_file(dir / "embeddings.npy"), emb);
  EXPECT_EQ(slurp_file(dir / "cluster_lift.csv"), lift);
  for (const auto& e : fs::recursive_directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  (void)clusters;

  fs::remove_all(dir / "clusters.csv");
  fs::remove(dir / "tsne.svg");
  fs::create_directories(dir / "tsne.svg" / "blocker");
  const CmdResult p = run_cli(base + " --seed 9");
  EXPECT_EQ(p.code, 0) << p.out;
  EXPECT_THAT(p.out, HasSubstr("warning: "));
  EXPECT_NE(slurp_file(dir / "summary.json"), summary);  // the new run's files are in place
  EXPECT_TRUE(fs::exists(dir / "clusters.csv"));
}

// Files an earlier run left that this run does not produce are removed, so nothing stale sits
// beside the new results: the model after --folds, logvar.npy after embed without --logvar,
// tsne.svg after cluster without --tsne (unless the folder's embeddings are the model's own),
// and after a retrain everything earlier runs derived from the old model.
TEST(Cli, FilesThisRunDoesNotProduceAreNotLeftStale) {
  fs::path dir = temp_dir("stale");
  const std::string data = std::string(" ") + kSmall + " --out " + dir.string();
  ASSERT_EQ(run_cli("train --model svd --epochs 2" + data).code, 0);
  ASSERT_TRUE(fs::exists(dir / "model.safetensors"));
  const CmdResult folds = run_cli("train --model svd --epochs 2 --folds 2" + data);
  ASSERT_EQ(folds.code, 0) << folds.out;
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  // A trained model going away is said.
  EXPECT_THAT(folds.out, ::testing::ContainsRegex("\nremoved " + dir.string() + "/[^\n]*model.safetensors \\(an "
                                                  "earlier run's, which this run does not produce\\)\n"));

  fs::path vdir = temp_dir("stale_vae");
  ASSERT_EQ(run_cli(std::string("train --epochs 1 --quiet ") + kSmall + " --out " + vdir.string()).code, 0);
  const std::string m = " --model-file " + (vdir / "model.safetensors").string() + " --out " + vdir.string();
  ASSERT_EQ(run_cli("embed --logvar" + m).code, 0);
  ASSERT_TRUE(fs::exists(vdir / "logvar.npy"));
  ASSERT_EQ(run_cli("embed" + m).code, 0);
  EXPECT_FALSE(fs::exists(vdir / "logvar.npy"));
  ASSERT_EQ(run_cli("cluster --tsne" + m).code, 0);
  ASSERT_TRUE(fs::exists(vdir / "tsne.svg"));
  // The folder's embeddings.npy is this model's: the map is kept, recoloured.
  ASSERT_EQ(run_cli("cluster --k 2" + m).code, 0);
  EXPECT_THAT(read_text(vdir / "tsne.svg"), HasSubstr("positions kept from the t-SNE already in this folder"));
  // Without it nothing says the map's positions are this model's: it goes.
  fs::remove(vdir / "embeddings.npy");
  ASSERT_EQ(run_cli("cluster" + m).code, 0);
  EXPECT_FALSE(fs::exists(vdir / "tsne.svg"));
  EXPECT_TRUE(fs::exists(vdir / "clusters.csv"));

  // A retrain into a folder of analyses: what they derived from the old model goes with it.
  fs::path mdir = temp_dir("stale_main");
  const std::string into = " " + std::string(kSmall) + " --out " + mdir.string();
  ASSERT_EQ(run_cli("--epochs 2 --quiet" + into).code, 0);
  const std::string mm = " --model-file " + (mdir / "model.safetensors").string();
  ASSERT_EQ(run_cli("cluster --k 2" + mm + into).code, 0);
  ASSERT_EQ(run_cli("embed --logvar" + mm + into).code, 0);
  for (const char* f : {"popularity", "clusters.csv", "embeddings.npy", "logvar.npy", "cluster_report.html"})
    ASSERT_TRUE(fs::exists(mdir / f)) << f;
  const CmdResult re = run_cli("train --epochs 1 --seed 2 --quiet" + into);
  ASSERT_EQ(re.code, 0) << re.out;
  EXPECT_THAT(re.out, ::testing::ContainsRegex("\nremoved [^\n]*clusters.csv[^\n]*embeddings.npy"));
  EXPECT_THAT(re.out, ::testing::Not(HasSubstr("model.safetensors (an earlier")));  // replaced, not removed
  for (const char* f : {"popularity", "clusters.csv", "cluster_lift.csv", "cluster_movies.csv", "tsne.svg",
                        "embeddings.npy", "user_ids.csv", "logvar.npy", "cluster_report.html"})
    EXPECT_FALSE(fs::exists(mdir / f)) << f;
  for (const char* f : {"model.safetensors", "metrics.csv", "report.html"}) EXPECT_TRUE(fs::exists(mdir / f)) << f;
  // A main job with --no-tsne into a folder holding an earlier map: the note says why it goes
  // and how the main job draws one (not cluster's --tsne, which the main job refuses).
  ASSERT_EQ(run_cli("--epochs 1 --quiet" + into).code, 0);
  ASSERT_TRUE(fs::exists(mdir / "tsne.svg"));
  const CmdResult no_map = run_cli("--epochs 1 --quiet --no-tsne --seed 5" + into);
  ASSERT_EQ(no_map.code, 0) << no_map.out;
  EXPECT_THAT(no_map.out, HasSubstr("tsne.svg of an earlier run is removed: it was drawn from other embeddings (or none "
                                    "are in the folder to compare); leave out --no-tsne to draw this run's\n"));
  EXPECT_FALSE(fs::exists(mdir / "tsne.svg"));
}


// Negative ratings would be negative gains in the seed protocol's graded NDCG and Recall (NDCG
// above 1, Recall below 0): refused there, naming the protocols that threshold them instead; a
// command that trains only to serve the model goes on.
TEST(Cli, NegativeRatingsAreRefusedAsSeedProtocolGains) {
  fs::path dir = temp_dir("negative");
  std::ofstream csv(dir / "neg.csv");
  csv << "u,i,r\n";
  for (int u = 1; u <= 30; ++u)
    for (int i = 1; i <= 8; ++i)
      if ((u + i) % 3 != 0) csv << u << "," << i << "," << -1 - (u * i) % 5 << "\n";
  csv.close();
  const std::string data = " --data " + (dir / "neg.csv").string();
  const CmdResult r = run_cli("train --epochs 1 --quiet --device cpu" + data);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("neg.csv: ratings run from -5, and the seed protocol's NDCG and Recall weigh each test "
                               "item by its rating, which must not be negative"));
  EXPECT_THAT(r.out, Not(HasSubstr("Epoch [")));
  const CmdResult c = run_cli("compare --models popularity --epochs 1" + data);
  EXPECT_NE(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("must not be negative"));
  const CmdResult ok = run_cli("train --model svd --epochs 1 --quiet" + data);
  EXPECT_EQ(ok.code, 0) << ok.out;
  const CmdResult rec = run_cli("recommend --user 1 --top 3 --epochs 1 --quiet --device cpu" + data);
  EXPECT_EQ(rec.code, 0) << rec.out;
  fs::remove_all(dir);
}

// RMSE clips scores to the data's own rating scale (here 2 to 3 stars), the baselines' too:
// popularity's counts clipped to MovieLens' 1..5 would sit up to 3 stars off ratings of 2.
TEST(Cli, RmseClipsToTheDatasRatingScale) {
  fs::path dir = temp_dir("scale23");
  std::ofstream csv(dir / "r.csv");
  csv << "u,i,r\n";
  for (int u = 1; u <= 40; ++u)
    for (int i = 1; i <= 12; ++i)
      if ((u * 7 + i) % 4 != 0) csv << u << "," << i << "," << 2 + (u + i) % 2 << "\n";
  csv.close();
  for (const char* model : {"popularity", "ease"}) {
    const fs::path out = dir / model;
    const CmdResult r = run_cli(std::string("train --quiet --model ") + model + " --data " + (dir / "r.csv").string() +
                                " --out " + out.string());
    ASSERT_EQ(r.code, 0) << r.out;
    const double rmse = read_json(out / "summary.json")["metrics"]["rmse"].get<double>();
    EXPECT_LE(rmse, 1.0) << model;
    EXPECT_GT(rmse, 0.0) << model;
  }
  fs::remove_all(dir);
}

// A rating column far off MovieLens' scale (an id or a count read as the rating) is used as
// given, with a note naming the file and the range; a divergence it causes says so too.
TEST(Cli, RatingsFarOffTheScaleAreNoted) {
  fs::path dir = temp_dir("off_scale");
  std::ofstream(dir / "big.csv") << "u,i,r\n1,1,1e14\n1,2,4\n2,1,3\n2,2,1\n3,1,2\n3,3,5\n";
  const CmdResult r = run_cli("train --epochs 1 --device cpu --lr 1e30 --data " + (dir / "big.csv").string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("big.csv: the ratings run from 1 to 1e+14 (MovieLens: 0.5 to 5 stars)"));
  EXPECT_THAT(r.out, HasSubstr("training diverged at epoch 1 (loss is not finite): lower --lr, or check the data: "
                               "its ratings run from 1 to 1e+14"));
  // Beyond 1e15 a user's squared errors overflow the float sums (RMSE inf): refused at the line.
  std::ofstream(dir / "huge.csv") << "u,i,r\n1,1,4\n1,2,1e30\n2,1,3\n";
  const CmdResult h = run_cli("train --model popularity --data " + (dir / "huge.csv").string());
  EXPECT_EQ(h.code, 1) << h.out;
  EXPECT_THAT(h.out, HasSubstr("huge.csv:3: rating '1e30' is out of range (beyond \u00b11e15"));
  const CmdResult ok = run_cli(std::string("info ") + kSmall);
  EXPECT_THAT(ok.out, Not(HasSubstr("the ratings run from")));
  EXPECT_THAT(ok.out, Not(HasSubstr("are 0")));
  // Ratings of 0 are kept, and said to look like no rating to the autoencoders.
  std::ofstream(dir / "zeros.csv") << "u,i,r\n1,1,0\n1,2,4\n2,1,0\n2,2,1\n3,1,2\n3,3,5\n";
  const CmdResult z = run_cli("info --data " + (dir / "zeros.csv").string());
  EXPECT_EQ(z.code, 0) << z.out;
  EXPECT_THAT(z.out, HasSubstr("zeros.csv: 2 ratings are 0, which the autoencoders' rating vectors cannot tell from no "
                               "rating"));
}

// --out never harms what is already there: the writability probe is a file of the run's own
// (a user's file or link under the old probe name is left alone), a one-file --out that is a
// link writes its target, and one that is a device or pipe (/dev/stdout) is written as it is.
TEST(Cli, OutputPathsAreWrittenThroughNotReplaced) {
  fs::path dir = temp_dir("out_paths");
  std::ofstream(dir / "precious.txt") << "precious";
  fs::create_directories(dir / "run");
  fs::create_symlink("../precious.txt", dir / "run" / ".vae_gpu_write_test");
  const CmdResult r = run_cli(std::string("train --model popularity ") + kSmall + " --out " + (dir / "run").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(read_text(dir / "precious.txt"), "precious");
  EXPECT_TRUE(fs::is_symlink(dir / "run" / ".vae_gpu_write_test"));
  for (const auto& e : fs::directory_iterator(dir / "run"))  // no probe of the run's left behind
    EXPECT_EQ(e.path().filename().string().rfind(".vae_gpu_write_test.", 0), std::string::npos) << e.path();

  fs::create_symlink("recs.csv", dir / "latest.csv");
  const std::string rec = std::string("recommend --model popularity --all-users --top 2 ") + kSmall + " --out ";
  const CmdResult l = run_cli(rec + (dir / "latest.csv").string());
  ASSERT_EQ(l.code, 0) << l.out;
  EXPECT_TRUE(fs::is_symlink(dir / "latest.csv"));
  EXPECT_EQ(read_text(dir / "recs.csv").rfind("user_id,rank,item_id,score\n", 0), 0u);

  // stdout holds the CSV alone; what the run says goes to stderr.
  const std::string err = (dir / "stderr.txt").string();
  const std::string cmd = std::string(VAE_CLI_PATH) + " " + rec + "/dev/stdout 2>" + err;
  const fs::file_type dev_stdout = fs::symlink_status("/dev/stdout").type();  // a link to /proc/self/fd/1
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string csv;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) csv.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << read_text(err);
  EXPECT_EQ(csv.rfind("user_id,rank,item_id,score\n", 0), 0u) << csv.substr(0, 200);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 401) << csv.substr(csv.size() - 200);
  EXPECT_THAT(csv, ::testing::Not(HasSubstr("wrote")));
  EXPECT_THAT(read_text(err), HasSubstr("wrote /dev/stdout: 400 recommendations for 200 users"));
  // The node itself is untouched (what this process's stdout is, a file or a pipe, is not at issue).
  EXPECT_EQ(fs::symlink_status("/dev/stdout").type(), dev_stdout);

  // Where stdout is a file the shell appends to, the CSV is appended: /dev/stdout is written
  // through the open descriptor, not reopened (which truncates) nor renamed over (which unlinks
  // the log under the shell).
  const fs::path log = dir / "log.txt";
  std::ofstream(log) << "earlier line\n";
  const std::string append = "echo before >> " + log.string() + "; " + VAE_CLI_PATH + " " + rec + "/dev/stdout >> " +
                             log.string() + " 2>" + err + "; echo after >> " + log.string();
  ASSERT_EQ(std::system(append.c_str()), 0) << read_text(err);
  const std::string logged = read_text(log);
  EXPECT_EQ(logged.rfind("earlier line\nbefore\nuser_id,rank,item_id,score\n", 0), 0u) << logged.substr(0, 200);
  EXPECT_EQ(std::count(logged.begin(), logged.end(), '\n'), 404);
  EXPECT_EQ(logged.substr(logged.size() - 6), "after\n");
  // Every spelling of the stream, and a link of the user's to it, appends the same way.
  fs::create_symlink("/dev/stdout", dir / "mylink");
  const std::vector<std::string> spellings = {"/dev/fd/1", "/proc/self/fd/1", "//dev/./stdout", (dir / "mylink").string()};
  for (const std::string& fd_path : spellings) {
    const std::string through = std::string(VAE_CLI_PATH) + " " + rec + fd_path + " >> " + log.string() + " 2>" + err;
    ASSERT_EQ(std::system(through.c_str()), 0) << read_text(err);
  }
  const std::string all = read_text(log);
  EXPECT_EQ(all.rfind("earlier line\nbefore\n", 0), 0u);
  EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 404 + 4 * 401);
  EXPECT_TRUE(fs::is_symlink(dir / "mylink"));
  // A closed stdout is refused before anything trains (its number is not lent to a file the
  // program opens later), and so is stdin: it is open for reading, and its file stays as it was.
  const std::string closed = std::string(VAE_CLI_PATH) + " " + rec + "/dev/stdout >&- 2>" + err;
  int status = std::system(closed.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << read_text(err);
  EXPECT_THAT(read_text(err), HasSubstr("/dev/stdout: descriptor 1 was closed when the program started"));
  EXPECT_THAT(read_text(err), Not(HasSubstr("wrote")));
  const std::string in = (dir / "in.txt").string();
  std::ofstream(in) << "input\n";
  const std::string from_stdin = std::string(VAE_CLI_PATH) + " " + rec + "/dev/stdin < " + in + " 2>" + err;
  status = std::system(from_stdin.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << read_text(err);
  EXPECT_THAT(read_text(err), HasSubstr("/dev/stdin: descriptor 0 is open for reading only"));
  EXPECT_EQ(read_text(in), "input\n");
}

// A non-blocking stdout pipe (some launchers leave O_NONBLOCK set) whose reader starts late still
// gets the whole CSV: a full pipe is waited for, not taken for a failed write.
TEST(Cli, ANonBlockingStdoutPipeGetsTheWholeCsv) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    const int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, 2);
    ::execl(VAE_CLI_PATH, VAE_CLI_PATH, "recommend", "--model", "popularity", "--all-users", "--top", "50", "--data",
            "synthetic:users=2000,items=300,ratings=40000", "--device", "cpu", "--out", "/dev/stdout",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  ::sleep(1);  // the pipe's 64 KiB fill long before this reader starts
  std::string csv;
  char buf[65536];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) csv.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 2000 * 50);
  EXPECT_EQ(csv.rfind("user_id,rank,item_id,score\n", 0), 0u);
}

// --ratings from a file: item_id,rating lines (or a header's movieId and rating columns, as in
// a user's rows of ratings.csv) give the list the same pairs inline give; problems are named by
// file and line; a value that is neither a file nor a list is refused before anything trains.
TEST(Cli, RatingsFromAFileFoldInLikeTheInlineList) {
  const fs::path dir = temp_dir("ratings_file");
  const std::string rec = std::string("recommend --model ease --top 5 ") + kSmall + " --ratings ";
  const CmdResult inline_list = run_cli(rec + "\"5:5,17:4,42:2\"");
  ASSERT_EQ(inline_list.code, 0) << inline_list.out;
  const auto list_of = [](const std::string& out) { return out.substr(out.find("Top 5 recommendations")); };
  std::ofstream(dir / "plain.csv") << "5,5\n17,4\r\n\n42,2\n";
  std::ofstream(dir / "cut.csv") << "userId,movieId,rating,timestamp\n9,5,5,1\n9,17,4,1\n9,42,2,1\n9,99999,4,1\n9,3\n";
  std::ofstream(dir / "colon.txt") << "5:5\n17:4\n42:2\n";
  for (const char* f : {"plain.csv", "cut.csv", "colon.txt"}) {
    for (const std::string& how : {std::string(""), std::string("@")}) {
      const CmdResult r = run_cli(rec + how + (dir / f).string());
      ASSERT_EQ(r.code, 0) << f << "\n" << r.out;
      EXPECT_EQ(list_of(r.out), list_of(inline_list.out)) << f;
    }
  }
  const CmdResult cut = run_cli(rec + (dir / "cut.csv").string());
  EXPECT_THAT(cut.out, HasSubstr("warning: " + (dir / "cut.csv").string() + ":5: unknown item id 99999"));
  EXPECT_THAT(cut.out, HasSubstr("warning: " + (dir / "cut.csv").string() + ":6: expected item_id,rating in the "
                                 "header's columns"));
  const CmdResult none = run_cli("recommend --epochs 1 " + std::string(kSmall) + " --ratings " + (dir / "nope.csv").string());
  EXPECT_EQ(none.code, 2) << none.out;
  EXPECT_THAT(none.out, HasSubstr("--ratings " + (dir / "nope.csv").string() + ": no such file, and no item_id:rating list"));
  EXPECT_THAT(none.out, ::testing::Not(HasSubstr("Epoch")));  // refused before training
  const CmdResult folder = run_cli("recommend --epochs 1 " + std::string(kSmall) + " --ratings @" + dir.string());
  EXPECT_EQ(folder.code, 2) << folder.out;
  EXPECT_THAT(folder.out, HasSubstr("--ratings @" + dir.string() + ": is a directory, not a file of item_id:rating lines"));
  fs::remove_all(dir);
}

// Ids holding a comma or a quote, which the generic CSV reader accepts quoted, are written quoted,
// so the file reads back; users given the popular items instead are named, since their score
// column holds item counts instead of the model's scores.
TEST(Cli, AllUsersCsvQuotesIdsAndNamesFallbackUsers) {
  const fs::path dir = temp_dir("rec_quoted");
  {
    std::ofstream f(dir / "q.csv");
    f << "user,item,rating\n";
    for (int u = 0; u < 60; ++u)
      for (int i = 0; i < 40; ++i)
        if ((u * 7 + i * 3) % 5 < 2) f << "\"u" << u << ", \"\"x\"\"\",item" << i << "," << 3 + (u + i) % 3 << "\n";
    for (int u = 0; u < 60; u += 3) f << "\"u" << u << ", \"\"x\"\"\",\"sku,A6\",5\n";
    for (int i = 0; i < 6; ++i) f << "lukewarm," << "item" << i << ",2\n";  // no rating >= 4: nothing to fold in
  }
  const std::string csv = (dir / "recs.csv").string();
  const CmdResult r = run_cli("recommend --model multvae --protocol heldout --epochs 1 --quiet --device cpu --all-users "
                              "--top 5 --data " + (dir / "q.csv").string() + " --out " + csv);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: 1 user without usable ratings got the most popular items (their score = the "
                               "item's number of ratings): user lukewarm\n"));
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "user_id,rank,item_id,score");
  std::set<std::string> users, items;
  int rows = 0;
  std::vector<std::string_view> f;
  std::vector<std::string> storage;
  while (std::getline(in, line)) {
    ASSERT_EQ(vae::text::split_csv(line, &f, &storage), "") << line;
    ASSERT_EQ(f.size(), 4u) << line;
    users.emplace(f[0]);
    items.emplace(f[2]);
    ++rows;
  }
  EXPECT_EQ(rows, 61 * 5);
  EXPECT_EQ(users.size(), 61u);
  EXPECT_EQ(users.count("u3, \"x\""), 1u);
  EXPECT_EQ(items.count("sku,A6"), 1u);  // rated by a third of the users: in some lists

  // Several such users: named as the CSV writes them, the first five.
  {
    std::ofstream f(dir / "q.csv", std::ios::app);
    for (int u = 0; u < 6; ++u)
      for (int i = 0; i < 3; ++i) f << "\"cold," << u << "\",item" << i << ",1\n";
  }
  const CmdResult many = run_cli("recommend --model multvae --protocol heldout --epochs 1 --quiet --device cpu "
                                 "--all-users --top 5 --data " + (dir / "q.csv").string() + " --out " + csv);
  ASSERT_EQ(many.code, 0) << many.out;
  EXPECT_THAT(many.out, HasSubstr("note: 7 users without usable ratings got the most popular items (their score = the "
                                  "item's number of ratings): users lukewarm, \"cold,0\", \"cold,1\", \"cold,2\", "
                                  "\"cold,3\", ...\n"));
}

// Under heldout metrics.csv's epochs are scored on the validation users, and its columns say so;
// the test users' figures are summary.json's.
TEST(Cli, HeldoutMetricsCsvNamesItsValidationColumns) {
  const fs::path dir = temp_dir("heldout_csv");
  const CmdResult r = run_cli(std::string("train --model multvae --protocol heldout --epochs 2 --quiet ") + kSmall +
                              " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string text = read_text(dir / "metrics.csv");
  EXPECT_EQ(text.substr(0, text.find('\n')),
            "epoch,train_loss,val_loss,val_recall@20,val_recall@50,val_recall@100,val_ndcg@20,val_ndcg@50,"
            "val_ndcg@100,val_coverage@20,train_seconds,eval_seconds");
  const nlohmann::json s = read_json(dir / "summary.json");
  EXPECT_TRUE(s["metrics"].contains("ndcg@100")) << s.dump();
  fs::remove_all(dir);
}

// The temporal protocol holds out each user's latest positive: the run says so, records the split
// (leave_last) in summary.json and the model file, and the file re-evaluates on that same split,
// whatever --leave-last is given then. CDAE, whose evaluated users are now training users.
TEST(Cli, TemporalProtocolTrainsSavesAndReEvaluatesOnItsSplit) {
  const fs::path dir = temp_dir("temporal"), again = temp_dir("temporal_again");
  const CmdResult r = run_cli(std::string("train --model cdae --protocol temporal --epochs 2 ") + kSmall + " --out " +
                              dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("on [0-9]+ users' latest positive for the test \\(the one before for "
                                              "validation; [0-9]+ users train on their earlier ones\\)"));
  const std::string text = read_text(dir / "metrics.csv");
  EXPECT_EQ(text.rfind("epoch,train_loss,val_loss,val_recall@20,", 0), 0u) << text.substr(0, 80);
  const nlohmann::json s = read_json(dir / "summary.json");
  EXPECT_EQ(s["protocol"], "temporal");
  EXPECT_EQ(s["leave_last"], 1);
  EXPECT_EQ(s["epoch_selection"], "validation");
  ASSERT_TRUE(s["metrics"].contains("ndcg@100")) << s.dump();
  EXPECT_GT(s["users_evaluated"].get<int>(), 100);

  const CmdResult e = run_cli("train --model-file " + (dir / "model.safetensors").string() + " --leave-last 2 " +
                              kSmall + " --out " + again.string());
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("note: --leave-last 2 ignored: the model file's training split uses 1"));
  const nlohmann::json t = read_json(again / "summary.json");
  EXPECT_EQ(t["protocol"], "temporal");
  EXPECT_EQ(t["metrics"], s["metrics"]);
  fs::remove_all(dir);
  fs::remove_all(again);
}

// Data without usable times: the temporal protocol says which file and line, before training.
TEST(Cli, TemporalProtocolNamesTheLineWithoutATime) {
  const fs::path dir = temp_dir("temporal_csv");
  std::ofstream(dir / "r.csv") << "user,item,rating,timestamp\na,x,5,10\nb,x,4,\n";
  const CmdResult r = run_cli("train --protocol temporal --device cpu --data " + (dir / "r.csv").string());
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("has no rating times (" + (dir / "r.csv").string() +
                               ":3: timestamp '' is neither an integer (seconds since 1970) nor a date"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("Epoch [")));
  const CmdResult seed = run_cli("train --leave-last 2 --epochs 1 --quiet " + std::string(kSmall));
  ASSERT_EQ(seed.code, 0) << seed.out;
  EXPECT_THAT(seed.out, HasSubstr("note: --leave-last is ignored by vae (seed protocol); it applies to the temporal "
                                  "protocol"));
  // Too few positives per user to hold any out: every user trains, nobody is scored, and the note says from
  // how many positives a user would be (2·3 + 1 with --leave-last 3).
  const CmdResult few = run_cli("train --protocol temporal --leave-last 3 --epochs 1 --quiet --device cpu "
                                "--data synthetic:users=20,items=30,ratings=60");
  EXPECT_EQ(few.code, 2) << few.out;
  EXPECT_THAT(few.out, HasSubstr("holds no ratings to predict: every metric would be undefined (nan); use a larger data "
                                 "set or a lower --threshold or --leave-last (a user is scored from 7 positives up)"));
  fs::remove_all(dir);
}

// One date for everyone: the split, its record in summary.json and the model file, and
// re-evaluation on the file's cuts whatever --test-from says.
TEST(Cli, CutoffProtocolTrainsSavesAndReEvaluatesOnItsSplit) {
  const fs::path dir = temp_dir("cutoff"), again = temp_dir("cutoff_again");
  const CmdResult r = run_cli(std::string("train --model multvae --protocol cutoff --test-from 0.8 --epochs 2 ") +
                              kSmall + " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  // Users who liked nothing before the validation cut are scored on what they liked after it.
  EXPECT_THAT(r.out, ::testing::ContainsRegex("on [0-9]+ users' positives from 1998-[0-9-]+ [0-9:]+ on for the test "
                                              "\\([0-9]+ of them first liked something from 199[78]-[0-9-]+ [0-9:]+ on; "
                                              "[0-9]+ users' from 199[78]-[0-9-]+ [0-9:]+ for validation; [0-9]+ users "
                                              "train on the ratings before\\)"));
  const nlohmann::json s = read_json(dir / "summary.json");
  EXPECT_EQ(s["protocol"], "cutoff");
  EXPECT_EQ(s["epoch_selection"], "validation");
  ASSERT_TRUE(s["val_from"].is_number_integer() && s["test_from"].is_number_integer()) << s.dump();
  EXPECT_LT(s["val_from"].get<int64_t>(), s["test_from"].get<int64_t>());
  EXPECT_GT(s["users_evaluated"].get<int>(), 10);
  EXPECT_FALSE(s.contains("leave_last"));

  // The same cut given as seconds gives the same split and figures.
  const CmdResult secs = run_cli("train --model multvae --protocol cutoff --epochs 2 --quiet --test-from " +
                                 std::to_string(s["test_from"].get<int64_t>()) + " " + kSmall + " --out " + again.string());
  ASSERT_EQ(secs.code, 0) << secs.out;
  EXPECT_EQ(read_json(again / "summary.json")["metrics"], s["metrics"]);

  const CmdResult e = run_cli("train --model-file " + (dir / "model.safetensors").string() + " --test-from 0.5 " + kSmall +
                              " --out " + again.string());
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, ::testing::ContainsRegex("note: --test-from 0.5 ignored: the model file's training split cuts at "
                                              "1998-[0-9-]+ [0-9:]+\n"));
  const nlohmann::json t = read_json(again / "summary.json");
  EXPECT_EQ(t["protocol"], "cutoff");
  EXPECT_EQ(t["test_from"], s["test_from"]);
  EXPECT_EQ(t["metrics"], s["metrics"]);
  fs::remove_all(dir);
  fs::remove_all(again);
}

TEST(Cli, CutoffProtocolRefusesCutsItCannotRead) {
  const CmdResult bad = run_cli(std::string("train --protocol cutoff --test-from 1998-02-30 --epochs 1 ") + kSmall);
  EXPECT_NE(bad.code, 0);
  EXPECT_THAT(bad.out, HasSubstr("--test-from '1998-02-30' is neither a share of the ratings in (0, 1)"));
  EXPECT_THAT(bad.out, ::testing::Not(HasSubstr("Epoch [")));
  EXPECT_THAT(bad.out, ::testing::Not(HasSubstr("device:")));  // refused before the backend is set up
  const CmdResult order = run_cli(std::string("train --protocol cutoff --test-from 1998-01-01 --val-from 1998-02-01 "
                                              "--epochs 1 ") + kSmall);
  EXPECT_NE(order.code, 0);
  EXPECT_THAT(order.out, HasSubstr("--val-from 1998-02-01 is not before --test-from 1998-01-01"));
  EXPECT_THAT(order.out, ::testing::Not(HasSubstr("device:")));
  // A cut after every rating, with and without --val-from: nothing to test on, and the message
  // says which way to move it.
  for (const char* val : {"--val-from 0.8 ", ""}) {
    const CmdResult late = run_cli(std::string("train --protocol cutoff --test-from 2030-01-01 ") + val +
                                   "--epochs 1 --quiet " + kSmall);
    EXPECT_NE(late.code, 0) << late.out;
    EXPECT_THAT(late.out, HasSubstr("--test-from 2030-01-01 is after the last rating"));
    EXPECT_THAT(late.out, HasSubstr("no rating is left to test on; move it earlier"));
  }
  const CmdResult early = run_cli(std::string("train --protocol cutoff --val-from 1970-01-02 --epochs 1 --quiet ") + kSmall);
  EXPECT_NE(early.code, 0) << early.out;
  EXPECT_THAT(early.out, HasSubstr("--val-from 1970-01-02 is not after the first rating ("));
  EXPECT_THAT(early.out, HasSubstr("no rating is left to train on; move it later"));
  const CmdResult ignored = run_cli(std::string("train --test-from 0.5 --epochs 1 --quiet ") + kSmall);
  ASSERT_EQ(ignored.code, 0) << ignored.out;
  EXPECT_THAT(ignored.out, HasSubstr("note: --test-from is ignored by vae (seed protocol); it applies to the cutoff "
                                     "protocol"));
}

// Few optimiser steps are said where they change the outcome: Mult-VAE's KL weight, annealed over
// 200 000 steps by default, ends near zero on a small set; other models just train little.
TEST(Cli, FewTrainingStepsAreNoted) {
  const CmdResult m = run_cli(std::string("train --model multvae --protocol heldout --epochs 3 --quiet ") + kSmall);
  ASSERT_EQ(m.code, 0) << m.out;
  // 200 users, 20 % each for validation and test: 120 training rows, one batch of 500.
  // Weights min(0.2, step / 200000) at steps 0, 1, 2.
  EXPECT_THAT(m.out, HasSubstr("note: multvae's KL weight rises by 1/200000 a step up to beta 0.2 (reached at step 40000) and this "
                               "run makes 3 (3 epochs "
                               "of 1 step): its last step's weight is 1e-05; --anneal-steps 10 or less, more --epochs "
                               "or a smaller --batch-size reach beta"));
  // Step 2's weight min(0.2, 2 / 10) is beta: reached, although before the anneal's end.
  const CmdResult given = run_cli(std::string("train --model multvae --protocol heldout --epochs 3 --quiet "
                                              "--anneal-steps 10 ") + kSmall);
  ASSERT_EQ(given.code, 0) << given.out;
  EXPECT_THAT(given.out, ::testing::Not(HasSubstr("KL weight")));
  const CmdResult short_of = run_cli(std::string("train --model multvae --protocol heldout --epochs 3 --quiet "
                                                 "--anneal-steps 11 ") + kSmall);
  ASSERT_EQ(short_of.code, 0) << short_of.out;
  EXPECT_THAT(short_of.out, HasSubstr("its last step's weight is 0.181818"));
  // --anneal-steps 0 is no annealing: beta 0.2 from the first step, as summary.json records.
  const fs::path off = temp_dir("anneal_off");
  const CmdResult zero = run_cli(std::string("train --model multvae --protocol heldout --epochs 3 --quiet "
                                             "--anneal-steps 0 ") + kSmall + " --out " + off.string());
  ASSERT_EQ(zero.code, 0) << zero.out;
  EXPECT_THAT(zero.out, ::testing::Not(HasSubstr("KL weight")));
  const nlohmann::json zs = read_json(off / "summary.json");
  EXPECT_EQ(zs["config"]["anneal_steps"].get<int64_t>(), 0);
  EXPECT_EQ(zs["config"]["beta"].get<double>(), 0.2);
  const CmdResult c = run_cli(std::string("train --model cdae --epochs 2 --quiet ") + kSmall);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, ::testing::ContainsRegex("note: 2 epochs of [0-9]+ steps make only [0-9]+ Adam steps"));
  const CmdResult c1 = run_cli(std::string("train --model cdae --epochs 1 --quiet ") + kSmall);
  ASSERT_EQ(c1.code, 0) << c1.out;
  EXPECT_THAT(c1.out, ::testing::ContainsRegex("note: 1 epoch of [0-9]+ steps? makes only [0-9]+ Adam steps?;"));
}

// --patience stops a run whose monitored metric has not improved for that many epochs and keeps
// the best epoch's weights. A learning rate far below a float weight's last bit leaves the model
// (and so every validation figure) unchanged: epoch 1 stays best, and epoch 1 + patience stops.
TEST(Cli, PatienceStopsEarlyAndKeepsTheBestEpoch) {
  const fs::path dir = temp_dir("patience");
  const CmdResult r = run_cli(std::string("train --model multvae --protocol heldout --epochs 10 --patience 2 "
                                          "--lr 1e-30 ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("Early stop: no improvement in NDCG@100 for 2 epochs; best epoch 1\n"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("Epoch [4/10]")));
  const auto rows = cli_test::parse_csv(read_text(dir / "metrics.csv"));
  ASSERT_EQ(rows.size(), 3u);
  const nlohmann::json s = read_json(dir / "summary.json");
  EXPECT_EQ(s["epochs"].get<int>(), 3);
  EXPECT_EQ(s["best_epoch"].get<int>(), 1);
  EXPECT_EQ(s["epoch_selection"], "validation");
  EXPECT_EQ(rows[2].at("val_ndcg@100"), rows[0].at("val_ndcg@100"));
}

// A flag the run does not read is said to be ignored, never silently dropped; flags it reads
// get no such note.
TEST(Cli, OptionsTheRunDoesNotReadAreNoted) {
  const CmdResult r = run_cli(std::string("train --epochs 1 --quiet --dropout 0.3 --ks 5 --lambda 2 ") + kSmall);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: --dropout is ignored by vae (seed protocol); it applies to Mult-VAE and CDAE"));
  EXPECT_THAT(r.out, HasSubstr("note: --ks is ignored by vae (seed protocol); it applies to the heldout, temporal and cutoff protocols"));
  EXPECT_THAT(r.out, HasSubstr("note: --lambda is ignored by vae"));
  // --adamw only changes how a weight decay is applied: without one it does nothing.
  const CmdResult a = run_cli(std::string("train --epochs 1 --quiet --adamw ") + kSmall);
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_THAT(a.out, HasSubstr("note: --adamw changes how --weight-decay is applied, and --weight-decay is 0"));
  const CmdResult aw = run_cli(std::string("train --epochs 1 --quiet --adamw --weight-decay 0.01 ") + kSmall);
  ASSERT_EQ(aw.code, 0) << aw.out;
  EXPECT_THAT(aw.out, Not(HasSubstr("--adamw changes")));
  const CmdResult m = run_cli(std::string("train --model multvae --protocol heldout --epochs 1 --quiet --dropout 0.3 "
                                          "--ks 5 --beta 0.1 ") + kSmall);
  ASSERT_EQ(m.code, 0) << m.out;
  EXPECT_THAT(m.out, ::testing::Not(HasSubstr("ignored")));
  const CmdResult s = run_cli(std::string("train --model svd --epochs 1 --quiet --patience 3 --batch-size 32 ") + kSmall);
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_THAT(s.out, HasSubstr("note: --patience is ignored by svd (ratings protocol)"));
  EXPECT_THAT(s.out, HasSubstr("note: --batch-size is ignored by svd (ratings protocol); it applies to the autoencoders, EASE and popularity"));
  // Flags of the GEMMs and the first layer: said to be ignored where no matrix is multiplied or
  // there is no first layer; info reads only its data and model file.
  const CmdResult e = run_cli(std::string("train --model ease --quiet --batch-size 8 --sparse-input on ") + kSmall);
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("note: --batch-size only sets how many users ease scores at a time (memory), not the "
                               "results"));
  EXPECT_THAT(e.out, Not(HasSubstr("--batch-size is ignored")));
  const CmdResult e_default = run_cli(std::string("train --model ease --quiet ") + kSmall);
  ASSERT_EQ(e_default.code, 0) << e_default.out;
  const auto final_line = [](const std::string& out) { return out.substr(out.find("No training epochs")); };
  EXPECT_EQ(final_line(e.out), final_line(e_default.out));  // as the note says: the results are the same
  EXPECT_THAT(e.out, HasSubstr("note: --sparse-input is ignored by ease (seed protocol); it applies to the autoencoders' first layer"));
  const CmdResult p = run_cli(std::string("train --model svd --epochs 1 --quiet --precision fp32 ") + kSmall);
  EXPECT_THAT(p.out, HasSubstr("note: --precision is ignored by svd"));
  // --hidden sizes the trained models' layers (SVD's factors); popularity has none.
  const CmdResult h = run_cli(std::string("train --model popularity --quiet --hidden 100 ") + kSmall);
  ASSERT_EQ(h.code, 0) << h.out;
  EXPECT_THAT(h.out, HasSubstr("note: --hidden is ignored by popularity (seed protocol); it applies to AutoRec, Mult-VAE, CDAE, "
                               "SVD and SVD++"));
  const CmdResult hm = run_cli(std::string("train --model multvae --epochs 1 --quiet --hidden 100 ") + kSmall);
  ASSERT_EQ(hm.code, 0) << hm.out;
  EXPECT_THAT(hm.out, Not(HasSubstr("--hidden is ignored")));
  const CmdResult tf = run_cli(std::string("train --epochs 1 --quiet --tf32 ") + kSmall);
  ASSERT_EQ(tf.code, 0) << tf.out;
  EXPECT_THAT(tf.out, HasSubstr("note: --precision tf32 is a GPU tensor-core format; the CPU runs fp32 GEMMs"));
  const CmdResult i = run_cli(std::string("info --epochs 3 --seed 2 ") + kSmall);
  ASSERT_EQ(i.code, 0) << i.out;
  EXPECT_THAT(i.out, HasSubstr("note: info reads only --data and --model-file; ignored: --seed, "));
  EXPECT_THAT(i.out, HasSubstr("--epochs\n"));
}


// Second fuzzing pass, small fixes: one metrics.csv column per metric (--k 100 under the seed
// protocol), a note for cut-offs beyond the items, the --all-users CSV's folder made before
// training, embed --sample's noise from --seed, and a --threshold no user reaches named as such.
TEST(Cli, SmallOutputFixesFromTheSecondFuzzingPass) {
  fs::path dir = temp_dir("pass2");
  const std::string data = " --device cpu --data synthetic:users=60,items=140,ratings=2400";
  const CmdResult k = run_cli("train --k 100 --epochs 1 --out " + (dir / "k").string() + data);
  ASSERT_EQ(k.code, 0) << k.out;
  std::ifstream f(dir / "k" / "metrics.csv");
  std::string header;
  std::getline(f, header);
  EXPECT_EQ(header, "epoch,train_loss,test_loss,ndcg@100,recall@100,rmse,coverage@100,train_seconds,eval_seconds");
  const CmdResult big = run_cli("train --k 500 --epochs 1" + data);
  EXPECT_THAT(big.out, HasSubstr("cut-off 500 exceeds the"));

  const fs::path csv = dir / "new" / "folder" / "recs.csv";
  const CmdResult rec = run_cli("recommend --all-users --top 3 --epochs 1 --quiet --out " + csv.string() + data);
  ASSERT_EQ(rec.code, 0) << rec.out;
  EXPECT_TRUE(fs::exists(csv));

  const std::string model = (dir / "k" / "model.safetensors").string();
  std::string emb[3];
  int i = 0;
  for (const char* seed : {"3", "3", "4"}) {
    const fs::path out = dir / ("emb" + std::to_string(i));
    const CmdResult e = run_cli("embed --sample --seed " + std::string(seed) + " --model-file " + model + " --out " +
                                out.string() + data);
    ASSERT_EQ(e.code, 0) << e.out;
    emb[i++] = slurp_file(out / "embeddings.npy");
  }
  EXPECT_EQ(emb[0], emb[1]);
  EXPECT_NE(emb[0], emb[2]);

  const CmdResult t = run_cli("train --model multvae --protocol heldout --threshold 1e300 --epochs 1" + data);
  EXPECT_EQ(t.code, 2) << t.out;
  EXPECT_THAT(t.out, HasSubstr("--threshold 1e+300"));
}

// metrics.csv leaves a field empty where there is no figure: popularity and EASE are fitted, not
// trained (no train or test loss), while a trained model's row has both; evaluation is timed.
TEST(Cli, MetricsCsvLeavesFiguresAModelLacksEmpty) {
  const fs::path dir = temp_dir("csvempty");
  const std::string data = " --device cpu --data synthetic:users=60,items=140,ratings=2400";
  for (const char* m : {"popularity", "ease", "multvae"}) {
    const fs::path out = dir / m;
    const CmdResult c = run_cli(std::string("train --epochs 1 --model ") + m + " --out " + out.string() + data);
    ASSERT_EQ(c.code, 0) << c.out;
    const auto rows = cli_test::parse_csv(cli_test::read_text(out / "metrics.csv"));
    ASSERT_EQ(rows.size(), 1u) << m;
    const auto& r = rows[0];
    const bool trained = std::string(m) == "multvae";
    EXPECT_EQ(r.at("epoch"), trained ? "1" : "0") << m;
    EXPECT_EQ(r.at("train_loss").empty(), !trained) << m;
    EXPECT_EQ(r.at("test_loss").empty(), !trained) << m;
    if (trained) {
      EXPECT_GT(std::stod(r.at("train_loss")), 0.0) << m;
    }
    for (const auto& kv : r)
      EXPECT_EQ(kv.second.find("nan"), std::string::npos) << m << " " << kv.first;
    EXPECT_GT(std::stod(r.at("ndcg@20")), 0.0) << m;
    EXPECT_GT(std::stod(r.at("eval_seconds")), 0.0) << m;
  }
}

// Third fuzzing pass: messages that named the wrong cause, and inputs taken silently.
TEST(Cli, FixesFromTheThirdFuzzingPass) {
  fs::path dir = temp_dir("pass3");
  const std::string data = " --device cpu --data synthetic:users=60,items=140,ratings=2400";
  // --lr 0 used to mean the model's default rate without a word.
  const CmdResult lr = run_cli("train --lr 0 --epochs 1" + data);
  EXPECT_EQ(lr.code, 2) << lr.out;
  EXPECT_THAT(lr.out, HasSubstr("--lr: must be > 0, got 0"));
  // The CSV of --all-users would replace the model it is computed from.
  ASSERT_EQ(run_cli("train --epochs 1 --quiet --out " + (dir / "m").string() + data).code, 0);
  const fs::path model = dir / "m" / "model.safetensors";
  const std::string before = slurp_file(model);
  const CmdResult self = run_cli("recommend --all-users --model-file " + model.string() + " --out " + model.string() + data);
  EXPECT_NE(self.code, 0) << self.out;
  EXPECT_THAT(self.out, HasSubstr("is the --model-file being read"));
  EXPECT_EQ(slurp_file(model), before);
  // EASE with a tiny lambda: the option to raise, not a LAPACK code.
  const CmdResult ease = run_cli("train --model ease --ease-lambda 1e-30" + data);
  EXPECT_NE(ease.code, 0) << ease.out;
  EXPECT_THAT(ease.out, HasSubstr("raise --ease-lambda"));
  EXPECT_THAT(ease.out, Not(HasSubstr("dpotrf")));
  // A latent size that does not fit: the memory plan names --latent.
  const CmdResult latent = run_cli("train --latent 1048576 --epochs 1" + data);
  EXPECT_EQ(latent.code, 2) << latent.out;
  EXPECT_THAT(latent.out, HasSubstr("or --latent (now 1048576"));
  // Divergence from a huge weight decay names it beside --lr.
  const CmdResult wd = run_cli("train --weight-decay 1e10 --adamw --epochs 1" + data);
  EXPECT_NE(wd.code, 0) << wd.out;
  EXPECT_THAT(wd.out, HasSubstr("lower --lr or --weight-decay (1e+10)"));
  // Whole-number bounds print whole.
  const CmdResult sw = run_cli("compare --models multvae --sweep hidden=8,2000000 --epochs 1" + data);
  EXPECT_EQ(sw.code, 2) << sw.out;
  EXPECT_THAT(sw.out, HasSubstr("(from 1 to 1048576)"));
}

// A model file records the split it was trained on (seed protocol: the test fraction), and
// evaluating it uses that split, whatever --test-fraction says now: the metrics are the
// training run's own (evaluating on another split would score users the model trained on).
TEST(Cli, AModelFileIsEvaluatedOnTheSplitItWasTrainedOn) {
  fs::path dir = temp_dir("split");
  const std::string data = " --device cpu --quiet --data synthetic:users=100,items=140,ratings=2400";
  ASSERT_EQ(run_cli("train --epochs 2 --test-fraction 0.3 --out " + (dir / "a").string() + data).code, 0);
  const std::string model = (dir / "a" / "model.safetensors").string();
  for (const char* extra : {"", " --test-fraction 0.5", " --seed 7"}) {
    const CmdResult r = run_cli("train --model-file " + model + extra + " --out " + (dir / "b").string() + data);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(read_json(dir / "b" / "summary.json")["metrics"], read_json(dir / "a" / "summary.json")["metrics"])
        << extra;
    if (std::string(extra) == " --test-fraction 0.5") {
      EXPECT_THAT(r.out, HasSubstr("--test-fraction 0.5 ignored"));
    }
    if (std::string(extra) == " --seed 7") {
      EXPECT_THAT(r.out, HasSubstr("note: --seed 7 ignored: the model file's training split uses seed 1"));
    }
    // The model goes along as it is (saving it again would lose its training record).
    EXPECT_EQ(read_text(dir / "b" / "model.safetensors"), read_text(dir / "a" / "model.safetensors"));
    EXPECT_EQ(read_json(dir / "b" / "summary.json")["note"],
              "model file " + model + " (epoch 2 of its training) evaluated, not trained");
  }
  // A model file that cannot be copied into --out fails the command before anything there is
  // replaced: the earlier evaluation stands, and no temporary of this run is left.
  const std::string summary_b = read_text(dir / "b" / "summary.json");
  fs::create_directories(dir / "b" / "model.safetensors.tmp");
  { std::ofstream(dir / "b" / "model.safetensors.tmp" / "keep") << "x"; }
  const CmdResult blocked = run_cli("train --model-file " + model + " --out " + (dir / "b").string() + data);
  EXPECT_EQ(blocked.code, 1) << blocked.out;
  EXPECT_THAT(blocked.out, HasSubstr("model.safetensors.tmp: cannot copy " + model + " here: "));
  EXPECT_EQ(read_text(dir / "b" / "summary.json"), summary_b);
  for (const auto& e : fs::directory_iterator(dir / "b"))
    EXPECT_TRUE(e.path().extension() != ".tmp" || e.path().filename() == "model.safetensors.tmp") << e.path();
  fs::remove_all(dir / "b" / "model.safetensors.tmp");
  // Into the folder it was trained into, an evaluation would replace the training history.
  const std::string history = read_text(dir / "a" / "metrics.csv");
  const CmdResult same = run_cli("train --model-file " + model + " --out " + (dir / "a").string() + data);
  EXPECT_EQ(same.code, 2) << same.out;
  EXPECT_THAT(same.out, HasSubstr("holds --model-file's training run"));
  EXPECT_EQ(read_text(dir / "a" / "metrics.csv"), history);
  fs::copy_file(dir / "a" / "model.safetensors", dir / "a" / "old.safetensors");  // under another name too
  const CmdResult other = run_cli("train --model-file " + (dir / "a" / "old.safetensors").string() + " --out " +
                                  (dir / "a").string() + data);
  EXPECT_EQ(other.code, 2) << other.out;
  EXPECT_EQ(read_text(dir / "a" / "metrics.csv"), history);
  // An SVD file's split stands as well, and says so.
  ASSERT_EQ(run_cli("train --model svd --epochs 1 --out " + (dir / "s").string() + data).code, 0);
  const CmdResult svd = run_cli("train --model-file " + (dir / "s" / "model.safetensors").string() + " --seed 7" + data);
  ASSERT_EQ(svd.code, 0) << svd.out;
  EXPECT_THAT(svd.out, HasSubstr("note: --seed 7 ignored: the model file's training split uses seed 1"));
  EXPECT_EQ(std::count(history.begin(), history.end(), '\n'), 3) << history;
  // A ratings-protocol autoencoder keeps its ratings split (here the random one) over --fold.
  ASSERT_EQ(run_cli("train --model i-autorec --epochs 2 --out " + (dir / "i").string() + data).code, 0);
  const CmdResult fold = run_cli("train --model-file " + (dir / "i" / "model.safetensors").string() + " --fold 2 --out " +
                                 (dir / "i2").string() + data);
  ASSERT_EQ(fold.code, 0) << fold.out;
  EXPECT_THAT(fold.out, HasSubstr("note: --fold 2 ignored: the model file's training split uses random"));
  EXPECT_EQ(read_json(dir / "i2" / "summary.json")["metrics"], read_json(dir / "i" / "summary.json")["metrics"]);
}


// Ranking models under the ratings protocol: their RMSE is said to measure scores, not ratings;
// AutoRec, which predicts ratings, gets no such note.
TEST(Cli, RankingModelsUnderTheRatingsProtocolAreNoted) {
  for (const char* m : {"cdae", "multvae", "autorec"}) {
    const CmdResult r = run_cli(std::string("train --protocol ratings --epochs 1 --model ") + m + " " + kSmall);
    ASSERT_EQ(r.code, 0) << m << ": " << r.out;
    const std::string note = std::string("note: ") + m + " scores items for ranking; its outputs are not ratings";
    if (std::string(m) == "autorec") EXPECT_THAT(r.out, Not(HasSubstr("scores items for ranking"))) << r.out;
    else EXPECT_THAT(r.out, HasSubstr(note)) << r.out;
    EXPECT_THAT(r.out, ::testing::ContainsRegex("final metrics on random 90/10 \\([0-9]+ test ratings\\): rmse=")) << m;
  }
}

// Flags a CPU run or a k-fold run does not read are noted like the model-specific ones.
// --profile-ops times the ops of Adam training: SVD's own SGD and the closed-form baselines
// have none, and say so.
TEST(Cli, ProfileOpsWithoutAdamTrainingIsNoted) {
  for (const char* m : {"svd", "ease"}) {
    const CmdResult r = run_cli(std::string("train --model ") + m + " --epochs 1 --quiet --profile-ops " + kSmall);
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr(std::string("note: --profile-ops is ignored by ") + m)) << m;
  }
  const CmdResult v = run_cli(std::string("train --epochs 1 --quiet --profile-ops ") + kSmall);
  ASSERT_EQ(v.code, 0) << v.out;
  EXPECT_THAT(v.out, Not(HasSubstr("--profile-ops is ignored")));
  EXPECT_THAT(v.out, HasSubstr("Wall time per op over 1 epoch ("));
}

TEST(Cli, CudaGraphOnTheCpuAndFoldWithFoldsAreNoted) {
  const CmdResult g = run_cli(std::string("--epochs 1 --cuda-graph off --no-baseline --no-tsne --quiet ") + kSmall);
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_THAT(g.out, HasSubstr("note: --cuda-graph is ignored on the CPU (--device cpu)"));
  const CmdResult f = run_cli(std::string("train --model svd --epochs 1 --folds 2 --fold 1 --quiet ") + kSmall);
  ASSERT_EQ(f.code, 0) << f.out;
  EXPECT_THAT(f.out, HasSubstr("note: --fold is ignored with --folds 2"));
  const CmdResult k = run_cli(std::string("train --model svd --epochs 1 --fold 1 --quiet ") + kSmall);
  EXPECT_THAT(k.out, ::testing::Not(HasSubstr("--fold is ignored")));
}

// The files after "wrote DIR/" (comma-separated, relative to DIR).
std::set<std::string> wrote_files(const std::string& out, const fs::path& dir) {
  const std::string key = "wrote " + dir.string() + "/";
  const size_t at = out.find(key);
  std::set<std::string> files;
  if (at == std::string::npos) return files;
  std::stringstream line(out.substr(at + key.size(), out.find('\n', at) - at - key.size()));
  std::string f;
  while (std::getline(line, f, ',')) files.insert(f.substr(f.find_first_not_of(' ')));
  return files;
}

std::set<std::string> files_under(const fs::path& dir) {
  std::set<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename() != vae::kWrittenFilesName)
      files.insert(e.path().lexically_relative(dir).generic_string());
  return files;
}

// The main job with SVD ends as the autoencoders' does: user 1's top 30 and the K = 3 clusters (of
// the users' factor vectors), with the t-SNE picture under --out; no popularity row, said why.
TEST(Cli, SvdMainJobClustersTheUserVectors) {
  const fs::path dir = temp_dir("svd_main");
  const CmdResult r = run_cli(std::string("--model svd --epochs 2 --quiet ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("Top 30 recommendations for user "));
  EXPECT_THAT(r.out, HasSubstr("note: no popularity comparison: svd is scored on rating prediction (RMSE)"));
  EXPECT_THAT(r.out, HasSubstr("K-Means on the SVD user vectors (p_u) of 200 users (100 dimensions, k = 3"));
  const auto rows = cli_test::parse_csv(read_text(dir / "clusters.csv"));
  ASSERT_EQ(rows.size(), 200u);
  EXPECT_FALSE(rows[0].at("x").empty());  // the t-SNE map's positions
  EXPECT_TRUE(fs::exists(dir / "tsne.svg"));
  EXPECT_TRUE(fs::exists(dir / "embeddings.npy"));
  EXPECT_FALSE(fs::exists(dir / "popularity"));
  fs::remove_all(dir);
}

// stdout holds the results alone (epoch lines, tables, lists), so `2>/dev/null` or a pipe gets no
// note or warning: those go to stderr, in order with the results on a terminal.
TEST(Cli, NotesAndWarningsGoToStderr) {
  const fs::path dir = temp_dir("streams");
  const CmdResult both = run_cli(std::string("train --epochs 2 ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(both.code, 0) << both.out;
  EXPECT_THAT(both.out, HasSubstr("note: 2 epochs of 3 steps make only 6 Adam steps"));
  const CmdResult out = run_cli(std::string("train --epochs 2 ") + kSmall, /*stdout_only=*/true);
  ASSERT_EQ(out.code, 0);
  EXPECT_THAT(out.out, HasSubstr("Epoch [2/2]"));
  EXPECT_THAT(out.out, Not(HasSubstr("note:")));
  // recommend's warnings about --ratings, and the main job's notes.
  const std::string model = (dir / "model.safetensors").string();
  const CmdResult rec = run_cli(std::string("recommend --model-file ") + model + " " + kSmall +
                                    " --ratings 1:5,99999:4,abc --top 3",
                                /*stdout_only=*/true);
  ASSERT_EQ(rec.code, 0);
  EXPECT_THAT(rec.out, HasSubstr("Top 3 recommendations"));
  EXPECT_THAT(rec.out, Not(HasSubstr("warning:")));
  const CmdResult rec_all = run_cli(std::string("recommend --model-file ") + model + " " + kSmall +
                                    " --ratings 1:5,99999:4,abc --top 3");
  EXPECT_THAT(rec_all.out, HasSubstr("warning: unknown item id 99999"));
  const CmdResult main_job = run_cli(std::string("--epochs 1 --no-tsne ") + kSmall, /*stdout_only=*/true);
  ASSERT_EQ(main_job.code, 0);
  EXPECT_THAT(main_job.out, HasSubstr("Top 30 recommendations for user"));
  EXPECT_THAT(main_job.out, Not(HasSubstr("note:")));
  fs::remove_all(dir);
}

// A model file that is missing or broken is said before anything about the data; one read
// through a pipe is read once (its metadata and its tensors from the same bytes).
TEST(Cli, ModelFileIsCheckedFirstAndMayComeThroughAPipe) {
  const fs::path dir = temp_dir("model_first");
  const CmdResult missing = run_cli("recommend --user 1 --model-file " + (dir / "nope.safetensors").string());
  EXPECT_EQ(missing.code, 1) << missing.out;
  EXPECT_THAT(missing.out, HasSubstr((dir / "nope.safetensors").string() + ": no such file"));
  EXPECT_THAT(missing.out, Not(HasSubstr("using ")));  // no word about data first
  std::ofstream(dir / "bad.safetensors") << "not a model";
  const CmdResult bad = run_cli("info --model-file " + (dir / "bad.safetensors").string());
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_THAT(bad.out, Not(HasSubstr("users")));  // no data summary before the error
  ASSERT_EQ(run_cli(std::string("train --epochs 1 --quiet ") + kSmall + " --out " + (dir / "m").string()).code, 0);
  const std::string model = (dir / "m" / "model.safetensors").string();
  const CmdResult file = run_cli("recommend --user 5 --top 4 --model-file " + model, true);
  const CmdResult piped = run_cli("recommend --user 5 --top 4 --model-file /dev/stdin < " + model, true);
  ASSERT_EQ(piped.code, 0) << run_cli("recommend --user 5 --top 4 --model-file /dev/stdin < " + model).out;
  EXPECT_EQ(piped.out, file.out);
  fs::remove_all(dir);
}

// A model file whose data changed in place since training says so, rather than naming the same
// folder twice as two different data sets.
TEST(Cli, AModelFileSaysItsDataChangedInPlace) {
  const fs::path dir = temp_dir("data_changed");
  {
    std::ofstream f(dir / "r.csv");
    f << "u,i,r\n";
    for (int u = 1; u <= 30; ++u)
      for (int i = 1; i <= 10; ++i)
        if ((u + 2 * i) % 3 != 0) f << u << "," << i << "," << 1 + (u * i) % 5 << "\n";
  }
  const std::string data = " --data " + (dir / "r.csv").string();
  ASSERT_EQ(run_cli("train --epochs 1 --quiet --device cpu" + data + " --out " + (dir / "m").string()).code, 0);
  std::ofstream(dir / "r.csv", std::ios::app) << "31,1,4\n";
  const CmdResult r = run_cli("recommend --user 1 --device cpu" + data + " --model-file " +
                              (dir / "m" / "model.safetensors").string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("the data at " + (dir / "r.csv").string() + " has changed since the model was trained on it"));
  fs::remove_all(dir);
}

// A loss that climbs by orders of magnitude without overflowing is a diverging run too: said,
// against the untrained model's loss on its first batch; a sound run gets no such line.
TEST(Cli, AFiniteButExplodingLossIsWarnedAbout) {
  const CmdResult bad = run_cli(std::string("train --model autorec --epochs 4 --lr 10 --quiet ") + kSmall);
  ASSERT_EQ(bad.code, 0) << bad.out;
  EXPECT_THAT(bad.out, ::testing::ContainsRegex("warning: the training loss rose from [0-9.e+]+ \\(the untrained "
                                                "model's, on its first batch\\) to [0-9.e+]+ \\(epoch 4\\): the run "
                                                "is diverging"));
  const CmdResult ok = run_cli(std::string("train --model autorec --epochs 4 --quiet ") + kSmall);
  ASSERT_EQ(ok.code, 0) << ok.out;
  EXPECT_THAT(ok.out, Not(HasSubstr("warning:")));
}

// Options an SVD model file does not read are named, not dropped: its training split (--fold),
// its schedule; the main job of a model without a per-user code says it clusters nothing.
TEST(Cli, SvdModelFileNamesTheOptionsItIgnores) {
  const fs::path dir = temp_dir("svd_file_notes");
  ASSERT_EQ(run_cli(std::string("train --model svd --epochs 1 --quiet ") + kSmall + " --out " + dir.string()).code, 0);
  const CmdResult r = run_cli(std::string("train --fold 3 --svd-schedule blocked --quiet ") + kSmall +
                              " --model-file " + (dir / "model.safetensors").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: --fold 3 ignored: the model file's training split uses random"));
  EXPECT_THAT(r.out, HasSubstr("ignored: --svd-schedule\n"));
  const CmdResult main_job = run_cli(std::string("--model autorec --epochs 1 --quiet ") + kSmall);
  ASSERT_EQ(main_job.code, 0) << main_job.out;
  EXPECT_THAT(main_job.out, HasSubstr("note: no K-Means of the users: autorec has no per-user code to cluster"));
  fs::remove_all(dir);
}

// A folder of the user's given as --out keeps the user's files, even under a run file's name:
// only files an earlier run is recorded as writing there are removed.
TEST(Cli, OutKeepsFilesNoRunWrote) {
  const fs::path dir = temp_dir("users_own");
  std::ofstream(dir / "tsne.svg") << "mine";
  std::ofstream(dir / "notes.txt") << "mine";
  const CmdResult r = run_cli(std::string("train --epochs 1 --quiet ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: kept " + dir.string() + "/tsne.svg: this run does not produce it, but no earlier "
                               "run of vae_gpu is recorded as writing it"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("removed ")));
  EXPECT_EQ(read_text(dir / "tsne.svg"), "mine");
  EXPECT_EQ(read_text(dir / "notes.txt"), "mine");
  // The main job then writes tsne.svg: the user's file under that name is kept as tsne.svg.orig,
  // said; a later train run removes the run's tsne.svg as an earlier run's.
  const CmdResult main_job = run_cli(std::string("--epochs 1 --quiet ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(main_job.code, 0) << main_job.out;
  EXPECT_THAT(main_job.out, HasSubstr("note: " + dir.string() + "/tsne.svg was there, and no earlier run of vae_gpu "
                                      "is recorded as writing it (.vae_gpu_files): this run's tsne.svg replaced it, "
                                      "and it is kept as " + dir.string() + "/tsne.svg.orig"));
  EXPECT_EQ(read_text(dir / "tsne.svg.orig"), "mine");
  EXPECT_NE(read_text(dir / "tsne.svg"), "mine");
  const CmdResult again = run_cli(std::string("train --epochs 1 --quiet ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_THAT(again.out, HasSubstr("removed " + dir.string() + "/"));
  EXPECT_THAT(again.out, ::testing::Not(HasSubstr("was there")));  // its own files now, recorded
  EXPECT_FALSE(fs::exists(dir / "tsne.svg"));
  EXPECT_EQ(read_text(dir / "tsne.svg.orig"), "mine");
  EXPECT_EQ(read_text(dir / "notes.txt"), "mine");
  fs::remove_all(dir);
}

// A user's file under the name of a file the run writes is not lost: it is kept as NAME.orig (then
// NAME.orig-2, ... when that is taken too), and a second run writing over its own file keeps nothing.
TEST(Cli, OutKeepsAReplacedUsersFileAsOrig) {
  const fs::path dir = temp_dir("users_replaced");
  std::ofstream(dir / "metrics.csv") << "my metrics";
  std::ofstream(dir / "metrics.csv.orig") << "older";
  const CmdResult r = run_cli(std::string("train --epochs 1 --quiet ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("it is kept as " + dir.string() + "/metrics.csv.orig-2\n"));
  EXPECT_EQ(read_text(dir / "metrics.csv.orig-2"), "my metrics");
  EXPECT_EQ(read_text(dir / "metrics.csv.orig"), "older");
  EXPECT_EQ(read_text(dir / "metrics.csv").rfind("epoch,", 0), 0u);
  const CmdResult again = run_cli(std::string("train --epochs 1 --quiet ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_THAT(again.out, ::testing::Not(HasSubstr("was there")));
  EXPECT_FALSE(fs::exists(dir / "metrics.csv.orig-3"));
  fs::remove_all(dir);
}

// Every "wrote" line names exactly the files the run put in a fresh --out: the SVD's curves.svg
// and the main job's popularity/ folder included.
TEST(Cli, WroteLinesNameExactlyTheFilesWritten) {
  const fs::path root = temp_dir("wrote");
  const fs::path main_dir = root / "main", svd = root / "svd", folds = root / "folds", cl = root / "cluster";
  const std::vector<std::pair<fs::path, std::string>> runs = {
      {main_dir, "--epochs 2 --quiet"},
      {svd, "train --model svd --epochs 2 --quiet"},
      {folds, "train --model svd --epochs 2 --folds 2 --quiet"},
      {cl, "cluster --n-init 2 --model-file " + (main_dir / "model.safetensors").string()},
  };
  for (const auto& [dir, args] : runs) {
    const CmdResult r = run_cli(args + " " + kSmall + " --out " + dir.string());
    ASSERT_EQ(r.code, 0) << args << "\n" << r.out;
    EXPECT_EQ(wrote_files(r.out, dir), files_under(dir)) << args << "\n" << r.out;
  }
  // Each folder records what was written into it, so a later run removes only those.
  EXPECT_EQ(vae::read_written_files(cl.string()), files_under(cl));
  EXPECT_EQ(vae::read_written_files((main_dir / "popularity").string()),
            (std::set<std::string>{"metrics.csv", "summary.json", "user_metrics.csv"}));
  EXPECT_TRUE(files_under(svd).count("curves.svg"));
  EXPECT_TRUE(files_under(main_dir).count("popularity/summary.json"));
  fs::remove_all(root);
}

// The epoch the final metrics come from is worded by how it was picked: "Best" only where a
// validation set chose it; the seed and ratings protocols report the last epoch and say so; the
// untrained baselines say they have no epochs, EASE with the λ it used (also in summary.json).
TEST(Cli, TheReportedEpochIsWordedByHowItWasChosen) {
  const CmdResult seed = run_cli(std::string("train --epochs 2 --quiet ") + kSmall);
  ASSERT_EQ(seed.code, 0) << seed.out;
  EXPECT_THAT(seed.out, HasSubstr("Final epoch 2 (the seed protocol has no validation users, so the last epoch is "
                                  "reported); final metrics on"));
  EXPECT_THAT(seed.out, ::testing::Not(HasSubstr("Best epoch")));
  const CmdResult ratings = run_cli(std::string("train --model autorec --protocol ratings --epochs 2 --quiet ") + kSmall);
  ASSERT_EQ(ratings.code, 0) << ratings.out;
  EXPECT_THAT(ratings.out, HasSubstr("Final epoch 2 (the ratings protocol has no validation ratings"));
  const CmdResult held = run_cli(std::string("train --model multvae --protocol heldout --epochs 2 --quiet ") + kSmall);
  ASSERT_EQ(held.code, 0) << held.out;
  EXPECT_THAT(held.out, ::testing::ContainsRegex("Best epoch (1 \\(on the validation users\\)|2 \\(on the validation users; the last one: "
                                                 "validation was still improving, more --epochs may help\\)); final metrics on"));
  const CmdResult pop = run_cli(std::string("train --model popularity --quiet ") + kSmall);
  ASSERT_EQ(pop.code, 0) << pop.out;
  EXPECT_THAT(pop.out, HasSubstr("No training epochs (popularity"));
  EXPECT_THAT(pop.out, ::testing::Not(HasSubstr("epoch 0")));
  const fs::path dir = temp_dir("ease_lambda");
  const CmdResult ease =
      run_cli(std::string("train --model ease --protocol heldout --quiet ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(ease.code, 0) << ease.out;
  const nlohmann::json s = read_json(dir / "summary.json");
  ASSERT_TRUE(s.contains("ease_lambda")) << s.dump();
  std::ostringstream lambda;
  lambda << s["ease_lambda"].get<double>();
  EXPECT_THAT(ease.out, HasSubstr("No training epochs: EASE is solved in closed form with lambda " + lambda.str() +
                                  " (chosen on validation users)"));
  fs::remove_all(dir);
  // Each lambda's solve is timed (minutes at tens of thousands of items); a choice at the grid's
  // edge is said to be one. On this set (few users, many items) the smallest lambda wins.
  const CmdResult edge = run_cli("train --model ease --protocol heldout --device cpu "
                                 "--data synthetic:users=150,items=600,ratings=2000,groups=1");
  ASSERT_EQ(edge.code, 0) << edge.out;
  EXPECT_THAT(edge.out, ::testing::ContainsRegex("EASE lambda 2000: validation NDCG@100 [0-9.]+ \\([0-9]+\\.[0-9]{2} s\\)"));
  EXPECT_THAT(edge.out, HasSubstr("note: EASE's best lambda, 10, is at the edge of the grid (10 to 2000)"));
  EXPECT_THAT(edge.out, HasSubstr("with lambda 10 (chosen on validation users)"));
  EXPECT_THAT(edge.out, ::testing::ContainsRegex("memory plan \\(EASE, 160 items\\): the items x items solve [0-9.]+ MiB"));
  // Its items x items solve is planned: too large for any machine here, it is refused before XᵀX is
  // built (0.9 TB at 200 000 items), naming the cause.
  const CmdResult huge = run_cli("train --model ease --device cpu --data synthetic:users=50,items=200000,ratings=500");
  EXPECT_EQ(huge.code, 2) << huge.out;
  EXPECT_THAT(huge.out, ::testing::ContainsRegex("memory plan: EASE at 200000 items needs 91[0-9]{4}\\.[0-9] MiB"));
  EXPECT_THAT(huge.out, HasSubstr("grows with the square of the items"));
  // Refit for an analysis command, EASE says which fit answers.
  const CmdResult rec = run_cli(std::string("recommend --model ease --user 1 --top 2 ") + kSmall);
  ASSERT_EQ(rec.code, 0) << rec.out;
  EXPECT_THAT(rec.out, HasSubstr("ease on the seed protocol's training users: lambda 200 (the default; the seed "
                                 "protocol has no validation users to choose it on)"));
}

// A subcommand's help shows the options of the main app that it accepts, not only --help.
TEST(Cli, SubcommandHelpListsTheSharedOptions) {
  for (const char* sub : {"train", "info", "cluster"}) {
    const CmdResult h = run_cli(std::string(sub) + " --help");
    EXPECT_EQ(h.code, 0) << sub;
    EXPECT_THAT(h.out, HasSubstr(std::string("given before or after `") + sub + "`")) << sub;
    for (const char* opt : {"--data", "--epochs", "--device", "--model-file"}) EXPECT_THAT(h.out, HasSubstr(opt)) << sub;
  }
  // cluster's own --k (the number of clusters) is listed once: after `cluster`, --k is it.
  const CmdResult c = run_cli("cluster --help");
  const std::string shared = c.out.substr(c.out.find("given before or after"));
  EXPECT_THAT(c.out, HasSubstr("clusters"));
  EXPECT_THAT(shared, ::testing::Not(::testing::HasSubstr("\n  --k ")));
}

// The main app's --k is the ranking cut-off: given before `cluster` it is noted, not taken for
// the number of clusters; cluster's own --k is never noted as ignored by the protocol.
TEST(Cli, GlobalKBeforeClusterIsNoted) {
  const CmdResult g = run_cli(std::string("--k 6 cluster --epochs 1 --n-init 2 --quiet ") + kSmall);
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_THAT(g.out, HasSubstr("note: --k 6 before `cluster` is the ranking cut-off of the seed protocol's metrics, "
                               "which cluster does not report: it is not the number of clusters; clustering with k = 3"));
  const CmdResult c = run_cli(std::string("cluster --model multvae --protocol heldout --k 2 --n-init 2 --epochs 1 "
                                          "--quiet ") + kSmall);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("k = 2"));
  EXPECT_THAT(c.out, ::testing::Not(HasSubstr("--k is ignored")));
  EXPECT_THAT(c.out, ::testing::Not(HasSubstr("before `cluster`")));
}

// Output of `cmd | vae_gpu args` (stdout and stderr).
std::string run_cli_piped(const std::string& cmd, const std::string& args) {
  FILE* p = popen((cmd + " | " + VAE_CLI_PATH + " " + args + " 2>&1").c_str(), "r");
  std::string out;
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

// AutoRec's --folds: one model per fold of the ratings (the folds SVD's --folds draws, covering
// every rating once), RMSE and MAE as mean ± population std over the folds; no model file and no
// per-user file (K models, K test sets); the same seed gives the same figures.
TEST(Cli, AutoRecFoldsCrossValidateTheRatings) {
  const fs::path dir = temp_dir("autorec_folds");
  const std::string out = " --out " + (dir / "run").string();
  const CmdResult earlier = run_cli(std::string("train --model i-autorec --epochs 1 --quiet ") + kSmall + out);
  ASSERT_EQ(earlier.code, 0) << earlier.out;
  ASSERT_TRUE(fs::exists(dir / "run" / "model.safetensors"));
  const CmdResult r = run_cli(std::string("train --model i-autorec --folds 3 --epochs 2 ") + kSmall + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::regex line(R"(Fold ([1-3])/3: RMSE ([0-9.]+), MAE ([0-9.]+) \(([0-9]+) test ratings\))");
  std::vector<double> rmse, mae;
  int64_t tested = 0;
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), line); it != std::sregex_iterator(); ++it) {
    EXPECT_EQ(std::stoi((*it)[1]), static_cast<int>(rmse.size()) + 1);
    rmse.push_back(std::stod((*it)[2]));
    mae.push_back(std::stod((*it)[3]));
    tested += std::stoll((*it)[4]);
  }
  ASSERT_EQ(rmse.size(), 3u) << r.out;
  EXPECT_EQ(tested, 8000);  // each rating is tested once
  EXPECT_THAT(r.out, HasSubstr("i-autorec 3-fold: RMSE "));
  // Its ± is a spread over folds, not the 95 % interval ± means everywhere else: said on the line.
  EXPECT_THAT(r.out, ::testing::ContainsRegex("MAE [0-9.]+ ± [0-9.]+ \\(mean ± std over the folds"));
  EXPECT_THAT(r.out, HasSubstr("no model.safetensors written"));
  const nlohmann::json j = read_json(dir / "run" / "summary.json");
  EXPECT_EQ(j["eval_set"], "3-fold cross-validation");
  EXPECT_EQ(j["protocol"], "ratings");
  const double m = (rmse[0] + rmse[1] + rmse[2]) / 3;
  EXPECT_NEAR(j["metrics"]["rmse"].get<double>(), m, 1e-4);  // the fold lines have 4 decimals
  EXPECT_NEAR(j["metrics"]["mae"].get<double>(), (mae[0] + mae[1] + mae[2]) / 3, 1e-4);
  double ss = 0;
  for (double v : rmse) ss += (v - m) * (v - m);
  EXPECT_NEAR(j["metrics"]["rmse_std"].get<double>(), std::sqrt(ss / 3), 2e-4);
  EXPECT_GT(j["metrics"]["rmse_std"].get<double>(), 0);
  EXPECT_FALSE(fs::exists(dir / "run" / "model.safetensors"));  // the earlier model would not match
  EXPECT_FALSE(fs::exists(dir / "run" / "user_metrics.csv"));
  // The curve is each epoch's mean over the folds: its last epoch is the cross-validated figure.
  const auto curve = cli_test::parse_csv(read_text(dir / "run" / "metrics.csv"));
  ASSERT_EQ(curve.size(), 2u);
  EXPECT_NEAR(std::stod(curve.back().at("rmse")), j["metrics"]["rmse"].get<double>(), 1e-6);
  EXPECT_NEAR(std::stod(curve.back().at("mae")), j["metrics"]["mae"].get<double>(), 1e-6);
  // SVD's --folds holds out the very same ratings.
  const CmdResult svd = run_cli(std::string("train --model svd --folds 3 --epochs 1 ") + kSmall);
  ASSERT_EQ(svd.code, 0) << svd.out;
  const std::regex svd_line(R"(Fold ([1-3])/3 \(([0-9]+) test ratings\))");
  std::vector<std::string> a, b;
  for (auto it = std::sregex_iterator(svd.out.begin(), svd.out.end(), svd_line); it != std::sregex_iterator(); ++it)
    a.push_back((*it)[2]);
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), line); it != std::sregex_iterator(); ++it)
    b.push_back((*it)[4]);
  EXPECT_EQ(a, b);
  // SVD prints each fold's result as AutoRec does: their mean is the cross-validated RMSE.
  double svd_sum = 0;
  int svd_folds = 0;
  for (auto it = std::sregex_iterator(svd.out.begin(), svd.out.end(), line); it != std::sregex_iterator(); ++it, ++svd_folds)
    svd_sum += std::stod((*it)[2]);
  ASSERT_EQ(svd_folds, 3) << svd.out;
  std::smatch final_rmse;
  ASSERT_TRUE(std::regex_search(svd.out, final_rmse, std::regex("cross-validation: rmse=([0-9.]+)"))) << svd.out;
  EXPECT_NEAR(svd_sum / 3, std::stod(final_rmse[1]), 1e-4);
  // User-based AutoRec: --folds picks the ratings protocol; the same seed, the same figures.
  const CmdResult u1 = run_cli(std::string("train --model autorec --folds 2 --epochs 1 --quiet ") + kSmall + out);
  ASSERT_EQ(u1.code, 0) << u1.out;
  const nlohmann::json first = read_json(dir / "run" / "summary.json");
  EXPECT_EQ(first["model"], "autorec");
  EXPECT_EQ(first["protocol"], "ratings");
  ASSERT_EQ(run_cli(std::string("train --model autorec --folds 2 --epochs 1 --quiet ") + kSmall + out).code, 0);
  EXPECT_EQ(read_json(dir / "run" / "summary.json")["metrics"], first["metrics"]);
  EXPECT_THAT(u1.out, ::testing::Not(HasSubstr("Fold 1/2")));  // --quiet: the final lines only,
  EXPECT_THAT(u1.out, HasSubstr("autorec 2-fold: RMSE "));        // the mean ± std summary among them
  const CmdResult s1 = run_cli(std::string("train --model svd --folds 2 --epochs 1 --quiet ") + kSmall);
  ASSERT_EQ(s1.code, 0) << s1.out;
  EXPECT_THAT(s1.out, HasSubstr("svd 2-fold: RMSE "));
  EXPECT_THAT(s1.out, ::testing::Not(HasSubstr("Epoch [")));
  // Another protocol, named, is refused before anything trains.
  const CmdResult seed = run_cli(std::string("train --model autorec --folds 2 --protocol seed ") + kSmall);
  EXPECT_EQ(seed.code, 2) << seed.out;
  EXPECT_THAT(seed.out, HasSubstr("--folds cross-validates the ratings protocol's RMSE: use --protocol ratings, not seed"));
  fs::remove_all(dir);
}

// Wording: --folds names the models it is for; a pipe is named by its path (not "stdin" or
// /dev/fd/63's "63"); the generated data says what it is; fold lines do not repeat themselves.
TEST(Cli, MessagesSayWhatTheyMean) {
  const CmdResult f = run_cli(std::string("train --model vae --folds 3 ") + kSmall);
  EXPECT_EQ(f.code, 2) << f.out;
  EXPECT_THAT(f.out, HasSubstr("--folds (k-fold cross-validation of the ratings) is for the rating predictors svd, "
                               "svdpp, autorec and i-autorec; vae trains on one split"));
  EXPECT_THAT(f.out, ::testing::Not(HasSubstr("at least 2 folds")));

  const fs::path dir = temp_dir("pipe");
  {
    std::ofstream c(dir / "r.csv");
    c << "user,item,rating\n1,1,5\n1,2,3\n2,2,4\n2,3,1\n";
  }
  const std::string piped = run_cli_piped("cat " + (dir / "r.csv").string(), "info --data /dev/stdin");
  EXPECT_THAT(piped, HasSubstr("dataset   /dev/stdin (csv)\n")) << piped;
  EXPECT_THAT(run_cli("info --data " + (dir / "r.csv").string()).out, HasSubstr("dataset   r (csv, "));

  const CmdResult s = run_cli(std::string("info ") + kSmall);
  EXPECT_THAT(s.out, HasSubstr("using generated data (synthetic:users=200,items=300,ratings=8000,groups=4,seed=3)"));
  EXPECT_THAT(s.out, ::testing::Not(HasSubstr("data set synthetic")));

  const CmdResult k = run_cli(std::string("train --model svd --epochs 1 --folds 2 ") + kSmall);
  ASSERT_EQ(k.code, 0) << k.out;
  EXPECT_THAT(k.out, ::testing::ContainsRegex("Fold 1/2 \\([0-9]+ test ratings\\)"));
  EXPECT_THAT(k.out, ::testing::Not(HasSubstr("(fold 1/2)")));
  fs::remove_all(dir);
}

// SVD's epoch_seconds_median is the median of its epochs' times (metrics.csv's train_seconds),
// not the run's time divided by the epochs.
TEST(Cli, SvdEpochSecondsMedianIsTheMedianEpoch) {
  const fs::path dir = temp_dir("svd_median");
  const CmdResult r = run_cli(std::string("train --model svd --epochs 5 --quiet ") + kSmall + " --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::ifstream csv(dir / "metrics.csv");
  std::string line;
  std::getline(csv, line);
  std::vector<std::string> header;
  {
    std::stringstream h(line);
    for (std::string c; std::getline(h, c, ',');) header.push_back(c);
  }
  const size_t col = std::find(header.begin(), header.end(), "train_seconds") - header.begin();
  ASSERT_LT(col, header.size()) << line;
  std::vector<double> secs;
  while (std::getline(csv, line)) {
    std::stringstream row(line);
    std::string c;
    for (size_t i = 0; i <= col; ++i) std::getline(row, c, ',');
    secs.push_back(std::stod(c));
  }
  ASSERT_EQ(secs.size(), 5u);
  std::sort(secs.begin(), secs.end());
  const double median = read_json(dir / "summary.json")["epoch_seconds_median"].get<double>();
  EXPECT_NEAR(median, secs[2], 1e-6 * secs[2] + 1e-12);
  fs::remove_all(dir);
}

// The notebook VAE at its own KL weight ends level with popularity and the main job says what
// changes that; with --beta 0.0001 it learns the planted tastes, beats popularity, and no note.
// Barely trained, far below popularity, it is told it had few updates: compare's notes, all of them.
TEST(Cli, MainJobExplainsAVaeLevelWithPopularity) {
  const std::string base = "--device cpu --data synthetic:users=943,items=1682,ratings=100000";
  const CmdResult level = run_cli(base + " --epochs 4");
  ASSERT_EQ(level.code, 0) << level.out;
  EXPECT_THAT(level.out, ::testing::ContainsRegex("note: vae ends within 2 % of popularity \\(ndcg@20 [0-9.]+ vs [0-9.]+\\) "
                                                  "after [0-9]+ updates \\(4 epochs of [0-9]+ batches\\): its KL term "
                                                  "\\(--beta 1\\) collapses the latent code"));
  // Its clusters, however high their silhouette, are of that collapsed code: no dimension of the
  // latent means moves with the user, said beside them.
  EXPECT_THAT(level.out, HasSubstr("Latent code: 0 of 64 dimensions active (their mean varies across users: variance above 0.01)"));
  EXPECT_THAT(level.out, HasSubstr("note: no latent dimension is active: the posterior has collapsed to the prior"));
  EXPECT_LT(level.out.find("Cluster sizes:"), level.out.find("note: no latent dimension is active"));
  // Without --out there is no file for the t-SNE picture: said, not skipped silently.
  EXPECT_THAT(level.out, HasSubstr("note: no t-SNE map without --out: give --out DIR for DIR/tsne.svg"));
  const CmdResult low = run_cli(base + " --epochs 20 --beta 0.0001");
  ASSERT_EQ(low.code, 0) << low.out;
  EXPECT_THAT(low.out, Not(HasSubstr("popularity (ndcg")));
  EXPECT_THAT(low.out, Not(HasSubstr("collapsed")));
  EXPECT_THAT(low.out, ::testing::ContainsRegex("Latent code: [1-9][0-9]* of 64 dimensions active"));
  // Far below popularity (barely trained) is not the collapse: few updates are.
  const CmdResult under = run_cli("--device cpu --data synthetic:users=300,items=300,ratings=8000 --epochs 3 --lr 0.00001");
  ASSERT_EQ(under.code, 0) << under.out;
  EXPECT_THAT(under.out, Not(HasSubstr("collapses the latent code")));
  EXPECT_THAT(under.out, ::testing::ContainsRegex("note: vae ends (far )?below popularity \\(ndcg@20 [0-9.]+ vs [0-9.]+\\) "
                                                  "after [0-9]+ updates \\(3 epochs of [0-9]+ batches\\): few for a network"));
  std::smatch m;
  const std::regex row("NDCG@20 +([0-9.]+) +([0-9.]+)");
  ASSERT_TRUE(std::regex_search(low.out, m, row)) << low.out;
  EXPECT_GT(std::stod(m[1]), 1.2 * std::stod(m[2]));
}

// A validation set too small to score (NaN at every lambda) leaves EASE at its default lambda
// instead of lambda 0 and an internal error.
TEST(Cli, EaseWithNothingToValidateKeepsItsDefaultLambda) {
  const CmdResult r =
      run_cli("train --model ease --protocol heldout --device cpu --data synthetic:users=40,items=30,ratings=200,seed=2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("no validation user could be scored, so lambda stays at its default"));
  EXPECT_THAT(r.out, HasSubstr("final metrics"));
}

// The same too-small validation set under a trained model: no epoch can be chosen on it, so the
// last one is kept and reported as such (it used to keep epoch 1 and call it the best).
TEST(Cli, AValidationSetThatIsNeverScoredKeepsTheLastEpoch) {
  const CmdResult r = run_cli(
      "train --model multvae --protocol heldout --epochs 3 --quiet --device cpu "
      "--data synthetic:users=40,items=30,ratings=200,seed=2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("Final epoch 3 (no validation user could be scored at any epoch, so the last epoch is "
                               "reported)"));
  EXPECT_THAT(r.out, Not(HasSubstr("Best epoch")));
}

// A --test-fraction that draws every user of a small data set for the test leaves nothing to
// train on: a usage error naming the flag, not "training diverged: lower --lr" (the VAEs), an
// internal check (CDAE) or popularity's figures of no data with exit code 0.
TEST(Cli, ATestFractionLeavingNoTrainingUsersIsAUsageError) {
  for (const char* model : {"vae", "cdae", "popularity"}) {
    const CmdResult r = run_cli(std::string("train --model ") + model +
                                " --test-fraction 0.99 --epochs 1 --device cpu "
                                "--data synthetic:users=3,items=4,ratings=6,groups=1");
    EXPECT_EQ(r.code, 2) << model << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr("--test-fraction 0.99 makes all 3 users test users")) << model;
    EXPECT_THAT(r.out, Not(HasSubstr("diverged")));
    EXPECT_THAT(r.out, Not(HasSubstr(".cpp:")));  // no internal check's source location
  }
}

// A mistyped option gets the nearest real ones (a letter off, or two swapped); a subcommand's
// option given before its subcommand is told where it goes.
TEST(Cli, MistypedAndMisplacedOptionsGetAHint) {
  // Subcommands: a misspelt one, `help`, and a second one.
  CmdResult s = run_cli("trian --epochs 1");
  EXPECT_EQ(s.code, 2) << s.out;
  EXPECT_THAT(s.out, HasSubstr("hint: trian is not a subcommand; did you mean train?"));
  EXPECT_THAT(run_cli("help").out, HasSubstr("hint: vae_gpu --help lists the subcommands"));
  EXPECT_THAT(run_cli("train recommend").out, HasSubstr("hint: one subcommand a run (train was given first)"));
  EXPECT_THAT(run_cli("train --model vae --epochs 0").out, Not(HasSubstr("hint:")));  // a value is no subcommand
  CmdResult r = run_cli("--epoch 2");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("hint: --epoch is not an option; did you mean --epochs?"));
  r = run_cli("train --modle vae");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("did you mean --model?"));
  r = run_cli("--user 1 recommend");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("hint: --user belongs to `recommend`: give it after the subcommand"));
  r = run_cli("--top 3");
  EXPECT_THAT(r.out, HasSubstr("hint: --top belongs to `recommend` or `similar`"));
  r = run_cli("similar --item train --top 0");  // "train" is --item's value here, not the subcommand
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("belongs to")));
  r = run_cli("--qwertyuiop 1");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("hint:")));
}

// An option given twice is named with its count, one without its value is said to need one (not
// CLI11's "At Most 1 required" / "1 required ... missing"); the run stops before anything runs.
TEST(Cli, AnOptionGivenTwiceIsNamed) {
  CmdResult r = run_cli("cluster --k 3 --k 4 --data synthetic:users=60,items=40,ratings=600");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("vae_gpu: --k was given 2 times; give it once"));
  EXPECT_THAT(r.out, Not(HasSubstr("At Most")));
  r = run_cli("--epochs=2 --epochs 3 --epochs 4");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("--epochs was given 3 times; give it once"));
  r = run_cli("cluster --data synthetic:users=60,items=40,ratings=600 --k");  // the value left out
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("vae_gpu: --k needs a value (INT in [1 - 1000000])"));
  EXPECT_THAT(r.out, Not(HasSubstr("required")));
  r = run_cli("--ks 1 2");  // another parse error keeps CLI11's words
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("not expected"));
}

// info summarises the metadata as one cluster profile would: genre shares, men, age, occupations.
TEST(Cli, InfoSummarisesGenresAndUsers) {
  const CmdResult r = run_cli("info --data synthetic:users=300,items=200,ratings=6000");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\ngenres \\(share of the ratings' genre tags\\): [A-Za-z'-]+ [0-9.]+%, "));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nusers: [0-9.]+% men, median age [0-9.]+; occupations [a-z]+ [0-9.]+%"));
  // No metadata, no such lines.
  const fs::path d = temp_dir("info_plain");
  std::ofstream(d / "r.csv") << "user,item,rating\n1,1,4\n2,1,3\n";
  const CmdResult plain = run_cli("info --data " + (d / "r.csv").string());
  ASSERT_EQ(plain.code, 0) << plain.out;
  EXPECT_THAT(plain.out, Not(HasSubstr("genres (share")));
  EXPECT_THAT(plain.out, Not(HasSubstr("\nusers:")));
}

// A CSV header maps the columns by name, and the run says so; names it does not know keep the
// positional order with a note; a header contradicting that order is refused at line 1.
TEST(Cli, CsvHeaderNamesTheColumns) {
  const fs::path d = temp_dir("csv_header");
  std::ofstream(d / "sw.csv") << "item,user,rating\nsku1,u1,5\nsku2,u1,4\nsku3,u1,2\nsku1,u2,3\n";
  const CmdResult r = run_cli("info --data " + (d / "sw.csv").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\nnote: " + (d / "sw.csv").string() +
                               ": columns by header: user=user, item=item, rating=rating\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nusers +2\n"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("\nitems +3\n"));
  std::ofstream(d / "p.csv") << "a,b,c\nx,y,1\n";
  const CmdResult p = run_cli("info --data " + (d / "p.csv").string());
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_THAT(p.out, HasSubstr("note: " + (d / "p.csv").string() +
                               ": header names 'a', 'b', 'c' not recognised: columns taken in the order user, item, "
                               "rating[, timestamp] (user=a, item=b, rating=c)\n"));
  std::ofstream(d / "nr.csv") << "user,item,time\nx,y,1\n";
  const CmdResult n = run_cli("info --data " + (d / "nr.csv").string());
  EXPECT_EQ(n.code, 1) << n.out;
  EXPECT_THAT(n.out, HasSubstr((d / "nr.csv").string() + ":1: the header names no rating column"));
  // The plain order, header or not, adds no note.
  std::ofstream(d / "plain.csv") << "userId,movieId,rating,timestamp\n1,1,4,0\n";
  EXPECT_THAT(run_cli("info --data " + (d / "plain.csv").string()).out, Not(HasSubstr("note:")));
}

// A MovieLens ratings file named on its own: its folder is what --data wants (the titles,
// genres and users live beside it).
TEST(Cli, AMovieLensRatingsFileAloneIsPointedAtItsFolder) {
  const fs::path d = temp_dir("mlfile");
  {
    std::ofstream(d / "u.data") << "1\t1\t5\t0\n";
    std::ofstream(d / "u.item") << "1|Toy Story (1995)|||\n";
  }
  const CmdResult r = run_cli("info --data " + (d / "u.data").string());
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("is ml-100k's ratings file, not a CSV: give the MovieLens folder it belongs in, --data " +
                               d.string() + "\n"));
  fs::remove(d / "u.item");  // a lone copy: the rest of the release is missing too
  EXPECT_THAT(run_cli("info --data " + (d / "u.data").string()).out,
              HasSubstr("(with the rest of the release's files beside it)"));
  const fs::path l = temp_dir("mlcsv");
  {
    std::ofstream(l / "ratings.csv") << "userId,movieId,rating,timestamp\n1,1,4.0,0\n2,1,3.5,0\n";
    std::ofstream(l / "movies.csv") << "movieId,title,genres\n1,Toy Story (1995),Comedy\n";
  }
  const CmdResult c = run_cli("info --data " + (l / "ratings.csv").string());
  EXPECT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("its folder also has titles and genres: --data " + l.string() + " reads them"));
  std::ofstream(l / "ratings.csv") << "user,item,rating\n1,1,4\n";  // not ml-latest's columns: no such promise
  EXPECT_THAT(run_cli("info --data " + (l / "ratings.csv").string()).out, Not(HasSubstr("its folder also has")));
}

}  // namespace
