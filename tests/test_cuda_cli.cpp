// The main job through the command line on the GPU: the same figures and clusters as on the CPU
// (the default exact GEMMs), its training steps as CUDA Graphs that replay. Skips without
// a device; the CPU CUDA emulator runs it too (vae_tests_emu).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "backend/backend.h"
#include "cli_runner.h"

namespace vae {
namespace {

TEST(CudaCli, MainJobGivesTheCpuRunsFigures) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const std::filesystem::path dir = cli_test::fresh_dir("cuda_cli_main");
  const std::string base = "--epochs 3 --data synthetic:users=300,items=400,ratings=12000 --no-tsne";
  const cli_test::CmdResult gpu = cli_test::run_cli(base + " --device cuda --out " + (dir / "gpu").string());
  const cli_test::CmdResult cpu = cli_test::run_cli(base + " --device cpu --out " + (dir / "cpu").string());
  ASSERT_EQ(gpu.code, 0) << gpu.out;
  ASSERT_EQ(cpu.code, 0) << cpu.out;
  EXPECT_NE(gpu.out.find("device: cuda"), std::string::npos) << gpu.out;
  // 240 users train in 4 steps an epoch (3 of 64 and one of 48): two graphs, the rest replayed.
  EXPECT_NE(gpu.out.find("CUDA Graph steps: 2 captured, 10 replayed without capture ("), std::string::npos) << gpu.out;
  EXPECT_NE(gpu.out.find(" graph nodes per step, "), std::string::npos) << gpu.out;
  EXPECT_EQ(gpu.out.find("warning:"), std::string::npos) << gpu.out;
  const auto g = cli_test::read_json(dir / "gpu" / "summary.json"), c = cli_test::read_json(dir / "cpu" / "summary.json");
  ASSERT_EQ(g["metrics"].size(), c["metrics"].size());
  ASSERT_FALSE(c["metrics"].empty());
  for (const auto& [key, value] : c["metrics"].items()) {
    ASSERT_TRUE(g["metrics"].contains(key)) << key;
    // The device's exp/log may differ from glibc's in a last bit: the bar is 3 decimals.
    EXPECT_NEAR(g["metrics"][key].get<double>(), value.get<double>(), 5e-4) << key;
  }
  // The K-Means of the users' latent means (on the GPU too): the same clusters, but for a user
  // whose z sits on a boundary.
  const auto gc = cli_test::parse_csv(cli_test::read_text(dir / "gpu" / "clusters.csv"));
  const auto cc = cli_test::parse_csv(cli_test::read_text(dir / "cpu" / "clusters.csv"));
  ASSERT_EQ(gc.size(), 300u);
  ASSERT_EQ(cc.size(), gc.size());
  size_t same = 0;
  for (size_t i = 0; i < gc.size(); ++i) {
    ASSERT_EQ(gc[i].at("user_id"), cc[i].at("user_id"));
    same += gc[i].at("cluster") == cc[i].at("cluster");
  }
  EXPECT_GE(same, gc.size() * 98 / 100);
}

// compare --sweep precision on the GPU: a CUDA backend per row, one at a time; the exact row gives
// the CPU's exact figures, the fp32 row is cuBLAS's (its summary says so).
TEST(CudaCli, PrecisionSweepMakesABackendPerRow) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const std::filesystem::path dir = cli_test::fresh_dir("cuda_cli_precision");
  const std::string base = "compare --models vae,popularity --epochs 2 --data synthetic:users=200,items=300,ratings=8000";
  const cli_test::CmdResult gpu =
      cli_test::run_cli(base + " --sweep precision=exact,fp32,tf32 --device cuda --out " + (dir / "gpu").string());
  ASSERT_EQ(gpu.code, 0) << gpu.out;
  EXPECT_NE(gpu.out.find("note: --sweep precision: each row multiplies at its own precision, on a cuda backend made for it\n"),
            std::string::npos) << gpu.out;
  const cli_test::CmdResult cpu = cli_test::run_cli(base + " --device cpu --out " + (dir / "cpu").string());
  ASSERT_EQ(cpu.code, 0) << cpu.out;
  for (const char* p : {"exact", "fp32", "tf32"})
    EXPECT_EQ(cli_test::read_json(dir / "gpu" / (std::string("vae_precision=") + p) / "summary.json")["precision"], p) << p;
  const auto g = cli_test::read_json(dir / "gpu" / "vae_precision=exact" / "summary.json");
  const auto c = cli_test::read_json(dir / "cpu" / "vae" / "summary.json");
  ASSERT_FALSE(c["metrics"].empty());
  for (const auto& [key, value] : c["metrics"].items())
    EXPECT_NEAR(g["metrics"][key].get<double>(), value.get<double>(), 5e-4) << key;
}

// train --folds on the GPU: one model per fold on one backend (each fold's step graphs captured
// for its own model), the CPU's figures.
TEST(CudaCli, AutoRecFoldsGiveTheCpuFigures) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const std::filesystem::path dir = cli_test::fresh_dir("cuda_cli_folds");
  const std::string base = "train --model autorec --folds 3 --epochs 2 --quiet --data synthetic:users=200,items=300,ratings=8000";
  const cli_test::CmdResult gpu = cli_test::run_cli(base + " --device cuda --out " + (dir / "gpu").string());
  const cli_test::CmdResult cpu = cli_test::run_cli(base + " --device cpu --out " + (dir / "cpu").string());
  ASSERT_EQ(gpu.code, 0) << gpu.out;
  ASSERT_EQ(cpu.code, 0) << cpu.out;
  const auto g = cli_test::read_json(dir / "gpu" / "summary.json"), c = cli_test::read_json(dir / "cpu" / "summary.json");
  EXPECT_EQ(g["eval_set"], "3-fold cross-validation");
  ASSERT_EQ(c["metrics"].size(), 4u);
  for (const auto& [key, value] : c["metrics"].items())
    EXPECT_NEAR(g["metrics"][key].get<double>(), value.get<double>(), 5e-4) << key;
}

// The temporal protocol on the GPU: CDAE scores the evaluated users, who are training users, with
// their own user vectors (gathered by training row on the device); the CPU's figures.
// Both timed protocols score training users with their own CDAE user vectors.
TEST(CudaCli, TimedProtocolsCdaeGivesTheCpuFigures) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  for (const std::string protocol : {"temporal", "cutoff"}) {
    SCOPED_TRACE(protocol);
    const std::filesystem::path dir = cli_test::fresh_dir("cuda_cli_" + protocol);
    const std::string base = "train --model cdae --protocol " + protocol +
                             " --epochs 2 --quiet --data synthetic:users=200,items=300,ratings=8000";
    const cli_test::CmdResult gpu = cli_test::run_cli(base + " --device cuda --out " + (dir / "gpu").string());
    const cli_test::CmdResult cpu = cli_test::run_cli(base + " --device cpu --out " + (dir / "cpu").string());
    ASSERT_EQ(gpu.code, 0) << gpu.out;
    ASSERT_EQ(cpu.code, 0) << cpu.out;
    const auto g = cli_test::read_json(dir / "gpu" / "summary.json"), c = cli_test::read_json(dir / "cpu" / "summary.json");
    EXPECT_EQ(g["protocol"], protocol);
    EXPECT_EQ(g["users_evaluated"], c["users_evaluated"]);
    EXPECT_GT(c["users_evaluated"].get<int>(), 10);
    ASSERT_EQ(c["metrics"].size(), 7u);
    for (const auto& [key, value] : c["metrics"].items())
      EXPECT_NEAR(g["metrics"][key].get<double>(), value.get<double>(), 5e-4) << key;
  }
}

}  // namespace
}  // namespace vae
