// The two O(n·k·d) / O(n²) hot loops of the latent-space analysis behind an interface, so the
// CUDA backend can plug in a twin (same semantics, host pointers in and out) while K-Means and
// t-SNE drivers stay backend-independent.
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
  // k centres c (k × d), computed in GEMM form ||x||² + ||c||² − 2·x·c; ties go to the lower
  // centre index; dist2[i] = that minimum, clamped at 0 (cancellation can make it negative).
  // dist2 may be nullptr. All pointers are host pointers.
  virtual void kmeans_assign(const float* x, int64_t n, int64_t d, const float* c, int k,
                             int32_t* labels, float* dist2) = 0;

  // Exact t-SNE (Student-t with one degree of freedom, 2-D embedding), as scikit-learn's
  // _kl_divergence: p is the dense symmetric joint-probability matrix (n × n, zero diagonal,
  // summing to 1), multiplied by `exaggeration` on the fly; y is n × 2. Writes grad (n × 2) =
  // 4 Σ_j (p_ij·exaggeration − q_ij)(1 + ||y_i − y_j||²)⁻¹ (y_i − y_j) and returns
  // KL(exaggeration·P || Q) with sklearn's clamping of p and q at machine epsilon (double) when
  // compute_kl, else NaN (the n² logarithms cost more than the gradient; t-SNE needs the KL only
  // every 50 iterations, as sklearn).
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

}  // namespace vae
