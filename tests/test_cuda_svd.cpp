// Blocked SGD for SVD / SVD++ on the GPU against its CPU twin: same plan, same visiting order,
// same rounding (kernels/svd_sgd.h), so every parameter and every epoch's training RMSE must be
// bit-identical — for factor counts below, at and above a warp, B = 1, B not a multiple of the
// warps per CTA, more blocks than users, and the ml-100k-shaped default. Every test skips
// without a CUDA device.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "data/dataset.h"
#include "models/svd.h"

#include "cli_runner.h"

namespace vae {
namespace {

::testing::AssertionResult same_bits(const std::vector<double>& gpu, const std::vector<double>& cpu, const char* what) {
  if (gpu.size() != cpu.size())
    return ::testing::AssertionFailure() << what << ": size " << gpu.size() << " != " << cpu.size();
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < gpu.size(); ++i)
    if (!(gpu[i] == cpu[i])) {  // NaN never passes
      if (bad++ == 0) first = i;
      worst = std::max(worst, std::fabs(gpu[i] - cpu[i]));
    }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os.precision(17);
  os << what << ": " << bad << " of " << gpu.size() << " differ; first at " << first << " (gpu " << gpu[first]
     << ", cpu " << cpu[first] << "), max |diff| " << worst;
  return ::testing::AssertionFailure() << os.str();
}

struct Case {
  bool plus_plus;
  int factors;
  int blocks;
  SyntheticSpec data;
};

void check_parity(const Case& c, int epochs) {
  const Dataset d = make_synthetic(c.data);
  const RatingsSplit s = split_ratings_random(d, 0.1, 3);
  SvdOptions o;
  o.plus_plus = c.plus_plus;
  o.factors = c.factors;
  o.epochs = epochs;
  o.seed = 11;
  o.schedule = SvdSchedule::blocked;
  o.blocks = c.blocks;
  SvdModel cpu(s.train, d.rating_min, d.rating_max, o);
  o.cuda = true;
  SvdModel gpu(s.train, d.rating_min, d.rating_max, o);
  const std::string label = std::string(c.plus_plus ? "svdpp" : "svd") + " f=" + std::to_string(c.factors) +
                            " B=" + std::to_string(cpu.block_plan()->blocks);
  SCOPED_TRACE(label);
  for (int e = 0; e < epochs; ++e) {
    const double rc = cpu.run_epoch(), rg = gpu.run_epoch();
    EXPECT_EQ(rg, rc) << "train RMSE, epoch " << e + 1;
  }
  EXPECT_TRUE(same_bits(gpu.user_bias(), cpu.user_bias(), "user bias"));
  EXPECT_TRUE(same_bits(gpu.item_bias(), cpu.item_bias(), "item bias"));
  EXPECT_TRUE(same_bits(gpu.user_factors(), cpu.user_factors(), "user factors"));
  EXPECT_TRUE(same_bits(gpu.item_factors(), cpu.item_factors(), "item factors"));
  EXPECT_TRUE(same_bits(gpu.implicit_factors(), cpu.implicit_factors(), "implicit factors"));
  EXPECT_EQ(gpu.evaluate(s.test).rmse, cpu.evaluate(s.test).rmse);
}

TEST(CudaSvd, BlockedSgdMatchesTheCpuTwinBitForBit) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const SyntheticSpec small{200, 150, 5000, 3, 2};
  for (bool pp : {false, true}) {
    check_parity({pp, 7, 1, small}, 2);     // one block: the whole epoch in one warp
    check_parity({pp, 32, 5, small}, 3);    // B not a multiple of the 4 warps per CTA
    check_parity({pp, 37, 16, small}, 3);   // factors not a multiple of 32
    check_parity({pp, 100, 0, small}, 2);   // the default B (= min(264, users, items) = 150)
    check_parity({pp, 3, 300, SyntheticSpec{40, 60, 800, 2, 4}}, 3);  // more blocks than users
  }
}

TEST(CudaSvd, Ml100kShapedDefaultsMatchTheCpuTwin) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  check_parity({false, 100, 0, SyntheticSpec{}}, 2);
  check_parity({true, 20, 0, SyntheticSpec{}}, 1);
}

TEST(CudaSvd, TwoGpuRunsAreIdenticalAndTrainingConverges) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const Dataset d = make_synthetic(SyntheticSpec{300, 200, 12000, 4, 2});
  const RatingsSplit s = split_ratings_random(d, 0.1, 2);
  SvdOptions o;
  o.schedule = SvdSchedule::blocked;
  o.cuda = true;
  SvdModel a(s.train, d.rating_min, d.rating_max, o), b(s.train, d.rating_min, d.rating_max, o);
  std::vector<double> ha, hb;
  a.fit([&](int, double r) { ha.push_back(r); });
  b.fit([&](int, double r) { hb.push_back(r); });
  EXPECT_EQ(ha, hb);
  EXPECT_TRUE(same_bits(a.user_factors(), b.user_factors(), "user factors"));
  EXPECT_LT(ha.back(), 0.9 * ha.front());
}

// The CLI on the GPU: the blocked schedule, the same metrics as its CPU twin.
TEST(CudaSvd, CliGpuRunEqualsCpuBlockedRun) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  auto run = [](const std::string& args) {
    const cli_test::CmdResult r = cli_test::run_cli(args);
    return std::make_pair(r.code, r.out);
  };
  const std::string base = "train --data synthetic:users=300,items=200,ratings=8000,groups=3 --epochs 4 --quiet";
  for (const std::string kind : {"svd", "svdpp"}) {
    const auto g = run(base + " --model " + kind + " --device cuda");
    const auto c = run(base + " --model " + kind + " --device cpu --svd-schedule blocked");
    ASSERT_EQ(g.first, 0) << g.second;
    ASSERT_EQ(c.first, 0) << c.second;
    EXPECT_NE(g.second.find("device: cuda"), std::string::npos) << g.second;
    const auto final_line = [](const std::string& s) { return s.substr(s.find("Final metrics")); };
    EXPECT_EQ(final_line(g.second), final_line(c.second));
  }
}

}  // namespace
}  // namespace vae
