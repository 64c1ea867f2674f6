// The --profile-ops table and the CPU's wall-time profile (the GPU side: CudaOps.OpProfile*,
// CudaModels.ProfileOpsTableAfterTraining).
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "data/dataset.h"
#include "train/trainer.h"

namespace vae {
namespace {

TEST(OpProfile, TableListsOpsInOrderWithSharesAndTotal) {
  const std::vector<OpTime> prof{{"gemm", 24, 0.003}, {"adam_step", 12, 0.001}};
  const std::string t = format_op_profile(prof);
  const size_t g = t.find("gemm"), a = t.find("adam_step"), all = t.find("all ops");
  ASSERT_NE(g, std::string::npos) << t;
  ASSERT_NE(a, std::string::npos) << t;
  ASSERT_NE(all, std::string::npos) << t;
  EXPECT_LT(g, a);
  EXPECT_LT(a, all);
  EXPECT_NE(t.find("75.0%"), std::string::npos) << t;   // 3 of 4 ms
  EXPECT_NE(t.find("25.0%"), std::string::npos) << t;
  EXPECT_NE(t.find("125.00"), std::string::npos) << t;  // gemm: 3 ms / 24 calls = 125 µs
  EXPECT_NE(t.find("4.000"), std::string::npos) << t;   // all ops, ms
}

// On the CPU every op is timed by the wall clock: the table lists the ops a VAE epoch runs, with
// their call counts, and profiling changes nothing in the training.
TEST(OpProfile, CpuRunTimesEveryOpAndTrainsAsUsual) {
  SyntheticSpec spec;
  spec.users = 120;
  spec.items = 200;
  spec.ratings = 3000;
  const Dataset d = make_synthetic(spec);
  std::vector<double> losses;
  for (bool prof : {false, true}) {
    TrainOptions o;
    o.epochs = 2;
    o.model.kind = "vae";
    o.profile_ops = prof;
    auto be = make_cpu_backend<float>();
    std::ostringstream log;
    const TrainResult r = run_experiment(*be, d, o, log);
    const std::string s = log.str();
    EXPECT_EQ(s.find("Wall time per op over 2 epochs") != std::string::npos, prof) << s;
    for (const char* op : {"gemm", "adam_step", "bias_act", "reparameterize", "mse_loss", "graded_metrics"})
      EXPECT_EQ(s.find(std::string("\n  ") + op + " ") != std::string::npos, prof) << op << "\n" << s;
    EXPECT_EQ(s.find("nothing recorded"), std::string::npos) << s;
    EXPECT_FALSE(be->replay_step(64));  // no graphs on the CPU
    losses.push_back(r.history.back().train_loss);
  }
  EXPECT_EQ(losses[0], losses[1]);
}

// Every call of an op is counted under its name, a read profile starts again from nothing, and
// nothing is recorded while profiling is off.
TEST(OpProfile, CpuCountsCallsAndForgetsThemWhenRead) {
  auto be = make_cpu_backend<float>();
  Tensor<float> p = be->zeros(4, 5), g = be->zeros(4, 5), m = be->zeros(4, 5), v = be->zeros(4, 5);
  be->set_op_profiling(true);
  AdamConfig cfg;
  for (int64_t step = 1; step <= 3; ++step) be->adam_step(p.mat(), g.cmat(), m.mat(), v.mat(), cfg, step);
  be->fill(p.mat(), 1.0f);
  const std::vector<OpTime> prof = be->op_profile();
  ASSERT_EQ(prof.size(), 2u);
  for (const OpTime& t : prof) {
    EXPECT_EQ(t.calls, t.op == "adam_step" ? 3 : 1) << t.op;
    EXPECT_GE(t.seconds, 0.0) << t.op;
  }
  EXPECT_TRUE(be->op_profile().empty());
  be->set_op_profiling(false);
  be->fill(p.mat(), 2.0f);
  EXPECT_TRUE(be->op_profile().empty());
}

}  // namespace
}  // namespace vae
