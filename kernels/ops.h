// Host-side launchers of the CUDA backend's kernels, one per backend op (or fused group). They
// take raw device pointers whose shapes the backend (cuda_backend.cu) has already checked, and
// enqueue work on ctx.stream without synchronising. Optional outputs are nullptr when not
// wanted. Semantics are those of the CPU oracle (host/backend/cpu_backend.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "gemm_exact_tile.h"  // gemm_exact::Epilogue

namespace vae::cuda {

// Partial sums of one reduction pass (the backend allocates this many doubles once).
constexpr int kMaxPartials = 1024;
// Device-side scalars of the scratch area (e.g. a regulariser's ‖p‖² between two kernels).
constexpr int kScratchScalars = 8;
// Output tiles a split-K exact GEMM may have (it splits only below 2 blocks per SM).
constexpr int64_t kGemmTileCounters = 4096;
// Most entries of heldout_metrics' ks list (passed by value to the kernel).
constexpr int kMaxKs = 32;

// Index errors found on the device (the CPU oracle throws on them at once; the GPU records
// the first one in a flag that the backend checks, and throws on, at the next synchronisation).
enum DeviceError : int {
  kErrNone = 0,
  kErrGatherRange,
  kErrScatterRange,
  kErrScatterDuplicate,
  kErrCsrRowRange,
  kErrTopkExcludeRange,
  kErrHeldoutTargetRange,
  kErrRatingTargetRange,
  kErrSparseRowRange,  // csr_row_norms / csr_linear_forward / csr_linear_weight_grad
};
const char* device_error_message(int code);

// A training step's live argument (see Backend::begin_step): plain launches pass the value;
// a step being captured passes where the step graph keeps it (`at`, a slot of the backend's
// live block that the graph's first node fills), so a replay reads the new step's value.
template <typename V>
struct Live {
  V value{};
  const V* at = nullptr;
  Live() = default;
  Live(V v) : value(v) {}  // NOLINT(google-explicit-constructor): a plain value is a fixed Live
  Live(V v, const V* slot) : value(v), at(slot) {}
  __device__ __forceinline__ V get() const { return at ? *at : value; }
};

// The live values of one step, in the order its ops issued them; passed by value to the
// prologue kernel that copies them into the live block at the start of a step graph.
constexpr int kMaxLives = 64;
struct LiveValues {
  uint64_t v[kMaxLives]{};
  int count = 0;
};
// The prologue is the first op of every captured step (launched right after the capture
// begins), so it is the root of the captured graph and every other node runs after it: no
// second graph around the capture is needed. Its values are set before each launch of a
// step (Backend::replay_step alone relaunches the last step's values unchanged).
void launch_step_prologue(cudaStream_t s, uint64_t* block);
// The prologue's node in a captured step graph; CudaError when it is not the graph's one root.
cudaGraphNode_t find_step_prologue(cudaGraph_t step);
// Nodes on the graph's longest dependency chain: the launches a replay waits for one after another.
int64_t graph_longest_chain(cudaGraph_t g);
void set_step_lives(cudaGraphExec_t exec, cudaGraphNode_t prologue, const LiveValues& lives,
                    uint64_t* block);

// What every launcher needs: the stream and the backend's preallocated scratch (no op
// allocates device memory).
struct OpContext {
  cudaStream_t stream = nullptr;
  double* partials = nullptr;  // kMaxPartials doubles
  double* scalars = nullptr;   // kScratchScalars doubles
  int* error = nullptr;        // one int, DeviceError
  size_t smem_optin = 48 * 1024;  // largest dynamic shared memory per block on this device
  int num_sms = 1;                // multiprocessors (grid sizing)
  double* gemm_ws = nullptr;      // gemm_exact's split-K partial sums (may be nullptr: no split)
  int64_t gemm_ws_doubles = 0;
  int* gemm_counters = nullptr;   // kGemmTileCounters zeros: gemm_exact's split-K tile counters
};

// ---- GEMM with double accumulation (ops_gemm.cu) -----------------------------------------
// Row-major C (m × n, ldc) = alpha · op(A) · op(B) + beta · C, products summed in double and
// rounded once (GemmPrecision::exact); the layout conventions of reference_gemm (cpu_gemm.h).
// epi: what the same kernel also does (gemm_exact_tile.h): a layer's bias and activation, an
// activation's derivative, or the row sums of op(A) (a layer's bias gradient).
using GemmEpilogue = gemm_exact::Epilogue;
void gemm_exact(const OpContext& c, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                float alpha, const float* a, int64_t lda, const float* b, int64_t ldb, float beta,
                float* cm, int64_t ldc, const GemmEpilogue& epi = {});

// ---- elementwise and losses (ops_elementwise.cu) -----------------------------------------
void fill(const OpContext& c, float* x, int64_t n, float v);
void axpy(const OpContext& c, float alpha, const float* x, float* y, int64_t n);
void scale(const OpContext& c, float* x, int64_t n, float beta);  // beta == 0 writes zeros
void bias_act(const OpContext& c, const float* x, const float* bias, Act act, float* y, int64_t rows,
              int64_t cols);
void gather_rows_add(const OpContext& c, const float* table, int64_t table_rows, const int32_t* rows,
                     float* y, int64_t n, int64_t cols);
void scatter_rows_add(const OpContext& c, const float* dy, const int32_t* rows, float* dtable,
                      int64_t dtable_rows, int64_t n, int64_t cols);
void mse_loss(const OpContext& c, const float* pred, const float* target, int64_t n, bool masked,
              float scale, float* dpred, float* loss);
void bce_logits(const OpContext& c, const float* logits, const float* target, int64_t n, float scale,
                float* dlogits, float* loss);
void reparameterize(const OpContext& c, const float* mu_logvar, int64_t rows, int64_t latent,
                    uint64_t seed, Live<uint64_t> stream, float* eps, float* z);
// kl_scale: the op's float kl_scale, widened to double.
void reparam_kl_backward(const OpContext& c, const float* mu_logvar, const float* eps,
                         const float* dz, int64_t rows, int64_t latent, Live<double> kl_scale,
                         float* d_mu_logvar, float* loss);
void regularize(const OpContext& c, const float* p, int64_t n, float lambda, Reg kind, float* grad,
                float* loss);
void dropout(const OpContext& c, const float* x, int64_t n, float q, uint64_t seed, Live<uint64_t> stream,
             float* y);
// dst[i] = src[offset + i], i < n (the range checked by the backend).
void take_rows(const OpContext& c, const int32_t* src, Live<int64_t> offset, int32_t* dst, int64_t n);

struct AdamScalars {
  double beta1, beta2, eps, weight_decay;
  Live<double> step_size;  // lr / (1 − β1^t)
  Live<double> sqrt_bc2;   // √(1 − β2^t)
  double shrink;     // 1 − lr·wd (decoupled) or 1
  bool decoupled;
};
void adam_step(const OpContext& c, float* params, const float* grads, float* m, float* v, int64_t n,
               const AdamScalars& s);

// ---- row kernels (ops_rows.cu) -------------------------------------------------------------
// dx nullptr: the bias gradient alone (dx == dy with identity stores nothing either).
void bias_act_backward(const OpContext& c, const float* dy, const float* y, Act act, float* dx,
                       float* dbias, int64_t rows, int64_t cols);
void multinomial_nll(const OpContext& c, const float* logits, const float* target, int64_t rows,
                     int64_t cols, float scale, float* dlogits, float* loss);
void l2_normalize_rows(const OpContext& c, const float* x, float* y, int64_t rows, int64_t cols);
void csr_rows_to_dense(const OpContext& c, CsrView<float> csr, const int32_t* rows, float* y, int64_t n);

// ---- sparse first layer (ops_sparse.cu) ------------------------------------------------------
// A CsrBatch on the device, its dropout factor worked out on the host as dropout() does.
struct CsrBatchArgs {
  CsrView<float> csr;
  const int32_t* rows = nullptr;  // n batch rows
  int64_t n = 0;
  const double* norms = nullptr;  // n divisors, or nullptr
  bool dropout = false;           // q > 0
  bool drop_all = false;          // q ≥ 1: v · 0
  float q = 0.0f, keep_scale = 1.0f;
  uint64_t seed = 0;
  Live<uint64_t> stream;
};
void csr_row_norms(const OpContext& c, CsrView<float> csr, const int32_t* rows, int64_t n, double* norms);
// y (n × h) = X · Wᵀ, w h × csr.cols; exact: sums in double, rounded once (the exact GEMM's
// arithmetic), else in float.
void csr_linear_forward(const OpContext& c, const CsrBatchArgs& x, const float* w, int64_t h, float* y, bool exact);
// dw (h × csr.cols) = dyᵀ · X, dy n × h; every entry of dw written; exact as above.
void csr_linear_weight_grad(const OpContext& c, const CsrBatchArgs& x, const float* dy, int64_t h, float* dw,
                            bool exact);
// Message of kErrSparseRowRange (ops_eval.cu's device_error_message covers the older codes).
const char* sparse_error_message();

// ---- evaluation (ops_eval.cu) --------------------------------------------------------------
// Throws VaeError when k (or the exclusion bitmap of m columns) needs more shared memory than
// the device has.
void topk(const OpContext& c, const float* scores, int64_t n, int64_t m, CsrView<float> exclude,
          const int32_t* exclude_rows, int k, int32_t* idx, float* val);
void heldout_metrics(const OpContext& c, const int32_t* idx, int64_t n, int64_t idx_cols,
                     CsrView<float> target, const int32_t* target_rows, const std::vector<int>& ks,
                     float* out);
void graded_metrics(const OpContext& c, const float* scores, const float* truth, int64_t n, int64_t m,
                    int k, float* out);
void rating_errors(const OpContext& c, const float* pred, int64_t n, int64_t cols,
                   CsrView<float> target, const int32_t* target_rows, float lo, float hi, float* out);

}  // namespace vae::cuda
