// Temporaries of atomic writes are removed when the process is stopped by a signal.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/temp_files.h"

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

}  // namespace
