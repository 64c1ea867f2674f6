// Backend::run_step's fallback on a real device: a step whose capture the driver refuses (here a
// cudaMalloc inside the capture, one of the calls a thread-local capture prohibits) runs as
// plain launches, with the same results as a backend that never captured; the failed call's
// error does not linger to fail the next launch check, no graph is kept to replay, and the
// backend keeps working. tests/test_step_capture.cpp checks the same contract on the CPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/philox.h"

namespace vae {
namespace {

TEST(CudaStepFallback, ARefusedCaptureRunsTheStepAsPlainLaunches) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  auto graph = make_cuda_backend(GemmPrecision::exact);
  auto plain = make_cuda_backend(GemmPrecision::exact);
  const std::vector<float> x0{1, 2, 3, 4, 5, 6, 7, 8};
  struct Side {
    Tensor<float> x, w, y, z;
  };
  auto side = [&](Backend<float>& be) {
    return Side{be.upload(x0, 4, 2), be.upload(std::vector<float>{0.5f, -1.0f, 2.0f, 0.25f}, 2, 2), be.zeros(4, 2), be.zeros(4, 2)};
  };
  Side g = side(*graph), p = side(*plain);
  auto step_ops = [](Backend<float>& be, Side& s, int64_t step) {
    be.gemm(false, false, 1.0f, s.x.cmat(), s.w.cmat(), 0.5f, s.y.mat());
    be.dropout(s.y.cmat(), 0.25f, 3, rng_stream(RngStream::dropout, static_cast<uint64_t>(step)), s.z.mat());
  };
  // Step 0 under key 4 is captured and kept; step 1 under key 5 is refused while being captured.
  void* leaked = nullptr;
  std::string refusal;
  for (int64_t step = 0; step < 4; ++step) {
    step_ops(*plain, p, step);
    const int64_t key = step == 0 ? 4 : 5;
    graph->run_step(key, [&] {
      step_ops(*graph, g, step);
      if (step == 1 && refusal.empty()) {
        const cudaError_t e = cudaMalloc(&leaked, 256);  // a prohibited call: it invalidates the capture
        refusal = e == cudaSuccess ? "cudaMalloc allowed" : cudaGetErrorString(e);
        throw CudaError("test: cudaMalloc inside a capture: " + refusal);
      }
    });
    SCOPED_TRACE("step " + std::to_string(step));
    EXPECT_EQ(graph->download(g.y.cmat()), plain->download(p.y.cmat()));
    EXPECT_EQ(graph->download(g.z.cmat()), plain->download(p.z.cmat()));
  }
  if (leaked) cudaFree(leaked);
  EXPECT_NE(graph->step_capture_failure().find("cudaMalloc inside a capture"), std::string::npos)
      << graph->step_capture_failure();
  EXPECT_EQ(graph->step_graph_stats().captures, 1);  // step 0's; none after the refusal
  EXPECT_FALSE(graph->replay_step(4));               // the kept graph was dropped
  // Plain work goes on, and the refused call left no error behind.
  graph->axpy(2.0f, g.x.cmat(), g.y.mat());
  plain->axpy(2.0f, p.x.cmat(), p.y.mat());
  EXPECT_EQ(graph->download(g.y.cmat()), plain->download(p.y.cmat()));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  std::cout << "the driver's answer to cudaMalloc inside the capture: " << refusal << "\n";
}

}  // namespace
}  // namespace vae
