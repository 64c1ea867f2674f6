// The backend op set: every operation the models need, at the granularity the GPU fuses them.
// A model calls only these ops and never touches a backend's memory directly, so one model
// definition runs on the CPU reference backend (the oracle) and on the CUDA backend.
//
// Conventions (all ops):
//  - matrices are row-major Mat views whose data lives on this backend;
//  - shapes are checked at entry and a mismatch throws VaeError;
//  - loss ops *accumulate* their scalar into loss (1 × 1) so a trainer can sum a whole epoch
//    on the device and read it once; gradient outputs are *overwritten* unless stated;
//  - an empty Mat (rows * cols == 0) for an optional output means "not wanted".
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace vae {

struct Csr;  // host CSR, data/dataset.h

enum class Act { identity, relu, sigmoid, tanh };
enum class Reg { l2_squared, l2_norm };

const char* act_name(Act a);
Act parse_act(const std::string& s);  // throws UsageError

// How a float backend's gemm() adds up its products.
//  exact: in double, rounded once to float (alpha and beta applied in double too). Products of
//         two floats are exact in double, and sums of them in any order differ only by double
//         rounding (far below a float ulp unless the sum cancels heavily), so the float results
//         differ only where the double sum lies within that error of a float rounding
//         boundary: the CPU and the GPU give the same bits whatever order their BLAS sums in, and a
//         training run does not drift apart between devices (float GEMMs summed in different
//         orders differ in the last bits, and hundreds of Adam steps amplify that into the
//         third decimal of NDCG@100: two CPU BLAS builds disagree as much as CPU and GPU do).
//  fp32:  the BLAS's float sgemm (OpenBLAS, cuBLAS in pedantic FP32): fastest exact-IEEE path.
//  tf32:  cuBLAS TF32 tensor cores (10-bit mantissa inputs) on a GPU; fp32 on the CPU.
//  bf16:  cuBLAS BF16 tensor cores (inputs rounded to 8-bit mantissas, float accumulation and
//         output; twice TF32's peak rate on Hopper) on a GPU; fp32 on the CPU.
// Backends over double ignore it (their GEMM is already double).
enum class GemmPrecision { exact, fp32, tf32, bf16 };
const char* precision_name(GemmPrecision p);
GemmPrecision parse_precision(const std::string& s);  // throws UsageError

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;  // true: AdamW (p -= lr·wd·p); false: L2 (g += wd·p)
};

// A batch of CSR rows read as a first layer's dense input X (n × csr.cols), without forming
// it: row r of X is csr row rows[r], every stored value v transformed exactly as the dense
// path transforms the densified batch:
//   v ← v / norms[r]                                      when norms is given (n × 1; 0 if norm 0)
//       (norms in double, as l2_normalize_rows divides by the unrounded norm)
//   v ← v · [u > q] / (1 − q), u = philox_uniform(seed, stream, r·csr.cols + c)  when q > 0
// (u is the draw dropout() makes for element (r, c) of the dense n × cols batch, so the dense
// and sparse paths drop the same entries; q ≥ 1 gives v · 0 as dropout() does).
template <typename T>
struct CsrBatch {
  CsrView<T> csr;
  CMat<int32_t> rows;  // n × 1 (or 1 × n) on the backend
  CMat<double> norms;  // n × 1 row L2 norms (csr_row_norms), empty = values as stored
  T dropout = T(0);
  uint64_t seed = 0, stream = 0;
  int64_t n() const { return rows.size(); }
};

// Device time of one op name over the calls since the last Backend::op_profile().
struct OpTime {
  std::string op;
  int64_t calls = 0;
  double seconds = 0;
};

template <typename T>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu" or "cuda"

  // ---- memory -------------------------------------------------------------------------
  virtual Buffer alloc_bytes(size_t bytes) = 0;  // contents undefined
  virtual void copy_to_backend(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  virtual void copy_within(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}
  // Free and total bytes of the backend's memory when it has a fixed pool (a GPU); false on
  // the host, whose memory the operating system manages.
  virtual bool memory_info(size_t& free_bytes, size_t& total_bytes) {
    free_bytes = total_bytes = 0;
    return false;
  }
  // What the memory plan names: "cpu" or the GPU's name.
  virtual std::string device_name() const { return name(); }
  // How gemm() accumulates (see GemmPrecision).
  virtual GemmPrecision gemm_precision() const = 0;

  // ---- timing --------------------------------------------------------------------------
  // Device time of the work fn enqueues (CUDA events around it; waits for that work), in
  // seconds; negative when the backend has no device clock (the CPU: time it on the host).
  virtual double device_seconds(const std::function<void()>& fn) {
    fn();
    return -1.0;
  }

  // Per-op device time: while on, the backend brackets every op with device timers (plain
  // launches only: no step capture meanwhile); switching it on starts an empty profile.
  // op_profile() waits for the device and returns the time per op name since the last call,
  // largest first, then forgets it. The CPU, whose ops finish before they return, times each
  // by the wall clock.
  virtual void set_op_profiling(bool /*on*/) {}
  virtual std::vector<OpTime> op_profile() { return {}; }

  // ---- training steps as CUDA Graphs ---------------------------------------------------
  // A step is the ops issued between begin_step(key, …) and end_step(); the trainer keys
  // steps by batch size. On a backend with graphs (supports_step_capture()):
  //  - the first step under a key is captured and then run as one graph launch;
  //  - a later step under that key launches nothing while its ops are issued: each op only
  //    checks its shapes and records its arguments. If they equal the captured step's in
  //    everything but the step's *live* arguments — the noise streams of reparameterize,
  //    dropout and CsrBatch, reparam_kl_backward's kl_scale, adam_step's step and take_rows'
  //    offset — end_step() replays the graph with the new live values (one launch, nothing
  //    captured again) and returns true. Otherwise nothing has run and end_step() returns
  //    false: issue the step's ops again with begin_step(key, true), which captures afresh.
  //    run_step() below does exactly this.
  // Inside a step nothing may wait for the device (no copies to the host, no synchronize()).
  // abort_step() ends a step that an exception interrupted, discarding it.
  // Backends without graphs run every op at once; begin_step does nothing and end_step
  // returns true.
  virtual bool supports_step_capture() const { return false; }
  virtual void begin_step(int64_t /*key*/, bool /*capture*/) {}
  virtual bool end_step() { return true; }
  virtual void abort_step() noexcept {}
  // Discards every kept step graph (run_step's fallback: none is replayed after a refusal).
  virtual void drop_step_graphs() noexcept {}
  // Steps captured and steps replayed without capture since the backend was made; the nodes
  // (kernels, copies, library GEMMs' kernels) of the latest captured step graph, the launches a
  // step costs, each a few microseconds of a small batch's step on a GPU, and how many of them
  // lie on its longest dependency chain, which a replay runs one after another (0 where not known).
  struct StepGraphStats {
    int64_t captures = 0, replays = 0, nodes = 0;
    int64_t longest_chain = 0;
  };
  virtual StepGraphStats step_graph_stats() const { return {}; }
  // Launches the graph kept under key again, unchanged (the same batch, noise and Adam step):
  // for timing how fast a step could run with no host work at all. False when there is none.
  // Graphs outlive the model that captured them: replay only a key captured since the model's
  // buffers were last allocated.
  virtual bool replay_step(int64_t /*key*/) { return false; }

  // ---- side branches ----
  // A layer's weight gradient feeds nothing else in its step's backward pass, so a backend may
  // compute it beside the ops that follow. The ops issued between begin_side() and end_side()
  // form such a branch (the CUDA backend: a second stream, a branch of the step's graph; every
  // other backend runs them in place). The backend orders an op after the open branches itself
  // wherever it must: before an op that reads what a branch writes, or writes what a branch
  // reads or writes (by the views each op is given: CMat read, Mat written), and before any
  // wait of the host. So results never depend on it; only the time does.
  // set_side_branches(false) runs branches in place (a benchmark's comparison).
  virtual void begin_side() {}
  virtual void end_side() noexcept {}
  virtual void set_side_branches(bool /*on*/) {}

  // One training step: ops() issued as a step under key (see begin_step), issued a second time
  // to be captured when the kept graph does not fit. ops() must issue the same ops each time
  // it is called and may not change host state the step's ops depend on.
  // A step whose capture, instantiation or launch the device refuses (a CudaError) has run
  // none of its ops: they are issued again as plain launches, and so is every later step
  // (step_capture_failure() then says why; the kept graphs are dropped, so replay_step finds
  // none). An error that was not the graph's fails that plain run too and is thrown from it;
  // any other exception is thrown at once.
  template <typename F>
  void run_step(int64_t key, F&& ops) {
    if (!step_capture_failure_.empty()) {
      ops();
      return;
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool ran = false;
      try {
        begin_step(key, attempt > 0);
        ops();
        ran = end_step();
      } catch (const CudaError& e) {
        abort_step();
        drop_step_graphs();
        step_capture_failure_ = e.what();
        ops();
        return;
      } catch (...) {
        abort_step();
        throw;
      }
      if (ran) return;
    }
    throw VaeError("run_step: a freshly captured step did not run");  // end_step runs every capture
  }
  // Why run_step stopped using graphs ("" while it uses them).
  const std::string& step_capture_failure() const { return step_capture_failure_; }

  template <typename U>
  Tensor<U> alloc(int64_t rows, int64_t cols) {
    VAE_CHECK(rows >= 0 && cols >= 0, "negative tensor shape");
    const size_t n = static_cast<size_t>(rows * cols);
    return Tensor<U>(alloc_bytes(n * sizeof(U)), rows, cols);
  }
  Tensor<T> zeros(int64_t rows, int64_t cols) {
    Tensor<T> t = alloc<T>(rows, cols);
    fill(t.mat(), T(0));
    return t;
  }
  template <typename U>
  Tensor<U> upload(const std::vector<U>& host, int64_t rows, int64_t cols) {
    VAE_CHECK(static_cast<int64_t>(host.size()) == rows * cols, "upload: size does not match shape");
    Tensor<U> t = alloc<U>(rows, cols);
    if (!host.empty()) copy_to_backend(t.data(), host.data(), host.size() * sizeof(U));
    return t;
  }
  template <typename U>
  std::vector<std::remove_const_t<U>> download(Mat<U> m) {
    std::vector<std::remove_const_t<U>> out(static_cast<size_t>(m.size()));
    if (!out.empty()) copy_to_host(out.data(), m.data, out.size() * sizeof(U));
    return out;
  }
  template <typename U>
  void upload_into(const std::vector<U>& host, Mat<U> dst) {
    VAE_CHECK(static_cast<int64_t>(host.size()) == dst.size(), "upload_into: size mismatch");
    if (!host.empty()) copy_to_backend(dst.data, host.data(), host.size() * sizeof(U));
  }
  // Host CSR (float values) to this backend, values converted to T.
  CsrTensor<T> upload_csr(const Csr& csr);
  // Reads a 1 × 1 accumulator.
  double read_scalar(CMat<T> s) {
    VAE_CHECK(s.size() == 1, "read_scalar: not a 1 x 1 matrix");
    T v{};
    copy_to_host(&v, s.data, sizeof(T));
    return static_cast<double>(v);
  }

  // ---- dense algebra ------------------------------------------------------------------
  virtual void fill(Mat<T> x, T value) = 0;
  // y += alpha · x
  virtual void axpy(T alpha, CMat<T> x, Mat<T> y) = 0;
  // C = alpha · op(A) · op(B) + beta · C, op = transpose when the flag is set; summed as
  // gemm_precision() says.
  virtual void gemm(bool trans_a, bool trans_b, T alpha, CMat<T> a, CMat<T> b, T beta, Mat<T> c) = 0;
  // y = act(x + bias) with bias 1 × cols broadcast over rows (empty bias = none); y may alias x.
  virtual void bias_act(CMat<T> x, CMat<T> bias, Act act, Mat<T> y) = 0;
  // A fully connected layer's forward, y = act(x · wᵀ + bias) (w out × in, bias 1 × out or
  // empty): by definition gemm then bias_act, which is what it does here (the CPU backend's
  // oracle); a backend may fuse the two (the CUDA backend's exact GEMM applies the bias and
  // activation in its epilogue), with the same result.
  virtual void linear(CMat<T> x, CMat<T> w, CMat<T> bias, Act act, Mat<T> y) {
    gemm(false, true, T(1), x, w, T(0), y);
    bias_act(y, bias, act, y);
  }
  // Backward of bias_act written with the forward *output* y: dx = dy ⊙ act'(y);
  // dbias (1 × cols, optional) = Σ_rows dx. dx may alias dy; dx empty: dbias alone.
  virtual void bias_act_backward(CMat<T> dy, CMat<T> y, Act act, Mat<T> dx, Mat<T> dbias) = 0;
  // dbias (1 × cols) = Σ_rows dz: a bias's gradient from its layer's dz (bias_act_backward's
  // bias gradient alone).
  void bias_gradient(CMat<T> dz, Mat<T> dbias) { bias_act_backward(dz, dz, Act::identity, Mat<T>{}, dbias); }
  // A layer's backward, in two halves, from dz: the gradient w.r.t. its pre-activation
  // x · wᵀ + bias. The gradient passed down, already through the activation below:
  // dx = (dz · w) ⊙ act'(y), where y is the layer's input as the output of activation act
  // (act identity: dx = dz · w, y unused and may be empty). By definition gemm then
  // bias_act_backward; the CUDA backend's exact GEMM applies act' in its epilogue.
  virtual void linear_backward_input(CMat<T> dz, CMat<T> w, CMat<T> y, Act act, Mat<T> dx) {
    gemm(false, false, T(1), dz, w, T(0), dx);
    if (act != Act::identity) bias_act_backward(dx, y, act, dx, Mat<T>{});
  }
  // The parameter gradients: dw = dzᵀ · x; dbias (1 × out, optional) = Σ_rows dz. By
  // definition gemm and bias_act_backward's bias gradient; the CUDA backend's exact GEMM sums
  // dbias as one more output column (x widened by a column of ones).
  virtual void linear_backward_weight(CMat<T> dz, CMat<T> x, Mat<T> dw, Mat<T> dbias) {
    gemm(true, false, T(1), dz, x, T(0), dw);
    if (!dbias.empty()) bias_gradient(dz, dbias);
  }
  // y[r] += table[rows[r]] (CDAE's per-user vector). rows: n × 1 int32 on this backend; a row
  // of kNoRow adds nothing (an evaluated user the model has no vector for).
  virtual void gather_rows_add(CMat<T> table, CMat<int32_t> rows, Mat<T> y) = 0;
  // dtable[rows[r]] += dy[r]; rows must be distinct.
  virtual void scatter_rows_add(CMat<T> dy, CMat<int32_t> rows, Mat<T> dtable) = 0;

  // ---- losses (accumulate into loss; gradients overwritten) ------------------------------
  // loss += scale · Σ (pred − target)², over entries with target ≠ 0 when masked;
  // dpred = 2 · scale · (pred − target) there, 0 elsewhere (masked).
  virtual void mse_loss(CMat<T> pred, CMat<T> target, bool masked, T scale, Mat<T> dpred,
                        Mat<T> loss) = 0;
  // loss += −scale · Σ_r Σ_j t_rj · log_softmax(logits_r)_j;
  // dlogits = scale · (softmax(logits_r) · Σ_j t_rj − t_r).
  virtual void multinomial_nll(CMat<T> logits, CMat<T> target, T scale, Mat<T> dlogits,
                               Mat<T> loss) = 0;
  // Bernoulli cross-entropy on logits x: loss += scale · Σ [softplus(x) − t·x];
  // dlogits = scale · (σ(x) − t).
  virtual void bce_logits(CMat<T> logits, CMat<T> target, T scale, Mat<T> dlogits, Mat<T> loss) = 0;
  // mu_logvar is B × 2L (μ in columns [0, L), log σ² in [L, 2L)).
  // eps[r][j] = philox_normal(seed, stream, r·L + j); z = μ + eps · exp(½ logvar).
  virtual void reparameterize(CMat<T> mu_logvar, uint64_t seed, uint64_t stream, Mat<T> eps,
                              Mat<T> z) = 0;
  // KL(q ‖ N(0, I)) = −½ Σ (1 + lv − μ² − e^lv); loss += kl_scale · KL.
  // d_mu_logvar = [dz + kl_scale·μ, dz·eps·½e^{½lv} + kl_scale·½(e^lv − 1)].
  // dz/eps empty: no reconstruction path (z = μ deterministic: dμ = dz only if given).
  virtual void reparam_kl_backward(CMat<T> mu_logvar, CMat<T> eps, CMat<T> dz, T kl_scale,
                                   Mat<T> d_mu_logvar, Mat<T> loss) = 0;
  // Regularisers (accumulate into grad and loss):
  //  l2_squared: loss += λ/2 · ‖p‖²,  grad += λ · p
  //  l2_norm:    loss += λ/2 · ‖p‖,   grad += λ/2 · p / ‖p‖  (the reference notebook's form)
  virtual void regularize(CMat<T> p, T lambda, Reg kind, Mat<T> grad, Mat<T> loss) = 0;

  // ---- input transforms ---------------------------------------------------------------
  // y = x · [u > q] / (1 − q), u = philox_uniform(seed, stream, flat index). y may alias x.
  virtual void dropout(CMat<T> x, T q, uint64_t seed, uint64_t stream, Mat<T> y) = 0;
  // Each row divided by its L2 norm (zero rows stay zero). y may alias x.
  virtual void l2_normalize_rows(CMat<T> x, Mat<T> y) = 0;
  // y (n × csr.cols) = dense copy of csr rows rows[0..n).
  virtual void csr_rows_to_dense(CsrView<T> csr, CMat<int32_t> rows, Mat<T> y) = 0;
  // dst[i] = src[offset + i] for i < dst.size(): a batch's row ids taken from the epoch's
  // order. An op rather than a view at an offset so that a replayed step graph reads the
  // offset when it runs (a live argument). Throws when the range leaves src.
  virtual void take_rows(CMat<int32_t> src, int64_t offset, Mat<int32_t> dst) = 0;

  // ---- sparse first layer (CsrBatch input; see CsrBatch for the value transforms) ----------
  // norms (n × 1) = ‖csr row rows[r]‖₂, summed and kept in double (what l2_normalize_rows
  // divides by).
  virtual void csr_row_norms(CsrView<T> csr, CMat<int32_t> rows, Mat<double> norms) = 0;
  // y (n × H) = X · Wᵀ with w H × csr.cols (nn.Linear's layout); y is overwritten. Under exact
  // precision a float backend sums in double and rounds once, as the exact GEMM does, so the
  // sparse and dense first layers give the same values (up to the order of the double sums).
  virtual void csr_linear_forward(const CsrBatch<T>& x, CMat<T> w, Mat<T> y) = 0;
  // dw (H × csr.cols) = dyᵀ · X with dy n × H; overwritten in full (columns no batch row
  // holds get 0), as gemm(true, false, 1, dy, X, 0, dw) on the densified X. Each entry sums
  // its batch rows in ascending order, so the result is deterministic.
  virtual void csr_linear_weight_grad(const CsrBatch<T>& x, CMat<T> dy, Mat<T> dw) = 0;

  // ---- optimiser ----------------------------------------------------------------------
  // One Adam step over flat buffers (all 1 × n or any equal shape); step is 1-based.
  virtual void adam_step(Mat<T> params, CMat<T> grads, Mat<T> m, Mat<T> v, const AdamConfig& cfg,
                         int64_t step) = 0;

  // ---- evaluation ---------------------------------------------------------------------
  // Per row the k largest scores, descending; equal scores ordered by lower index. Items in
  // row exclude_rows[r] of exclude are skipped (exclude.rows == 0: nothing excluded). Rows with
  // fewer than k candidates are padded with index −1 and value −inf.
  virtual void topk(CMat<T> scores, CsrView<T> exclude, CMat<int32_t> exclude_rows, int k,
                    Mat<int32_t> idx, Mat<T> val) = 0;
  // Binary-relevance metrics against target rows target_rows[r] (Mult-VAE definitions), for
  // each k in ks (each ≤ idx.cols): out (n × 2·|ks|) = [recall@k…, ndcg@k…] with
  // recall = hits / min(k, |target|), ndcg = DCG / IDCG, gains 1/log2(rank + 1).
  // Rows with an empty target get 0.
  virtual void heldout_metrics(CMat<int32_t> idx, CsrView<T> target, CMat<int32_t> target_rows,
                               const std::vector<int>& ks, Mat<T> out) = 0;
  // Graded metrics of the reference notebooks on dense rows (gains = ratings):
  // out (n × 2) = [ndcg@k with sklearn.metrics.ndcg_score semantics (ties in scores averaged),
  //               recall@k = Σ truth at the top-k indices / Σ truth].
  virtual void graded_metrics(CMat<T> scores, CMat<T> truth, int k, Mat<T> out) = 0;
  // Rating errors of pred rows against target rows target_rows[r], predictions clipped to
  // [lo, hi]: out (n × 3) = [Σ squared error, Σ absolute error, count].
  virtual void rating_errors(CMat<T> pred, CsrView<T> target, CMat<int32_t> target_rows, T lo,
                             T hi, Mat<T> out) = 0;

 private:
  std::string step_capture_failure_;
};

// Backend factories. make_cuda_backend throws VaeError when no CUDA device is usable. The
// library default is fp32 (the ops' tests compare against it); the CLI defaults to exact.
template <typename T>
std::unique_ptr<Backend<T>> make_cpu_backend(GemmPrecision precision = GemmPrecision::fp32);
std::unique_ptr<Backend<float>> make_cuda_backend(GemmPrecision precision = GemmPrecision::fp32);
bool cuda_device_available();
std::string cuda_device_name();
// FP32 operations per FP64 operation on the current GPU (0: no device / unknown).
int cuda_fp32_per_fp64();

}  // namespace vae
