// Runs the vae_gpu binary (VAE_CLI_PATH, set by CMake) with arguments through the shell and
// returns its exit code with stdout and stderr together: the CLI tests' one way in. Also the
// small file helpers those tests share.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace cli_test {

struct CmdResult {
  int code = -1;
  std::string out;  // stdout and stderr together
};

// stdout_only: stderr (notes, warnings, errors) is dropped, so out holds what a pipe would get.
inline CmdResult run_cli(const std::string& args, bool stdout_only = false) {
  const std::string cmd = std::string(VAE_CLI_PATH) + " " + args + (stdout_only ? " 2>/dev/null" : " 2>&1");
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

// An empty directory of this process under the test temp dir (emptied if it exists).
inline std::filesystem::path fresh_dir(const std::string& name) {
  const std::filesystem::path d =
      std::filesystem::path(::testing::TempDir()) / ("vae_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

inline nlohmann::json read_json(const std::filesystem::path& p) { return nlohmann::json::parse(read_text(p)); }

// A CSV we write (no quoted commas in these tests) as rows of fields keyed by its header.
inline std::vector<std::map<std::string, std::string>> parse_csv(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  std::vector<std::string> head;
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ',')) f.push_back(x);
    if (!line.empty() && line.back() == ',') f.push_back("");
    if (head.empty()) {
      head = f;
      continue;
    }
    EXPECT_EQ(f.size(), head.size()) << line;
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < head.size() && i < f.size(); ++i) row[head[i]] = f[i];
    rows.push_back(row);
  }
  return rows;
}

}  // namespace cli_test
