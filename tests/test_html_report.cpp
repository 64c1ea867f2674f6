// report.html (analysis/html_report) and the console copy it is made from (core/console_capture).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <iostream>
#include <sstream>
#include <string>

#include "analysis/html_report.h"
#include "cli_runner.h"
#include "core/console_capture.h"

namespace vae {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(HtmlReport, EscapesTheConsoleAndKeepsWhatTheTerminalShowed) {
  const std::string console =
      "Training <vae> & co\n"
      "\rEpoch [1/2] [###...] 1/4\rEpoch [1/2] [######] 4/4\rEpoch [1/2] train 1.0\n"
      "title \"Romeo & Juliet\"\r\n"
      "last line without newline";
  const std::string h = run_report_html("vae_gpu --out 'a b'", console, {});
  EXPECT_THAT(h, HasSubstr("<pre>Training &lt;vae&gt; &amp; co\nEpoch [1/2] train 1.0\n"
                           "title &quot;Romeo &amp; Juliet&quot;\nlast line without newline</pre>"));
  EXPECT_THAT(h, Not(HasSubstr("###")));  // the progress bar's intermediate states are gone
  EXPECT_THAT(h, HasSubstr("<title>vae_gpu --out 'a b'</title>"));
  EXPECT_THAT(h, Not(HasSubstr("<h2>Pictures</h2>")));
  EXPECT_EQ(h.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(h.substr(h.size() - 8), "</html>\n");
}

TEST(HtmlReport, PicturesAreInlineWithTheRunsOwnFirst) {
  const std::vector<ReportPicture> pics = {{"vae/curves.svg", "<svg id=\"a\"></svg>"},
                                           {"compare.svg", "<svg id=\"b\"></svg>\n"},
                                           {"cdae/curves.svg", "<svg id=\"c\"></svg>"}};
  const std::string h = run_report_html("vae_gpu compare", "", pics);
  const size_t b = h.find("<svg id=\"b\">"), a = h.find("<svg id=\"a\">"), c = h.find("<svg id=\"c\">");
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  ASSERT_NE(c, std::string::npos);
  EXPECT_LT(b, a);  // compare.svg before the sub-runs' curves, which keep their order
  EXPECT_LT(a, c);
  EXPECT_THAT(h, HasSubstr("<a href=\"#fig1-compare-svg\">compare.svg</a>"));
  EXPECT_THAT(h, HasSubstr("<figure id=\"fig2-vae-curves-svg\">\n<svg id=\"a\"></svg>\n<figcaption>vae/curves.svg "
                           "(<a href=\"vae/curves.svg\">the file</a>)</figcaption>"));
}

// Sweep rows like beta=1e-2 and beta=1e+2 differ only in characters an id cannot hold.
TEST(HtmlReport, EveryPictureHasItsOwnAnchor) {
  const std::string h = run_report_html("x", "", {{"m_beta=1e-2/curves.svg", "<svg/>"}, {"m_beta=1e+2/curves.svg", "<svg/>"}});
  EXPECT_THAT(h, HasSubstr("<figure id=\"fig1-m-beta-1e-2-curves-svg\">"));
  EXPECT_THAT(h, HasSubstr("<figure id=\"fig2-m-beta-1e-2-curves-svg\">"));
  EXPECT_THAT(h, HasSubstr("<a href=\"#fig2-m-beta-1e-2-curves-svg\">m_beta=1e+2/curves.svg</a>"));
}

TEST(ConsoleCapture, CopiesCoutAndCerrInOrderAndRestoresThem) {
  std::ostringstream out, err;
  std::streambuf* old_out = std::cout.rdbuf(out.rdbuf());
  std::streambuf* old_err = std::cerr.rdbuf(err.rdbuf());
  {
    ConsoleCapture cap("vae_gpu x");
    EXPECT_EQ(ConsoleCapture::active(), &cap);
    std::cout << "one " << 1 << "\n";
    std::cerr << "note: two\n";
    std::cout << 'c' << std::flush;
    EXPECT_EQ(cap.text(), "one 1\nnote: two\nc");
    EXPECT_EQ(cap.command(), "vae_gpu x");
    EXPECT_THROW(ConsoleCapture second("y"), std::logic_error);
  }
  EXPECT_EQ(ConsoleCapture::active(), nullptr);
  std::cout << "after\n";
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  EXPECT_EQ(out.str(), "one 1\nc" "after\n");  // the terminal got everything, the copy nothing after
  EXPECT_EQ(err.str(), "note: two\n");
}

TEST(ConsoleCapture, StopsCopyingPastItsLimitButNotPrinting) {
  std::ostringstream out;
  std::streambuf* old_out = std::cout.rdbuf(out.rdbuf());
  std::string copy;
  {
    ConsoleCapture cap("vae_gpu");
    const std::string line(1 << 20, 'x');
    for (int i = 0; i < 9; ++i) std::cout << line;
    copy = cap.text();
  }
  std::cout.rdbuf(old_out);
  EXPECT_EQ(out.str().size(), size_t{9} << 20);
  EXPECT_LT(copy.size(), ConsoleCapture::kMaxBytes + 200);
  EXPECT_THAT(copy.substr(copy.size() - 100), HasSubstr("not copied here: more than 8 MiB"));
}

TEST(ConsoleCapture, CommandLinesAreShellQuoted) {
  const char* argv[] = {"build/vae_gpu", "--data", "my data/ml-100k", "--item", "Schindler's List", "--k=3", ""};
  EXPECT_EQ(shell_command_line(7, argv),
            "build/vae_gpu --data 'my data/ml-100k' --item 'Schindler'\\''s List' --k=3 ''");
}

// ---- through the CLI ------------------------------------------------------------------

using cli_test::fresh_dir;
using cli_test::read_text;
using cli_test::run_cli;

const char* kSmall = "--data synthetic:users=120,items=150,ratings=3000,groups=3,seed=2 --device cpu";

TEST(HtmlReport, TheMainJobLeavesOnePageWithItsOutputAndPictures) {
  const auto dir = fresh_dir("report_main");
  const auto r = run_cli("--epochs 2 --out " + dir.string() + " " + kSmall);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("tsne.svg, embeddings.npy, user_ids.csv, report.html\n"));
  const std::string h = read_text(dir / "report.html");
  EXPECT_THAT(h, HasSubstr("--epochs 2 --out " + dir.string()));
  for (const char* part : {"Training vae on cpu", "Top 30 recommendations for user", "K-Means on the latent means",
                           "<figure id=\"fig1-curves-svg\">", "<figure id=\"fig2-tsne-svg\">"})
    EXPECT_THAT(h, HasSubstr(part));
  // The pictures are the files' own text.
  EXPECT_THAT(h, HasSubstr(read_text(dir / "curves.svg")));
  EXPECT_THAT(h, HasSubstr(read_text(dir / "tsne.svg")));
  EXPECT_THAT(h, Not(HasSubstr("wrote ")));  // the files line comes after the report is made

  const auto again = run_cli("train --model cdae --epochs 1 --out " + dir.string() + " " + kSmall);
  ASSERT_EQ(again.code, 0) << again.out;
  const std::string h2 = read_text(dir / "report.html");
  EXPECT_THAT(h2, HasSubstr("train --model cdae"));
  EXPECT_THAT(h2, Not(HasSubstr("<figure")));  // one epoch draws no curves
}

// SVD's main job prints its top 30 like the autoencoders' and its page holds it; cluster writes
// its own page, so a cluster run into the main job's folder leaves that job's page.
TEST(HtmlReport, SvdMainJobAndClusterPages) {
  const auto dir = fresh_dir("report_svd");
  // Over an autoencoder main job's folder: its popularity row goes; its cluster files are
  // replaced by SVD's clusters of the user vectors.
  ASSERT_EQ(run_cli("--epochs 2 --out " + dir.string() + " " + kSmall).code, 0);
  ASSERT_TRUE(std::filesystem::exists(dir / "popularity" / "summary.json"));
  const std::string vae_clusters = read_text(dir / "clusters.csv");
  const auto r = run_cli("--model svd --epochs 2 --out " + dir.string() + " " + kSmall);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "popularity"));
  EXPECT_NE(read_text(dir / "clusters.csv"), vae_clusters);
  EXPECT_EQ(read_text(dir / "user_metrics.csv").rfind("user_id,input_ratings,test_ratings,rmse\n", 0), 0u);  // SVD's own
  const std::string page = read_text(dir / "report.html");
  EXPECT_THAT(page, HasSubstr("Top 30 recommendations for user"));
  EXPECT_THAT(page, HasSubstr("K-Means on the SVD user vectors (p_u)"));
  EXPECT_THAT(page, HasSubstr(read_text(dir / "tsne.svg")));

  const auto m = fresh_dir("report_cluster");
  ASSERT_EQ(run_cli("--epochs 2 --no-tsne --out " + m.string() + " " + kSmall).code, 0);
  const std::string main_page = read_text(m / "report.html");
  const auto c = run_cli("cluster --model-file " + (m / "model.safetensors").string() + " --k 2 --out " + m.string() +
                         " " + kSmall);
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_EQ(read_text(m / "report.html"), main_page);
  const std::string cluster_page = read_text(m / "cluster_report.html");
  EXPECT_THAT(cluster_page, HasSubstr("cluster --model-file"));
  EXPECT_THAT(cluster_page, HasSubstr("K-Means on the latent means"));
}

TEST(HtmlReport, CompareShowsItsBarsFirst) {
  const auto dir = fresh_dir("report_compare");
  const auto r = run_cli("compare --models cdae,popularity --epochs 2 --quiet --out " + dir.string() + " " + kSmall);
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string h = read_text(dir / "report.html");
  const size_t bars = h.find("<figure id=\"fig1-compare-svg\">"), curves = h.find("<figure id=\"fig2-cdae-curves-svg\">");
  ASSERT_NE(bars, std::string::npos) << h.substr(0, 2000);
  ASSERT_NE(curves, std::string::npos);
  EXPECT_LT(bars, curves);
  EXPECT_THAT(h, HasSubstr("Models compared on the seed protocol"));
}

TEST(HtmlReport, CommandsWithoutARunFolderWriteNone) {
  const auto dir = fresh_dir("report_none");
  const auto r = run_cli("embed --model multvae --epochs 1 --out " + dir.string() + " " + kSmall);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(std::filesystem::exists(dir / "embeddings.npy"));
  EXPECT_FALSE(std::filesystem::exists(dir / "report.html"));
}

}  // namespace
}  // namespace vae
