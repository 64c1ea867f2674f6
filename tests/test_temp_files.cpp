// Temporaries of atomic writes are removed when the process is stopped by a signal.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "core/error.h"
#include "core/temp_files.h"
#include "train/trainer.h"

namespace {

namespace fs = std::filesystem;

// A child registers two temporaries (and forgets a third, renamed one), then is killed by
// SIGTERM: the registered ones are gone, the forgotten one stays, and the child still dies of
// SIGTERM (its exit status as without the handler).
TEST(TempFiles, ASignalRemovesRegisteredTemporariesAndStillKills) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_tmpfiles_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path a = dir / "metrics.csv.tmp", b = dir / "model.safetensors.tmp.1.0", kept = dir / "done.csv";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    vae::remove_temp_files_on_signals();
    for (const fs::path& p : {a, b, kept}) std::ofstream(p) << "partial";
    vae::register_temp_file(a.string());
    vae::register_temp_file(b.string());
    vae::forget_temp_file(vae::register_temp_file(kept.string()));
    std::raise(SIGTERM);
    _exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  EXPECT_FALSE(fs::exists(a));
  EXPECT_FALSE(fs::exists(b));
  EXPECT_TRUE(fs::exists(kept));
  fs::remove_all(dir);
}

// A signal the process inherited as ignored (nohup's SIGHUP) stays ignored.
TEST(TempFiles, IgnoredSignalsStayIgnored) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGHUP, SIG_IGN);
    vae::remove_temp_files_on_signals();
    std::raise(SIGHUP);
    _exit(7);  // reached: the signal was ignored
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

TEST(TempFiles, SlotsAreReusedAndOverlongPathsRefused) {
  const int s1 = vae::register_temp_file("/tmp/x.tmp");
  ASSERT_GE(s1, 0);
  vae::forget_temp_file(s1);
  EXPECT_EQ(vae::register_temp_file("/tmp/y.tmp"), s1);  // the freed slot comes back first
  vae::forget_temp_file(s1);
  EXPECT_EQ(vae::register_temp_file(std::string(5000, 'x')), -1);
  vae::forget_temp_file(-1);  // harmless
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A run folder's files are the run's own: one that is a symbolic link (a folder made with
// `cp -rs` from another run) is replaced by the new file, and a stale one is unlinked; neither
// writes or removes the file the link points at, so the other run is never changed.
TEST(StagedFiles, LinksInARunFolderAreReplacedNotWrittenThrough) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_staged_links_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "run1");
  fs::create_directories(dir / "run2");
  std::ofstream(dir / "run1" / "metrics.csv") << "run1 metrics";
  std::ofstream(dir / "run1" / "logvar.npy") << "run1 logvar";
  fs::create_symlink("../run1/metrics.csv", dir / "run2" / "metrics.csv");
  fs::create_symlink("../run1/logvar.npy", dir / "run2" / "logvar.npy");
  std::ofstream(dir / "run2" / vae::kWrittenFilesName) << "logvar.npy\nmetrics.csv\n";  // as an earlier run left them
  {
    vae::StagedFiles staged;
    staged.add((dir / "run2" / "metrics.csv").string(), "run2 metrics");
    staged.remove_on_commit((dir / "run2" / "logvar.npy").string());
    staged.commit();
    ASSERT_EQ(staged.removed().size(), 1u);
  }
  EXPECT_FALSE(fs::is_symlink(dir / "run2" / "metrics.csv"));
  EXPECT_EQ(read_all(dir / "run2" / "metrics.csv"), "run2 metrics");
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir / "run2" / "logvar.npy")));
  EXPECT_EQ(read_all(dir / "run1" / "metrics.csv"), "run1 metrics");
  EXPECT_EQ(read_all(dir / "run1" / "logvar.npy"), "run1 logvar");
  fs::remove_all(dir);
}

// A folder given as --out may hold the user's own files under a run file's name: commit removes
// only what its folder's record says this tool wrote there, and records what it writes.
TEST(StagedFiles, RemovesOnlyFilesItsFolderRecordLists) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_staged_record_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "sub");
  std::ofstream(dir / "tsne.svg") << "the user's own picture";
  {
    vae::StagedFiles staged;
    staged.add((dir / "metrics.csv").string(), "first");
    staged.add((dir / "sub" / "a.csv").string(), "a");
    staged.remove_on_commit((dir / "tsne.svg").string());
    staged.commit();
    EXPECT_TRUE(staged.removed().empty());
    ASSERT_EQ(staged.kept().size(), 1u);
    EXPECT_EQ(staged.kept()[0], (dir / "tsne.svg").string());
  }
  EXPECT_EQ(read_all(dir / "tsne.svg"), "the user's own picture");
  EXPECT_EQ(vae::read_written_files(dir.string()), (std::set<std::string>{"metrics.csv"}));
  EXPECT_EQ(vae::read_written_files((dir / "sub").string()), (std::set<std::string>{"a.csv"}));
  {
    vae::StagedFiles staged;  // a later run: writes tsne.svg (now recorded), drops sub/a.csv
    staged.add((dir / "tsne.svg").string(), "<svg/>");
    staged.remove_on_commit((dir / "sub" / "a.csv").string());
    staged.remove_dir_if_empty_on_commit((dir / "sub").string());
    staged.commit();
    EXPECT_EQ(staged.removed(), (std::vector<std::string>{(dir / "sub" / "a.csv").string()}));
    // The user's tsne.svg it wrote over is kept under another name, and said.
    using Replaced = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(staged.replaced(), (Replaced{{(dir / "tsne.svg").string(), (dir / "tsne.svg.orig").string()}}));
  }
  EXPECT_EQ(read_all(dir / "tsne.svg"), "<svg/>");
  EXPECT_EQ(read_all(dir / "tsne.svg.orig"), "the user's own picture");
  fs::remove(dir / "tsne.svg.orig");
  EXPECT_FALSE(fs::exists(dir / "sub"));  // emptied, its record gone with it
  EXPECT_EQ(vae::read_written_files(dir.string()), (std::set<std::string>{"metrics.csv", "tsne.svg"}));
  {
    vae::StagedFiles staged;
    staged.remove_on_commit((dir / "tsne.svg").string());
    staged.commit();
    EXPECT_EQ(staged.removed().size(), 1u);
  }
  EXPECT_FALSE(fs::exists(dir / "tsne.svg"));
  EXPECT_EQ(vae::read_written_files(dir.string()), (std::set<std::string>{"metrics.csv"}));
  {
    vae::StagedFiles staged;  // its own metrics.csv, recorded: replaced without a copy
    staged.add((dir / "metrics.csv").string(), "second");
    staged.commit();
    EXPECT_TRUE(staged.replaced().empty());
  }
  EXPECT_EQ(read_all(dir / "metrics.csv"), "second");
  EXPECT_FALSE(fs::exists(dir / "metrics.csv.orig"));
  fs::remove_all(dir);
}

// A rename failing part-way through a commit (here the third file's temporary has vanished)
// puts back the files already renamed: the earlier run stands whole, a file that did not exist
// before is gone again, and neither temporaries nor kept copies are left behind.
TEST(StagedFiles, ARenameFailingPartWayPutsTheEarlierFilesBack) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_staged_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path a = dir / "metrics.csv", b = dir / "summary.json", fresh = dir / "curves.svg",
                 model = dir / "model.safetensors";
  for (const fs::path& p : {a, b, model}) std::ofstream(p) << "old " << p.filename().string();
  const fs::path users_copy = dir / "model.safetensors.prev";  // the user's own backup
  std::ofstream(users_copy) << "mine";
  {
    vae::StagedFiles staged;
    staged.add(a.string(), "new a");
    staged.add(fresh.string(), "new svg");
    staged.add(b.string(), "new b");
    staged.adopt(model.string());  // its writer never produced model.safetensors.tmp
    try {
      staged.commit();
      ADD_FAILURE() << "commit succeeded without the model's temporary";
    } catch (const vae::DataError& e) {
      EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("put back"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(read_all(a), "old metrics.csv");
  EXPECT_EQ(read_all(b), "old summary.json");
  EXPECT_EQ(read_all(model), "old model.safetensors");
  EXPECT_FALSE(fs::exists(fresh));
  EXPECT_EQ(read_all(users_copy), "mine");
  int entries = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    ++entries;
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
    EXPECT_TRUE(e.path() == users_copy || e.path().string().find(".prev") == std::string::npos) << e.path();
  }
  EXPECT_EQ(entries, 4);

  // The same files committed for real replace the old ones and leave no kept copies.
  {
    vae::StagedFiles staged;
    staged.add(a.string(), "new a");
    staged.add(fresh.string(), "new svg");
    staged.commit();
  }
  EXPECT_EQ(read_all(a), "new a");
  EXPECT_EQ(read_all(fresh), "new svg");
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_TRUE(e.path() == users_copy || e.path().string().find(".prev") == std::string::npos) << e.path();
  EXPECT_EQ(read_all(users_copy), "mine");
  fs::remove_all(dir);
}

// write_atomically replaces a regular file, writes through a symbolic link (the link stays, its
// target is replaced, even a target that does not exist yet), and writes a FIFO as it is: a
// rename over such a node would replace the node itself (as root, /dev/null).
TEST(WriteAtomically, LinksAreWrittenThroughAndSpecialFilesWrittenAsTheyAre) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_atomic_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto slurp = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  auto write = [](const fs::path& p, const std::string& text) {
    vae::write_atomically(p.string(), [&](std::ostream& o) { o << text; });
  };
  write(dir / "plain.csv", "one\n");
  write(dir / "plain.csv", "two\n");
  EXPECT_EQ(slurp(dir / "plain.csv"), "two\n");

  fs::create_symlink("plain.csv", dir / "link.csv");
  write(dir / "link.csv", "three\n");
  EXPECT_TRUE(fs::is_symlink(dir / "link.csv"));
  EXPECT_EQ(slurp(dir / "plain.csv"), "three\n");
  fs::create_symlink("later.csv", dir / "dangling.csv");
  write(dir / "dangling.csv", "four\n");
  EXPECT_TRUE(fs::is_symlink(dir / "dangling.csv"));
  EXPECT_EQ(slurp(dir / "later.csv"), "four\n");
  EXPECT_EQ(vae::link_target((dir / "link.csv").string()), (dir / "plain.csv").string());
  fs::create_symlink("loop_b", dir / "loop_a");
  fs::create_symlink("loop_a", dir / "loop_b");
  EXPECT_THROW(write(dir / "loop_a", "x"), vae::DataError);

  // A FIFO: a child reads it while the parent writes.
  const fs::path fifo = dir / "pipe";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const fs::path got = dir / "from_pipe.txt";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::ifstream in(fifo, std::ios::binary);
    std::ofstream(got, std::ios::binary) << in.rdbuf();
    _exit(0);
  }
  write(fifo, "through the pipe\n");
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_EQ(slurp(got), "through the pipe\n");
  EXPECT_EQ(fs::status(fifo).type(), fs::file_type::fifo);
  for (const auto& e : fs::directory_iterator(dir))  // written in place: no temporary beside it
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();

  EXPECT_THROW(write(dir, "x"), vae::DataError);  // a directory
  fs::remove_all(dir);
}

}  // namespace


// Each write has a temporary of its own (NAME.tmp.PID.N, never a shared NAME.tmp), so two
// processes writing one CSV at once each rename a whole file into place; it is gone afterwards.
TEST(WriteAtomically, EachWriteHasItsOwnTemporary) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("vae_own_tmp_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "recs.csv").string();
  std::set<std::string> seen;
  for (int i = 0; i < 2; ++i)
    vae::write_atomically(path, [&](std::ostream& out) {
      out << "row " << i << "\n";
      for (const auto& e : fs::directory_iterator(dir)) seen.insert(e.path().filename().string());
    });
  EXPECT_EQ(seen.count("recs.csv.tmp"), 0u);
  const std::string own = "recs.csv.tmp." + std::to_string(getpid()) + ".";
  int temporaries = 0;
  for (const std::string& name : seen) temporaries += name.rfind(own, 0) == 0;
  EXPECT_EQ(temporaries, 2) << "one temporary per write, named by the process";
  std::ifstream in(path);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "row 1\n");
  for (const auto& e : fs::directory_iterator(dir)) EXPECT_EQ(e.path().filename(), "recs.csv");
  fs::remove_all(dir);
}
