// A CUDA emulator on the CPU, for tests only: the kernels of kernels/ compiled as C++ and run
// block by block, each block's threads as cooperative fibers, so that __syncthreads and the warp
// shuffles wait for the threads they name. The runtime calls the CUDA backend makes (memory,
// streams, events, stream capture and graphs with kernel-node updates) and the two cuBLAS GEMMs
// are imitated; "device" memory is host memory. What it checks: the kernels' and the backend's
// logic (indexing, tiling, reductions, graph capture and replay) against the CPU oracle on a
// machine without a GPU. Races that change a result show when the same test runs under another
// schedule (EMU_SCHEDULE, below), reads of memory no one wrote as poison (NaN), a host read
// before the wait for its copy as stale data (streams are asynchronous). What it cannot:
// timing, races that a reordering of whole turns between barriers does not expose, memory-model
// effects, real cuBLAS rounding (its GEMMs sum in double).
//
// tests/emu/rewrite_kernels.py rewrites the kernel sources for it (kernel launches, dynamic
// shared memory, the built-in index variables); CMake target vae_tests_emu.
#pragma once
#include <math.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define CUDART_VERSION 13000  // the runtime API it follows (cudaGraphGetEdges with edge data)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // a block's threads share it; blocks run one after another
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct float2 { float x, y; };
struct double2 { double x, y; };
struct float4 { float x, y, z, w; };
struct int2 { int x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }

// ---- runtime types and constants ----------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureUnjoined = 904,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
};
using cudaError = cudaError_t;
struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct CUevent_st;
using cudaEvent_t = CUevent_st*;
struct CUgraph_st;
using cudaGraph_t = CUgraph_st*;
struct CUgraphExec_st;
using cudaGraphExec_t = CUgraphExec_st*;
struct CUgraphNode_st;
using cudaGraphNode_t = CUgraphNode_st*;

enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal, cudaStreamCaptureModeRelaxed };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone, cudaStreamCaptureStatusActive, cudaStreamCaptureStatusInvalidated };
enum cudaGraphNodeType { cudaGraphNodeTypeKernel = 0, cudaGraphNodeTypeMemcpy = 1, cudaGraphNodeTypeMemset = 2, cudaGraphNodeTypeHost = 3 };
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
  cudaDevAttrSingleToDoublePrecisionPerfRatio = 87,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaStreamDefault = 0;
constexpr unsigned cudaEventDefault = 0;
constexpr unsigned cudaEventDisableTiming = 2;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int multiProcessorCount;
  int major, minor;
  int maxThreadsPerBlock;
  int warpSize;
};
struct cudaFuncAttributes {
  size_t sharedSizeBytes = 0, constSizeBytes = 0, localSizeBytes = 0;
  int maxThreadsPerBlock = 1024, numRegs = 32, ptxVersion = 90, binaryVersion = 90;
  int maxDynamicSharedSizeBytes = 48 * 1024;
};
struct cudaKernelNodeParams {
  void* func = nullptr;
  dim3 gridDim;
  dim3 blockDim;
  unsigned sharedMemBytes = 0;
  void** kernelParams = nullptr;
  void** extra = nullptr;
};

const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
template <typename T>
cudaError_t cudaMallocHost(T** p, size_t bytes) {
  return cudaMallocHost(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void* f);
template <typename F>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, F* f) {
  return cudaFuncGetAttributes(a, reinterpret_cast<const void*>(f));
}
cudaError_t cudaFuncSetAttribute(const void* f, cudaFuncAttribute attr, int value);
template <typename F>
cudaError_t cudaFuncSetAttribute(F* f, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(f), attr, value);
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* st);
cudaError_t cudaGraphCreate(cudaGraph_t* g, unsigned flags);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphGetRootNodes(cudaGraph_t g, cudaGraphNode_t* nodes, size_t* n);
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t* nodes, size_t* n);
struct cudaGraphEdgeData {  // CUDA 12.3+: all zero for the plain dependencies stream capture makes
  unsigned char from_port = 0, to_port = 0, type = 0, reserved[5] = {};
};
cudaError_t cudaGraphGetEdges(cudaGraph_t g, cudaGraphNode_t* from, cudaGraphNode_t* to, cudaGraphEdgeData* data,
                              size_t* n);
cudaError_t cudaGraphNodeGetType(cudaGraphNode_t node, cudaGraphNodeType* t);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphExecKernelNodeSetParams(cudaGraphExec_t e, cudaGraphNode_t node, const cudaKernelNodeParams* p);

// ---- device built-ins ------------------------------------------------------------------------
namespace emu {
const dim3& thread_idx();
const dim3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void syncthreads();
void syncwarp();
// Each lane of the calling warp offers `mine`; returns lane src's offer (its own when src is
// outside the warp or the block; all one bits, a poison, when lane src has exited).
uint64_t warp_exchange(uint64_t mine, int src);
int lane_id();
void* dynamic_smem();

// Checking modes, for the bugs a fixed order hides. The schedule is the order in which a grid's
// blocks run and a block's threads take their turns between barriers: forward (the default),
// reverse, or a seeded shuffle (a new order every turn). A result that changes with it comes from
// a race: a missing __syncthreads or __syncwarp, or blocks that read each other's output. Read
// from EMU_SCHEDULE=forward|reverse|shuffle[:SEED] at the first launch; set_schedule overrides.
enum class Schedule { forward, reverse, shuffle };
void set_schedule(Schedule s, uint64_t seed = 1);
Schedule schedule();
uint64_t schedule_seed();
// Fresh memory is poisoned with 0xFF bytes (NaN floats, -1 integers), as a GPU's is undefined:
// cudaMalloc's, and a block's shared memory when the block starts. Static __shared__ variables
// call shared_here (rewrite_kernels.py adds the call after the declaration): the block's first
// thread to get there poisons it, so a read of what no thread wrote does not see the last
// block's leftovers.
constexpr unsigned char kPoison = 0xFF;
void shared_here(void* p, size_t bytes);
// Streams are asynchronous, as on a GPU: a stream's work (kernels, copies, memsets, GEMMs, graph
// launches, event records) runs when the host waits for it (cudaStreamSynchronize,
// cudaEventSynchronize, cudaDeviceSynchronize, and the calls that synchronise: cudaMemcpy,
// cudaMemset, cudaFree, cudaFreeHost, a copy to pageable host memory). A wait on one stream or
// event runs only that stream's work and what it depends on: the stream's earlier work, the
// legacy default stream's ordering with blocking streams, and the event records its
// cudaStreamWaitEvent calls name; other streams' work stays queued, so a missing wait between
// two streams shows as a read of unwritten memory. Copies follow the runtime's documented behaviour: from pageable host
// memory staged at the call, to pageable host memory complete on return, to and from pinned
// memory (cudaMallocHost) truly asynchronous. So a host read of a pinned result before the wait,
// a pinned source rewritten before its copy ran, or an event timed before it completed shows.
// EMU_STREAMS=immediate (or set_deferred(false)) runs every call at once instead.
// A capture forks to other streams through events (cudaEventRecord in the capture,
// cudaStreamWaitEvent on another stream) and must be joined back before it ends
// (cudaErrorStreamCaptureUnjoined); the graph then has branches. A graph launch runs its nodes
// in an order the schedule picks among those the dependencies allow: forward, the capture
// order; reverse, every branch as late as possible; shuffle, a seeded random topological order.
void set_deferred(bool on);
bool deferred();
inline uint64_t to_word(double v) { uint64_t w; std::memcpy(&w, &v, 8); return w; }
inline uint64_t to_word(float v) { uint32_t w; std::memcpy(&w, &v, 4); return w; }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
inline uint64_t to_word(T v) { return static_cast<uint64_t>(static_cast<std::make_unsigned_t<T>>(v)); }
template <typename T>
T from_word(uint64_t w) {
  if constexpr (std::is_same_v<T, double>) { double v; std::memcpy(&v, &w, 8); return v; }
  else if constexpr (std::is_same_v<T, float>) { uint32_t u = static_cast<uint32_t>(w); float v; std::memcpy(&v, &u, 4); return v; }
  else return static_cast<T>(w);
}
}  // namespace emu

inline void __syncthreads() { emu::syncthreads(); }
// Blocks run one after another on one host thread: every write is visible to the next block.
inline void __threadfence() {}
inline void __syncwarp(unsigned = 0xffffffffu) { emu::syncwarp(); }
template <typename T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int lane = emu::lane_id();
  return emu::from_word<T>(emu::warp_exchange(emu::to_word(v), (lane / width) * width + (src % width)));
}
template <typename T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = emu::lane_id();
  const int src = lane % width + static_cast<int>(delta) < width ? lane + static_cast<int>(delta) : lane;
  return emu::from_word<T>(emu::warp_exchange(emu::to_word(v), src));
}
template <typename T>
T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = emu::lane_id();
  const int src = lane ^ mask;
  return emu::from_word<T>(emu::warp_exchange(emu::to_word(v), src / width == lane / width ? src : lane));
}
unsigned __ballot_sync(unsigned mask, int pred);

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline long long __double_as_longlong(double d) { long long u; std::memcpy(&u, &d, 8); return u; }
inline double __longlong_as_double(long long u) { double d; std::memcpy(&d, &u, 8); return d; }
template <typename T>
inline T __ldg(const T* p) { return *p; }
// Rounded as written: the emulator is built with -ffp-contract=off.
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fmaf(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }

// Atomics: a block's threads are fibers of one host thread, switched only at barriers, so a
// plain read-modify-write is atomic.
template <typename T>
T atomicAdd(T* p, T v) { const T old = *p; *p = old + v; return old; }
template <typename T>
T atomicOr(T* p, T v) { const T old = *p; *p = old | v; return old; }
template <typename T>
T atomicAnd(T* p, T v) { const T old = *p; *p = old & v; return old; }
template <typename T>
T atomicMax(T* p, T v) { const T old = *p; if (v > old) *p = v; return old; }
template <typename T>
T atomicMin(T* p, T v) { const T old = *p; if (v < old) *p = v; return old; }
template <typename T>
T atomicExch(T* p, T v) { const T old = *p; *p = v; return old; }
template <typename T>
T atomicCAS(T* p, T cmp, T v) { const T old = *p; if (old == cmp) *p = v; return old; }

// The device's min/max overloads (the host's std ones live in std::).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- kernel launches -------------------------------------------------------------------------
namespace emu {

// A launch: its configuration, its parameters copied as the kernel receives them, and how to
// run one thread's call over a parameter copy, overwrite one (cudaGraphExecKernelNodeSetParams)
// or copy one (cudaGraphInstantiate).
struct KernelLaunch {
  const void* func = nullptr;
  dim3 grid, block;
  size_t smem = 0;
  std::shared_ptr<void> params;
  std::function<void(void*)> body;
  std::function<void(void*, void**)> set_params;
  std::function<std::shared_ptr<void>(const void*)> copy;
};
// Runs the launch now, or records it into the stream's capture.
cudaError_t submit(cudaStream_t s, KernelLaunch launch);
// A host-side operation of the stream (copy, memset, a cuBLAS GEMM): now, or into the capture.
cudaError_t submit_host(cudaStream_t s, std::function<void()> op, cudaGraphNodeType type);

template <typename Tuple, size_t... I>
void set_from(Tuple& t, void** args, std::index_sequence<I...>) {
  (std::memcpy(static_cast<void*>(&std::get<I>(t)), args[I], sizeof(std::get<I>(t))), ...);
}

struct LaunchConfig {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  LaunchConfig(dim3 g, dim3 b, size_t sm = 0, cudaStream_t s = nullptr) : grid(g), block(b), smem(sm), stream(s) {}
  template <typename... P, typename... A>
  void run(void (*kernel)(P...), A&&... args) const {
    using Tuple = std::tuple<std::decay_t<P>...>;
    KernelLaunch l;
    l.func = reinterpret_cast<const void*>(kernel);
    l.grid = grid;
    l.block = block;
    l.smem = smem;
    l.params = std::make_shared<Tuple>(std::forward<A>(args)...);
    l.body = [kernel](void* t) { std::apply(kernel, *static_cast<Tuple*>(t)); };
    l.set_params = [](void* t, void** a) { set_from(*static_cast<Tuple*>(t), a, std::index_sequence_for<P...>{}); };
    l.copy = [](const void* t) -> std::shared_ptr<void> { return std::make_shared<Tuple>(*static_cast<const Tuple*>(t)); };
    submit(stream, std::move(l));
  }
};

}  // namespace emu

// ---- cuBLAS (the two GEMMs and the handle calls the project makes) ---------------------------
struct cublasContext;
using cublasHandle_t = cublasContext*;
enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
using cudaDataType_t = cudaDataType;
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77, CUBLAS_COMPUTE_32F_FAST_16BF = 75 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
cublasStatus_t cublasCreate(cublasHandle_t* h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void* ws, size_t bytes);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* a, int lda, const float* b, int ldb, const float* beta,
                           float* c, int ldc);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* a, cudaDataType at, int lda, const void* b, cudaDataType bt,
                            int ldb, const void* beta, void* c, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo);

// ---- cuRAND: only the status type the error checks name ---------------------------------------
enum curandStatus_t { CURAND_STATUS_SUCCESS = 0 };
