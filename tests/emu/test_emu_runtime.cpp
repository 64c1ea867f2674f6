// The CPU CUDA emulator's own contract (tests/emu/cuda_emu.h), for the pieces the CUDA tests
// lean on: a block's threads meet at __syncthreads and in the warp shuffles and ballots, shared
// memory is the block's, launch configurations are checked, and a captured stream replays as a
// graph whose kernel node takes new parameters. Written against the emulator directly (no
// rewritten launch syntax): only vae_tests_emu builds it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "cuda_emu.h"
#include "ops.h"  // graph_longest_chain

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

// Lanes 16–31 exit; the rest shuffle down by 16 (reading exited lanes) and vote.
__global__ void exited_lanes_kernel(float* got, unsigned* votes) {
  const int t = static_cast<int>(::emu::thread_idx().x);
  if (t >= 16) return;
  got[t] = __shfl_down_sync(0xffffffffu, static_cast<float>(t), 16);
  votes[t] = __ballot_sync(0xffffffffu, 1);
}

// Reads its left neighbour's slot; with sync = false there is no barrier in between (a race).
__global__ void left_kernel(const int* in, int* out, bool sync) {
  __shared__ int s[256];
  ::emu::shared_here(&s, sizeof s);  // what rewrite_kernels.py adds after a static __shared__
  const unsigned t = ::emu::thread_idx().x, n = ::emu::block_dim().x, b = ::emu::block_idx().x;
  s[t] = in[b * n + t];
  if (sync) __syncthreads();
  out[b * n + t] = s[(t + n - 1) % n];
}

// Block b copies what block b − 1 wrote: an order between blocks that CUDA never promises.
__global__ void chain_kernel(int* x) {
  const unsigned b = ::emu::block_idx().x;
  if (::emu::thread_idx().x == 0 && b > 0) x[b] = x[b - 1] + 1;
}

// Each thread's turns, in the order they run.
__global__ void order_kernel(int* log, int* next) {
  const int t = static_cast<int>(::emu::thread_idx().x);
  log[(*next)++] = t;
  __syncthreads();
  log[(*next)++] = t;
}

// Reads the shared variable before any thread of the block writes it, then writes it.
__global__ void stale_kernel(int* out) {
  __shared__ int v;
  ::emu::shared_here(&v, sizeof v);
  int* dyn = static_cast<int*>(::emu::dynamic_smem());
  if (::emu::thread_idx().x == 0) {
    out[2 * ::emu::block_idx().x] = v;
    out[2 * ::emu::block_idx().x + 1] = dyn[3];
    v = 7;
    dyn[3] = 7;
  }
}

// Thread t reads x[t] and the shared slot t: past the end of both for the last thread when the
// block has one thread more than x and the slots (out of bounds on purpose).
__global__ void overrun_kernel(const float* x, float* out, bool shared) {
  __shared__ float s[32];
  ::emu::shared_here(&s, sizeof s);
  const unsigned t = ::emu::thread_idx().x;
  if (shared) {
    s[t] = 1.0f;
    out[0] = s[t];
  } else {
    out[0] = x[t];
  }
}

// 1 KiB of static shared memory beside whatever dynamic shared memory the launch gives.
__global__ void static_and_dynamic_kernel(int* out) {
  __shared__ int s[256];
  ::emu::shared_here(&s, sizeof s);
  const unsigned t = ::emu::thread_idx().x;
  s[t] = static_cast<int>(t);
  __syncthreads();
  out[t] = s[255 - t];
}

// Deferred streams for one test (whatever EMU_STREAMS says), then the previous mode.
struct DeferredScope {
  bool old = ::emu::deferred();
  DeferredScope() { ::emu::set_deferred(true); }
  ~DeferredScope() { ::emu::set_deferred(old); }
};

// Launches and waits for it (the emulator's streams are asynchronous, as a GPU's).
template <typename... P, typename... A>
void launch_and_wait(const ::emu::LaunchConfig& cfg, void (*kernel)(P...), A&&... args) {
  cfg.run(kernel, std::forward<A>(args)...);
  cudaDeviceSynchronize();
}

// Sets a schedule for one test and puts the previous one back.
struct ScheduleScope {
  ::emu::Schedule old = ::emu::schedule();
  uint64_t old_seed = ::emu::schedule_seed();
  ScheduleScope(::emu::Schedule s, uint64_t seed = 1) { ::emu::set_schedule(s, seed); }
  ~ScheduleScope() { ::emu::set_schedule(old, old_seed); }
};

__global__ void add_kernel(float* x, float v, int n) {
  const int i = static_cast<int>(::emu::block_idx().x * ::emu::block_dim().x + ::emu::thread_idx().x);
  if (i < n) x[i] += v;
}

TEST(EmuRuntime, SyncthreadsOrdersTheBlocksSharedMemory) {
  std::vector<int> in(3 * 256), out(in.size(), -1);
  std::iota(in.begin(), in.end(), 0);
  launch_and_wait(::emu::LaunchConfig(3, 256), rotate_kernel, in.data(), out.data());
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
  launch_and_wait(::emu::LaunchConfig(1, n), warp_kernel, in.data(), sums.data(), downs.data(), ballots.data());
  for (int i = 0; i < n; ++i) {
    const int w = i / 32;
    EXPECT_EQ(sums[i], 32.0 * (32 * w) + 528.0) << i;          // Σ of the warp's 32 values
    EXPECT_EQ(downs[i], i % 32 + 3 < 32 ? i + 3 : i) << i;      // past the warp: its own value
    EXPECT_EQ(ballots[i], 0xAAAAAAAAu) << i;
  }
}

// A missing barrier changes the result with the schedule: forward order hides a read of the
// left neighbour (it has run), reverse order shows it (poison, as nothing was written yet).
TEST(EmuRuntime, SchedulesExposeAMissingBarrier) {
  const int n = 64;
  std::vector<int> in(2 * n), out(in.size());
  std::iota(in.begin(), in.end(), 100);
  auto expect_left = [&](const char* what) {
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < n; ++t) EXPECT_EQ(out[b * n + t], in[b * n + (t + n - 1) % n]) << what << " " << b << " " << t;
  };
  for (auto s : {::emu::Schedule::forward, ::emu::Schedule::reverse, ::emu::Schedule::shuffle}) {
    ScheduleScope scope(s, 5);
    launch_and_wait(::emu::LaunchConfig(2, n), left_kernel, in.data(), out.data(), true);
    expect_left("with the barrier");
  }
  {
    ScheduleScope scope(::emu::Schedule::forward);
    launch_and_wait(::emu::LaunchConfig(2, n), left_kernel, in.data(), out.data(), false);
    for (int t = 1; t < n; ++t) EXPECT_EQ(out[t], in[t - 1]) << t;
    EXPECT_EQ(out[0], -1);  // thread n − 1 has not run yet
  }
  {
    ScheduleScope scope(::emu::Schedule::reverse);
    launch_and_wait(::emu::LaunchConfig(2, n), left_kernel, in.data(), out.data(), false);
    for (int t = 1; t < n; ++t) EXPECT_EQ(out[t], -1) << t;
    EXPECT_EQ(out[0], in[n - 1]);
  }
  {
    ScheduleScope scope(::emu::Schedule::shuffle, 3);
    launch_and_wait(::emu::LaunchConfig(2, n), left_kernel, in.data(), out.data(), false);
    EXPECT_GT(std::count(out.begin(), out.end(), -1), 10);
  }
}

TEST(EmuRuntime, ReverseOrShuffledBlocksExposeAnOrderBetweenBlocks) {
  const int blocks = 50;
  for (auto s : {::emu::Schedule::forward, ::emu::Schedule::reverse, ::emu::Schedule::shuffle}) {
    ScheduleScope scope(s, 9);
    std::vector<int> x(blocks, 0);
    launch_and_wait(::emu::LaunchConfig(blocks, 32), chain_kernel, x.data());
    if (s == ::emu::Schedule::forward) EXPECT_EQ(x[blocks - 1], blocks - 1);
    else EXPECT_LT(x[blocks - 1], blocks - 1) << static_cast<int>(s);
  }
}

TEST(EmuRuntime, TurnOrdersFollowTheScheduleAndItsSeed) {
  const int n = 40;
  auto run = [&](::emu::Schedule s, uint64_t seed) {
    ScheduleScope scope(s, seed);
    std::vector<int> log(2 * n, -1);
    int next = 0;
    launch_and_wait(::emu::LaunchConfig(1, n), order_kernel, log.data(), &next);
    EXPECT_EQ(next, 2 * n);
    return log;
  };
  std::vector<int> fwd(n), one_turn(n);
  std::iota(fwd.begin(), fwd.end(), 0);
  const std::vector<int> f = run(::emu::Schedule::forward, 1);
  EXPECT_EQ(std::vector<int>(f.begin(), f.begin() + n), fwd);
  const std::vector<int> r = run(::emu::Schedule::reverse, 1);
  EXPECT_EQ(std::vector<int>(r.begin(), r.begin() + n), std::vector<int>(fwd.rbegin(), fwd.rend()));
  const std::vector<int> s1 = run(::emu::Schedule::shuffle, 1), s1b = run(::emu::Schedule::shuffle, 1),
                         s2 = run(::emu::Schedule::shuffle, 2);
  EXPECT_NE(s1, s2);
  // Every turn is a permutation of the threads, each turn its own (a new launch: new orders).
  for (const auto* v : {&s1, &s1b, &s2}) {
    for (int turn = 0; turn < 2; ++turn) {
      one_turn.assign(v->begin() + turn * n, v->begin() + (turn + 1) * n);
      EXPECT_NE(one_turn, fwd);
      std::sort(one_turn.begin(), one_turn.end());
      EXPECT_EQ(one_turn, fwd);
    }
    EXPECT_FALSE(std::equal(v->begin(), v->begin() + n, v->begin() + n));
  }
}

TEST(EmuRuntime, FreshMemoryAndEachBlocksSharedMemoryArePoisoned) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 5 * sizeof(float)), cudaSuccess);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(std::isnan(d[i])) << i;
  cudaFree(d);
  std::vector<int> out(6, 0);
  launch_and_wait(::emu::LaunchConfig(3, 32, 16 * sizeof(int)), stale_kernel, out.data());
  EXPECT_EQ(out, std::vector<int>(6, -1));  // not the 7s of the block before
}

// Built with AddressSanitizer (scripts/sanitize_cpu.sh), the emulator is a memcheck for the
// kernels: device memory is heap memory and a static __shared__ array a global, both with redzones.
TEST(EmuRuntimeDeathTest, AddressSanitizerReportsKernelOverruns) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  float* x = nullptr;
  ASSERT_EQ(cudaMalloc(&x, 32 * sizeof(float)), cudaSuccess);
  cudaMemset(x, 0, 32 * sizeof(float));
  float out = 0.0f;
  launch_and_wait(::emu::LaunchConfig(1, 32), overrun_kernel, x, &out, false);  // in bounds
  EXPECT_EQ(out, 0.0f);
  EXPECT_DEATH(launch_and_wait(::emu::LaunchConfig(1, 33), overrun_kernel, x, &out, false),
               "heap-buffer-overflow");
  EXPECT_DEATH(launch_and_wait(::emu::LaunchConfig(1, 33), overrun_kernel, x, &out, true),
               "global-buffer-overflow|out of bounds for type");  // UBSan sees the array bound first
  cudaFree(x);
#else
  GTEST_SKIP() << "built without AddressSanitizer";
#endif
}

// An exited lane takes no part in a shuffle or a vote: reading it is undefined (poison here)
// and it votes 0.
TEST(EmuRuntime, ExitedLanesGivePoisonInShufflesAndNoVote) {
  std::vector<float> got(16, 0.0f);
  std::vector<unsigned> votes(16, 0);
  launch_and_wait(::emu::LaunchConfig(1, 32), exited_lanes_kernel, got.data(), votes.data());
  for (int t = 0; t < 16; ++t) {
    EXPECT_TRUE(std::isnan(got[t])) << t;
    EXPECT_EQ(votes[t], 0xFFFFu) << t;
  }
}

TEST(EmuRuntime, BadLaunchConfigurationsAreErrors) {
  std::vector<float> x(4, 0.0f);
  ::emu::LaunchConfig(1, 2048).run(add_kernel, x.data(), 1.0f, 4);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // read once
  EXPECT_EQ(x, std::vector<float>(4, 0.0f));
}

// More than 48 KiB of dynamic shared memory needs the kernel's opt-in first, as on a GPU.
TEST(EmuRuntime, LargeDynamicSharedMemoryNeedsTheKernelsOptIn) {
  std::vector<int> out(2, 0);
  const size_t big = 64 * 1024;
  ::emu::LaunchConfig(1, 32, big).run(stale_kernel, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  cudaFuncAttributes a{};
  ASSERT_EQ(cudaFuncGetAttributes(&a, stale_kernel), cudaSuccess);
  EXPECT_EQ(a.maxDynamicSharedSizeBytes, 48 * 1024 - static_cast<int>(a.sharedSizeBytes));  // 4 once it has run
  EXPECT_EQ(cudaFuncSetAttribute(stale_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 300 * 1024),
            cudaErrorInvalidValue);
  cudaGetLastError();
  ASSERT_EQ(cudaFuncSetAttribute(stale_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(big)),
            cudaSuccess);
  launch_and_wait(::emu::LaunchConfig(1, 32, big), stale_kernel, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out, std::vector<int>(2, -1));
}

// Static and dynamic shared memory share the block's 48 KiB: a launch that fits alone but not
// beside the kernel's static variables is refused on a GPU, so the emulator stops there; once it
// has seen the kernel's static bytes it reports them and the smaller limit, as a GPU does.
TEST(EmuRuntime, StaticSharedMemoryCountsAgainstTheDynamicLimit) {
  std::vector<int> out(256, -1);
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the child runs the test alone, not a fork of this one
  EXPECT_DEATH(launch_and_wait(::emu::LaunchConfig(1, 256, 48 * 1024 - 512), static_and_dynamic_kernel, out.data()),
               "1024 bytes of static shared memory beside 48640 dynamic");
  launch_and_wait(::emu::LaunchConfig(1, 256, 47 * 1024), static_and_dynamic_kernel, out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out[0], 255);
  cudaFuncAttributes a{};
  ASSERT_EQ(cudaFuncGetAttributes(&a, static_and_dynamic_kernel), cudaSuccess);
  EXPECT_EQ(a.sharedSizeBytes, 1024u);
  EXPECT_EQ(a.maxDynamicSharedSizeBytes, 47 * 1024);
  ::emu::LaunchConfig(1, 256, 47 * 1024 + 4).run(static_and_dynamic_kernel, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  // The opt-in: up to 227 KiB for both together.
  EXPECT_EQ(cudaFuncSetAttribute(static_and_dynamic_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024),
            cudaErrorInvalidValue);
  cudaGetLastError();
  ASSERT_EQ(cudaFuncSetAttribute(static_and_dynamic_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 226 * 1024),
            cudaSuccess);
  launch_and_wait(::emu::LaunchConfig(1, 256, 226 * 1024), static_and_dynamic_kernel, out.data());
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// Copies follow the runtime's documented rules: from pageable memory staged at the call, to
// pageable memory complete on return, to and from pinned memory whenever the stream runs them;
// the stream's work runs when the host waits, and an event not yet reached cannot be timed.
TEST(EmuRuntime, StreamsRunWhenTheHostWaitsAndCopiesFollowTheRuntimesRules) {
  const DeferredScope deferred;
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  float* d = nullptr;
  float* h = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 4 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&h, 4 * sizeof(float)), cudaSuccess);
  std::vector<float> v{1, 2, 3, 4};
  ASSERT_EQ(cudaMemcpyAsync(d, v.data(), 4 * sizeof(float), cudaMemcpyHostToDevice, s), cudaSuccess);
  v[0] = 9;
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(d[0], 1.0f);  // staged at the call
  for (int i = 0; i < 4; ++i) h[i] = 5.0f + i;
  ASSERT_EQ(cudaMemcpyAsync(d, h, 4 * sizeof(float), cudaMemcpyHostToDevice, s), cudaSuccess);
  h[0] = 9;
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(d[0], 9.0f);  // pinned: read when the copy ran
  cudaEvent_t a = nullptr, b = nullptr;
  ASSERT_EQ(cudaEventCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&b), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(a, s), cudaSuccess);
  ::emu::LaunchConfig(1, 4, 0, s).run(add_kernel, d, 1.0f, 4);
  ASSERT_EQ(cudaEventRecord(b, s), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(h, d, 4 * sizeof(float), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_EQ(std::vector<float>(h, h + 4), (std::vector<float>{9, 6, 7, 8}));  // not yet
  float ms = -1.0f;
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaErrorNotReady);
  ASSERT_EQ(cudaEventSynchronize(b), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(std::vector<float>(h, h + 4), (std::vector<float>{10, 7, 8, 9}));
  ::emu::LaunchConfig(1, 4, 0, s).run(add_kernel, d, 1.0f, 4);
  ASSERT_EQ(cudaMemcpyAsync(v.data(), d, 4 * sizeof(float), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_EQ(v, (std::vector<float>{11, 8, 9, 10}));  // pageable: complete on return
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaFreeHost(h);
  cudaFree(d);
  cudaStreamDestroy(s);
}

TEST(EmuRuntime, CapturedLaunchesReplayWithUpdatedKernelParameters) {
  const DeferredScope deferred;
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
  // The first node adds 100 from now on: in launches after the update, not in the one queued;
  // the graph it came from is unchanged.
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
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(x, std::vector<float>(10, 11.0f));
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  EXPECT_EQ(x, std::vector<float>(10, 11.0f));  // queued until the host waits
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(x, std::vector<float>(10, 121.0f));
  cudaGraphExec_t e2 = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&e2, g, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e2, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
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

__global__ void copy_kernel(const float* in, float* out, int n) {
  const int i = static_cast<int>(::emu::thread_idx().x);
  if (i < n) out[i] = in[i];
}

// A capture forked to a second stream through events becomes a graph with a branch, which a
// launch may run as soon as it is forked (forward) or as late as its dependencies allow
// (reversed): a main-stream node that writes what the branch reads shows as a changed result.
// A fork not joined back fails the capture.
TEST(EmuRuntime, ForkedCapturesBranchAndRunInAnyOrderTheirDependenciesAllow) {
  const DeferredScope deferred;
  cudaStream_t s = nullptr, t = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking), cudaSuccess);
  cudaEvent_t fork = nullptr, join = nullptr;
  ASSERT_EQ(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), cudaSuccess);
  std::vector<float> a(8, 0.0f), b(8, 0.0f), c(8, 0.0f);
  const int n = 8;
  // a += 1; fork: b = a on the branch; a += 10 beside it (racing with the branch's read);
  // join; c = b after it.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ::emu::LaunchConfig(1, 8, 0, s).run(add_kernel, a.data(), 1.0f, n);
  ASSERT_EQ(cudaEventRecord(fork, s), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(t, fork, 0), cudaSuccess);
  cudaStreamCaptureStatus st{};
  ASSERT_EQ(cudaStreamIsCapturing(t, &st), cudaSuccess);
  EXPECT_EQ(st, cudaStreamCaptureStatusActive);  // joined the capture
  ::emu::LaunchConfig(1, 8, 0, t).run(copy_kernel, static_cast<const float*>(a.data()), b.data(), n);
  ::emu::LaunchConfig(1, 8, 0, s).run(add_kernel, a.data(), 10.0f, n);
  ASSERT_EQ(cudaEventRecord(join, t), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
  ::emu::LaunchConfig(1, 8, 0, s).run(copy_kernel, static_cast<const float*>(b.data()), c.data(), n);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  ASSERT_EQ(cudaStreamIsCapturing(t, &st), cudaSuccess);
  EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  size_t nodes = 0, roots = 0;
  ASSERT_EQ(cudaGraphGetNodes(g, nullptr, &nodes), cudaSuccess);
  ASSERT_EQ(cudaGraphGetRootNodes(g, nullptr, &roots), cudaSuccess);
  EXPECT_EQ(nodes, 4u);  // events add dependencies, not nodes
  EXPECT_EQ(roots, 1u);
  // Edges: a += 1 → the branch's copy and a += 10; both → the last copy.
  size_t edges = 0;
  ASSERT_EQ(cudaGraphGetEdges(g, nullptr, nullptr, nullptr, &edges), cudaSuccess);
  ASSERT_EQ(edges, 4u);
  std::vector<cudaGraphNode_t> from(edges + 1), to(edges + 1), all(nodes);
  std::vector<cudaGraphEdgeData> data(edges + 1);
  ASSERT_EQ(cudaGraphGetEdges(g, from.data(), to.data(), data.data(), &edges), cudaSuccess);
  EXPECT_EQ(edges, 4u);
  EXPECT_EQ(from[4], nullptr);  // past the edges: cleared
  ASSERT_EQ(cudaGraphGetNodes(g, all.data(), &nodes), cudaSuccess);
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(from[i], to[i]);
  EXPECT_EQ(std::count(from.begin(), from.begin() + 4, all[0]), 2);
  EXPECT_EQ(std::count(to.begin(), to.begin() + 4, all[3]), 2);
  EXPECT_EQ(vae::cuda::graph_longest_chain(g), 3);  // a += 1, a += 10, the last copy
  cudaGraphExec_t e = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  auto run = [&](::emu::Schedule sched) {
    const ScheduleScope scope(sched, 7);
    std::fill(a.begin(), a.end(), 0.0f);
    std::fill(b.begin(), b.end(), 0.0f);
    EXPECT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(a, std::vector<float>(8, 11.0f));
    EXPECT_EQ(c, b);  // the join orders the last node after the branch in every order
    return b[0];
  };
  EXPECT_EQ(run(::emu::Schedule::forward), 1.0f);   // the branch read a before the += 10
  EXPECT_EQ(run(::emu::Schedule::reverse), 11.0f);  // ... and after it
  const float shuffled = run(::emu::Schedule::shuffle);
  EXPECT_TRUE(shuffled == 1.0f || shuffled == 11.0f) << shuffled;

  // A fork never joined: the capture fails, and both streams stop capturing.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(fork, s), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(t, fork, 0), cudaSuccess);
  ::emu::LaunchConfig(1, 8, 0, t).run(add_kernel, a.data(), 1.0f, n);
  cudaGraph_t bad = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureUnjoined);
  EXPECT_EQ(bad, nullptr);
  ASSERT_EQ(cudaStreamIsCapturing(t, &st), cudaSuccess);
  EXPECT_EQ(st, cudaStreamCaptureStatusNone);
  // Only the stream that began a capture ends it; an event from outside a capture cannot be
  // waited for inside one.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(fork, s), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(t, fork, 0), cudaSuccess);
  EXPECT_EQ(cudaStreamEndCapture(t, &bad), cudaErrorIllegalState);
  ASSERT_EQ(cudaEventRecord(join, t), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(s, join, 0), cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(s, &bad), cudaSuccess);
  cudaGraphDestroy(bad);
  cudaEvent_t outside = nullptr;
  ASSERT_EQ(cudaEventCreate(&outside), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(outside, t), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_EQ(cudaStreamWaitEvent(s, outside, 0), cudaErrorStreamCaptureIsolation);
  EXPECT_EQ(cudaStreamEndCapture(s, &bad), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  cudaEventDestroy(outside);
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);
  cudaEventDestroy(fork);
  cudaEventDestroy(join);
  cudaStreamDestroy(t);
  cudaStreamDestroy(s);
}


}  // namespace
