// The CPU reference backend: the oracle every CUDA kernel is checked against and the fallback
// without a GPU. Every op is a plain loop over row-major memory written for clarity first;
// GEMMs go to OpenBLAS when present. Reductions accumulate in double so the float oracle's
// own rounding stays well below the tolerances the GPU comparisons use.
//
// Semantic choices where backend.h leaves room (PyTorch-equivalent where one exists):
//  - An empty Mat for a loss op's gradient (dpred, dlogits, d_mu_logvar), for dbias, for a
//    regulariser's grad, for topk's val and for a loss accumulator means "not wanted": the op
//    skips that output. eps in reparameterize may be empty too (z only).
//  - multinomial_nll skips terms with t = 0 (0 · log p = 0, even where log p = −inf).
//  - reparam_kl_backward: dz empty → dμ = kl·μ, dlv = kl·½(e^lv − 1) (no reconstruction path);
//    dz given but eps empty → z = μ deterministic: dμ = dz + kl·μ and dlv has no dz term.
//  - regularize l2_norm at ‖p‖ = 0 adds no gradient (PyTorch's norm backward gives 0 there).
//  - relu'(y) = [y > 0] (PyTorch's threshold_backward: 0 at the kink).
//  - dropout with q ≥ 1 gives y = x · 0 (PyTorch's p = 1 special case); q outside [0, 1] throws.
//  - bias_act_backward's dbias is overwritten (a gradient output), not accumulated; an empty dx
//    asks for dbias alone.
//  - scatter_rows_add throws on repeated or out-of-range rows (the contract the GPU's
//    non-atomic scatter relies on).
//  - topk / graded_metrics order NaN scores after every number (−inf included); NaNs stay
//    candidates. Ties: lower index first.
//  - heldout_metrics counts a target entry as relevant when its stored value is > 0
//    (Mult-VAE's `heldout_batch > 0`); padding indices (−1) never hit.
//  - Index vectors (rows, exclude_rows, target_rows) may be n × 1 or 1 × n; every index is
//    range-checked. dropout's element index is the flat row-major index r·cols + c of x.
//  - csr_row_norms / csr_linear_forward / csr_linear_weight_grad throw on out-of-range row or
//    column indices (the GPU records a row error and skips a bad column).
//  - adam_step follows torch.optim.Adam / AdamW exactly: L2 adds wd·p to g before the moments;
//    decoupled multiplies p by (1 − lr·wd) first; p −= lr/bc1 · m / (√v/√bc2 + eps).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <new>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu_gemm.h"
#include "core/philox.h"

#if defined(VAE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace vae {

namespace {

constexpr std::align_val_t kAlign{64};

// fn(r0, r1) over [0, rows) in blocks of rows on the GEMM pool (cpu_parallel_for), or at once when
// the matrix is small enough that threads would cost more than they save. fn must write only
// what belongs to its rows.
void for_row_blocks(int64_t rows, int64_t cols, const std::function<void(int64_t, int64_t)>& fn) {
  constexpr int64_t kSerialElements = int64_t{1} << 18;
  if (rows <= 1 || rows * std::max<int64_t>(cols, 1) < kSerialElements) {
    fn(0, rows);
    return;
  }
  const int64_t blocks = std::min<int64_t>(rows, 4 * static_cast<int64_t>(reference_gemm_threads()));
  const int64_t per = (rows + blocks - 1) / blocks;
  cpu_parallel_for((rows + per - 1) / per, [&](int64_t b) { fn(b * per, std::min(rows, (b + 1) * per)); });
}

void aligned_free(void* p) { ::operator delete(p, kAlign); }

template <typename A, typename B>
bool same_shape(Mat<A> a, Mat<B> b) {
  return a.rows == b.rows && a.cols == b.cols;
}

// A loss accumulator is 1 × 1, or empty when the caller only wants gradients.
template <typename T>
void check_loss(Mat<T> loss) {
  VAE_CHECK(loss.empty() || loss.size() == 1, "loss accumulator must be 1 x 1");
}

template <typename T>
void add_loss(Mat<T> loss, double v) {
  if (!loss.empty()) loss.data[0] = static_cast<T>(static_cast<double>(loss.data[0]) + v);
}

// Index vectors (n × 1 int32) are accepted in either orientation; only the count matters.
void check_index_vector(CMat<int32_t> v, int64_t n, const char* what) {
  VAE_CHECK(v.size() == n && (v.rows == 1 || v.cols == 1 || n == 0),
            std::string(what) + ": index vector must have one entry per row");
}

// Overflow-free logistic function.
inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// softplus(x) = log(1 + e^x) without overflow or cancellation.
inline double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

// Strict total order for ranking: larger score first, NaN after every number, then lower index.
template <typename T>
struct RankBefore {
  const T* s;
  bool operator()(int32_t a, int32_t b) const {
    const T va = s[a], vb = s[b];
    const bool na = std::isnan(va), nb = std::isnan(vb);
    if (na != nb) return nb;
    if (!na && va != vb) return va > vb;
    return a < b;
  }
};

inline double rank_discount(int64_t pos) { return 1.0 / std::log2(static_cast<double>(pos) + 2.0); }

// Adam's per-element update in double (the GPU kernel does the same arithmetic, so both
// backends produce the same bits). Split per weight-decay kind and compiled twice (AVX2 and
// baseline x86-64, picked at load time) so the double sqrt/div run 4 wide where they can.
struct AdamScalarsD {
  double b1, b2, wd, eps, step_size, sqrt_bc2, shrink;
  bool decoupled;
};

template <typename T, bool kDecoupled>
inline __attribute__((always_inline)) void adam_loop(T* __restrict p, const T* __restrict g,
                                                     T* __restrict m, T* __restrict v, int64_t n,
                                                     const AdamScalarsD& a) {
  const double b1 = a.b1, c1 = 1.0 - a.b1, b2 = a.b2, c2 = 1.0 - a.b2, wd = a.wd;
  const double shrink = a.shrink, step_size = a.step_size, sqrt_bc2 = a.sqrt_bc2, eps = a.eps;
  for (int64_t i = 0; i < n; ++i) {
    double pi = p[i];
    double gi = g[i];
    if (!kDecoupled) gi += wd * pi;
    pi *= shrink;
    const double mi = b1 * static_cast<double>(m[i]) + c1 * gi;
    const double vi = b2 * static_cast<double>(v[i]) + c2 * gi * gi;
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    pi -= step_size * mi / (std::sqrt(vi) / sqrt_bc2 + eps);
    p[i] = static_cast<T>(pi);
  }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VAE_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VAE_CPU_CLONES
#endif

VAE_CPU_CLONES void adam_update(float* p, const float* g, float* m, float* v, int64_t n,
                                const AdamScalarsD& a) {
  if (a.decoupled) adam_loop<float, true>(p, g, m, v, n, a);
  else adam_loop<float, false>(p, g, m, v, n, a);
}

VAE_CPU_CLONES void adam_update(double* p, const double* g, double* m, double* v, int64_t n,
                                const AdamScalarsD& a) {
  if (a.decoupled) adam_loop<double, true>(p, g, m, v, n, a);
  else adam_loop<double, false>(p, g, m, v, n, a);
}

template <typename T>
void gemm_dispatch(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                   int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
#if defined(VAE_HAVE_OPENBLAS)
  const CBLAS_TRANSPOSE ota = ta ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE otb = tb ? CblasTrans : CblasNoTrans;
  const blasint bm = static_cast<blasint>(m), bn = static_cast<blasint>(n);
  const blasint bk = static_cast<blasint>(k);
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ota, otb, bm, bn, bk, alpha, a, static_cast<blasint>(lda), b,
                static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
  } else {
    cblas_dgemm(CblasRowMajor, ota, otb, bm, bn, bk, alpha, a, static_cast<blasint>(lda), b,
                static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
  }
#else
  reference_gemm<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

// GemmPrecision::exact on floats: the operands widened to double, a double GEMM (whatever
// order the BLAS sums in), then alpha and beta applied in double and one rounding to float.
// The GPU's gemm_exact kernel does the same arithmetic, so the two agree bit for bit except
// where a result lies within double rounding noise of a float rounding boundary.
void gemm_exact(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
                std::vector<double>& wa, std::vector<double>& wb, std::vector<double>& wc) {
  const int64_t a_rows = ta ? k : m, b_rows = tb ? n : k;
  wa.assign(a, a + a_rows * lda);
  wb.assign(b, b + b_rows * ldb);
  wc.resize(static_cast<size_t>(m * n));
  gemm_dispatch<double>(ta, tb, m, n, k, 1.0, wa.data(), lda, wb.data(), ldb, 0.0, wc.data(), n);
  const double al = alpha, be = beta;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double v = wc[static_cast<size_t>(i * n + j)];
      if (al != 1.0) v = al * v;
      if (be != 0.0) v = v + be * static_cast<double>(c[i * ldc + j]);  // beta 0: C not read
      c[i * ldc + j] = static_cast<float>(v);
    }
  }
}

}  // namespace

template <typename T>
class CpuBackend final : public Backend<T> {
 public:
  // tf32 and bf16 (GPU tensor-core formats) have no CPU counterpart: they run as fp32 here.
  explicit CpuBackend(GemmPrecision precision)
      : precision_(precision == GemmPrecision::tf32 || precision == GemmPrecision::bf16 ? GemmPrecision::fp32
                                                                                       : precision) {}

  std::string name() const override { return "cpu"; }
  GemmPrecision gemm_precision() const override { return precision_; }

  // ---- per-op profile (wall time; the CPU's ops finish before they return) -------------
  void set_op_profiling(bool on) override {
    if (on && !profiling_) op_totals_.clear();
    profiling_ = on;
  }
  std::vector<OpTime> op_profile() override {
    std::vector<OpTime> v;
    for (const auto& kv : op_totals_) v.push_back(kv.second);
    op_totals_.clear();
    std::sort(v.begin(), v.end(), [](const OpTime& a, const OpTime& b) { return a.seconds > b.seconds; });
    return v;
  }

  // ---- memory -------------------------------------------------------------------------
  Buffer alloc_bytes(size_t bytes) override {
    // Never a null pointer, even for 0 bytes, so empty views still point somewhere valid.
    const size_t n = std::max<size_t>(bytes, 1);
    return Buffer(::operator new(n, kAlign), bytes, &aligned_free);
  }
  void copy_to_backend(void* dst, const void* host_src, size_t bytes) override {
    if (bytes) std::memcpy(dst, host_src, bytes);
  }
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(host_dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, size_t bytes) override {
    const OpScope prof(this, "copy_within");
    if (bytes) std::memmove(dst, src, bytes);
  }

  // ---- dense algebra ------------------------------------------------------------------
  void fill(Mat<T> x, T value) override {
    const OpScope prof(this, "fill");
    std::fill(x.data, x.data + x.size(), value);
  }

  void axpy(T alpha, CMat<T> x, Mat<T> y) override {
    const OpScope prof(this, "axpy");
    VAE_CHECK(same_shape(x, y), "axpy: x and y differ in shape");
    const int64_t n = x.size();
    for (int64_t i = 0; i < n; ++i) y.data[i] += alpha * x.data[i];
  }

  void gemm(bool trans_a, bool trans_b, T alpha, CMat<T> a, CMat<T> b, T beta,
            Mat<T> c) override {
    const OpScope prof(this, "gemm");
    const int64_t m = trans_a ? a.cols : a.rows, ka = trans_a ? a.rows : a.cols;
    const int64_t kb = trans_b ? b.cols : b.rows, n = trans_b ? b.rows : b.cols;
    VAE_CHECK(ka == kb, "gemm: inner dimensions of op(A) and op(B) differ");
    VAE_CHECK(c.rows == m && c.cols == n, "gemm: C is not op(A).rows x op(B).cols");
    if (m == 0 || n == 0) return;
    if (ka == 0) {  // BLAS would reject lda = 0; the product is empty, only C is scaled
      for (int64_t i = 0; i < c.size(); ++i) c.data[i] = beta == T(0) ? T(0) : beta * c.data[i];
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (precision_ == GemmPrecision::exact) {
        gemm_exact(trans_a, trans_b, m, n, ka, alpha, a.data, a.cols, b.data, b.cols, beta, c.data,
                   c.cols, wide_a_, wide_b_, wide_c_);
        return;
      }
    }
    gemm_dispatch<T>(trans_a, trans_b, m, n, ka, alpha, a.data, a.cols, b.data, b.cols, beta,
                     c.data, c.cols);
  }

  void bias_act(CMat<T> x, CMat<T> bias, Act act, Mat<T> y) override {
    const OpScope prof(this, "bias_act");
    VAE_CHECK(same_shape(x, y), "bias_act: x and y differ in shape");
    VAE_CHECK(bias.empty() || (bias.rows == 1 && bias.cols == x.cols),
              "bias_act: bias must be 1 x cols");
    const int64_t cols = x.cols;
    // One loop per activation so the compiler can vectorise identity/relu.
    for (int64_t r = 0; r < x.rows; ++r) {
      const T* xr = x.data + r * cols;
      T* yr = y.data + r * cols;
      if (bias.empty()) {
        if (xr != yr) std::copy(xr, xr + cols, yr);
      } else {
        const T* b = bias.data;
        for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] + b[j];
      }
      switch (act) {
        case Act::identity: break;
        case Act::relu:  // NaN propagates
          for (int64_t j = 0; j < cols; ++j) yr[j] = yr[j] < T(0) ? T(0) : yr[j];
          break;
        case Act::sigmoid:
          for (int64_t j = 0; j < cols; ++j) yr[j] = static_cast<T>(sigmoid(yr[j]));
          break;
        case Act::tanh:
          for (int64_t j = 0; j < cols; ++j) yr[j] = static_cast<T>(std::tanh(static_cast<double>(yr[j])));
          break;
      }
    }
  }

  void bias_act_backward(CMat<T> dy, CMat<T> y, Act act, Mat<T> dx, Mat<T> dbias) override {
    const OpScope prof(this, "bias_act_backward");
    VAE_CHECK(same_shape(dy, y) && (dx.empty() || same_shape(dy, dx)), "bias_act_backward: dy, y, dx differ in shape");
    VAE_CHECK(dbias.empty() || (dbias.rows == 1 && dbias.cols == dy.cols),
              "bias_act_backward: dbias must be 1 x cols");
    const int64_t cols = dy.cols;
    std::vector<double> colsum(dbias.empty() ? 0 : static_cast<size_t>(cols), 0.0);
    std::vector<T> row(dx.empty() && act != Act::identity ? static_cast<size_t>(cols) : 0);  // dx empty: one row at a time
    for (int64_t r = 0; r < dy.rows; ++r) {
      const T* dyr = dy.data + r * cols;
      const T* yr = y.data + r * cols;
      T* dxr = dx.empty() ? row.data() : dx.data + r * cols;  // may alias dy: each entry reads dy[j] before writing
      switch (act) {
        case Act::identity:
          if (!dx.empty() && dxr != dyr) std::copy(dyr, dyr + cols, dxr);
          break;
        case Act::relu:
          for (int64_t j = 0; j < cols; ++j) {
            const T d = dyr[j];  // loaded unconditionally so the select vectorises (no branch)
            dxr[j] = yr[j] > T(0) ? d : T(0);
          }
          break;
        case Act::sigmoid:
          for (int64_t j = 0; j < cols; ++j) dxr[j] = dyr[j] * yr[j] * (T(1) - yr[j]);
          break;
        case Act::tanh:
          for (int64_t j = 0; j < cols; ++j) dxr[j] = dyr[j] * (T(1) - yr[j] * yr[j]);
          break;
      }
      if (!colsum.empty()) {
        const T* d = act == Act::identity ? dyr : dxr;
        double* cs = colsum.data();
        for (int64_t j = 0; j < cols; ++j) cs[j] += d[j];
      }
    }
    for (size_t j = 0; j < colsum.size(); ++j) dbias.data[j] = static_cast<T>(colsum[j]);
  }

  void gather_rows_add(CMat<T> table, CMat<int32_t> rows, Mat<T> y) override {
    const OpScope prof(this, "gather_rows_add");
    check_index_vector(rows, y.rows, "gather_rows_add");
    VAE_CHECK(table.cols == y.cols, "gather_rows_add: table and y differ in columns");
    for (int64_t r = 0; r < y.rows; ++r) {
      const int32_t t = rows.data[r];
      if (t == kNoRow) continue;
      VAE_CHECK(t >= 0 && t < table.rows, "gather_rows_add: row index out of range");
      const T* src = table.data + static_cast<int64_t>(t) * table.cols;
      T* dst = y.data + r * y.cols;
      for (int64_t j = 0; j < y.cols; ++j) dst[j] += src[j];
    }
  }

  void scatter_rows_add(CMat<T> dy, CMat<int32_t> rows, Mat<T> dtable) override {
    const OpScope prof(this, "scatter_rows_add");
    check_index_vector(rows, dy.rows, "scatter_rows_add");
    VAE_CHECK(dtable.cols == dy.cols, "scatter_rows_add: dtable and dy differ in columns");
    std::vector<int32_t> sorted(rows.data, rows.data + dy.rows);
    std::sort(sorted.begin(), sorted.end());
    VAE_CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end(),
              "scatter_rows_add: rows must be distinct");
    VAE_CHECK(sorted.empty() || (sorted.front() >= 0 && sorted.back() < dtable.rows),
              "scatter_rows_add: row index out of range");
    for (int64_t r = 0; r < dy.rows; ++r) {
      const T* src = dy.data + r * dy.cols;
      T* dst = dtable.data + static_cast<int64_t>(rows.data[r]) * dtable.cols;
      for (int64_t j = 0; j < dy.cols; ++j) dst[j] += src[j];
    }
  }

  // ---- losses -------------------------------------------------------------------------
  void mse_loss(CMat<T> pred, CMat<T> target, bool masked, T scale, Mat<T> dpred,
                Mat<T> loss) override {
    const OpScope prof(this, "mse_loss");
    VAE_CHECK(same_shape(pred, target), "mse_loss: pred and target differ in shape");
    VAE_CHECK(dpred.empty() || same_shape(pred, dpred), "mse_loss: dpred differs in shape");
    check_loss(loss);
    const bool want_grad = !dpred.empty();
    const T two_scale = T(2) * scale;
    double sum = 0.0;
    for (int64_t i = 0; i < pred.size(); ++i) {
      const T t = target.data[i];
      if (masked && t == T(0)) {
        if (want_grad) dpred.data[i] = T(0);
        continue;
      }
      const T d = pred.data[i] - t;
      sum += static_cast<double>(d) * static_cast<double>(d);
      if (want_grad) dpred.data[i] = two_scale * d;
    }
    add_loss(loss, static_cast<double>(scale) * sum);
  }

  void multinomial_nll(CMat<T> logits, CMat<T> target, T scale, Mat<T> dlogits,
                       Mat<T> loss) override {
    const OpScope prof(this, "multinomial_nll");
    VAE_CHECK(same_shape(logits, target), "multinomial_nll: logits and target differ in shape");
    VAE_CHECK(dlogits.empty() || same_shape(logits, dlogits),
              "multinomial_nll: dlogits differs in shape");
    check_loss(loss);
    const int64_t cols = logits.cols;
    // Rows are independent: they run in blocks on the GEMM pool, each row's loss kept apart and
    // summed in row order afterwards, so the bits do not depend on the thread count.
    std::vector<double> row_loss(static_cast<size_t>(logits.rows), 0.0);
    for_row_blocks(logits.rows, cols, [&](int64_t r0, int64_t r1) {
      std::vector<double> ex;
      for (int64_t r = r0; r < r1; ++r) {
        const T* x = logits.data + r * cols;
        const T* t = target.data + r * cols;
        if (cols == 0) continue;
        // log-sum-exp with the row maximum subtracted.
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, static_cast<double>(x[j]));
        double se = 0.0, tsum = 0.0;
        ex.resize(static_cast<size_t>(cols));  // exp(x − max), reused for the softmax below
        for (int64_t j = 0; j < cols; ++j) {
          ex[j] = std::exp(static_cast<double>(x[j]) - mx);
          se += ex[j];
          tsum += static_cast<double>(t[j]);
        }
        const double lse = mx + std::log(se);
        double row = 0.0;
        for (int64_t j = 0; j < cols; ++j)
          if (t[j] != T(0)) row += static_cast<double>(t[j]) * (static_cast<double>(x[j]) - lse);
        row_loss[r] = row;
        if (!dlogits.empty()) {
          T* g = dlogits.data + r * cols;  // may alias x: each entry reads x[j] before writing
          const double inv_se = 1.0 / se;
          for (int64_t j = 0; j < cols; ++j) {
            const double p = ex[j] * inv_se;
            g[j] = static_cast<T>(static_cast<double>(scale) * (p * tsum - static_cast<double>(t[j])));
          }
        }
      }
    });
    double total = 0.0;
    for (double row : row_loss) total -= row;
    add_loss(loss, static_cast<double>(scale) * total);
  }

  void bce_logits(CMat<T> logits, CMat<T> target, T scale, Mat<T> dlogits, Mat<T> loss) override {
    const OpScope prof(this, "bce_logits");
    VAE_CHECK(same_shape(logits, target), "bce_logits: logits and target differ in shape");
    VAE_CHECK(dlogits.empty() || same_shape(logits, dlogits), "bce_logits: dlogits differs in shape");
    check_loss(loss);
    const double s = static_cast<double>(scale);
    double sum = 0.0;
    for (int64_t i = 0; i < logits.size(); ++i) {
      const double x = static_cast<double>(logits.data[i]);
      const double t = static_cast<double>(target.data[i]);
      sum += softplus(x) - t * x;
      if (!dlogits.empty()) dlogits.data[i] = static_cast<T>(s * (sigmoid(x) - t));
    }
    add_loss(loss, s * sum);
  }

  void reparameterize(CMat<T> mu_logvar, uint64_t seed, uint64_t stream, Mat<T> eps,
                      Mat<T> z) override {
    const OpScope prof(this, "reparameterize");
    VAE_CHECK(mu_logvar.cols % 2 == 0, "reparameterize: mu_logvar must have 2L columns");
    const int64_t L = mu_logvar.cols / 2;
    VAE_CHECK(z.rows == mu_logvar.rows && z.cols == L, "reparameterize: z must be B x L");
    VAE_CHECK(eps.empty() || same_shape(eps, z), "reparameterize: eps must be B x L");
    for (int64_t r = 0; r < z.rows; ++r) {
      const T* mu = mu_logvar.data + r * 2 * L;
      const T* lv = mu + L;
      for (int64_t j = 0; j < L; ++j) {
        const T e = static_cast<T>(philox_normal(seed, stream, static_cast<uint64_t>(r * L + j)));
        if (!eps.empty()) eps.data[r * L + j] = e;
        z.data[r * L + j] = static_cast<T>(static_cast<double>(mu[j]) +
                                           static_cast<double>(e) * std::exp(0.5 * lv[j]));
      }
    }
  }

  void reparam_kl_backward(CMat<T> mu_logvar, CMat<T> eps, CMat<T> dz, T kl_scale,
                           Mat<T> d_mu_logvar, Mat<T> loss) override {
    const OpScope prof(this, "reparam_kl_backward");
    VAE_CHECK(mu_logvar.cols % 2 == 0, "reparam_kl_backward: mu_logvar must have 2L columns");
    const int64_t B = mu_logvar.rows, L = mu_logvar.cols / 2;
    VAE_CHECK(dz.empty() || (dz.rows == B && dz.cols == L), "reparam_kl_backward: dz must be B x L");
    VAE_CHECK(eps.empty() || (eps.rows == B && eps.cols == L),
              "reparam_kl_backward: eps must be B x L");
    VAE_CHECK(d_mu_logvar.empty() || same_shape(d_mu_logvar, mu_logvar),
              "reparam_kl_backward: d_mu_logvar must be B x 2L");
    check_loss(loss);
    const double ks = static_cast<double>(kl_scale);
    const bool have_dz = !dz.empty(), have_eps = !eps.empty();
    double kl = 0.0;
    for (int64_t r = 0; r < B; ++r) {
      const T* mu = mu_logvar.data + r * 2 * L;
      const T* lv = mu + L;
      for (int64_t j = 0; j < L; ++j) {
        const double m = mu[j], l = lv[j], el = std::exp(l);
        kl += 1.0 + l - m * m - el;
        if (d_mu_logvar.empty()) continue;
        const double g = have_dz ? static_cast<double>(dz.data[r * L + j]) : 0.0;
        double dmu = ks * m, dlv = ks * 0.5 * (el - 1.0);
        if (have_dz) dmu += g;
        if (have_dz && have_eps)
          dlv += g * static_cast<double>(eps.data[r * L + j]) * 0.5 * std::exp(0.5 * l);
        d_mu_logvar.data[r * 2 * L + j] = static_cast<T>(dmu);
        d_mu_logvar.data[r * 2 * L + L + j] = static_cast<T>(dlv);
      }
    }
    add_loss(loss, ks * (-0.5 * kl));
  }

  void regularize(CMat<T> p, T lambda, Reg kind, Mat<T> grad, Mat<T> loss) override {
    const OpScope prof(this, "regularize");
    VAE_CHECK(grad.empty() || same_shape(p, grad), "regularize: grad differs in shape from p");
    check_loss(loss);
    const double lam = static_cast<double>(lambda);
    double sq = 0.0;
    for (int64_t i = 0; i < p.size(); ++i) sq += static_cast<double>(p.data[i]) * p.data[i];
    if (kind == Reg::l2_squared) {
      add_loss(loss, 0.5 * lam * sq);
      if (!grad.empty())
        for (int64_t i = 0; i < p.size(); ++i) grad.data[i] += lambda * p.data[i];
    } else {
      const double nrm = std::sqrt(sq);
      add_loss(loss, 0.5 * lam * nrm);
      if (!grad.empty() && nrm > 0) {
        const double f = 0.5 * lam / nrm;
        for (int64_t i = 0; i < p.size(); ++i)
          grad.data[i] = static_cast<T>(static_cast<double>(grad.data[i]) + f * p.data[i]);
      }
    }
  }

  // ---- input transforms ---------------------------------------------------------------
  void dropout(CMat<T> x, T q, uint64_t seed, uint64_t stream, Mat<T> y) override {
    const OpScope prof(this, "dropout");
    VAE_CHECK(same_shape(x, y), "dropout: x and y differ in shape");
    VAE_CHECK(q >= T(0) && q <= T(1), "dropout: rate must lie in [0, 1]");
    const int64_t n = x.size();
    if (q >= T(1)) {
      for (int64_t i = 0; i < n; ++i) y.data[i] = x.data[i] * T(0);
      return;
    }
    const T keep_scale = T(1) / (T(1) - q);
    // One Philox block gives the draws of four consecutive elements (philox_u32's layout).
    for (int64_t i0 = 0; i0 < n; i0 += 4) {
      const Philox4 b = philox_block(seed, stream, static_cast<uint64_t>(i0) >> 2);
      const int64_t end = std::min<int64_t>(i0 + 4, n);
      for (int64_t i = i0; i < end; ++i) {
        const T u = static_cast<T>(philox_word_uniform(b.v[i & 3]));
        y.data[i] = x.data[i] * (u > q ? keep_scale : T(0));
      }
    }
  }

  void l2_normalize_rows(CMat<T> x, Mat<T> y) override {
    const OpScope prof(this, "l2_normalize_rows");
    VAE_CHECK(same_shape(x, y), "l2_normalize_rows: x and y differ in shape");
    const int64_t cols = x.cols;
    for (int64_t r = 0; r < x.rows; ++r) {
      const T* xr = x.data + r * cols;
      T* yr = y.data + r * cols;
      double sq = 0.0;
      for (int64_t j = 0; j < cols; ++j) sq += static_cast<double>(xr[j]) * xr[j];
      const double nrm = std::sqrt(sq);
      for (int64_t j = 0; j < cols; ++j)
        yr[j] = nrm > 0 ? static_cast<T>(static_cast<double>(xr[j]) / nrm) : T(0);
    }
  }

  void csr_rows_to_dense(CsrView<T> csr, CMat<int32_t> rows, Mat<T> y) override {
    const OpScope prof(this, "csr_rows_to_dense");
    check_index_vector(rows, y.rows, "csr_rows_to_dense");
    VAE_CHECK(y.cols == csr.cols, "csr_rows_to_dense: y must have csr.cols columns");
    std::fill(y.data, y.data + y.size(), T(0));
    for (int64_t r = 0; r < y.rows; ++r) {
      const int32_t s = rows.data[r];
      VAE_CHECK(s >= 0 && s < csr.rows, "csr_rows_to_dense: row index out of range");
      T* yr = y.data + r * y.cols;
      for (int64_t e = csr.indptr[s]; e < csr.indptr[s + 1]; ++e) yr[csr.indices[e]] = csr.values[e];
    }
  }

  void take_rows(CMat<int32_t> src, int64_t offset, Mat<int32_t> dst) override {
    const OpScope prof(this, "take_rows");
    VAE_CHECK(offset >= 0 && offset + dst.size() <= src.size(), "take_rows: offset + n exceeds the source");
    std::copy(src.data + offset, src.data + offset + dst.size(), dst.data);
  }

  // ---- sparse first layer -------------------------------------------------------------
  void csr_row_norms(CsrView<T> csr, CMat<int32_t> rows, Mat<double> norms) override {
    const OpScope prof(this, "csr_row_norms");
    const int64_t n = rows.size();
    check_index_vector(rows, n, "csr_row_norms");
    VAE_CHECK(norms.size() == n && (norms.cols == 1 || norms.rows == 1 || n == 0),
              "csr_row_norms: norms must be n x 1");
    for (int64_t r = 0; r < n; ++r) {
      const int32_t s = rows.data[r];
      VAE_CHECK(s >= 0 && s < csr.rows, "csr_row_norms: row index out of range");
      double sq = 0.0;
      for (int64_t e = csr.indptr[s]; e < csr.indptr[s + 1]; ++e)
        sq += static_cast<double>(csr.values[e]) * csr.values[e];
      norms.data[r] = std::sqrt(sq);
    }
  }

  void csr_linear_forward(const CsrBatch<T>& x, CMat<T> w, Mat<T> y) override {
    const OpScope prof(this, "csr_linear_forward");
    const int64_t n = x.n(), H = w.rows, I = w.cols;
    VAE_CHECK(I == x.csr.cols, "csr_linear_forward: w must have csr.cols columns");
    VAE_CHECK(y.rows == n && y.cols == H, "csr_linear_forward: y must be n x w.rows");
    const BatchEntries b = batch_entries(x, "csr_linear_forward");
    if (exact_sums()) csr_forward<double>(b, w, y);
    else csr_forward<T>(b, w, y);
  }

  void csr_linear_weight_grad(const CsrBatch<T>& x, CMat<T> dy, Mat<T> dw) override {
    const OpScope prof(this, "csr_linear_weight_grad");
    const int64_t n = x.n(), H = dy.cols, I = x.csr.cols;
    VAE_CHECK(dy.rows == n, "csr_linear_weight_grad: dy must have one row per batch row");
    VAE_CHECK(dw.rows == H && dw.cols == I, "csr_linear_weight_grad: dw must be dy.cols x csr.cols");
    const BatchEntries b = batch_entries(x, "csr_linear_weight_grad");
    if (exact_sums()) csr_weight_grad<double>(b, dy, dw);
    else csr_weight_grad<T>(b, dy, dw);
  }

  // ---- optimiser ----------------------------------------------------------------------
  void adam_step(Mat<T> params, CMat<T> grads, Mat<T> m, Mat<T> v, const AdamConfig& cfg,
                 int64_t step) override {
    const OpScope prof(this, "adam_step");
    VAE_CHECK(same_shape(params, grads) && same_shape(params, m) && same_shape(params, v),
              "adam_step: params, grads, m, v differ in shape");
    VAE_CHECK(step >= 1, "adam_step: step is 1-based");
    AdamScalarsD a;
    a.b1 = cfg.beta1;
    a.b2 = cfg.beta2;
    a.wd = cfg.weight_decay;
    a.eps = cfg.eps;
    a.step_size = cfg.lr / (1.0 - std::pow(a.b1, static_cast<double>(step)));
    a.sqrt_bc2 = std::sqrt(1.0 - std::pow(a.b2, static_cast<double>(step)));
    a.shrink = cfg.decoupled ? 1.0 - cfg.lr * a.wd : 1.0;
    a.decoupled = cfg.decoupled;
    adam_update(params.data, grads.data, m.data, v.data, params.size(), a);
  }

  // ---- evaluation ---------------------------------------------------------------------
  void topk(CMat<T> scores, CsrView<T> exclude, CMat<int32_t> exclude_rows, int k,
            Mat<int32_t> idx, Mat<T> val) override {
    const OpScope prof(this, "topk");
    const int64_t n = scores.rows, m = scores.cols;
    VAE_CHECK(k >= 0, "topk: k must be non-negative");
    VAE_CHECK(idx.rows == n && idx.cols == k, "topk: idx must be rows x k");
    VAE_CHECK(val.empty() || (val.rows == n && val.cols == k), "topk: val must be rows x k");
    const bool excluding = exclude.rows > 0;
    if (excluding) {
      check_index_vector(exclude_rows, n, "topk");
      VAE_CHECK(exclude.cols == m, "topk: exclude must have as many columns as scores");
    }
    if (excluding)  // checked here, before any row runs on the pool
      for (int64_t r = 0; r < n; ++r)
        VAE_CHECK(exclude_rows.data[r] >= 0 && exclude_rows.data[r] < exclude.rows, "topk: exclude row out of range");
    // Rows are independent: blocks of them on the GEMM pool, each writing only its own rows.
    for_row_blocks(n, m, [&](int64_t r0, int64_t r1) {
      std::vector<int32_t> cand;
      cand.reserve(static_cast<size_t>(m));
      for (int64_t r = r0; r < r1; ++r) {
        const T* s = scores.data + r * m;
        cand.clear();
        if (excluding) {
          const int32_t er = exclude_rows.data[r];
          // Walk the (ascending) excluded indices alongside the items.
          int64_t e = exclude.indptr[er];
          const int64_t e_end = exclude.indptr[er + 1];
          for (int32_t j = 0; j < m; ++j) {
            while (e < e_end && exclude.indices[e] < j) ++e;
            if (e < e_end && exclude.indices[e] == j) continue;
            cand.push_back(j);
          }
        } else {
          for (int32_t j = 0; j < m; ++j) cand.push_back(j);
        }
        const int64_t kk = std::min<int64_t>(k, static_cast<int64_t>(cand.size()));
        const RankBefore<T> before{s};
        if (kk < static_cast<int64_t>(cand.size()))
          std::nth_element(cand.begin(), cand.begin() + kk, cand.end(), before);
        std::sort(cand.begin(), cand.begin() + kk, before);
        int32_t* ir = idx.data + r * k;
        T* vr = val.empty() ? nullptr : val.data + r * k;
        for (int64_t i = 0; i < k; ++i) {
          ir[i] = i < kk ? cand[i] : -1;
          if (vr) vr[i] = i < kk ? s[cand[i]] : -std::numeric_limits<T>::infinity();
        }
      }
    });
  }

  void heldout_metrics(CMat<int32_t> idx, CsrView<T> target, CMat<int32_t> target_rows,
                       const std::vector<int>& ks, Mat<T> out) override {
    const OpScope prof(this, "heldout_metrics");
    const int64_t n = idx.rows, kmax_avail = idx.cols;
    check_index_vector(target_rows, n, "heldout_metrics");
    const int64_t nk = static_cast<int64_t>(ks.size());
    VAE_CHECK(out.rows == n && out.cols == 2 * nk, "heldout_metrics: out must be rows x 2|ks|");
    int64_t kmax = 0;
    for (int k : ks) {
      VAE_CHECK(k >= 1 && k <= kmax_avail, "heldout_metrics: every k must lie in [1, idx.cols]");
      kmax = std::max<int64_t>(kmax, k);
    }
    std::vector<double> disc(static_cast<size_t>(kmax));
    for (int64_t i = 0; i < kmax; ++i) disc[i] = rank_discount(i);
    std::vector<char> hit(static_cast<size_t>(kmax));
    for (int64_t r = 0; r < n; ++r) {
      const int32_t tr = target_rows.data[r];
      VAE_CHECK(tr >= 0 && tr < target.rows, "heldout_metrics: target row out of range");
      const int64_t b = target.indptr[tr], e = target.indptr[tr + 1];
      int64_t npos = 0;
      for (int64_t p = b; p < e; ++p) npos += target.values[p] > T(0);
      T* o = out.data + r * out.cols;
      if (npos == 0) {
        std::fill(o, o + out.cols, T(0));
        continue;
      }
      const int32_t* row = idx.data + r * idx.cols;
      for (int64_t i = 0; i < kmax; ++i) {
        hit[i] = 0;
        if (row[i] < 0) continue;
        const int32_t* lo = target.indices + b;
        const int32_t* it = std::lower_bound(lo, target.indices + e, row[i]);
        hit[i] = it != target.indices + e && *it == row[i] && target.values[it - target.indices] > T(0);
      }
      for (int64_t q = 0; q < nk; ++q) {
        const int64_t k = ks[q];
        double hits = 0.0, dcg = 0.0, idcg = 0.0;
        for (int64_t i = 0; i < k; ++i) {
          hits += hit[i];
          if (hit[i]) dcg += disc[i];
        }
        const int64_t ideal = std::min(k, npos);
        for (int64_t i = 0; i < ideal; ++i) idcg += disc[i];
        o[q] = static_cast<T>(hits / static_cast<double>(ideal));
        o[nk + q] = static_cast<T>(dcg / idcg);
      }
    }
  }

  // sklearn.metrics.ndcg_score(y_true=[truth], y_score=[scores], k=k) per row, including its
  // tie averaging (_tie_averaged_dcg): items with equal scores form a group whose members all
  // get the group's mean gain; a group covering ranks [s, e) contributes mean gain × Σ of the
  // discounts 1/log2(p + 2) over those of its ranks that are < k. IDCG ranks the true gains
  // themselves (descending, ties irrelevant). IDCG = 0 → 0.
  void graded_metrics(CMat<T> scores, CMat<T> truth, int k, Mat<T> out) override {
    const OpScope prof(this, "graded_metrics");
    VAE_CHECK(same_shape(scores, truth), "graded_metrics: scores and truth differ in shape");
    VAE_CHECK(k >= 1, "graded_metrics: k must be positive");
    VAE_CHECK(out.rows == scores.rows && out.cols == 2, "graded_metrics: out must be rows x 2");
    const int64_t m = scores.cols;
    const int64_t kk = std::min<int64_t>(k, m);
    std::vector<double> disc(static_cast<size_t>(kk));
    for (int64_t i = 0; i < kk; ++i) disc[i] = rank_discount(i);
    std::vector<int32_t> order(static_cast<size_t>(m));
    std::vector<double> gains(static_cast<size_t>(m));
    for (int64_t r = 0; r < scores.rows; ++r) {
      const T* s = scores.data + r * m;
      const T* t = truth.data + r * m;
      T* o = out.data + r * 2;
      // IDCG and the recall denominator from the true gains alone.
      double tsum = 0.0;
      for (int64_t j = 0; j < m; ++j) {
        gains[j] = static_cast<double>(t[j]);
        tsum += gains[j];
      }
      std::partial_sort(gains.begin(), gains.begin() + kk, gains.end(), std::greater<double>());
      double idcg = 0.0;
      for (int64_t i = 0; i < kk; ++i) idcg += gains[i] * disc[i];

      // The top kk ranks in order (ties by lower index, as topk).
      std::iota(order.begin(), order.end(), 0);
      const RankBefore<T> before{s};
      if (kk < m) std::nth_element(order.begin(), order.begin() + kk, order.end(), before);
      std::sort(order.begin(), order.begin() + kk, before);

      double hit_gain = 0.0;
      for (int64_t i = 0; i < kk; ++i) hit_gain += static_cast<double>(t[order[i]]);

      double dcg = 0.0;
      for (int64_t g0 = 0; g0 < kk;) {
        // A group of equal scores occupying ranks [g0, g1) within the top kk.
        const T sv = s[order[g0]];
        const bool sv_nan = std::isnan(sv);
        auto same = [&](int32_t j) { return sv_nan ? std::isnan(s[j]) : s[j] == sv; };
        int64_t g1 = g0;
        double gsum = 0.0, dsum = 0.0;
        while (g1 < kk && same(order[g1])) {
          gsum += static_cast<double>(t[order[g1]]);
          dsum += disc[g1];
          ++g1;
        }
        int64_t count = g1 - g0;
        // Only the group reaching rank kk can continue past it: its members ranked after the
        // cut still share (dilute) the group's mean gain.
        if (g1 == kk)
          for (int64_t i = kk; i < m; ++i)
            if (same(order[i])) {
              gsum += static_cast<double>(t[order[i]]);
              ++count;
            }
        dcg += gsum / static_cast<double>(count) * dsum;
        g0 = g1;
      }
      o[0] = static_cast<T>(idcg == 0.0 ? 0.0 : dcg / idcg);
      o[1] = static_cast<T>(tsum == 0.0 ? 0.0 : hit_gain / tsum);
    }
  }

  void rating_errors(CMat<T> pred, CsrView<T> target, CMat<int32_t> target_rows, T lo, T hi,
                     Mat<T> out) override {
    const OpScope prof(this, "rating_errors");
    check_index_vector(target_rows, pred.rows, "rating_errors");
    VAE_CHECK(target.cols == pred.cols, "rating_errors: target and pred differ in columns");
    VAE_CHECK(out.rows == pred.rows && out.cols == 3, "rating_errors: out must be rows x 3");
    VAE_CHECK(lo <= hi, "rating_errors: empty clipping range");
    for (int64_t r = 0; r < pred.rows; ++r) {
      const int32_t tr = target_rows.data[r];
      VAE_CHECK(tr >= 0 && tr < target.rows, "rating_errors: target row out of range");
      const T* p = pred.data + r * pred.cols;
      double sse = 0.0, sae = 0.0;
      const int64_t b = target.indptr[tr], e = target.indptr[tr + 1];
      for (int64_t q = b; q < e; ++q) {
        const double pv = static_cast<double>(std::clamp(p[target.indices[q]], lo, hi));
        const double err = pv - static_cast<double>(target.values[q]);
        sse += err * err;
        sae += std::fabs(err);
      }
      out.data[r * 3 + 0] = static_cast<T>(sse);
      out.data[r * 3 + 1] = static_cast<T>(sae);
      out.data[r * 3 + 2] = static_cast<T>(e - b);
    }
  }

 private:
  GemmPrecision precision_;
  std::vector<double> wide_a_, wide_b_, wide_c_;  // exact GEMM's double operands, reused

  // --profile-ops on the CPU: every op is synchronous, so the wall time around it is its time.
  bool profiling_ = false;
  std::map<std::string, OpTime> op_totals_;  // by op, since the last op_profile()
  struct OpScope {
    CpuBackend* be;
    const char* op;
    std::chrono::steady_clock::time_point start;
    OpScope(CpuBackend* b, const char* name) : be(b), op(name) {
      if (be->profiling_) start = std::chrono::steady_clock::now();
    }
    ~OpScope() {
      if (!be->profiling_) return;
      OpTime& t = be->op_totals_[op];
      t.op = op;
      ++t.calls;
      t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;
  };

  // Rows of W / dW the sparse first layer handles per pass over the batch entries: as many as
  // fit in about 256 KiB (a core's L2 on small parts), at most kMaxRowBlock.
  static constexpr int64_t kMaxRowBlock = 8;
  static int64_t row_block(int64_t cols) {
    const int64_t bytes = std::max<int64_t>(1, cols) * static_cast<int64_t>(sizeof(T));
    return std::clamp<int64_t>((256 << 10) / bytes, 1, kMaxRowBlock);
  }

  // A CsrBatch's stored entries with their transformed values, batch row by batch row.
  struct BatchEntries {
    std::vector<int64_t> start;  // n + 1
    std::vector<int32_t> col;
    std::vector<T> val;
  };

  static BatchEntries batch_entries(const CsrBatch<T>& x, const char* what) {
    const int64_t n = x.n(), cols = x.csr.cols;
    const std::string w(what);
    check_index_vector(x.rows, n, what);
    VAE_CHECK(x.norms.empty() || (x.norms.size() == n && (x.norms.cols == 1 || x.norms.rows == 1)),
              w + ": norms must be n x 1 or empty");
    VAE_CHECK(x.dropout >= T(0) && x.dropout <= T(1), w + ": dropout rate must lie in [0, 1]");
    const T q = x.dropout;
    const bool drop = q > T(0), drop_all = q >= T(1);
    const T keep_scale = drop_all ? T(0) : T(1) / (T(1) - q);  // dropout()'s factor, in T
    BatchEntries b;
    b.start.assign(static_cast<size_t>(n) + 1, 0);
    for (int64_t r = 0; r < n; ++r) {
      const int32_t s = x.rows.data[r];
      VAE_CHECK(s >= 0 && s < x.csr.rows, w + ": row index out of range");
      b.start[r + 1] = b.start[r] + (x.csr.indptr[s + 1] - x.csr.indptr[s]);
    }
    b.col.resize(static_cast<size_t>(b.start[n]));
    b.val.resize(static_cast<size_t>(b.start[n]));
    for (int64_t r = 0; r < n; ++r) {
      const int64_t src = x.csr.indptr[x.rows.data[r]];
      const double nrm = x.norms.empty() ? 1.0 : x.norms.data[r];
      for (int64_t k = b.start[r]; k < b.start[r + 1]; ++k) {
        const int64_t e = src + (k - b.start[r]);
        const int32_t c = x.csr.indices[e];
        VAE_CHECK(c >= 0 && c < cols, w + ": column index out of range");
        T v = x.csr.values[e];
        // The dense path's l2_normalize_rows, then dropout, on this one element.
        if (!x.norms.empty()) v = nrm > 0 ? static_cast<T>(static_cast<double>(v) / nrm) : T(0);
        if (drop_all) {
          v = v * T(0);
        } else if (drop) {
          const T u = static_cast<T>(philox_uniform(x.seed, x.stream, static_cast<uint64_t>(r * cols + c)));
          v = v * (u > q ? keep_scale : T(0));
        }
        b.col[k] = c;
        b.val[k] = v;
      }
    }
    return b;
  }

  // Under exact precision a float layer's sums run in double, rounded once: the sparse first
  // layer then gives the dense exact GEMM's values (each product of two floats is exact in
  // double; only the order of the double sums differs), so --sparse-input does not move results.
  bool exact_sums() const { return std::is_same_v<T, float> && precision_ == GemmPrecision::exact; }

  // y = X · Wᵀ with Acc sums. Rows of W outermost, a few at a time (row_block: they stay in cache
  // while every batch entry gathers from them, and each entry is read once per block). Each
  // y[r][h] sums its entries in column order, product then sum rounded separately (the GPU
  // kernel does the same).
  template <typename Acc>
  void csr_forward(const BatchEntries& b, CMat<T> w, Mat<T> y) const {
    const int64_t n = y.rows, H = w.rows, I = w.cols;
    const int64_t rb = row_block(I);
    for (int64_t h = 0; h < H; h += rb) {
      const int64_t m = std::min(rb, H - h);
      const T* wr[kMaxRowBlock];
      for (int64_t j = 0; j < m; ++j) wr[j] = w.data + (h + j) * I;
      for (int64_t r = 0; r < n; ++r) {
        Acc acc[kMaxRowBlock] = {};
        for (int64_t e = b.start[r]; e < b.start[r + 1]; ++e) {
          const int32_t c = b.col[e];
          const Acc v = b.val[e];
          for (int64_t j = 0; j < m; ++j) acc[j] += v * static_cast<Acc>(wr[j][c]);
        }
        for (int64_t j = 0; j < m; ++j) y.data[r * H + h + j] = static_cast<T>(acc[j]);
      }
    }
  }

  // dW = dyᵀ · X with Acc sums. Rows of dW are filled a few at a time while they are in cache
  // (through an Acc buffer when Acc is wider than T); each entry adds its batch rows in
  // ascending order.
  template <typename Acc>
  void csr_weight_grad(const BatchEntries& b, CMat<T> dy, Mat<T> dw) const {
    const int64_t n = dy.rows, H = dy.cols, I = dw.cols;
    const int64_t rb = row_block(I);
    std::vector<Acc> wide(std::is_same_v<Acc, T> ? 0 : static_cast<size_t>(std::min(rb, H) * I));
    for (int64_t h = 0; h < H; h += rb) {
      const int64_t m = std::min(rb, H - h);
      Acc* dwr[kMaxRowBlock];
      for (int64_t j = 0; j < m; ++j) {
        if constexpr (std::is_same_v<Acc, T>) dwr[j] = dw.data + (h + j) * I;
        else dwr[j] = wide.data() + j * I;
        std::fill(dwr[j], dwr[j] + I, Acc(0));
      }
      for (int64_t r = 0; r < n; ++r) {
        Acc g[kMaxRowBlock];
        for (int64_t j = 0; j < m; ++j) g[j] = dy.data[r * H + h + j];
        for (int64_t e = b.start[r]; e < b.start[r + 1]; ++e) {
          const int32_t c = b.col[e];
          const Acc v = b.val[e];
          for (int64_t j = 0; j < m; ++j) dwr[j][c] += g[j] * v;
        }
      }
      if constexpr (!std::is_same_v<Acc, T>)
        for (int64_t j = 0; j < m; ++j)
          for (int64_t c = 0; c < I; ++c) dw.data[(h + j) * I + c] = static_cast<T>(dwr[j][c]);
    }
  }

};

template <typename T>
std::unique_ptr<Backend<T>> make_cpu_backend(GemmPrecision precision) {
  return std::make_unique<CpuBackend<T>>(precision);
}

template std::unique_ptr<Backend<float>> make_cpu_backend<float>(GemmPrecision);
template std::unique_ptr<Backend<double>> make_cpu_backend<double>(GemmPrecision);

}  // namespace vae
