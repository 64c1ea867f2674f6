// Exact t-SNE to two dimensions, following scikit-learn's TSNE(method="exact", init="random"):
// squared Euclidean input distances, per-point binary search for the conditional Gaussian of the
// requested perplexity (tolerance 1e-5, at most 100 steps), symmetrised joint P, early
// exaggeration 12 for 250 iterations with momentum 0.5, then momentum 0.8, learning rate
// 'auto' = max(N / early_exaggeration / 4, 50), delta-bar-delta gains (min gain 0.01), and the
// same progress checks every 50 iterations (stop after 300 iterations without progress or when
// the gradient norm falls under 1e-7). Initial Y ~ N(0, (1e-4)²) from Philox RngStream::tsne.
// The O(n²) gradient runs through AnalysisOps::tsne_gradient.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "analysis/analysis_ops.h"

namespace vae {

struct TsneOptions {
  double perplexity = 30.0;
  int iterations = 1000;               // total, including the early-exaggeration phase
  int exaggeration_iterations = 250;
  double early_exaggeration = 12.0;
  double learning_rate = 0.0;          // ≤ 0 = 'auto'
  uint64_t seed = 1;
  int64_t max_points = 10000;          // more rows → a seeded random subsample of this size; ≤ 0 = no cap
};

struct TsneCheckpoint {
  int iteration;  // 1-based iteration count at which kl was measured
  double kl;      // KL divergence; during early exaggeration against the exaggerated P (as sklearn)
};

struct TsneResult {
  int64_t n = 0;                       // points embedded
  std::vector<float> y;                // n × 2
  double kl_divergence = 0;            // at the last iteration (un-exaggerated P unless stopped early)
  std::vector<TsneCheckpoint> kl_history;  // every 50 iterations and the last one
  std::vector<int32_t> indices;        // rows of x that were embedded, ascending (all when n ≤ max_points)
  int iterations = 0;                  // iterations run
  double learning_rate = 0;            // the rate used
};

// x is n × d row-major. Throws UsageError when perplexity ≥ number of embedded points, or
// perplexity ≤ 0, iterations < 1, n < 2; VaeError when x.size() ≠ n·d or x is not finite.
TsneResult tsne(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d,
                const TsneOptions& o);

// The optimisation of tsne() alone, from a joint-probability matrix p (n × n, as
// tsne_joint_probabilities returns; unchanged during the call): Y initialised from o.seed, the
// gradients bracketed by ops.tsne_begin/tsne_end. o.perplexity and o.max_points are unused;
// indices = 0 … n − 1. tsne() is subsample + joint probabilities + this.
TsneResult tsne_from_probabilities(AnalysisOps& ops, const std::vector<float>& p, int64_t n,
                                   const TsneOptions& o);

// The symmetrised joint probabilities of x (n × n dense, sums to 1, zero diagonal, entries
// clamped at machine epsilon off the diagonal) for a perplexity — sklearn's _joint_probabilities.
std::vector<float> tsne_joint_probabilities(const std::vector<float>& x, int64_t n, int64_t d,
                                            double perplexity);

// The sorted random subsample tsne() uses when n > max_points (all rows otherwise).
std::vector<int32_t> tsne_subsample(int64_t n, int64_t max_points, uint64_t seed);

}  // namespace vae
