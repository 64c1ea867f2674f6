// The --profile-ops table and its CPU behaviour (the GPU side: CudaOps.OpProfile*,
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

TEST(OpProfile, CpuRunSaysThereIsNoDeviceClockAndTrainsAsUsual) {
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
    EXPECT_EQ(log.str().find("has no device clock") != std::string::npos, prof) << log.str();
    EXPECT_FALSE(be->replay_step(64));  // no graphs on the CPU
    losses.push_back(r.history.back().train_loss);
  }
  EXPECT_EQ(losses[0], losses[1]);
}

}  // namespace
}  // namespace vae
