// The CPU CUDA emulator's own contract (tests/emu/cuda_emu.h), for the pieces the CUDA tests
// lean on: a block's threads meet at __syncthreads and in the warp shuffles and ballots, shared
// memory is the block's, launch configurations are checked, and a captured stream replays as a
// graph whose kernel node takes new parameters. Written against the emulator directly (no
// rewritten launch syntax): only vae_tests_emu builds it.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "cuda_emu.h"

namespace {

// Each thread writes its index, waits, then reads its right neighbour's: without the barrier a
// thread would read a slot not yet written (the emulator runs threads one by one up to it).
__global__ void rotate_kernel(const int* in, int* out) {
  __shared__ int s[256];
  const unsigned t = ::emu::thread_idx().x, n = ::emu::block_dim().x;
  s[t] = in[::emu::block_idx().x * n + t];
  __syncthreads();
  out[::emu::block_idx().x * n + t] = s[(t + 1) % n];
}

// A warp sum by xor shuffles, shuffle-down and broadcast shuffles, and a ballot of odd lanes.
__global__ void warp_kernel(const double* in, double* sums, int* downs, unsigned* ballots) {
  const int t = static_cast<int>(::emu::thread_idx().x), lane = t % 32;
  double v = in[t];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  sums[t] = v;
  downs[t] = __shfl_down_sync(0xffffffffu, t, 3);
  ballots[t] = __ballot_sync(0xffffffffu, lane % 2);
  downs[t] += __shfl_sync(0xffffffffu, lane == 5 ? 7 : 0, 5) - 7;  // lane 5's offer, in every lane
}

__global__ void add_kernel(float* x, float v, int n) {
  const int i = static_cast<int>(::emu::block_idx().x * ::emu::block_dim().x + ::emu::thread_idx().x);
  if (i < n) x[i] += v;
}

TEST(EmuRuntime, SyncthreadsOrdersTheBlocksSharedMemory) {
  std::vector<int> in(3 * 256), out(in.size(), -1);
  std::iota(in.begin(), in.end(), 0);
  ::emu::LaunchConfig(3, 256).run(rotate_kernel, in.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  for (int b = 0; b < 3; ++b)
    for (int t = 0; t < 256; ++t) EXPECT_EQ(out[b * 256 + t], b * 256 + (t + 1) % 256) << b << " " << t;
}

TEST(EmuRuntime, WarpShufflesAndBallotsSeeTheWholeWarp) {
  const int n = 64;
  std::vector<double> in(n), sums(n);
  std::vector<int> downs(n);
  std::vector<unsigned> ballots(n);
  for (int i = 0; i < n; ++i) in[i] = i + 1;
  ::emu::LaunchConfig(1, n).run(warp_kernel, in.data(), sums.data(), downs.data(), ballots.data());
  for (int i = 0; i < n; ++i) {
    const int w = i / 32;
    EXPECT_EQ(sums[i], 32.0 * (32 * w) + 528.0) << i;          // Σ of the warp's 32 values
    EXPECT_EQ(downs[i], i % 32 + 3 < 32 ? i + 3 : i) << i;      // past the warp: its own value
    EXPECT_EQ(ballots[i], 0xAAAAAAAAu) << i;
  }
}

TEST(EmuRuntime, BadLaunchConfigurationsAreErrors) {
  std::vector<float> x(4, 0.0f);
  ::emu::LaunchConfig(1, 2048).run(add_kernel, x.data(), 1.0f, 4);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // read once
  EXPECT_EQ(x, std::vector<float>(4, 0.0f));
}

TEST(EmuRuntime, CapturedLaunchesReplayWithUpdatedKernelParameters) {
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  std::vector<float> x(10, 0.0f);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ::emu::LaunchConfig(1, 16, 0, s).run(add_kernel, x.data(), 1.0f, 10);
  ::emu::LaunchConfig(1, 16, 0, s).run(add_kernel, x.data(), 10.0f, 10);
  EXPECT_EQ(x, std::vector<float>(10, 0.0f));  // recorded, not run
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaGraphNode_t root = nullptr;
  size_t roots = 1;
  ASSERT_EQ(cudaGraphGetRootNodes(g, &root, &roots), cudaSuccess);
  ASSERT_EQ(roots, 1u);
  cudaGraphExec_t e = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  EXPECT_EQ(x, std::vector<float>(10, 11.0f));
  // The first node adds 100 from now on; the graph it came from is unchanged.
  float* px = x.data();
  float v = 100.0f;
  int n = 10;
  void* args[] = {&px, &v, &n};
  cudaKernelNodeParams p;
  p.func = reinterpret_cast<void*>(&add_kernel);
  p.gridDim = dim3(1);
  p.blockDim = dim3(16);
  p.kernelParams = args;
  ASSERT_EQ(cudaGraphExecKernelNodeSetParams(e, root, &p), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  EXPECT_EQ(x, std::vector<float>(10, 121.0f));
  cudaGraphExec_t e2 = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&e2, g, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e2, s), cudaSuccess);
  EXPECT_EQ(x, std::vector<float>(10, 132.0f));
  // A prohibited call invalidates a capture.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  void* mem = nullptr;
  EXPECT_EQ(cudaMalloc(&mem, 16), cudaErrorStreamCaptureUnsupported);
  cudaStreamCaptureStatus st{};
  ASSERT_EQ(cudaStreamIsCapturing(s, &st), cudaSuccess);
  EXPECT_EQ(st, cudaStreamCaptureStatusInvalidated);
  cudaGraph_t bad = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(bad, nullptr);
  cudaGetLastError();
  cudaGraphExecDestroy(e2);
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
}

}  // namespace
