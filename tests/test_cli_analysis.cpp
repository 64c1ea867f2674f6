// End-to-end analysis through the vae_gpu binary: the main job's artefacts and closing report,
// then recommend / embed / cluster / train / info reading the model file without retraining, and
// clean failures for corrupt files, other data and bad usage.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <iomanip>
#include <string>

#include "analysis/npy.h"

#include "analysis/cluster_metrics.h"
#include "cli_runner.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

using cli_test::CmdResult;
using cli_test::run_cli;

int count_lines(const fs::path& p) {
  std::ifstream f(p);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) ++n;
  return n;
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

const std::string kData = "--data synthetic:users=200,items=300,ratings=6000,groups=3 --device cpu";

class CliAnalysis : public ::testing::Test {
 protected:
  // One training run shared by the suite (the main job with --out).
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::path(::testing::TempDir()) / ("vae_cli_an_" + std::to_string(getpid())));
    fs::remove_all(*dir_);
    main_ = new CmdResult(run_cli("--epochs 3 " + kData + " --seed 2 --out " + (*dir_ / "run").string()));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete main_;
  }
  static fs::path run_dir() { return *dir_ / "run"; }
  static std::string model() { return (run_dir() / "model.safetensors").string(); }
  static fs::path sub(const std::string& name) { return *dir_ / name; }

  static fs::path* dir_;
  static CmdResult* main_;
};
fs::path* CliAnalysis::dir_ = nullptr;
CmdResult* CliAnalysis::main_ = nullptr;

TEST_F(CliAnalysis, MainJobPrintsTopThirtyAndClustersAndWritesArtefacts) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const std::string& out = main_->out;
  EXPECT_THAT(out, ::testing::ContainsRegex("Epoch \\[3/3\\] loss train"));
  EXPECT_THAT(out, HasSubstr("popularity"));
  EXPECT_THAT(out, HasSubstr("Top 30 recommendations for user 1"));
  EXPECT_THAT(out, HasSubstr("note: the seed protocol (the notebooks') feeds each test user's whole rating vector in "
                             "and scores the ranking of those same items: a reconstruction score"));
  const CmdResult heldout = run_cli("train --model popularity --protocol heldout " + kData);
  ASSERT_EQ(heldout.code, 0) << heldout.out;
  EXPECT_THAT(heldout.out, Not(HasSubstr("reconstruction score")));
  EXPECT_THAT(out, HasSubstr("\n  30  "));  // rank 30 is printed
  EXPECT_THAT(out, HasSubstr("Genre Counts"));
  EXPECT_THAT(out, HasSubstr("Cluster sizes:"));
  EXPECT_THAT(out, HasSubstr("Cluster 0 ("));
  EXPECT_THAT(out, HasSubstr("Cluster 2 ("));
  EXPECT_THAT(out, HasSubstr("Adjusted Rand index"));
  for (const char* f : {"metrics.csv", "summary.json", "model.safetensors", "embeddings.npy", "clusters.csv",
                        "cluster_lift.csv", "cluster_movies.csv", "user_ids.csv", "tsne.svg", "curves.svg"})
    EXPECT_TRUE(fs::exists(run_dir() / f)) << f;
  EXPECT_EQ(count_lines(run_dir() / "clusters.csv"), 201);
  // With --out the main job also runs t-SNE (the notebooks' picture): every user has x, y.
  EXPECT_THAT(out, HasSubstr("t-SNE (exact): 200 points (all users)"));
  EXPECT_THAT(read_file(run_dir() / "clusters.csv"), Not(HasSubstr(",,")));
  const std::string svg = read_file(run_dir() / "tsne.svg");
  EXPECT_THAT(svg, HasSubstr("t-SNE of the latent means of 200 users"));
  size_t circles = 0;
  for (size_t at = svg.find("<circle"); at != std::string::npos; at = svg.find("<circle", at + 1)) ++circles;
  EXPECT_EQ(circles, 200u + 3u);  // the users and the three legend marks
  // Learning curves of the 3 epochs; none for the popularity baseline (nothing trained).
  const std::string curves = read_file(run_dir() / "curves.svg");
  EXPECT_THAT(curves, HasSubstr("NDCG@20"));
  EXPECT_THAT(curves, HasSubstr("<polyline"));
  EXPECT_TRUE(fs::exists(run_dir() / "popularity" / "summary.json"));
  EXPECT_FALSE(fs::exists(run_dir() / "popularity" / "curves.svg"));
  int64_t rows = 0, cols = 0;
  const std::vector<float> e = vae::load_npy_f32((run_dir() / "embeddings.npy").string(), &rows, &cols);
  EXPECT_EQ(rows, 200);
  EXPECT_EQ(cols, 64);
  // The silhouette printed is that of the written embeddings and labels (200 users: all of them).
  std::vector<int32_t> labels;
  for (const auto& row : cli_test::parse_csv(read_file(run_dir() / "clusters.csv"))) labels.push_back(std::stoi(row.at("cluster")));
  ASSERT_EQ(labels.size(), 200u);
  std::ostringstream sil;
  sil << std::fixed << std::setprecision(4) << vae::silhouette_score(e, cols, labels);
  EXPECT_THAT(out, HasSubstr(" iterations; silhouette " + sil.str() + "\nCluster sizes:"));
}

TEST_F(CliAnalysis, MainJobWithoutTsneLeavesCoordinatesEmpty) {
  const fs::path d = sub("no_tsne");
  const CmdResult r = run_cli("--epochs 1 --no-baseline --no-tsne " + kData + " --out " + d.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("t-SNE (")));
  EXPECT_FALSE(fs::exists(d / "tsne.svg"));
  std::ifstream f(d / "clusters.csv");
  std::string line;
  std::getline(f, line);
  std::getline(f, line);
  EXPECT_EQ(line.substr(line.size() - 2), ",,") << line;
}

TEST_F(CliAnalysis, RecommendFromModelFileDoesNotRetrain) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult r = run_cli("recommend " + kData + " --model-file " + model() + " --user 7 --top 5");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("Epoch")));
  EXPECT_THAT(r.out, HasSubstr("Top 5 recommendations for user 7"));
  EXPECT_THAT(r.out, HasSubstr("\n   5  "));
  EXPECT_THAT(r.out, Not(HasSubstr("\n   6  ")));
  EXPECT_THAT(r.out, HasSubstr("Genre Counts"));

  const CmdResult f = run_cli("recommend " + kData + " --model-file " + model() +
                              " --ratings \"50:5,181:4,nosuch:3,258,100:0x1p2,127:inf\" --top 3");
  ASSERT_EQ(f.code, 0) << f.out;
  EXPECT_THAT(f.out, HasSubstr("unknown item id nosuch"));
  EXPECT_THAT(f.out, HasSubstr("malformed pair '258'"));
  EXPECT_THAT(f.out, HasSubstr("malformed rating '0x1p2' for item 100"));  // decimals only, as in rating files
  EXPECT_THAT(f.out, HasSubstr("malformed rating 'inf' for item 127"));
  // Ids and ratings from the command line are escaped in the messages (a control byte as \xNN).
  const CmdResult q = run_cli("recommend " + kData + " --model-file " + model() +
                              " --ratings \"181:4,$(printf 'x\\033y'):3,50:$(printf '\\0334')\" --top 3");
  ASSERT_EQ(q.code, 0) << q.out;
  EXPECT_THAT(q.out, HasSubstr("unknown item id x\\x1by"));
  EXPECT_THAT(q.out, HasSubstr("malformed rating '\\x1b4' for item 50"));
  const CmdResult u = run_cli("recommend " + kData + " --model-file " + model() + " --user \"$(printf 'a\\033b')\"");
  EXPECT_EQ(u.code, 2) << u.out;
  EXPECT_THAT(u.out, HasSubstr("no user 'a\\x1bb'"));

  const CmdResult e = run_cli("recommend " + kData + " --model-file " + model() + " --ratings \"\" --top 3");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("most popular"));
}

// similar and recommend --explain read the model file (no training), take an item by id or by
// a part of its title, and refuse what they cannot do before reading any data.
TEST_F(CliAnalysis, SimilarAndExplainReadTheModelFile) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const std::string m = " " + kData + " --model-file " + model();
  const CmdResult s = run_cli("similar --item 7 --top 4" + m);
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_THAT(s.out, Not(HasSubstr("Epoch")));
  EXPECT_THAT(s.out, HasSubstr("Items most like 7 "));
  EXPECT_THAT(s.out, HasSubstr("(vae; lift = how much more a new user's rating 5 of it alone raises each item's logit"));
  EXPECT_THAT(s.out, HasSubstr("rank  item        lift  ratings  title"));
  EXPECT_THAT(s.out, HasSubstr("\n   4  "));
  EXPECT_THAT(s.out, Not(HasSubstr("\n   5  ")));
  EXPECT_THAT(s.out, Not(HasSubstr("\n   1     7 ")));  // never the item itself
  EXPECT_THAT(s.out, HasSubstr("Genre Counts"));
  // The synthetic titles are unique: the title of item 7 finds it, in any case.
  const std::string head = s.out.substr(s.out.find("Items most like 7 ") + 18);
  const std::string title = head.substr(0, head.find(" ["));
  std::string upper = title;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const CmdResult t = run_cli("similar --item \"" + upper + "\" --top 4" + m);
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_EQ(t.out, s.out);

  const CmdResult e = run_cli("recommend --user 7 --top 5 --explain" + m);
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("  because you liked\n"));  // the column's header
  EXPECT_THAT(e.out, HasSubstr("note: because you liked: of your ratings >= 3, the one whose rating alone pulls the item's "
                               "logit up most"));
  const CmdResult plain = run_cli("recommend --user 7 --top 5" + m);
  EXPECT_THAT(plain.out, Not(HasSubstr("because")));
  const CmdResult none = run_cli("recommend --ratings \"\" --top 3 --explain" + m);
  ASSERT_EQ(none.code, 0) << none.out;
  EXPECT_THAT(none.out, HasSubstr("--explain: no usable ratings, so nothing to explain"));
  EXPECT_THAT(none.out, Not(HasSubstr("  because you liked\n")));
  const CmdResult notes = run_cli("similar --item 7 --top 2 --no-tsne --out " + sub("nothing").string() + m);
  ASSERT_EQ(notes.code, 0) << notes.out;
  EXPECT_THAT(notes.out, HasSubstr("note: --no-tsne is ignored: it applies to the main job"));
  EXPECT_THAT(notes.out, HasSubstr("note: --out is ignored: similar --item prints its list"));
  EXPECT_FALSE(fs::exists(sub("nothing")));

  const fs::path csv = sub("similar.csv");
  const CmdResult all = run_cli("similar --all-items --top 3 --out " + csv.string() + m);
  ASSERT_EQ(all.code, 0) << all.out;
  EXPECT_THAT(all.out, HasSubstr("wrote " + csv.string() + ": "));
  const std::string table = read_file(csv);
  EXPECT_EQ(table.rfind("item_id,rank,similar_item_id,lift\n", 0), 0u);
  EXPECT_EQ(count_lines(csv), 1 + 3 * 300);  // every one of the 300 items is a column of this seed-protocol model
  // Item 7's rows are its similar list.
  std::istringstream first(s.out.substr(s.out.find("\n   1  ") + 1));
  int rank = 0;
  std::string first_id;
  first >> rank >> first_id;
  EXPECT_THAT(table, HasSubstr("\n7,1," + first_id + ","));
  const CmdResult dir = run_cli("similar --all-items --out " + sub("").string() + m);
  EXPECT_EQ(dir.code, 1) << dir.out;
  EXPECT_THAT(dir.out, HasSubstr("is a directory"));
  for (const std::string& args : {"similar" + m, "similar --item nosuchtitle" + m, "similar --item 7 --top 0" + m,
                                  "similar --all-items" + m, "similar --item 7 --all-items --out x.csv" + m,
                                  "recommend --all-users --explain --out x.csv" + m,
                                  "similar --item 7 --model popularity " + kData,
                                  "recommend --user 7 --explain --model popularity " + kData}) {
    const CmdResult r = run_cli(args);
    EXPECT_EQ(r.code, 2) << args << ": " << r.out;
    EXPECT_THAT(r.out, Not(HasSubstr("Epoch"))) << args;  // refused before any training
  }
}

TEST_F(CliAnalysis, RecommendAllUsersWritesCsv) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  fs::create_directories(sub("recs"));
  const fs::path csv = sub("recs") / "recs.csv";
  const CmdResult r = run_cli("recommend " + kData + " --model-file " + model() + " --all-users --top 4 --out " +
                              csv.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(count_lines(csv), 200 * 4 + 1);
  std::ifstream f(csv);
  std::string header;
  std::getline(f, header);
  EXPECT_EQ(header, "user_id,rank,item_id,score");

  // A failing run leaves the existing CSV untouched (atomic writes).
  const std::string before = read_file(csv);
  const fs::path bad = sub("recs") / "bad.safetensors";
  {
    std::ofstream b(bad, std::ios::binary);
    b << read_file(model()).substr(0, 1000);
  }
  const CmdResult c = run_cli("recommend " + kData + " --model-file " + bad.string() + " --all-users --out " + csv.string());
  EXPECT_EQ(c.code, 1);
  EXPECT_EQ(read_file(csv), before);
}

TEST_F(CliAnalysis, EmbedWritesNpyFiles) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult r = run_cli("embed " + kData + " --model-file " + model() + " --logvar --out " + sub("emb").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("Epoch")));
  int64_t rows = 0, cols = 0;
  const std::vector<float> mu = vae::load_npy_f32((sub("emb") / "embeddings.npy").string(), &rows, &cols);
  EXPECT_EQ(rows, 200);
  EXPECT_EQ(cols, 64);
  vae::load_npy_f32((sub("emb") / "logvar.npy").string(), &rows, &cols);
  EXPECT_EQ(rows, 200);
  EXPECT_EQ(count_lines(sub("emb") / "user_ids.csv"), 201);
  // μ equals the main job's embeddings; --sample differs.
  int64_t r2 = 0, c2 = 0;
  const std::vector<float> main_mu = vae::load_npy_f32((run_dir() / "embeddings.npy").string(), &r2, &c2);
  ASSERT_EQ(main_mu.size(), mu.size());
  for (size_t i = 0; i < mu.size(); ++i) EXPECT_NEAR(main_mu[i], mu[i], 1e-5) << i;  // batch sizes differ
  const CmdResult s = run_cli("embed " + kData + " --model-file " + model() + " --sample --out " + sub("emb2").string());
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_NE(mu, vae::load_npy_f32((sub("emb2") / "embeddings.npy").string(), &r2, &c2));
}

TEST_F(CliAnalysis, ClusterWithTsneWritesCoordinates) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult r = run_cli("cluster " + kData + " --model-file " + model() +
                              " --k 3 --n-init 4 --tsne --tsne-max 150 --out " + sub("cl").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, Not(HasSubstr("Epoch")));
  EXPECT_THAT(r.out, HasSubstr("Cluster sizes:"));
  EXPECT_THAT(r.out, HasSubstr("Adjusted Rand index"));
  EXPECT_THAT(r.out, HasSubstr("final KL divergence"));
  EXPECT_THAT(r.out, HasSubstr("subsample"));
  std::ifstream f(sub("cl") / "clusters.csv");
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line, "user_id,cluster,x,y");
  int rows = 0, with_xy = 0;
  while (std::getline(f, line)) {
    ++rows;
    if (line.back() != ',') ++with_xy;
  }
  EXPECT_EQ(rows, 200);
  EXPECT_EQ(with_xy, 150);
  EXPECT_TRUE(fs::exists(sub("cl") / "cluster_lift.csv"));
  EXPECT_TRUE(fs::exists(sub("cl") / "cluster_movies.csv"));
  EXPECT_THAT(read_file(sub("cl") / "tsne.svg"), HasSubstr("a random subsample of 150"));
  // The clustered embeddings are written beside the clusters, so another k into the folder
  // keeps the map (recoloured) instead of dropping it.
  EXPECT_TRUE(fs::exists(sub("cl") / "embeddings.npy"));
  EXPECT_TRUE(fs::exists(sub("cl") / "user_ids.csv"));
  const CmdResult again = run_cli("cluster " + kData + " --model-file " + model() + " --k-range 2..4 --n-init 2 --out " +
                                  sub("cl").string());
  ASSERT_EQ(again.code, 0) << again.out;
  EXPECT_THAT(again.out, HasSubstr("t-SNE: kept the positions of the 150 users already in"));
  EXPECT_THAT(read_file(sub("cl") / "tsne.svg"), HasSubstr("positions kept from the t-SNE already in this folder; a "
                                                           "random subsample of 150"));
}

// t-SNE does not depend on the clustering: `cluster` into the main job's folder (the same model,
// so the same embeddings.npy) keeps the map's positions and recolours it by the new clusters;
// where the folder's embeddings are not this run's, the old map goes, with a note.
TEST_F(CliAnalysis, ClusterIntoTheMainJobsFolderRecoloursItsTsne) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const fs::path dir = sub("recolour");
  fs::copy(run_dir(), dir, fs::copy_options::recursive);
  const auto before = cli_test::parse_csv(read_file(dir / "clusters.csv"));
  ASSERT_EQ(before.size(), 200u);
  ASSERT_FALSE(before[0].at("x").empty());
  const std::string base = "cluster " + kData + " --model-file " + model() + " --n-init 2 --out " + dir.string();
  const CmdResult r = run_cli(base + " --k 5");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("t-SNE: kept the positions of the 200 users already in " + dir.string() + "/clusters.csv"));
  const auto after = cli_test::parse_csv(read_file(dir / "clusters.csv"));
  ASSERT_EQ(after.size(), before.size());
  std::set<std::string> labels;
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].at("user_id"), before[i].at("user_id"));
    EXPECT_EQ(after[i].at("x"), before[i].at("x")) << "row " << i;
    EXPECT_EQ(after[i].at("y"), before[i].at("y")) << "row " << i;
    labels.insert(after[i].at("cluster"));
  }
  EXPECT_EQ(labels.size(), 5u);  // the new k's labels
  const std::string svg = read_file(dir / "tsne.svg");
  EXPECT_THAT(svg, HasSubstr("coloured by K-Means cluster (k = 5); positions kept from the t-SNE already in this folder"));
  EXPECT_THAT(svg, HasSubstr("cluster 4 ("));

  // Embeddings that are not this model's: nothing to keep.
  fs::remove(dir / "embeddings.npy");
  const CmdResult gone = run_cli(base + " --k 2");
  ASSERT_EQ(gone.code, 0) << gone.out;
  EXPECT_THAT(gone.out, HasSubstr("note: " + dir.string() + "/tsne.svg of an earlier run is removed"));
  // The note says why it goes; the "removed" line does not name it a second time.
  EXPECT_THAT(gone.out, ::testing::Not(::testing::ContainsRegex("\nremoved [^\n]*tsne.svg")));
  EXPECT_FALSE(fs::exists(dir / "tsne.svg"));
  for (const auto& row : cli_test::parse_csv(read_file(dir / "clusters.csv"))) EXPECT_TRUE(row.at("x").empty());
}

// The folder's embeddings.npy is what its clusters.csv was computed from: another model's are
// replaced (with a logvar.npy beside them), while embed --sample's draws of this very model (told
// by its logvar.npy) are kept.
TEST_F(CliAnalysis, ClusterReplacesAnotherModelsEmbeddingsButKeepsEmbedsDrawsOfItsOwn) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const fs::path other = sub("other_model");
  const CmdResult t = run_cli("train --epochs 1 --quiet " + kData + " --seed 5 --out " + other.string());
  ASSERT_EQ(t.code, 0) << t.out;
  const std::string other_model = (other / "model.safetensors").string();
  int64_t rows = 0, cols = 0;
  auto npy = [&](const fs::path& p) { return vae::load_npy_f32(p.string(), &rows, &cols); };
  const std::vector<float> main_mu = npy(run_dir() / "embeddings.npy");

  // The main job's folder, clustered with another model.
  const fs::path dir = sub("mixed");
  fs::copy(run_dir(), dir, fs::copy_options::recursive);
  const CmdResult r = run_cli("cluster " + kData + " --model-file " + other_model + " --k 2 --n-init 2 --out " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: " + dir.string() + "/embeddings.npy and user_ids.csv of an earlier run are replaced "
                               "by the embeddings clustered here"));
  const CmdResult mu = run_cli("embed " + kData + " --model-file " + other_model + " --out " + (other / "emb").string());
  ASSERT_EQ(mu.code, 0) << mu.out;
  const std::vector<float> other_mu = npy(other / "emb" / "embeddings.npy");
  ASSERT_NE(other_mu, main_mu);
  EXPECT_EQ(npy(dir / "embeddings.npy"), other_mu);

  // embed --sample --logvar of the other model, then cluster it: the draws stay.
  const fs::path drawn = sub("drawn");
  const CmdResult e = run_cli("embed " + kData + " --model-file " + other_model + " --sample --logvar --out " + drawn.string());
  ASSERT_EQ(e.code, 0) << e.out;
  const std::string draws = read_file(drawn / "embeddings.npy");
  const CmdResult kept = run_cli("cluster " + kData + " --model-file " + other_model + " --k 2 --n-init 2 --out " +
                                 drawn.string());
  ASSERT_EQ(kept.code, 0) << kept.out;
  EXPECT_THAT(kept.out, HasSubstr("note: " + drawn.string() + "/embeddings.npy is kept: embed's draws of z from this model"));
  EXPECT_EQ(read_file(drawn / "embeddings.npy"), draws);
  EXPECT_TRUE(fs::exists(drawn / "logvar.npy"));

  // The main model clustered there: the draws and their logvar.npy are another model's now.
  const CmdResult swapped = run_cli("cluster " + kData + " --model-file " + model() + " --k 2 --n-init 2 --out " +
                                    drawn.string());
  ASSERT_EQ(swapped.code, 0) << swapped.out;
  EXPECT_THAT(swapped.out, HasSubstr("/embeddings.npy and user_ids.csv, logvar.npy of an earlier run are replaced"));
  EXPECT_EQ(npy(drawn / "embeddings.npy"), main_mu);
  EXPECT_FALSE(fs::exists(drawn / "logvar.npy"));
}

// --k-range: a table of inertia and silhouette per k, the profiles at the best k, k_scan.csv
// and k_scan.svg; a later run with one k into the same folder removes them (another k's scan).
TEST_F(CliAnalysis, ClusterKRangeScansAndKeepsTheBestSilhouette) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const std::string base = "cluster " + kData + " --model-file " + model() + " --n-init 3 --out " + sub("ks").string();
  const CmdResult r = run_cli(base + " --k-range 2-5");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("K-Means for k = 2..5 on the latent means of 200 users (n_init = 3); silhouette over all users"));
  const auto rows = cli_test::parse_csv(read_file(sub("ks") / "k_scan.csv"));
  ASSERT_EQ(rows.size(), 4u);
  int best = 0;
  double best_s = -2;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].at("k"), std::to_string(i + 2));
    const double sil = std::stod(rows[i].at("silhouette"));
    EXPECT_GE(sil, -1.0);
    EXPECT_LE(sil, 1.0);
    if (sil > best_s) best_s = sil, best = static_cast<int>(i) + 2;
    if (i) {
      EXPECT_LT(std::stod(rows[i].at("inertia")), std::stod(rows[i - 1].at("inertia")));
    }
  }
  EXPECT_THAT(r.out, HasSubstr("best silhouette at k = " + std::to_string(best) + "; the profiles below use it"));
  EXPECT_THAT(r.out, HasSubstr("  <- best\n"));
  EXPECT_THAT(r.out, HasSubstr("dimensions, k = " + std::to_string(best) + ", n_init = 3)"));
  EXPECT_THAT(r.out, HasSubstr("Cluster " + std::to_string(best - 1) + " ("));
  EXPECT_THAT(r.out, Not(HasSubstr("Cluster " + std::to_string(best) + " (")));
  EXPECT_THAT(read_file(sub("ks") / "k_scan.svg"), HasSubstr("silhouette score"));
  EXPECT_THAT(read_file(sub("ks") / "k_scan.svg"), HasSubstr(">k (clusters)</text>"));
  // The same k without the scan: the same clusters.
  const std::string clusters = read_file(sub("ks") / "clusters.csv");
  const CmdResult one = run_cli(base + " --k " + std::to_string(best));
  ASSERT_EQ(one.code, 0) << one.out;
  EXPECT_EQ(read_file(sub("ks") / "clusters.csv"), clusters);
  EXPECT_FALSE(fs::exists(sub("ks") / "k_scan.csv"));
  EXPECT_FALSE(fs::exists(sub("ks") / "k_scan.svg"));
  EXPECT_THAT(one.out, HasSubstr(" iterations; silhouette "));
  // One cluster has no silhouette: the line goes without it.
  const CmdResult k1 = run_cli(base + " --k 1");
  ASSERT_EQ(k1.code, 0) << k1.out;
  EXPECT_THAT(k1.out, HasSubstr(" iterations\nCluster sizes: 0: 200\n"));
  // An empty range is refused, not ignored (which would also drop the folder's scan files).
  const CmdResult empty = run_cli(base + " --k-range ''");
  EXPECT_EQ(empty.code, 2) << empty.out;
  EXPECT_THAT(empty.out, HasSubstr("--k-range '': expected A..B or A-B"));
  // The main app's --k (a ranking cut-off) before `cluster` is noted as not the scan's.
  const CmdResult noted = run_cli("--k 20 " + base + " --k-range 2..3");
  ASSERT_EQ(noted.code, 0) << noted.out;
  EXPECT_THAT(noted.out, HasSubstr("not the number of clusters; clustering with --k-range 2..3\n"));
}

TEST_F(CliAnalysis, TrainAndInfoAcceptModelFile) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult t = run_cli("train " + kData + " --model-file " + model());
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_THAT(t.out, Not(HasSubstr("Epoch [")));
  // Same split and weights: the main job's final metrics.
  const nlohmann::json s = nlohmann::json::parse(read_file(run_dir() / "summary.json"));
  std::ostringstream ndcg;
  ndcg << "ndcg@20=" << s["metrics"]["ndcg@20"].get<double>();
  EXPECT_THAT(t.out, HasSubstr(ndcg.str().substr(0, 12)));
  // --model naming the file's own kind is redundant, not an error; another kind is refused.
  for (const char* cmd : {"train", "recommend --user 1"}) {
    const CmdResult same = run_cli(std::string(cmd) + " " + kData + " --model vae --model-file " + model());
    EXPECT_EQ(same.code, 0) << cmd << "\n" << same.out;
    const CmdResult other = run_cli(std::string(cmd) + " " + kData + " --model multvae --model-file " + model());
    EXPECT_EQ(other.code, 2) << cmd << "\n" << other.out;
    EXPECT_THAT(other.out, HasSubstr("--model multvae disagrees with --model-file " + model() + " (a vae model): drop --model"));
  }
  const CmdResult i = run_cli("info " + kData + " --model-file " + model());
  ASSERT_EQ(i.code, 0) << i.out;
  EXPECT_THAT(i.out, HasSubstr("model file"));
  EXPECT_THAT(i.out, HasSubstr("vae"));
}

// The split's and evaluation's options go unread by the commands that evaluate nothing with a
// model file: said, not dropped silently.
TEST_F(CliAnalysis, ModelFileCommandsNoteTheSplitOptionsTheyDoNotRead) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const std::string m = " " + kData + " --model-file " + model();
  for (const std::string& cmd : {std::string("recommend --user 1"), std::string("similar --item 1"),
                                  "embed --out " + sub("emb_notes").string()}) {
    const CmdResult r = run_cli(cmd + m + " --k 5 --test-fraction 0.5 --threshold 2");
    ASSERT_EQ(r.code, 0) << cmd << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr("note: --k, --test-fraction, --threshold are ignored: this command evaluates nothing, "
                                 "and the model file's split applies"))
        << cmd;
  }
  const CmdResult c = run_cli("--k 5 cluster --n-init 2 --ks 7" + m);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("note: --ks is ignored: this command evaluates nothing"));
  const CmdResult t = run_cli("train --ks 5" + m);  // train evaluates the file: --k and --ks are read
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_THAT(t.out, Not(HasSubstr("evaluates nothing")));
}

TEST_F(CliAnalysis, CorruptModelFileExitsOneNamingTheFile) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  fs::create_directories(sub("bad"));
  std::string bytes = read_file(model());
  bytes[bytes.size() / 2] ^= 0x40;
  const fs::path flipped = sub("bad") / "flipped.safetensors";
  {
    std::ofstream f(flipped, std::ios::binary);
    f << bytes;
  }
  // embed's --out is made before the model is read: a temporary one, not ./x in the working directory.
  const std::string embed_out = "embed --out " + sub("bad_embed").string();
  for (const std::string& cmd : {std::string("recommend --user 1"), embed_out, std::string("cluster"),
                                 std::string("train"), std::string()}) {
    const CmdResult r = run_cli(cmd + " " + kData + " --model-file " + flipped.string());
    EXPECT_EQ(r.code, 1) << cmd << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("flipped.safetensors")) << cmd;
    EXPECT_THAT(r.out, Not(HasSubstr("terminate"))) << cmd;
  }
  const CmdResult other = run_cli("recommend --data synthetic:users=200,items=300,ratings=6000,groups=3,seed=9 "
                                  "--device cpu --user 1 --model-file " + model());
  EXPECT_EQ(other.code, 1) << other.out;
  EXPECT_THAT(other.out, HasSubstr("trained on dataset"));
  EXPECT_THAT(other.out, HasSubstr("model.safetensors"));
}

// Without --data, a model file's commands read the data recorded in the file (here a synthetic
// spec that is not the default one); when that data is gone they fall back to the default set,
// and the fingerprint check refuses it with a message.
TEST_F(CliAnalysis, ModelFileCommandsReadTheirTrainingDataWithoutData) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult r = run_cli("recommend --device cpu --user 1 --top 5 --model-file " + model());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("reading the model's training data, synthetic:users=200,items=300"));
  EXPECT_THAT(r.out, HasSubstr("Top 5 recommendations for user 1"));

  fs::create_directories(sub("csv"));
  const fs::path csv = sub("csv") / "ratings.csv";
  {
    std::ofstream f(csv);
    f << "user,item,rating\n";
    for (int u = 1; u <= 40; ++u)
      for (int i = 1; i <= 30; ++i)
        if ((u * 7 + i * 3) % 5 < 2) f << u << "," << i << "," << 1 + (u + i) % 5 << "\n";
  }
  const CmdResult t = run_cli("train --model vae --epochs 1 --device cpu --data " + csv.string() + " --out " +
                              (sub("csv") / "run").string());
  ASSERT_EQ(t.code, 0) << t.out;
  const std::string m = (sub("csv") / "run" / "model.safetensors").string();
  const CmdResult again = run_cli("embed --device cpu --out " + (sub("csv") / "emb").string() + " --model-file " + m);
  EXPECT_EQ(again.code, 0) << again.out;
  EXPECT_THAT(again.out, HasSubstr("reading the model's training data, " + csv.string()));
  fs::remove(csv);
  const CmdResult gone = run_cli("recommend --device cpu --user 1 --model-file " + m);
  EXPECT_EQ(gone.code, 1) << gone.out;
  EXPECT_THAT(gone.out, Not(HasSubstr("reading the model's training data")));
  EXPECT_THAT(gone.out, HasSubstr("pass the training data with --data"));
  EXPECT_THAT(gone.out, HasSubstr(csv.string() + "', which is no longer there"));  // not another data set's mismatch
  EXPECT_THAT(gone.out, Not(HasSubstr("using ")));  // no fallback to the default data first
}

// Each usage error exits 2 with its own message (not merely some usage error).
TEST_F(CliAnalysis, UsageErrorsExitTwo) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const std::string m = " " + kData + " --model-file " + model();
  const std::pair<std::string, std::string> cases[] = {
      {"recommend", "recommend needs --user ID, --ratings \"item:rating,...\" or --all-users"},
      {"recommend --user 1 --all-users", "give only one of --user, --ratings and --all-users"},
      {"recommend --all-users", "--all-users writes a CSV: give --out recs.csv"},
      {"recommend --user nosuchuser", "no user 'nosuchuser' in synthetic (user ids run from 1 to 200)"},
      {"recommend --user 1 --top 0", "--top: must be from 1 to 1000000, got 0"},
      {"embed", "embed writes files: give --out DIR"},
      {"cluster --k 0", "--k: must be from 1 to 1000000, got 0"},
      {"cluster --k 500", "--k 500 exceeds the 200 users"},
      {"recommend --model multvae --user 1", "--model multvae disagrees with --model-file"},
      {"cluster --k-range 1..4", "--k-range 1..4: needs 2 <= A <= B"},
      {"cluster --k-range 4..3", "--k-range 4..3: needs 2 <= A <= B"},
      {"cluster --k-range 2..", "--k-range '2..': expected A..B or A-B"},
      {"cluster --k-range two..4", "--k-range 'two..4': expected A..B or A-B"},
      {"cluster --k-range 2..200", "--k-range 2..200: 199 values of k, more than the 50 one scan runs"},
      {"cluster --k 3 --k-range 2..4", "--k excludes --k-range"},
      {"cluster --k-range 2..52", "--k-range 2..52: 51 values of k, more than the 50"},
      // a stored model is evaluated, never silently replaced by a new one
      {"train --model svd", "--model svd disagrees with --model-file"},
      {"train --model autorec", "--model autorec disagrees with --model-file"},
      {"train --protocol ratings --folds 3", "--folds trains one model per fold: drop it to evaluate --model-file"}};
  for (const auto& [args, message] : cases) {
    const CmdResult r = run_cli(args + m);
    EXPECT_EQ(r.code, 2) << args << ": " << r.out;
    EXPECT_THAT(r.out, HasSubstr("vae_gpu: " + message)) << args;
  }
}

// Active units (Burda et al. 2016): dimensions whose mean varies across users by more than 0.01.
TEST(ActiveLatentUnits, CountsTheDimensionsThatMoveWithTheUser) {
  // Four users, three dimensions: variance 0, 0.005 and 0.0625 (population variance).
  const std::vector<float> z = {1.0f, 0.1f, 0.25f, 1.0f, -0.0f, -0.25f, 1.0f, 0.1f, 0.25f, 1.0f, 0.2f, -0.25f};
  // Dimension 1: 0.1, 0, 0.1, 0.2 → mean 0.1, variance 0.005.
  EXPECT_EQ(vae::active_latent_units(z, 4, 3), 1);
  EXPECT_EQ(vae::active_latent_units(z, 1, 3), 0);  // one user: nothing can vary
  std::vector<float> wide = z;
  for (size_t i = 1; i < wide.size(); i += 3) wide[i] *= 10;  // variance 0.5
  EXPECT_EQ(vae::active_latent_units(wide, 4, 3), 2);
}

// A user whose ratings all lie below the heldout threshold gives the model no input: the list is
// the popular items, and the note says why (the threshold it was trained with).
TEST(CliAnalysisSmall, AUserWithNoInputGetsThePopularItemsAndWhy) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_no_input_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "r.csv");
    f << "user,item,rating\n";
    for (int u = 0; u < 40; ++u)
      for (int k = 0; k < 15; ++k) f << "u" << u << ",i" << (u * 7 + k * 3) % 50 << "," << 1 + (u + k) % 5 << "\n";
    for (int i = 0; i < 5; ++i) f << "low,i" << i << "," << 1 + i % 2 << "\n";
  }
  const CmdResult r = run_cli("recommend --model multvae --protocol heldout --user low --top 3 --epochs 1 --device cpu "
                              "--data " + (dir / "r.csv").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: user low has no ratings the model takes as input (it was trained on ratings >= 4): "
                               "showing the most popular items instead"));
  EXPECT_THAT(r.out, HasSubstr("Top 3 most popular items for user low (no usable ratings for multvae to score"));
  fs::remove_all(dir);
}

// Few users: t-SNE's perplexity (30) must stay below (points - 1) / 3, and is lowered, with a
// note, instead of failing; an SVD model has no posterior for embed --sample.
TEST(CliAnalysisSmall, FewUsersLowerThePerplexityAndSvdHasNoPosterior) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_few_users_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const std::string few = " --data synthetic:users=40,items=60,ratings=800 --device cpu";
  const CmdResult c = run_cli("cluster --tsne --k 2 --epochs 1" + few + " --out " + (dir / "c").string());
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("note: perplexity set to 13 (it must lie in [1, (points - 1) / 3] for 40 points)"));
  EXPECT_THAT(c.out, HasSubstr("1 epoch of 1 step makes only 1 Adam step;"));
  const auto rows = cli_test::parse_csv(read_file(dir / "c" / "clusters.csv"));
  ASSERT_EQ(rows.size(), 40u);
  for (const auto& row : rows) EXPECT_FALSE(row.at("x").empty());
  const CmdResult s = run_cli("embed --model svd --sample --epochs 1" + few + " --out " + (dir / "s").string());
  EXPECT_EQ(s.code, 2) << s.out;
  EXPECT_THAT(s.out, HasSubstr("svd has no posterior to sample from"));
  fs::remove_all(dir);
}

// info prints the notebook VAE's layers as built (512 and 256 wide whatever --hidden held), not
// the "hidden 0" of its stored config.
TEST_F(CliAnalysis, InfoPrintsTheLayersAsBuilt) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult i = run_cli("info " + kData + " --model-file " + model());
  ASSERT_EQ(i.code, 0) << i.out;
  EXPECT_THAT(i.out, HasSubstr("vae, 300 item columns, encoder 300-512-256-(2 x 64), decoder 64-256-512-300, latent 64"));
  EXPECT_THAT(i.out, Not(HasSubstr("hidden 0")));
  // Seed protocol: the file holds the last epoch, not one chosen as best.
  EXPECT_THAT(i.out, HasSubstr("seed protocol, seed 2, epoch 3)"));
  // The other families' layers, from their stored widths.
  const std::vector<std::pair<std::string, std::string>> families = {
      {"multvae", "multvae, 300 item columns, encoder 300-16-(2 x 8), decoder 8-16-300, latent 8"},
      {"cdae", "cdae, 300 item columns, layers 300-16-300 (and a 16-wide vector per training user)"},
      {"autorec", "autorec, 300 item columns, layers 300-16-300"},
      {"i-autorec", "i-autorec, 200 user columns, layers 200-16-200"}};
  for (const auto& [model, layers] : families) {
    const fs::path dir = *dir_ / ("info_" + model);
    const CmdResult t = run_cli("train --model " + model + " --epochs 1 --hidden 16 --latent 8 --quiet " + kData +
                                " --out " + dir.string());
    ASSERT_EQ(t.code, 0) << model << ": " << t.out;
    const CmdResult f = run_cli("info " + kData + " --model-file " + (dir / "model.safetensors").string());
    ASSERT_EQ(f.code, 0) << f.out;
    EXPECT_THAT(f.out, HasSubstr(layers)) << f.out;
  }
}

// Without usable ratings the list is the popular-items fallback, and its title says so rather
// than calling item counts the model's recommendations.
TEST_F(CliAnalysis, RecommendFallbackIsTitledAsPopularItems) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult e = run_cli("recommend " + kData + " --model-file " + model() + " --ratings \"\" --top 3");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("Top 3 most popular items for the given ratings (no usable ratings for vae to score; "
                               "score = the item's number of ratings):"));
  EXPECT_THAT(e.out, Not(HasSubstr("Top 3 recommendations")));
  const CmdResult u = run_cli("recommend " + kData + " --model-file " + model() + " --user 7 --top 3");
  ASSERT_EQ(u.code, 0) << u.out;
  EXPECT_THAT(u.out, HasSubstr("Top 3 recommendations for user 7 (vae):"));
}

// cluster --tsne without --out has nowhere to put x, y: t-SNE is skipped with a note, not run
// for minutes and thrown away.
TEST_F(CliAnalysis, ClusterTsneWithoutOutIsSkippedWithANote) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult r = run_cli("cluster " + kData + " --model-file " + model() + " --n-init 2 --tsne");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("note: --tsne skipped"));
  EXPECT_THAT(r.out, Not(HasSubstr("t-SNE (")));
  EXPECT_THAT(r.out, HasSubstr("Cluster sizes:"));
}

// --tsne-method picks the algorithm and the line says which ran; auto is exact up to 1000 points
// on the CPU and Barnes-Hut beyond; the flag is noted as ignored where no t-SNE runs.
TEST_F(CliAnalysis, TsneMethodIsChosenAndNamed) {
  ASSERT_EQ(main_->code, 0) << main_->out;
  const CmdResult bh = run_cli("cluster " + kData + " --model-file " + model() +
                               " --n-init 2 --tsne --tsne-method Barnes-Hut --out " + sub("bh").string());
  ASSERT_EQ(bh.code, 0) << bh.out;
  EXPECT_THAT(bh.out, HasSubstr("t-SNE (Barnes-Hut, theta 0.5): 200 points (all users)"));
  EXPECT_THAT(read_file(sub("bh") / "clusters.csv"), Not(HasSubstr(",,")));
  EXPECT_THAT(read_file(sub("bh") / "tsne.svg"), HasSubstr("Barnes-Hut, perplexity"));
  // Not the exact map: the two methods ran different optimisations.
  EXPECT_NE(read_file(sub("bh") / "clusters.csv"), read_file(run_dir() / "clusters.csv"));

  const CmdResult none = run_cli("cluster " + kData + " --model-file " + model() + " --n-init 2 --tsne-method exact");
  ASSERT_EQ(none.code, 0) << none.out;
  EXPECT_THAT(none.out, HasSubstr("note: --tsne-method is ignored: no t-SNE runs"));
  EXPECT_THAT(none.out, Not(HasSubstr("t-SNE (")));

  // A model file without a latent space (SVD): the main job draws no t-SNE, and says so.
  ASSERT_EQ(run_cli("train --model svd --epochs 1 --quiet " + kData + " --out " + sub("svd").string()).code, 0);
  const CmdResult svd = run_cli("--model-file " + (sub("svd") / "model.safetensors").string() + " " + kData +
                                " --tsne-method exact --out " + sub("svd_main").string());
  ASSERT_EQ(svd.code, 0) << svd.out;
  EXPECT_THAT(svd.out, HasSubstr("note: --tsne-method is ignored: no t-SNE runs"));

  const std::string big = " --data synthetic:users=1100,items=60,ratings=9000 --device cpu --epochs 1 --n-init 1 --tsne";
  const CmdResult autob = run_cli("cluster" + big + " --out " + sub("auto_big").string());
  ASSERT_EQ(autob.code, 0) << autob.out;
  EXPECT_THAT(autob.out, HasSubstr("t-SNE (Barnes-Hut, theta 0.5): 1100 points"));
  const CmdResult autos = run_cli("cluster" + big + " --tsne-max 1000 --out " + sub("auto_small").string());
  ASSERT_EQ(autos.code, 0) << autos.out;
  EXPECT_THAT(autos.out, HasSubstr("t-SNE (exact): 1000 points (a random subsample of 1100 users"));
}

// The exact t-SNE shares its pair loop over the CPU pool in bands fixed by the number of points
// (14 bands at 700), so the map is the same bits on 1 thread and on 3 (training too: exact GEMMs).
TEST(CliAnalysisThreads, ExactTsneMapIsTheSameOnAnyThreadCount) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_cli_threads_" + std::to_string(getpid()));
  fs::remove_all(dir);
  std::string maps[2];
  for (int i = 0; i < 2; ++i) {
    setenv("VAE_CPU_THREADS", i == 0 ? "1" : "3", 1);
    const fs::path out = dir / (i == 0 ? "one" : "three");
    const CmdResult r = run_cli("cluster --data synthetic:users=700,items=100,ratings=10000 --device cpu --epochs 1 "
                                "--n-init 1 --tsne --tsne-method exact --out " + out.string());
    unsetenv("VAE_CPU_THREADS");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_THAT(r.out, HasSubstr("t-SNE (exact): 700 points"));
    maps[i] = read_file(out / "clusters.csv");
  }
  EXPECT_THAT(maps[0], HasSubstr("user_id,cluster,x,y"));
  EXPECT_EQ(maps[0], maps[1]);
  fs::remove_all(dir);
}

TEST(CliAnalysisTrainFirst, RecommendAndClusterTrainWhenNoModelFile) {
  const std::string d = "--data synthetic:users=80,items=100,ratings=1500,groups=2 --device cpu --epochs 1";
  const CmdResult r = run_cli("recommend " + d + " --user 3 --top 4");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("Top 4 recommendations for user 3"));
  const CmdResult e = run_cli("recommend " + d + " --model ease --user 3 --top 4");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("(ease)"));
  const CmdResult c = run_cli("cluster " + d + " --k 2");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_THAT(c.out, HasSubstr("Cluster 1 ("));
  const CmdResult a = run_cli("cluster " + d + " --model autorec");
  EXPECT_EQ(a.code, 2) << a.out;
  EXPECT_THAT(a.out, HasSubstr("latent"));
  EXPECT_THAT(a.out, Not(HasSubstr("Epoch")));  // refused before training, not after it
  const fs::path out = fs::path(::testing::TempDir()) / ("vae_embed_cdae_" + std::to_string(getpid()));
  const CmdResult em = run_cli("embed " + d + " --model cdae --out " + out.string());
  EXPECT_EQ(em.code, 2) << em.out;
  EXPECT_THAT(em.out, HasSubstr("cdae has no latent space"));
  EXPECT_THAT(em.out, Not(HasSubstr("Epoch")));
  const CmdResult sv = run_cli("embed " + d + " --model svd --sample --out " + out.string());
  EXPECT_EQ(sv.code, 2) << sv.out;
  EXPECT_THAT(sv.out, HasSubstr("svd has no posterior to sample from"));
  EXPECT_THAT(sv.out, Not(HasSubstr("Epoch")));
  EXPECT_FALSE(fs::exists(out));
  // recommend --user prints its list: an --out is said to be ignored.
  const CmdResult ro = run_cli("recommend " + d + " --user 3 --top 2 --out " + out.string());
  ASSERT_EQ(ro.code, 0) << ro.out;
  EXPECT_THAT(ro.out, HasSubstr("note: --out is ignored: recommend --user / --ratings prints its list"));
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace

namespace {

// Under the heldout protocol an item nobody rated at the threshold cannot be a model column:
// refused before training rather than after it.
TEST(CliAnalysisTrainFirst, SimilarRefusesAHeldoutItemWithoutPositivesBeforeTraining) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_sim_heldout_" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path csv = dir / "r.csv";
  {
    std::ofstream f(csv);
    f << "user,item,rating\n";
    for (int u = 1; u <= 40; ++u)
      for (int i = 1; i <= 12; ++i) f << u << "," << i << "," << 1 + (u + i) % 5 << "\n";
    for (int u = 1; u <= 10; ++u) f << u << ",99," << 2 + u % 2 << "\n";  // ratings 2 and 3 only
  }
  const CmdResult r = run_cli("similar --item 99 --model multvae --protocol heldout --device cpu --data " + csv.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("item 99 has no rating >= --threshold 4, so a heldout-protocol model has no column"));
  EXPECT_THAT(r.out, Not(HasSubstr("Epoch")));
  const CmdResult ok = run_cli("similar --item 99 --model multvae --protocol heldout --threshold 3 --epochs 1 "
                               "--device cpu --data " + csv.string());
  EXPECT_EQ(ok.code, 0) << ok.out;
  // Timed protocols: item 99 liked only last, so only in the held-out part.
  const fs::path timed = dir / "timed.csv";
  {
    std::ofstream f(timed);
    f << "user,item,rating,timestamp\n";
    for (int u = 1; u <= 40; ++u)
      for (int i = 1; i <= 12; ++i) f << u << "," << i << "," << 1 + (u + i) % 5 << "," << 1000 * u + i << "\n";
    for (int u = 1; u <= 10; ++u) f << u << ",99,5," << 1000000 + u << "\n";
  }
  const CmdResult t = run_cli("similar --item 99 --model multvae --protocol temporal --device cpu --data " + timed.string());
  EXPECT_EQ(t.code, 2) << t.out;
  EXPECT_THAT(t.out, HasSubstr("item 99 has no rating >= --threshold 4 before its users' held-out latest ones, so a "
                               "temporal-protocol model has no column for it"));
  const CmdResult c = run_cli("similar --item 99 --model multvae --protocol cutoff --device cpu --data " + timed.string());
  EXPECT_EQ(c.code, 2) << c.out;
  EXPECT_THAT(c.out, HasSubstr("item 99 has no rating >= --threshold 4 before 1970-01-"));
  EXPECT_THAT(c.out, HasSubstr(", so a cutoff-protocol model has no column for it"));
  EXPECT_THAT(c.out, Not(HasSubstr("Epoch")));
  fs::remove_all(dir);
}

// Each model family names its own output in the heading, and SVD's fold-in serves --explain.
TEST(CliAnalysisTrainFirst, SimilarAndExplainForEveryFamily) {
  const std::string d = "--data synthetic:users=80,items=100,ratings=1500,groups=2 --device cpu --epochs 1";
  for (const auto& [model, unit] : std::vector<std::pair<std::string, std::string>>{
           {"vae", "logit"}, {"cdae", "logit"}, {"multvae", "log-probability"}, {"autorec", "predicted rating"},
           {"ease", "score (EASE: B[i][j])"},
           {"svd", "predicted rating"}, {"svdpp", "predicted rating"}}) {
    const CmdResult s = run_cli("similar " + d + " --model " + model + " --item 5 --top 3");
    ASSERT_EQ(s.code, 0) << model << "\n" << s.out;
    EXPECT_THAT(s.out, HasSubstr("(" + model + "; lift = how much more a new user's rating 5 of it alone raises each item's " +
                                 unit + " than such a rating of the average item does, centred over the items)"));
    EXPECT_THAT(s.out, HasSubstr("\n   3  "));
    const CmdResult e = run_cli("recommend " + d + " --model " + model + " --user 3 --top 3 --explain");
    ASSERT_EQ(e.code, 0) << model << "\n" << e.out;
    EXPECT_THAT(e.out, HasSubstr("  because you liked\n")) << model;
  }
  // Item-based AutoRec takes no new user: its items are compared by their predicted ratings.
  const CmdResult s = run_cli("similar " + d + " --model i-autorec --item 5 --top 3");
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_THAT(s.out, HasSubstr("(i-autorec; similarity = the correlation, over its 80 users, of the ratings the model "
                               "predicts for the two items, each user's and each item's mean prediction taken out)"));
  EXPECT_THAT(s.out, HasSubstr("rank  item  similarity  ratings  title"));
  EXPECT_THAT(s.out, HasSubstr("\n   3  "));
  const CmdResult e = run_cli("recommend " + d + " --model i-autorec --user 3 --top 3 --explain");
  ASSERT_EQ(e.code, 0) << e.out;
  EXPECT_THAT(e.out, HasSubstr("  because you liked\n"));
  EXPECT_THAT(e.out, HasSubstr("note: because you liked: of your ratings >= 3, the item most similar to it"));
  const fs::path csv = fs::temp_directory_path() / ("vae_gpu_iautorec_similar_" + std::to_string(::getpid()) + ".csv");
  const CmdResult all = run_cli("similar " + d + " --model i-autorec --all-items --top 2 --out " + csv.string());
  ASSERT_EQ(all.code, 0) << all.out;
  EXPECT_THAT(all.out, HasSubstr("items by similarity for each of the i-autorec model's items"));
  std::ifstream f(csv);
  std::string header;
  std::getline(f, header);
  EXPECT_EQ(header, "item_id,rank,similar_item_id,similarity");
  fs::remove(csv);
}

// The whole pipeline finds real structure: a Mult-VAE trained on the default synthetic data,
// its users' latent means clustered with k = the number of planted taste groups, recovers those
// groups (the notebook VAE's own weighting collapses the posterior, so it is not used here).
TEST(CliAnalysisPipeline, ClustersRecoverThePlantedGroupsOfTheSyntheticDefault) {
  const CmdResult r = run_cli("cluster --data synthetic --device cpu --model multvae --epochs 20 --k 6 --quiet");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string key = "Adjusted Rand index vs the planted groups: ";
  const size_t at = r.out.find(key);
  ASSERT_NE(at, std::string::npos) << r.out;
  const double ari = std::stod(r.out.substr(at + key.size()));
  std::cout << "ARI " << ari << "\n";
  EXPECT_GE(ari, 0.8) << r.out;
}

// The notebook's way of choosing k finds the six planted taste groups by itself.
TEST(CliAnalysisPipeline, KRangePicksTheSixPlantedGroups) {
  const CmdResult r = run_cli("cluster --data synthetic --device cpu --model multvae --epochs 20 --k-range 2..9 --quiet");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("best silhouette at k = 6;")) << r.out;
  const std::string key = "Adjusted Rand index vs the planted groups: ";
  const size_t at = r.out.find(key);
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_GE(std::stod(r.out.substr(at + key.size())), 0.8) << r.out;
}

}  // namespace
