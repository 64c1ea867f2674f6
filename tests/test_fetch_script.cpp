// Runs data/fetch_movielens.sh offline: a tiny fake zip (made-up ratings, not MovieLens data)
// is served through a file:// base URL, so checksum handling and unpacking are tested without
// the network.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "data/dataset.h"

namespace fs = std::filesystem;

namespace {

bool have(const char* tool) {
  return std::system((std::string("command -v ") + tool + " >/dev/null 2>&1").c_str()) == 0;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class FetchScript : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have("curl") || !have("python3")) GTEST_SKIP() << "needs curl and python3";
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(::testing::TempDir()) /
            ("vae_fetch_" + std::to_string(getpid()) + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "server");
    out_ = root_ / "out";
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }

  // server/NAME.zip holding TOP/u.data and TOP/u.item (a loadable two-rating ml-100k set);
  // TOP is NAME unless given.
  void make_zip(const std::string& name, std::string top = "") {
    if (top.empty()) top = name;
    const fs::path src = root_ / "src" / top;
    fs::create_directories(src);
    std::ofstream(src / "u.data") << "1\t1\t5\t881250949\n2\t1\t3\t881250950\n";
    std::ofstream(src / "u.item")
        << "1|Fake Film "
           "(2000)|01-Jan-2000||http://example.invalid/|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n";
    ASSERT_EQ(sh("cd '" + (root_ / "src").string() + "' && python3 -m zipfile -c '" +
                 zip(name).string() + "' " + top),
              0);
  }
  fs::path zip(const std::string& name) const { return root_ / "server" / (name + ".zip"); }

  std::string md5(const fs::path& file) {
    const fs::path sum = root_ / "sum.txt";
    EXPECT_EQ(sh("python3 -c 'import hashlib,sys; print(hashlib.md5(open(sys.argv[1],\"rb\")."
                 "read()).hexdigest())' '" +
                 file.string() + "' > '" + sum.string() + "'"),
              0);
    std::string s = read_text(sum);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }

  // Exit status of the script run with the file:// base URL and --dest out/.
  int fetch(const std::string& args, const std::string& env = "") {
    const std::string script = std::string(VAE_SOURCE_DIR) + "/data/fetch_movielens.sh";
    return sh(env + " VAE_MOVIELENS_BASE_URL='file://" + (root_ / "server").string() + "' bash '" +
              script + "' --dest '" + out_.string() + "' " + args + " > '" +
              (root_ / "log.txt").string() + "' 2>&1");
  }
  std::string log() const { return read_text(root_ / "log.txt"); }

  // Nothing at all in out/ (no data set, no leftover temporary folder).
  bool out_empty() const { return !fs::exists(out_) || fs::is_empty(out_); }

  static int sh(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  }

  fs::path root_, out_;
};

TEST_F(FetchScript, UnpacksWhenChecksumSkipped) {
  make_zip("ml-100k");
  ASSERT_EQ(fetch("ml-100k", "VAE_MOVIELENS_SKIP_MD5=1"), 0) << log();
  ASSERT_TRUE(fs::is_regular_file(out_ / "ml-100k" / "u.data")) << log();
  // Only the data set is left behind: the temporary work folder is gone.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(out_)) ++entries;
  EXPECT_EQ(entries, 1u);
  const vae::Dataset d = vae::load_movielens_dir((out_ / "ml-100k").string());
  EXPECT_EQ(d.num_ratings(), 2);
  EXPECT_EQ(d.titles.at(0), "Fake Film (2000)");
}

TEST_F(FetchScript, EmbeddedChecksumMismatchFailsAndLeavesNoFolder) {
  make_zip("ml-100k");  // not the real zip, so the embedded ml-100k sum cannot match
  EXPECT_NE(fetch("ml-100k"), 0);
  EXPECT_NE(log().find("checksum mismatch"), std::string::npos) << log();
  EXPECT_TRUE(out_empty());
}

// A download that fails removes the --dest folders the run created (here out/), not only its
// work folder; --help is a request, answered on stdout with status 0.
TEST_F(FetchScript, AFailedFetchRemovesTheDestItMadeAndHelpIsNoError) {
  ASSERT_FALSE(fs::exists(out_));
  EXPECT_NE(fetch("ml-100k"), 0);  // no zip on the server
  EXPECT_NE(log().find("failed"), std::string::npos) << log();
  EXPECT_FALSE(fs::exists(out_)) << log();
  const std::string script = std::string(VAE_SOURCE_DIR) + "/data/fetch_movielens.sh";
  const fs::path help = root_ / "help.txt";
  EXPECT_EQ(sh("bash '" + script + "' --help > '" + help.string() + "' 2>/dev/null"), 0);
  EXPECT_NE(read_text(help).find("fetch_movielens.sh"), std::string::npos) << read_text(help);
  EXPECT_EQ(sh("bash '" + script + "' --bogus > /dev/null 2>&1"), 2);
}

// curl reports its error on every try (--retry 2): the script shows each distinct line once.
// An unresolvable host (.invalid never resolves) fails the same way with or without a network.
TEST_F(FetchScript, ADownloadErrorIsPrintedOnce) {
  const std::string script = std::string(VAE_SOURCE_DIR) + "/data/fetch_movielens.sh";
  EXPECT_NE(sh("VAE_MOVIELENS_BASE_URL=http://vae-gpu-test.invalid bash '" + script + "' --dest '" + out_.string() +
               "' ml-100k > '" + (root_ / "log.txt").string() + "' 2>&1"),
            0);
  const std::string text = log();
  const size_t first = text.find("curl: (");
  ASSERT_NE(first, std::string::npos) << text;
  EXPECT_EQ(text.find("curl: (", first + 1), std::string::npos) << text;
  EXPECT_NE(text.find("failed"), std::string::npos) << text;
  EXPECT_FALSE(fs::exists(out_)) << text;
}

TEST_F(FetchScript, Md5OptionIsChecked) {
  make_zip("ml-1m");
  EXPECT_NE(fetch("--md5 00000000000000000000000000000000 ml-1m"), 0);
  EXPECT_TRUE(out_empty()) << log();
  ASSERT_EQ(fetch("--md5 " + md5(zip("ml-1m")) + " ml-1m"), 0) << log();
  EXPECT_TRUE(fs::is_regular_file(out_ / "ml-1m" / "u.item"));
  // A second run keeps what is there.
  EXPECT_EQ(fetch("ml-1m"), 0) << log();
  EXPECT_NE(log().find("already exists"), std::string::npos) << log();
}

TEST_F(FetchScript, UsesPublishedMd5FileWhenNoSumIsEmbedded) {
  make_zip("ml-latest-small");
  // No .md5 next to the zip: refuse rather than unpack unverified data.
  EXPECT_NE(fetch("ml-latest-small"), 0);
  EXPECT_TRUE(out_empty()) << log();
  std::ofstream(root_ / "server" / "ml-latest-small.zip.md5")
      << "MD5 (ml-latest-small.zip) = 0123456789abcdef0123456789abcdef\n";
  EXPECT_NE(fetch("ml-latest-small"), 0);
  EXPECT_TRUE(out_empty()) << log();
  std::ofstream(root_ / "server" / "ml-latest-small.zip.md5")
      << md5(zip("ml-latest-small")) << "  ml-latest-small.zip\n";
  ASSERT_EQ(fetch("ml-latest-small"), 0) << log();
  EXPECT_TRUE(fs::is_regular_file(out_ / "ml-latest-small" / "u.data"));
}

// ml-10m.zip unpacks to ml-10M100K/: it lands in data/ml-10m like the others.
TEST_F(FetchScript, Ml10mIsUnpackedUnderItsOwnName) {
  make_zip("ml-10m", "ml-10M100K");
  std::ofstream(root_ / "server" / "ml-10m.zip.md5") << md5(zip("ml-10m")) << "  ml-10m.zip\n";
  ASSERT_EQ(fetch("ml-10m"), 0) << log();
  EXPECT_TRUE(fs::is_regular_file(out_ / "ml-10m" / "u.data")) << log();
  EXPECT_FALSE(fs::exists(out_ / "ml-10M100K"));
  // A zip with the folder named like the others is not what GroupLens serves: refused.
  fs::remove_all(out_);
  make_zip("ml-10m");
  EXPECT_NE(fetch("ml-10m", "VAE_MOVIELENS_SKIP_MD5=1"), 0);
  EXPECT_NE(log().find("no top-level folder 'ml-10M100K'"), std::string::npos) << log();
}

TEST_F(FetchScript, RejectsUnknownNamesMissingDownloadsAndWrongZips) {
  EXPECT_NE(fetch("ml-5m"), 0);
  EXPECT_NE(log().find("unknown data set"), std::string::npos) << log();
  EXPECT_NE(fetch("ml-20m", "VAE_MOVIELENS_SKIP_MD5=1"), 0);  // no ml-20m.zip served
  EXPECT_TRUE(out_empty()) << log();
  // A zip whose top folder is not named like the data set.
  make_zip("ml-100k");
  fs::rename(zip("ml-100k"), zip("ml-25m"));
  EXPECT_NE(fetch("ml-25m", "VAE_MOVIELENS_SKIP_MD5=1"), 0);
  EXPECT_NE(log().find("no top-level folder"), std::string::npos) << log();
  EXPECT_TRUE(out_empty());
}

}  // namespace
