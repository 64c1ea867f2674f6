// The CUDA backend: Backend<float> on one GPU. GEMMs go to gemm_exact (double accumulation, the
// CLI's default), or to cuBLAS (strict FP32, or TF32 tensor cores),
// every other op to the hand-written kernels of ops_*.cu (see ops.h). All work is enqueued on
// one stream owned by the backend, side branches (weight gradients, Backend::begin_side) on a
// second one; only copies to the host and synchronize() wait for them.
//
// Semantics are the CPU oracle's (host/backend/cpu_backend.cpp, whose header lists them); the
// shape checks below are the oracle's, made on the host before anything is launched. Two
// deliberate differences, both forced by not synchronising inside ops:
//  - index vectors live on the device, so out-of-range (and, for scatter_rows_add, repeated)
//    indices are detected by the kernels, recorded in a device flag, and reported as a
//    VaeError at the next copy to the host or synchronize(); the affected rows are skipped;
//  - copy_within between overlapping ranges bounces through a temporary device buffer.
// Memory: every op works in place or in the per-backend scratch allocated once in the
// constructor (kMaxPartials + kScratchScalars doubles and the error flag); ops never allocate.
// tensor.h declares Mat<const T> → Mat<const T> (harmless); nvcc warns about it (#554).
#pragma nv_diag_suppress 554
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/backend.h"
#include "backend/step_signature.h"
#include "cuda_check.h"
#include "ops.h"

namespace vae {

namespace {

void cuda_free(void* p) {
  if (p) cudaFree(p);  // runs in destructors: never throws
}

template <typename A, typename B>
bool same_shape(Mat<A> a, Mat<B> b) {
  return a.rows == b.rows && a.cols == b.cols;
}

template <typename T>
void check_loss(Mat<T> loss) {
  VAE_CHECK(loss.empty() || loss.size() == 1, "loss accumulator must be 1 x 1");
}

void check_index_vector(CMat<int32_t> v, int64_t n, const char* what) {
  VAE_CHECK(v.size() == n && (v.rows == 1 || v.cols == 1 || n == 0),
            std::string(what) + ": index vector must have one entry per row");
}

// Optional outputs: an empty view means "not wanted", passed to the kernels as nullptr.
template <typename T>
T* opt(Mat<T> m) {
  return m.empty() ? nullptr : m.data;
}

std::string mib(size_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20); }

struct StreamDeleter {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
struct BlasDeleter {
  void operator()(cublasHandle_t h) const { cublasDestroy(h); }
};
struct GraphDeleter {
  void operator()(cudaGraph_t g) const { cudaGraphDestroy(g); }
};
struct GraphExecDeleter {
  void operator()(cudaGraphExec_t e) const { cudaGraphExecDestroy(e); }
};
using GraphPtr = std::unique_ptr<std::remove_pointer_t<cudaGraph_t>, GraphDeleter>;
using GraphExecPtr = std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, GraphExecDeleter>;

// A byte range of device memory an op reads or writes.
struct Span {
  const char *lo, *hi;
};

// cuBLAS workspace owned by the backend: cuBLAS then never allocates, also not while a step is
// being captured (32 MiB is NVIDIA's recommendation for Hopper).
constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;

class CudaBackend final : public Backend<float> {
 public:
  explicit CudaBackend(GemmPrecision precision) : precision_(precision) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    int optin = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    int sms = 1;
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    main_ = make_lane(static_cast<size_t>(optin), sms);
    // The side branch's lane: its own stream, cuBLAS handle, workspace and scratch, so that it
    // shares nothing it writes with the ops beside it but the error flag (set by any, never
    // cleared inside a step).
    side_ = make_lane(static_cast<size_t>(optin), sms);
    side_.ctx.error = main_.ctx.error;
    ctx_ = main_.ctx;
    CUDA_CHECK(cudaEventCreateWithFlags(&fork_event_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&join_event_, cudaEventDisableTiming));
    live_block_ = alloc_bytes(cuda::kMaxLives * sizeof(uint64_t));
    CUDA_CHECK(cudaMemsetAsync(ctx_.error, 0, sizeof(int), ctx_.stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));
    // The side lane's split-K counters were zeroed on its own stream, which a captured step's
    // branches (launched on the main stream) are not ordered after.
    CUDA_CHECK(cudaStreamSynchronize(side_.ctx.stream));
  }

  ~CudaBackend() override {
    // No throw from a destructor; the side stream first, whose work the main stream may await.
    if (side_.stream) cudaStreamSynchronize(side_.stream.get());
    if (main_.stream) cudaStreamSynchronize(main_.stream.get());
    if (fork_event_) cudaEventDestroy(fork_event_);
    if (join_event_) cudaEventDestroy(join_event_);
    for (const Timed& t : timed_) {
      cudaEventDestroy(t.start);
      cudaEventDestroy(t.end);
    }
    for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
  }

  double device_seconds(const std::function<void()>& fn) override {
    VAE_CHECK(step_mode_ == StepMode::none, "device_seconds: not inside a training step");
    struct Events {
      cudaEvent_t a = nullptr, b = nullptr;
      ~Events() {
        if (a) cudaEventDestroy(a);
        if (b) cudaEventDestroy(b);
      }
    } ev;
    CUDA_CHECK(cudaEventCreate(&ev.a));
    CUDA_CHECK(cudaEventCreate(&ev.b));
    join_side();
    CUDA_CHECK(cudaEventRecord(ev.a, main_.stream.get()));
    fn();
    join_side();  // the branches fn issued count too
    CUDA_CHECK(cudaEventRecord(ev.b, main_.stream.get()));
    CUDA_CHECK(cudaEventSynchronize(ev.b));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, ev.a, ev.b));
    synchronize();  // reports a device-side error the work recorded, as every wait does
    return 1e-3 * static_cast<double>(ms);
  }

  // ---- per-op profile ------------------------------------------------------------------
  void set_op_profiling(bool on) override {
    VAE_CHECK(step_mode_ == StepMode::none, "set_op_profiling: not inside a training step");
    if (on && !profiling_) {  // a fresh profile: nothing left over from an interrupted one
      fold_timed();
      op_totals_.clear();
    }
    profiling_ = on;
  }
  std::vector<OpTime> op_profile() override {
    not_in_step("op_profile");
    fold_timed();
    std::vector<OpTime> out;
    for (auto& kv : op_totals_) out.push_back(kv.second);
    op_totals_.clear();
    std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });
    return out;
  }

  // ---- training steps as graphs (see Backend::begin_step) -----------------------------
  // A step under a new key is captured. Its first op is the prologue, which copies the step's
  // live values into live_block_, where the captured kernels read them.
  // Later steps under the key only record what each op was asked to do (step_sig_: op names,
  // pointers, shapes, fixed scalars) and its live values; when the record equals the
  // capture's, the prologue's values are replaced and the graph launched. The record holds
  // every pointer the kernels were given, so a graph never replays over memory that was
  // reallocated since (new pointers, new record, new capture).
  bool supports_step_capture() const override { return true; }
  void begin_step(int64_t key, bool capture) override {
    VAE_CHECK(step_mode_ == StepMode::none, "begin_step: a step is already open");
    VAE_CHECK(!profiling_, "begin_step: op profiling times plain launches only");
    VAE_CHECK(!side_open_, "begin_step: inside a side branch");
    join_side();  // branches issued before the step are not part of its graph
    step_key_ = key;
    step_sig_.clear();
    step_lives_.count = 0;
    if (!capture && step_graphs_.count(key)) {
      step_mode_ = StepMode::collect;
      return;
    }
    CUDA_CHECK(cudaStreamBeginCapture(main_.stream.get(), cudaStreamCaptureModeThreadLocal));
    step_mode_ = StepMode::capture;
    cuda::launch_step_prologue(main_.stream.get(), live_block());
  }
  bool end_step() override {
    VAE_CHECK(step_mode_ != StepMode::none, "end_step without begin_step");
    VAE_CHECK(!side_open_, "end_step: inside a side branch");
    join_side();  // a captured graph has no loose branch; a replayed one waits for its own
    const StepMode mode = step_mode_;
    step_mode_ = StepMode::none;
    if (mode == StepMode::collect) {
      StepGraph& sg = step_graphs_.at(step_key_);
      if (step_lives_.count != sg.lives || step_sig_ != sg.sig) return false;  // capture afresh
      cuda::set_step_lives(sg.exec.get(), sg.prologue, step_lives_, live_block());
      CUDA_CHECK(cudaGraphLaunch(sg.exec.get(), main_.stream.get()));
      ++stats_.replays;
      return true;
    }
    cudaGraph_t g = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(main_.stream.get(), &g));
    StepGraph sg;
    sg.graph.reset(g);
    sg.prologue = cuda::find_step_prologue(g);
    size_t nodes = 0;
    CUDA_CHECK(cudaGraphGetNodes(g, nullptr, &nodes));
    stats_.nodes = static_cast<int64_t>(nodes);  // the latest capture's: a bench row's own graphs
    stats_.longest_chain = cuda::graph_longest_chain(g);
    cudaGraphExec_t e = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&e, g, 0));
    sg.exec.reset(e);
    cuda::set_step_lives(sg.exec.get(), sg.prologue, step_lives_, live_block());
    sg.sig = std::move(step_sig_);
    sg.lives = step_lives_.count;
    auto it = step_graphs_.find(step_key_);
    if (it != step_graphs_.end()) {
      CUDA_CHECK(cudaStreamSynchronize(main_.stream.get()));  // the old graph may still be running
      step_graphs_.erase(it);
    }
    StepGraph& kept = step_graphs_.emplace(step_key_, std::move(sg)).first->second;
    CUDA_CHECK(cudaGraphLaunch(kept.exec.get(), main_.stream.get()));
    ++stats_.captures;
    return true;
  }
  void abort_step() noexcept override {
    step_mode_ = StepMode::none;
    side_open_ = in_side_ = side_pending_ = false;
    ctx_ = main_.ctx;
    side_reads_.clear();
    side_writes_.clear();
    // Asks the stream, not step_mode_: end_step resets the mode before its calls can fail.
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(main_.stream.get(), &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
      // A branch the capture forked to is joined first: the capture then ends whole.
      cudaStreamCaptureStatus side_st = cudaStreamCaptureStatusNone;
      if (cudaStreamIsCapturing(side_.stream.get(), &side_st) == cudaSuccess && side_st != cudaStreamCaptureStatusNone &&
          cudaEventRecord(join_event_, side_.stream.get()) == cudaSuccess)
        cudaStreamWaitEvent(main_.stream.get(), join_event_, 0);
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(main_.stream.get(), &g);
      if (g) cudaGraphDestroy(g);
    }
    // A failed call's error stays behind for cudaGetLastError, where the next launch check would
    // take it for its own.
    cudaGetLastError();
  }
  void drop_step_graphs() noexcept override {
    // A graph may still run (an error here is the next op's).
    cudaStreamSynchronize(side_.stream.get());
    cudaStreamSynchronize(main_.stream.get());
    step_graphs_.clear();
    cudaGetLastError();
  }
  StepGraphStats step_graph_stats() const override { return stats_; }
  bool replay_step(int64_t key) override {
    VAE_CHECK(step_mode_ == StepMode::none, "replay_step: a step is open");
    VAE_CHECK(!profiling_, "replay_step: op profiling times plain launches only");
    auto it = step_graphs_.find(key);
    if (it == step_graphs_.end()) return false;
    CUDA_CHECK(cudaGraphLaunch(it->second.exec.get(), main_.stream.get()));
    return true;
  }

  // ---- side branches (see Backend::begin_side) ----------------------------------------
  // A branch forks from the main stream through fork_event_ and runs on the side lane; the
  // main stream waits for join_event_ (recorded after the last branch) only where an op needs
  // it (side_order), before the host waits, and at the end of a step: a captured step is then a
  // graph whose weight-gradient GEMMs are branches beside the rest of the backward pass.
  void set_side_branches(bool on) override {
    VAE_CHECK(step_mode_ == StepMode::none && !side_open_, "set_side_branches: not inside a step");
    join_side();
    side_on_ = on;
  }
  void begin_side() override {
    VAE_CHECK(!side_open_, "begin_side: a side branch is already open");
    // Open only once the fork is issued: a call that throws leaves no branch open behind it.
    // Profiled ops are timed by events on the main stream: they run there, one after another.
    if (side_on_ && !profiling_) {
      if (step_mode_ != StepMode::none) step_sig_.add_op("begin_side");
      if (step_mode_ != StepMode::collect) {
        CUDA_CHECK(cudaEventRecord(fork_event_, main_.ctx.stream));
        CUDA_CHECK(cudaStreamWaitEvent(side_.ctx.stream, fork_event_, 0));
      }
      in_side_ = true;
      ctx_ = side_.ctx;
    }
    side_open_ = true;
  }
  void end_side() noexcept override {
    const bool was_in = in_side_;
    side_open_ = in_side_ = false;
    ctx_ = main_.ctx;
    if (!was_in) return;
    side_pending_ = true;
    try {
      if (step_mode_ != StepMode::none) step_sig_.add_op("end_side");
    } catch (...) {  // out of host memory: the step's record differs, so it is captured afresh
    }
    // A failed record leaves its error for the next launch's check.
    if (step_mode_ != StepMode::collect) cudaEventRecord(join_event_, side_.ctx.stream);
  }
  // The main stream waits for the branches issued so far.
  void join_side() {
    if (!side_pending_) return;
    if (step_mode_ != StepMode::none) step_sig_.add_op("join_side");
    if (step_mode_ != StepMode::collect) CUDA_CHECK(cudaStreamWaitEvent(main_.ctx.stream, join_event_, 0));
    side_pending_ = false;  // only once the wait is issued: a failed one is tried again
    side_reads_.clear();
    side_writes_.clear();
  }
  // What an op's arguments read (read-only views) and write (mutable views). Fixed arrays: this
  // runs for every op while a branch is open or pending, replayed steps included.
  struct Spans {
    static constexpr int kMax = 16;  // an op names at most a few views (a CsrBatch is 5)
    Span s[kMax];
    int n = 0;
    void push_back(const Span& sp) {
      if (n == kMax) throw std::logic_error("side_order: an op names more than 16 memory ranges");
      s[n++] = sp;
    }
    const Span* begin() const { return s; }
    const Span* end() const { return s + n; }
  };
  struct Access {
    Spans reads, writes;
  };
  template <typename V>
  static void note(Access& a, const Mat<V>& m) {
    if (m.empty()) return;
    const char* lo = reinterpret_cast<const char*>(m.data);
    const Span sp{lo, lo + static_cast<size_t>(m.size()) * sizeof(V)};
    (std::is_const_v<V> ? a.reads : a.writes).push_back(sp);
  }
  static void note(Access& a, const CsrView<float>& c) {
    const auto span = [](const void* p, int64_t n, size_t elem) {
      const char* lo = static_cast<const char*>(p);
      return Span{lo, lo + static_cast<size_t>(std::max<int64_t>(n, 0)) * elem};
    };
    if (c.indptr) a.reads.push_back(span(c.indptr, c.rows + 1, sizeof(*c.indptr)));
    if (c.indices) a.reads.push_back(span(c.indices, c.nnz, sizeof(*c.indices)));
    if (c.values) a.reads.push_back(span(c.values, c.nnz, sizeof(*c.values)));
  }
  static void note(Access& a, const CsrBatch<float>& b) {
    note(a, b.csr);
    note(a, b.rows);
    note(a, b.norms);
  }
  template <typename X>
  static void note(Access&, const X&) {}  // scalars, flags, names
  static bool overlaps(const Spans& xs, const std::vector<Span>& ys) {
    for (const Span& x : xs)
      for (const Span& y : ys)
        if (x.lo < y.hi && y.lo < x.hi) return true;
    return false;
  }
  // Records a branch op's memory, or orders a main-stream op after the branches it conflicts
  // with (read after write, write after read or write).
  void side_order(const Access& a) {
    if (in_side_) {
      side_reads_.insert(side_reads_.end(), a.reads.begin(), a.reads.end());
      side_writes_.insert(side_writes_.end(), a.writes.begin(), a.writes.end());
      return;
    }
    if (side_pending_ && (overlaps(a.reads, side_writes_) || overlaps(a.writes, side_writes_) ||
                          overlaps(a.writes, side_reads_)))
      join_side();
  }
  template <typename... A>
  void side_order_args(const A&... args) {
    if (!in_side_ && !side_pending_) return;
    Access a;
    (note(a, args), ...);
    side_order(a);
  }

  std::string name() const override { return "cuda"; }
  GemmPrecision gemm_precision() const override { return precision_; }
  std::string device_name() const override { return cuda_device_name(); }
  bool memory_info(size_t& free_bytes, size_t& total_bytes) override {
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return true;
  }

  // ---- memory -------------------------------------------------------------------------
  Buffer alloc_bytes(size_t bytes) override {
    // cudaMalloc is illegal while a step is captured; steps use buffers allocated before training.
    not_in_step("alloc");
    void* p = nullptr;
    // Never a null pointer, even for 0 bytes (as the CPU backend).
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error so later calls work
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      throw VaeError("cuda backend: out of GPU memory allocating " + std::to_string(bytes) + " bytes (" +
                     mib(bytes) + " MiB; " + mib(free_b) + " of " + mib(total_b) +
                     " MiB free); reduce --batch-size or --hidden");
    }
    CUDA_CHECK(e);
    return Buffer(p, bytes, &cuda_free);
  }

  void copy_to_backend(void* dst, const void* host_src, size_t bytes) override {
    not_in_step("copy_to_backend");
    if (!bytes) return;
    join_side();
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, main_.stream.get()));
    // The caller may free host_src on return.
    CUDA_CHECK(cudaStreamSynchronize(main_.stream.get()));
  }

  void copy_to_host(void* host_dst, const void* src, size_t bytes) override {
    not_in_step("copy_to_host");
    join_side();
    if (bytes) CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, main_.stream.get()));
    synchronize();
  }

  void copy_within(void* dst, const void* src, size_t bytes) override {
    if (!bytes || dst == src) return;
    const OpScope prof(this, "copy_within");
    const char* d = static_cast<const char*>(dst);
    const char* s = static_cast<const char*>(src);
    const bool overlap = d < s + bytes && s < d + bytes;
    // The overlapping case allocates and waits: never inside a step, whose ops become a graph.
    if (overlap) not_in_step("copy_within of overlapping ranges");
    Access a;
    a.reads.push_back({s, s + bytes});
    a.writes.push_back({d, d + bytes});
    side_order(a);
    if (step_skips("copy_within", dst, src, bytes)) return;
    if (overlap) {
      // memmove semantics: cudaMemcpy is undefined on overlap, so go through a temporary.
      Buffer tmp = alloc_bytes(bytes);
      CUDA_CHECK(cudaMemcpyAsync(tmp.get(), src, bytes, cudaMemcpyDeviceToDevice, ctx_.stream));
      CUDA_CHECK(cudaMemcpyAsync(dst, tmp.get(), bytes, cudaMemcpyDeviceToDevice, ctx_.stream));
      CUDA_CHECK(cudaStreamSynchronize(ctx_.stream));  // before tmp is freed
      return;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx_.stream));
  }

  void synchronize() override {
    not_in_step("synchronize");
    join_side();
    CUDA_CHECK(cudaStreamSynchronize(main_.stream.get()));
    int code = 0;  // pageable destination: the copy has completed when this returns
    CUDA_CHECK(cudaMemcpyAsync(&code, ctx_.error, sizeof(int), cudaMemcpyDeviceToHost, main_.stream.get()));
    CUDA_CHECK(cudaStreamSynchronize(main_.stream.get()));
    if (code != cuda::kErrNone) {
      CUDA_CHECK(cudaMemsetAsync(ctx_.error, 0, sizeof(int), main_.stream.get()));  // stays usable
      CUDA_CHECK(cudaStreamSynchronize(main_.stream.get()));
      const char* what = code == cuda::kErrSparseRowRange ? cuda::sparse_error_message() : cuda::device_error_message(code);
      throw VaeError(std::string("cuda backend: ") + what +
                     " (found on the device by an earlier op; reported at this synchronisation)");
    }
  }

  // ---- dense algebra ------------------------------------------------------------------
  void fill(Mat<float> x, float value) override {
    const OpScope prof(this, "fill");
    if (step_skips("fill", x, value)) return;
    cuda::fill(ctx_, x.data, x.size(), value);
  }

  void axpy(float alpha, CMat<float> x, Mat<float> y) override {
    const OpScope prof(this, "axpy");
    VAE_CHECK(same_shape(x, y), "axpy: x and y differ in shape");
    if (step_skips("axpy", alpha, x, y)) return;
    cuda::axpy(ctx_, alpha, x.data, y.data, x.size());
  }

  void gemm(bool trans_a, bool trans_b, float alpha, CMat<float> a, CMat<float> b, float beta,
            Mat<float> c) override {
    const OpScope prof(this, "gemm");
    const int64_t m = trans_a ? a.cols : a.rows, ka = trans_a ? a.rows : a.cols;
    const int64_t kb = trans_b ? b.cols : b.rows, n = trans_b ? b.rows : b.cols;
    VAE_CHECK(ka == kb, "gemm: inner dimensions of op(A) and op(B) differ");
    VAE_CHECK(c.rows == m && c.cols == n, "gemm: C is not op(A).rows x op(B).cols");
    if (step_skips("gemm", trans_a, trans_b, alpha, a, b, beta, c)) return;
    if (m == 0 || n == 0) return;
    if (ka == 0) {  // the product is empty: only C is scaled
      cuda::scale(ctx_, c.data, c.size(), beta);
      return;
    }
    if (precision_ == GemmPrecision::exact) {
      cuda::gemm_exact(ctx_, trans_a, trans_b, m, n, ka, alpha, a.data, a.cols, b.data, b.cols, beta,
                       c.data, c.cols);
      return;
    }
    VAE_CHECK(m <= INT_MAX && n <= INT_MAX && ka <= INT_MAX && a.cols <= INT_MAX && b.cols <= INT_MAX,
              "gemm: dimensions exceed cuBLAS's 32-bit sizes");
    // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix is
    // its column-major transpose with the same leading dimension: swap the operands.
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (precision_ == GemmPrecision::bf16) {
      // Float in and out; the tensor cores see the operands rounded to BF16.
      CUBLAS_CHECK(cublasGemmEx(blas(), op_b, op_a, static_cast<int>(n), static_cast<int>(m),
                                static_cast<int>(ka), &alpha, b.data, CUDA_R_32F, static_cast<int>(b.cols), a.data,
                                CUDA_R_32F, static_cast<int>(a.cols), &beta, c.data, CUDA_R_32F,
                                static_cast<int>(c.cols), CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
      return;
    }
    CUBLAS_CHECK(cublasSgemm(blas(), op_b, op_a, static_cast<int>(n), static_cast<int>(m),
                             static_cast<int>(ka), &alpha, b.data, static_cast<int>(b.cols), a.data,
                             static_cast<int>(a.cols), &beta, c.data, static_cast<int>(c.cols)));
  }

  void linear(CMat<float> x, CMat<float> w, CMat<float> bias, Act act, Mat<float> y) override {
    if (precision_ != GemmPrecision::exact) {  // cuBLAS, then the bias and activation kernel
      Backend<float>::linear(x, w, bias, act, y);
      return;
    }
    const OpScope prof(this, "linear");
    VAE_CHECK(x.cols == w.cols, "linear: x and w differ in the input width");
    VAE_CHECK(y.rows == x.rows && y.cols == w.rows, "linear: y is not x.rows x w.rows");
    VAE_CHECK(bias.empty() || (bias.rows == 1 && bias.cols == y.cols), "linear: bias must be 1 x cols");
    if (step_skips("linear", x, w, bias, act, y)) return;
    cuda::GemmEpilogue epi;
    epi.act_on = true;
    epi.bias = bias.empty() ? nullptr : bias.data;
    epi.act = act;
    cuda::gemm_exact(ctx_, false, true, y.rows, y.cols, x.cols, 1.0f, x.data, x.cols, w.data, w.cols, 0.0f, y.data,
                     y.cols, epi);
  }

  void linear_backward_input(CMat<float> dz, CMat<float> w, CMat<float> y, Act act, Mat<float> dx) override {
    if (precision_ != GemmPrecision::exact || dz.cols == 0 || dx.size() == 0) {
      Backend<float>::linear_backward_input(dz, w, y, act, dx);  // cuBLAS (or an empty product), then act'
      return;
    }
    const OpScope prof(this, "linear_backward_input");
    VAE_CHECK(dz.cols == w.rows, "linear_backward_input: dz and w differ in the output width");
    VAE_CHECK(dx.rows == dz.rows && dx.cols == w.cols, "linear_backward_input: dx is not dz.rows x w.cols");
    VAE_CHECK(act == Act::identity || same_shape(y, dx), "linear_backward_input: y and dx differ in shape");
    const CMat<float> y_used = act == Act::identity ? CMat<float>{} : y;
    if (step_skips("linear_backward_input", dz, w, y_used, act, dx)) return;
    cuda::GemmEpilogue epi;
    epi.act = act;
    epi.act_y = y_used.empty() ? nullptr : y_used.data;
    epi.ldy = y_used.cols;
    cuda::gemm_exact(ctx_, false, false, dx.rows, dx.cols, dz.cols, 1.0f, dz.data, dz.cols, w.data, w.cols, 0.0f,
                     dx.data, dx.cols, epi);
  }

  void linear_backward_weight(CMat<float> dz, CMat<float> x, Mat<float> dw, Mat<float> dbias) override {
    if (precision_ != GemmPrecision::exact || dz.rows == 0 || dz.cols == 0 || x.cols == 0) {
      Backend<float>::linear_backward_weight(dz, x, dw, dbias);  // cuBLAS (or empty shapes), then Σ dz
      return;
    }
    const OpScope prof(this, "linear_backward_weight");
    VAE_CHECK(dz.rows == x.rows, "linear_backward_weight: dz and x differ in rows");
    VAE_CHECK(dw.rows == dz.cols && dw.cols == x.cols, "linear_backward_weight: dw is not dz.cols x x.cols");
    VAE_CHECK(dbias.empty() || (dbias.rows == 1 && dbias.cols == dz.cols),
              "linear_backward_weight: dbias must be 1 x dz.cols");
    if (step_skips("linear_backward_weight", dz, x, dw, dbias)) return;
    cuda::GemmEpilogue epi;
    epi.a_row_sums = opt(dbias);
    cuda::gemm_exact(ctx_, true, false, dw.rows, dw.cols, dz.rows, 1.0f, dz.data, dz.cols, x.data, x.cols, 0.0f,
                     dw.data, dw.cols, epi);
  }

  void bias_act(CMat<float> x, CMat<float> bias, Act act, Mat<float> y) override {
    const OpScope prof(this, "bias_act");
    VAE_CHECK(same_shape(x, y), "bias_act: x and y differ in shape");
    VAE_CHECK(bias.empty() || (bias.rows == 1 && bias.cols == x.cols), "bias_act: bias must be 1 x cols");
    if (step_skips("bias_act", x, bias, act, y)) return;
    cuda::bias_act(ctx_, x.data, bias.empty() ? nullptr : bias.data, act, y.data, x.rows, x.cols);
  }

  void bias_act_backward(CMat<float> dy, CMat<float> y, Act act, Mat<float> dx, Mat<float> dbias) override {
    const OpScope prof(this, "bias_act_backward");
    VAE_CHECK(same_shape(dy, y) && (dx.empty() || same_shape(dy, dx)), "bias_act_backward: dy, y, dx differ in shape");
    VAE_CHECK(dbias.empty() || (dbias.rows == 1 && dbias.cols == dy.cols),
              "bias_act_backward: dbias must be 1 x cols");
    if (step_skips("bias_act_backward", dy, y, act, dx, dbias)) return;
    cuda::bias_act_backward(ctx_, dy.data, y.data, act, opt(dx), opt(dbias), dy.rows, dy.cols);
  }

  void gather_rows_add(CMat<float> table, CMat<int32_t> rows, Mat<float> y) override {
    const OpScope prof(this, "gather_rows_add");
    check_index_vector(rows, y.rows, "gather_rows_add");
    VAE_CHECK(table.cols == y.cols, "gather_rows_add: table and y differ in columns");
    if (step_skips("gather_rows_add", table, rows, y)) return;
    cuda::gather_rows_add(ctx_, table.data, table.rows, rows.data, y.data, y.rows, y.cols);
  }

  void scatter_rows_add(CMat<float> dy, CMat<int32_t> rows, Mat<float> dtable) override {
    const OpScope prof(this, "scatter_rows_add");
    check_index_vector(rows, dy.rows, "scatter_rows_add");
    VAE_CHECK(dtable.cols == dy.cols, "scatter_rows_add: dtable and dy differ in columns");
    if (step_skips("scatter_rows_add", dy, rows, dtable)) return;
    cuda::scatter_rows_add(ctx_, dy.data, rows.data, dtable.data, dtable.rows, dy.rows, dy.cols);
  }

  // ---- losses -------------------------------------------------------------------------
  void mse_loss(CMat<float> pred, CMat<float> target, bool masked, float scale, Mat<float> dpred,
                Mat<float> loss) override {
    const OpScope prof(this, "mse_loss");
    VAE_CHECK(same_shape(pred, target), "mse_loss: pred and target differ in shape");
    VAE_CHECK(dpred.empty() || same_shape(pred, dpred), "mse_loss: dpred differs in shape");
    check_loss(loss);
    if (step_skips("mse_loss", pred, target, masked, scale, dpred, loss)) return;
    cuda::mse_loss(ctx_, pred.data, target.data, pred.size(), masked, scale, opt(dpred), opt(loss));
  }

  void multinomial_nll(CMat<float> logits, CMat<float> target, float scale, Mat<float> dlogits,
                       Mat<float> loss) override {
    const OpScope prof(this, "multinomial_nll");
    VAE_CHECK(same_shape(logits, target), "multinomial_nll: logits and target differ in shape");
    VAE_CHECK(dlogits.empty() || same_shape(logits, dlogits), "multinomial_nll: dlogits differs in shape");
    check_loss(loss);
    if (step_skips("multinomial_nll", logits, target, scale, dlogits, loss)) return;
    cuda::multinomial_nll(ctx_, logits.data, target.data, logits.rows, logits.cols, scale, opt(dlogits),
                          opt(loss));
  }

  void bce_logits(CMat<float> logits, CMat<float> target, float scale, Mat<float> dlogits,
                  Mat<float> loss) override {
    const OpScope prof(this, "bce_logits");
    VAE_CHECK(same_shape(logits, target), "bce_logits: logits and target differ in shape");
    VAE_CHECK(dlogits.empty() || same_shape(logits, dlogits), "bce_logits: dlogits differs in shape");
    check_loss(loss);
    if (step_skips("bce_logits", logits, target, scale, dlogits, loss)) return;
    cuda::bce_logits(ctx_, logits.data, target.data, logits.size(), scale, opt(dlogits), opt(loss));
  }

  void reparameterize(CMat<float> mu_logvar, uint64_t seed, uint64_t stream, Mat<float> eps,
                      Mat<float> z) override {
    const OpScope prof(this, "reparameterize");
    VAE_CHECK(mu_logvar.cols % 2 == 0, "reparameterize: mu_logvar must have 2L columns");
    const int64_t L = mu_logvar.cols / 2;
    VAE_CHECK(z.rows == mu_logvar.rows && z.cols == L, "reparameterize: z must be B x L");
    VAE_CHECK(eps.empty() || same_shape(eps, z), "reparameterize: eps must be B x L");
    const cuda::Live<uint64_t> live_stream = live(stream);
    if (step_skips("reparameterize", mu_logvar, seed, eps, z)) return;
    cuda::reparameterize(ctx_, mu_logvar.data, z.rows, L, seed, live_stream, opt(eps), z.data);
  }

  void reparam_kl_backward(CMat<float> mu_logvar, CMat<float> eps, CMat<float> dz, float kl_scale,
                           Mat<float> d_mu_logvar, Mat<float> loss) override {
    const OpScope prof(this, "reparam_kl_backward");
    VAE_CHECK(mu_logvar.cols % 2 == 0, "reparam_kl_backward: mu_logvar must have 2L columns");
    const int64_t B = mu_logvar.rows, L = mu_logvar.cols / 2;
    VAE_CHECK(dz.empty() || (dz.rows == B && dz.cols == L), "reparam_kl_backward: dz must be B x L");
    VAE_CHECK(eps.empty() || (eps.rows == B && eps.cols == L), "reparam_kl_backward: eps must be B x L");
    VAE_CHECK(d_mu_logvar.empty() || same_shape(d_mu_logvar, mu_logvar),
              "reparam_kl_backward: d_mu_logvar must be B x 2L");
    check_loss(loss);
    const cuda::Live<double> live_kl = live(static_cast<double>(kl_scale));
    if (step_skips("reparam_kl_backward", mu_logvar, eps, dz, d_mu_logvar, loss)) return;
    cuda::reparam_kl_backward(ctx_, mu_logvar.data, eps.empty() ? nullptr : eps.data,
                              dz.empty() ? nullptr : dz.data, B, L, live_kl, opt(d_mu_logvar), opt(loss));
  }

  void regularize(CMat<float> p, float lambda, Reg kind, Mat<float> grad, Mat<float> loss) override {
    const OpScope prof(this, "regularize");
    VAE_CHECK(grad.empty() || same_shape(p, grad), "regularize: grad differs in shape from p");
    check_loss(loss);
    if (step_skips("regularize", p, lambda, kind, grad, loss)) return;
    cuda::regularize(ctx_, p.data, p.size(), lambda, kind, opt(grad), opt(loss));
  }

  // ---- input transforms ---------------------------------------------------------------
  void dropout(CMat<float> x, float q, uint64_t seed, uint64_t stream, Mat<float> y) override {
    const OpScope prof(this, "dropout");
    VAE_CHECK(same_shape(x, y), "dropout: x and y differ in shape");
    VAE_CHECK(q >= 0.0f && q <= 1.0f, "dropout: rate must lie in [0, 1]");
    const cuda::Live<uint64_t> live_stream = live(stream);
    if (step_skips("dropout", x, q, seed, y)) return;
    cuda::dropout(ctx_, x.data, x.size(), q, seed, live_stream, y.data);
  }

  void l2_normalize_rows(CMat<float> x, Mat<float> y) override {
    const OpScope prof(this, "l2_normalize_rows");
    VAE_CHECK(same_shape(x, y), "l2_normalize_rows: x and y differ in shape");
    if (step_skips("l2_normalize_rows", x, y)) return;
    cuda::l2_normalize_rows(ctx_, x.data, y.data, x.rows, x.cols);
  }

  void csr_rows_to_dense(CsrView<float> csr, CMat<int32_t> rows, Mat<float> y) override {
    const OpScope prof(this, "csr_rows_to_dense");
    check_index_vector(rows, y.rows, "csr_rows_to_dense");
    VAE_CHECK(y.cols == csr.cols, "csr_rows_to_dense: y must have csr.cols columns");
    if (step_skips("csr_rows_to_dense", csr, rows, y)) return;
    cuda::csr_rows_to_dense(ctx_, csr, rows.data, y.data, y.rows);
  }

  void take_rows(CMat<int32_t> src, int64_t offset, Mat<int32_t> dst) override {
    const OpScope prof(this, "take_rows");
    VAE_CHECK(offset >= 0 && offset + dst.size() <= src.size(), "take_rows: offset + n exceeds the source");
    const cuda::Live<int64_t> live_offset = live(offset);
    if (step_skips("take_rows", src, dst)) return;
    cuda::take_rows(ctx_, src.data, live_offset, dst.data, dst.size());
  }

  // ---- sparse first layer -------------------------------------------------------------
  void csr_row_norms(CsrView<float> csr, CMat<int32_t> rows, Mat<double> norms) override {
    const OpScope prof(this, "csr_row_norms");
    const int64_t n = rows.size();
    check_index_vector(rows, n, "csr_row_norms");
    VAE_CHECK(norms.size() == n && (norms.cols == 1 || norms.rows == 1 || n == 0),
              "csr_row_norms: norms must be n x 1");
    if (step_skips("csr_row_norms", csr, rows, norms)) return;
    cuda::csr_row_norms(ctx_, csr, rows.data, n, norms.data);
  }

  void csr_linear_forward(const CsrBatch<float>& x, CMat<float> w, Mat<float> y) override {
    const OpScope prof(this, "csr_linear_forward");
    cuda::CsrBatchArgs a = batch_args(x, "csr_linear_forward");
    VAE_CHECK(w.cols == x.csr.cols, "csr_linear_forward: w must have csr.cols columns");
    VAE_CHECK(y.rows == a.n && y.cols == w.rows, "csr_linear_forward: y must be n x w.rows");
    a.stream = live(x.stream);
    if (step_skips("csr_linear_forward", x, w, y)) return;
    cuda::csr_linear_forward(ctx_, a, w.data, w.rows, y.data, precision_ == GemmPrecision::exact);
  }

  void csr_linear_weight_grad(const CsrBatch<float>& x, CMat<float> dy, Mat<float> dw) override {
    const OpScope prof(this, "csr_linear_weight_grad");
    cuda::CsrBatchArgs a = batch_args(x, "csr_linear_weight_grad");
    VAE_CHECK(dy.rows == a.n, "csr_linear_weight_grad: dy must have one row per batch row");
    VAE_CHECK(dw.rows == dy.cols && dw.cols == x.csr.cols,
              "csr_linear_weight_grad: dw must be dy.cols x csr.cols");
    a.stream = live(x.stream);
    if (step_skips("csr_linear_weight_grad", x, dy, dw)) return;
    cuda::csr_linear_weight_grad(ctx_, a, dy.data, dy.cols, dw.data, precision_ == GemmPrecision::exact);
  }

  // ---- optimiser ----------------------------------------------------------------------
  void adam_step(Mat<float> params, CMat<float> grads, Mat<float> m, Mat<float> v, const AdamConfig& cfg,
                 int64_t step) override {
    const OpScope prof(this, "adam_step");
    VAE_CHECK(same_shape(params, grads) && same_shape(params, m) && same_shape(params, v),
              "adam_step: params, grads, m, v differ in shape");
    VAE_CHECK(step >= 1, "adam_step: step is 1-based");
    // The step's scalars in double on the host, exactly as the oracle computes them.
    cuda::AdamScalars s{};
    s.beta1 = cfg.beta1;
    s.beta2 = cfg.beta2;
    s.eps = cfg.eps;
    s.weight_decay = cfg.weight_decay;
    s.step_size = live(cfg.lr / (1.0 - std::pow(cfg.beta1, static_cast<double>(step))));
    s.sqrt_bc2 = live(std::sqrt(1.0 - std::pow(cfg.beta2, static_cast<double>(step))));
    s.shrink = cfg.decoupled ? 1.0 - cfg.lr * cfg.weight_decay : 1.0;
    s.decoupled = cfg.decoupled;
    if (step_skips("adam_step", params, grads, m, v, cfg)) return;
    cuda::adam_step(ctx_, params.data, grads.data, m.data, v.data, params.size(), s);
  }

  // ---- evaluation ---------------------------------------------------------------------
  void topk(CMat<float> scores, CsrView<float> exclude, CMat<int32_t> exclude_rows, int k, Mat<int32_t> idx,
            Mat<float> val) override {
    const OpScope prof(this, "topk");
    const int64_t n = scores.rows, m = scores.cols;
    VAE_CHECK(k >= 0, "topk: k must be non-negative");
    VAE_CHECK(idx.rows == n && idx.cols == k, "topk: idx must be rows x k");
    VAE_CHECK(val.empty() || (val.rows == n && val.cols == k), "topk: val must be rows x k");
    if (exclude.rows > 0) {
      check_index_vector(exclude_rows, n, "topk");
      VAE_CHECK(exclude.cols == m, "topk: exclude must have as many columns as scores");
    }
    if (step_skips("topk", scores, exclude, exclude_rows, k, idx, val)) return;
    cuda::topk(ctx_, scores.data, n, m, exclude, exclude_rows.data, k, idx.data, opt(val));
  }

  void heldout_metrics(CMat<int32_t> idx, CsrView<float> target, CMat<int32_t> target_rows,
                       const std::vector<int>& ks, Mat<float> out) override {
    const OpScope prof(this, "heldout_metrics");
    const int64_t n = idx.rows;
    check_index_vector(target_rows, n, "heldout_metrics");
    const int64_t nk = static_cast<int64_t>(ks.size());
    VAE_CHECK(out.rows == n && out.cols == 2 * nk, "heldout_metrics: out must be rows x 2|ks|");
    for (int k : ks) VAE_CHECK(k >= 1 && k <= idx.cols, "heldout_metrics: every k must lie in [1, idx.cols]");
    if (step_skips("heldout_metrics", idx, target, target_rows, ks, out)) return;
    cuda::heldout_metrics(ctx_, idx.data, n, idx.cols, target, target_rows.data, ks, out.data);
  }

  void graded_metrics(CMat<float> scores, CMat<float> truth, int k, Mat<float> out) override {
    const OpScope prof(this, "graded_metrics");
    VAE_CHECK(same_shape(scores, truth), "graded_metrics: scores and truth differ in shape");
    VAE_CHECK(k >= 1, "graded_metrics: k must be positive");
    VAE_CHECK(out.rows == scores.rows && out.cols == 2, "graded_metrics: out must be rows x 2");
    if (step_skips("graded_metrics", scores, truth, k, out)) return;
    cuda::graded_metrics(ctx_, scores.data, truth.data, scores.rows, scores.cols, k, out.data);
  }

  void rating_errors(CMat<float> pred, CsrView<float> target, CMat<int32_t> target_rows, float lo, float hi,
                     Mat<float> out) override {
    const OpScope prof(this, "rating_errors");
    check_index_vector(target_rows, pred.rows, "rating_errors");
    VAE_CHECK(target.cols == pred.cols, "rating_errors: target and pred differ in columns");
    VAE_CHECK(out.rows == pred.rows && out.cols == 3, "rating_errors: out must be rows x 3");
    VAE_CHECK(lo <= hi, "rating_errors: empty clipping range");
    if (step_skips("rating_errors", pred, target, target_rows, lo, hi, out)) return;
    cuda::rating_errors(ctx_, pred.data, pred.rows, pred.cols, target, target_rows.data, lo, hi, out.data);
  }

 private:
  uint64_t* live_block() { return static_cast<uint64_t*>(live_block_.get()); }

  // A live argument of the op being issued: recorded in the step's live values when a step
  // is open; while capturing, the kernel is given the slot it will read on every replay.
  template <typename V>
  cuda::Live<V> live(V v) {
    static_assert(sizeof(V) <= sizeof(uint64_t) && std::is_trivially_copyable_v<V>, "a live value fits a slot");
    if (step_mode_ == StepMode::none) return cuda::Live<V>(v);
    if (step_lives_.count >= cuda::kMaxLives)  // a limit of graph steps only: run_step falls back to launches
      throw CudaError("training step: more live arguments than the step graph holds (" +
                        std::to_string(cuda::kMaxLives) + ")");
    const int k = step_lives_.count++;
    uint64_t w = 0;
    std::memcpy(&w, &v, sizeof(V));  // little-endian: the slot's first bytes are v's
    step_lives_.v[k] = w;
    if (step_mode_ == StepMode::collect) return cuda::Live<V>(v);
    return cuda::Live<V>(v, reinterpret_cast<const V*>(live_block() + k));
  }

  // The step record of one op (see begin_step); true when the op must launch nothing (a
  // step that may replay its graph). Every op calls it after its checks, before any launch;
  // it also orders the op after the side branches it conflicts with.
  template <typename... A>
  bool step_skips(const char* op, const A&... args) {
    side_order_args(args...);
    if (step_mode_ == StepMode::none) return false;
    step_sig_.add_op(op, args...);
    return step_mode_ == StepMode::collect;
  }
  void not_in_step(const char* what) const {
    VAE_CHECK(step_mode_ == StepMode::none, std::string(what) + ": not inside a training step (it waits for the device)");
  }

  // The host-side checks of a CsrBatch (the oracle's), and its dropout factor computed as
  // dropout() computes it.
  static cuda::CsrBatchArgs batch_args(const CsrBatch<float>& x, const char* what) {
    const int64_t n = x.n();
    check_index_vector(x.rows, n, what);
    VAE_CHECK(x.norms.empty() || (x.norms.size() == n && (x.norms.cols == 1 || x.norms.rows == 1)),
              std::string(what) + ": norms must be n x 1 or empty");
    VAE_CHECK(x.dropout >= 0.0f && x.dropout <= 1.0f, std::string(what) + ": dropout rate must lie in [0, 1]");
    cuda::CsrBatchArgs a;
    a.csr = x.csr;
    a.rows = x.rows.data;
    a.n = n;
    a.norms = x.norms.empty() ? nullptr : x.norms.data;
    a.dropout = x.dropout > 0.0f;
    a.drop_all = x.dropout >= 1.0f;
    a.q = x.dropout;
    a.keep_scale = a.drop_all ? 0.0f : 1.0f / (1.0f - x.dropout);
    a.seed = x.seed;
    a.stream = x.stream;
    return a;
  }

  // Brackets one op with CUDA events while profiling is on (events recycled through a pool).
  struct OpScope {
    CudaBackend* be;
    const char* op;
    cudaEvent_t start = nullptr;
    OpScope(CudaBackend* b, const char* name) : be(b), op(name) {
      if (be->profiling_) start = be->record_event();
    }
    ~OpScope() {
      if (!start) return;
      cudaEvent_t end = be->record_event_noexcept();
      if (!end) {
        be->free_events_.push_back(start);
        return;
      }
      be->timed_.push_back({op, start, end});
      // A long profiled run (ml-20m, hundreds of epochs) would otherwise hold millions of events.
      if (be->timed_.size() >= kFoldEvery) be->fold_timed_noexcept();
    }
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;
  };
  struct Timed {
    const char* op;
    cudaEvent_t start, end;
  };
  static constexpr size_t kFoldEvery = 4096;  // bracketed ops kept before their times are summed
  // Adds the bracketed ops' times into op_totals_ (waits for the stream) and recycles the events.
  void fold_timed() {
    join_side();
    CUDA_CHECK(cudaStreamSynchronize(main_.stream.get()));
    std::vector<Timed> timed;
    timed.swap(timed_);  // a throw below leaves no event in two lists
    for (size_t i = 0; i < timed.size(); ++i) {
      float ms = 0.0f;
      const cudaError_t err = cudaEventElapsedTime(&ms, timed[i].start, timed[i].end);
      free_events_.push_back(timed[i].start);
      free_events_.push_back(timed[i].end);
      if (err != cudaSuccess) {
        for (size_t j = i + 1; j < timed.size(); ++j) {
          free_events_.push_back(timed[j].start);
          free_events_.push_back(timed[j].end);
        }
        CUDA_CHECK(err);
      }
      OpTime& o = op_totals_[timed[i].op];
      o.op = timed[i].op;
      o.calls += 1;
      o.seconds += 1e-3 * static_cast<double>(ms);
    }
  }
  // From a destructor: an error stays sticky in the context and the next checked call reports it.
  void fold_timed_noexcept() noexcept {
    try {
      fold_timed();
    } catch (...) {
    }
  }
  cudaEvent_t record_event() {
    cudaEvent_t e = record_event_noexcept();
    if (!e) CUDA_CHECK(cudaGetLastError());
    return e;
  }
  cudaEvent_t record_event_noexcept() noexcept {
    cudaEvent_t e = nullptr;
    if (!free_events_.empty()) {
      e = free_events_.back();
      free_events_.pop_back();
    } else if (cudaEventCreate(&e) != cudaSuccess) {
      return nullptr;
    }
    if (cudaEventRecord(e, main_.stream.get()) != cudaSuccess) {
      free_events_.push_back(e);
      return nullptr;
    }
    return e;
  }

  // A stream with what its ops write besides their outputs: the cuBLAS handle and workspace
  // (also gemm_exact's split-K sums) and the reduction scratch.
  struct Lane {
    std::unique_ptr<CUstream_st, StreamDeleter> stream;
    std::unique_ptr<cublasContext, BlasDeleter> blas;
    Buffer workspace, scratch, counters;
    cuda::OpContext ctx;
  };
  Lane make_lane(size_t smem_optin, int sms) {
    Lane l;
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    l.stream.reset(s);
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    l.blas.reset(h);
    CUBLAS_CHECK(cublasSetStream(h, s));
    // Pedantic = plain FP32 even under NVIDIA_TF32_OVERRIDE, so results track the CPU to 1e-5;
    // bf16 asks for its reduced precision per call (cublasGemmEx's compute type), which the
    // pedantic mode would forbid.
    CUBLAS_CHECK(cublasSetMathMode(h, precision_ == GemmPrecision::tf32   ? CUBLAS_TF32_TENSOR_OP_MATH
                                      : precision_ == GemmPrecision::bf16 ? CUBLAS_DEFAULT_MATH
                                                                          : CUBLAS_PEDANTIC_MATH));
    l.workspace = alloc_bytes(kBlasWorkspaceBytes);
    CUBLAS_CHECK(cublasSetWorkspace(h, l.workspace.get(), kBlasWorkspaceBytes));  // after SetStream
    // Scratch: [partials | scalars | error flag], allocated once and reused by every op.
    l.scratch = alloc_bytes((cuda::kMaxPartials + cuda::kScratchScalars) * sizeof(double) + sizeof(int));
    auto* base = static_cast<double*>(l.scratch.get());
    l.ctx.stream = s;
    l.ctx.partials = base;
    l.ctx.scalars = base + cuda::kMaxPartials;
    l.ctx.error = reinterpret_cast<int*>(base + cuda::kMaxPartials + cuda::kScratchScalars);
    l.ctx.smem_optin = smem_optin;
    l.ctx.num_sms = sms;
    // gemm_exact never calls cuBLAS, so the same stream-ordered buffer holds its split-K sums.
    l.ctx.gemm_ws = static_cast<double*>(l.workspace.get());
    l.ctx.gemm_ws_doubles = static_cast<int64_t>(kBlasWorkspaceBytes / sizeof(double));
    l.counters = alloc_bytes(cuda::kGemmTileCounters * sizeof(int));
    CUDA_CHECK(cudaMemsetAsync(l.counters.get(), 0, cuda::kGemmTileCounters * sizeof(int), s));
    l.ctx.gemm_counters = static_cast<int*>(l.counters.get());
    return l;
  }
  cublasHandle_t blas() const { return in_side_ ? side_.blas.get() : main_.blas.get(); }

  Lane main_, side_;
  cuda::OpContext ctx_;  // the lane the next op is issued to: main_'s, or side_'s in a branch
  cudaEvent_t fork_event_ = nullptr, join_event_ = nullptr;
  bool side_on_ = true;       // set_side_branches
  bool side_open_ = false;    // between begin_side and end_side
  bool in_side_ = false;      // ... and issuing to the side lane
  bool side_pending_ = false; // side work the main stream has not waited for yet
  std::vector<Span> side_reads_, side_writes_;  // of the branches since the last join
  GemmPrecision precision_;
  enum class StepMode { none, capture, collect };
  struct StepGraph {
    GraphPtr graph;  // the captured step, the prologue its root
    GraphExecPtr exec;
    cudaGraphNode_t prologue = nullptr;
    StepSignature sig;  // the captured step's record (see begin_step)
    int lives = 0;
  };
  StepMode step_mode_ = StepMode::none;
  int64_t step_key_ = 0;
  StepSignature step_sig_;
  cuda::LiveValues step_lives_;
  Buffer live_block_;                     // kMaxLives 8-byte slots
  std::map<int64_t, StepGraph> step_graphs_;  // by step key (batch size)
  StepGraphStats stats_;
  bool profiling_ = false;
  std::vector<Timed> timed_;          // ops bracketed and not yet folded into op_totals_
  std::map<std::string, OpTime> op_totals_;  // by op, since the last op_profile()
  std::vector<cudaEvent_t> free_events_;
};

}  // namespace

std::unique_ptr<Backend<float>> make_cuda_backend(GemmPrecision precision) {
  if (!cuda_device_available())
    throw VaeError("--device cuda: no CUDA device is available (use --device cpu or auto)");
  return std::make_unique<CudaBackend>(precision);
}

}  // namespace vae
