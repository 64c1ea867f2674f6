// The O(n·k·d) / O(n²) hot loops of the latent-space analysis behind an interface, so the CUDA
// backend can plug in a twin (same semantics, host pointers in and out) while the K-Means and
// t-SNE drivers stay backend-independent. Sessions (kmeans_begin/end, tsne_begin/end) let a
// device twin keep the big inputs resident instead of uploading them on every call.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace vae {

class AnalysisOps {
 public:
  virtual ~AnalysisOps() = default;
  virtual std::string name() const = 0;

  // For each of the n rows of x (n × d, row-major): labels[i] = argmin_j ||x_i − c_j||² over the
  // k centres c (k × d), computed in GEMM form ||x||² + ||c||² − 2·x·c with ||x||², ||c||² summed
  // in double and rounded to float, then (||x||² + ||c_j||²) + (−2·x·c_j) in float; ties go to
  // the lower centre index; dist2[i] = that minimum, clamped at 0 (cancellation can make it
  // negative). dist2 may be nullptr. All pointers are host pointers. Inside a K-Means session a
  // call whose x, n, d are the session's may use the resident copy of x.
  virtual void kmeans_assign(const float* x, int64_t n, int64_t d, const float* c, int k,
                             int32_t* labels, float* dist2) = 0;

  // K-Means session: x (n × d, host) must stay unchanged until kmeans_end; a device twin uploads
  // it (and its row norms) once. Sessions do not nest.
  virtual void kmeans_begin(const float* x, int64_t n, int64_t d) = 0;
  virtual void kmeans_end() = 0;

  // One Lloyd step on the session's x: labels = kmeans_assign(x, c) (kept by the ops), then
  // sums (k × d) = Σ of the rows of each cluster, accumulated in double, and counts (k) = cluster
  // sizes. Deterministic: the CPU adds rows in index order; a device twin in a fixed order that
  // depends on the sizes only (so sums may differ from the CPU's in the last double bits, never
  // between runs). Returns how many labels differ from those of the previous kmeans_step of the
  // session (n on its first step). Host pointers.
  virtual int64_t kmeans_step(const float* c, int k, double* sums, int64_t* counts) = 0;
  // The labels (n) of the last kmeans_step of the session.
  virtual void kmeans_step_labels(int32_t* labels) = 0;

  // Exact t-SNE (Student-t with one degree of freedom, 2-D embedding), as scikit-learn's
  // _kl_divergence: p is the dense symmetric joint-probability matrix (n × n, zero diagonal,
  // summing to 1), multiplied by `exaggeration` on the fly; y is n × 2. Writes grad (n × 2) =
  // 4 Σ_j (p_ij·exaggeration − q_ij)(1 + ||y_i − y_j||²)⁻¹ (y_i − y_j) and returns
  // KL(exaggeration·P || Q) with sklearn's clamping of p and q at machine epsilon (double) when
  // compute_kl, else NaN (the n² logarithms cost more than the gradient; t-SNE needs the KL only
  // every 50 iterations, as sklearn). Pair terms in double; a device twin sums them in another
  // but fixed order (differences to the CPU at the level of double rounding, none between runs).
  virtual double tsne_gradient(const float* p, const float* y, int64_t n, float exaggeration,
                               float* grad, bool compute_kl) = 0;

  // tsne() brackets its optimisation with these: every tsne_gradient call in between passes this
  // same p (unchanged), so a device twin can upload the n² matrix once instead of per iteration.
  // The CPU ignores them.
  virtual void tsne_begin(const float* /*p*/, int64_t /*n*/) {}
  virtual void tsne_end() {}
};

// The CPU reference implementation (cblas_sgemm when built with OpenBLAS, else the portable
// GEMM of the CPU backend).
std::unique_ptr<AnalysisOps> make_cpu_analysis_ops();

// The CUDA twin (kernels/analysis_ops_cuda.cu): cuBLAS GEMM + fused argmin for the assignment,
// deterministic per-block partial sums for the centres, P resident for t-SNE. Throws VaeError
// when no CUDA device is usable.
std::unique_ptr<AnalysisOps> make_cuda_analysis_ops();

// make_cuda_analysis_ops() when use_cuda, else make_cpu_analysis_ops().
std::unique_ptr<AnalysisOps> make_analysis_ops(bool use_cuda);

}  // namespace vae
