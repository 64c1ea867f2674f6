// Exact t-SNE to two dimensions, following scikit-learn's TSNE(method="exact", init="random"):
// squared Euclidean input distances, per-point binary search for the conditional Gaussian of the
// requested perplexity (tolerance 1e-5, at most 100 steps), symmetrised joint P, early
// exaggeration 12 for 250 iterations with momentum 0.5, then momentum 0.8, learning rate
// 'auto' = max(N / early_exaggeration / 4, 50), delta-bar-delta gains (min gain 0.01), and the
// same progress checks every 50 iterations (stop after 300 iterations without progress or when
// the gradient norm falls under 1e-7). Initial Y ~ N(0, (1e-4)²) from Philox RngStream::tsne.
// The O(n²) gradient runs through AnalysisOps::tsne_gradient. For large n on the CPU,
// tsne_barnes_hut (analysis/tsne_bh.h) approximates it in O(n log n) with the same optimiser.
#pragma once
#include <cstdint>
#include <functional>
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

// The pieces tsne() shares with tsne_barnes_hut() (analysis/tsne_bh.h).

// tsne()'s checks of x and o (throwing as documented there) and its subsample: returns the rows
// to embed (tsne_subsample); when they are not all of x, `rows` receives a copy of them (m × d),
// else it is left empty.
std::vector<int32_t> tsne_checked_rows(const std::vector<float>& x, int64_t n, int64_t d,
                                       const TsneOptions& o, std::vector<float>& rows);

// sklearn's _binary_search_perplexity for one row of len squared distances: fills prow (len)
// with the conditional Gaussian whose entropy matches desired_entropy = log(perplexity).
// skip = the entry to leave out (the point itself, in a full row of distances), or −1.
void tsne_conditional_row(const float* sqd, int64_t len, int64_t skip, double desired_entropy,
                          double* prow);

// Writes grad (m × 2) of KL(exaggeration·P || Q) at y (m × 2); returns that KL when compute_kl
// (the optimiser asks every 50 iterations and at the end of each phase), else anything.
using TsneGradient =
    std::function<double(const float* y, float exaggeration, float* grad, bool compute_kl)>;

// The optimisation of tsne_from_probabilities with the gradient left to the caller: Y from
// o.seed, learning rate, the two phases, gains, checks and stops. Throws UsageError for
// iterations < 1 or exaggeration_iterations < 0. indices = 0 … m − 1.
TsneResult tsne_optimise(int64_t m, const TsneOptions& o, const TsneGradient& gradient);

}  // namespace vae
