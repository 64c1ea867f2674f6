// Runs the vae_gpu binary (VAE_CLI_PATH, set by CMake) with arguments through the shell and
// returns its exit code with stdout and stderr together: the CLI tests' one way in.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace cli_test {

struct CmdResult {
  int code = -1;
  std::string out;  // stdout and stderr together
};

inline CmdResult run_cli(const std::string& args) {
  const std::string cmd = std::string(VAE_CLI_PATH) + " " + args + " 2>&1";
  CmdResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace cli_test
