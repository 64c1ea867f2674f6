// Barnes-Hut t-SNE to two dimensions on the CPU, following scikit-learn's
// TSNE(method="barnes_hut", init="random"): P over the k = min(n − 1, ⌊3·perplexity + 1⌋)
// nearest neighbours only (the same binary search as the exact path), symmetrised into a sparse
// joint P; attractive forces exact over that P, repulsive forces and the normaliser Z from a
// quadtree whose cells are summarised by their centre of mass when
// max cell width² < theta² · distance² (sklearn's _barnes_hut_tsne / _quad_tree). The optimiser
// is tsne()'s (tsne_optimise), so the schedule, learning rate, initial Y and stops are the same.
// Time O(n²·d) once for the brute-force neighbours, then O(n log n) per iteration; memory O(n·k).
// Deterministic for a seed whatever the number of threads (VAE_CPU_THREADS): every point's
// forces are summed by one thread in a fixed order, and the per-point sums are added in index
// order.
#pragma once
#include <cstdint>
#include <vector>

#include "analysis/tsne.h"

namespace vae {

// Each row's k nearest other rows by squared Euclidean distance, nearest first, ties to the lower
// index. sqdist is the distance as the exact path computes it (double, stored as float32).
struct TsneNeighbours {
  int64_t n = 0, k = 0;
  std::vector<int32_t> index;  // n × k
  std::vector<float> sqdist;   // n × k
};

// The symmetric joint probabilities as a CSR matrix: row i holds p_ij for the j that are among
// i's neighbours or have i among theirs (at least k entries), columns ascending, no diagonal;
// all entries sum to 1.
struct TsneSparseP {
  int64_t n = 0;
  std::vector<int64_t> row_start;  // n + 1
  std::vector<int32_t> col;
  std::vector<float> val;
};

// sklearn's n_neighbors for barnes_hut: min(n − 1, int(3·perplexity + 1)).
int64_t tsne_bh_neighbour_count(int64_t n, double perplexity);

// Brute force in row blocks: ||x_i||² + ||x_j||² − 2·x_i·x_j through reference_gemm (double)
// picks the neighbours, whose distances are then recomputed exactly. x is n × d, 1 ≤ k < n.
TsneNeighbours tsne_nearest_neighbours(const std::vector<float>& x, int64_t n, int64_t d, int64_t k);

// sklearn's _joint_probabilities_nn: the conditional Gaussian of each row over its neighbours
// (tsne_conditional_row), then P = (P + Pᵀ) / sum(P + Pᵀ).
TsneSparseP tsne_sparse_joint_probabilities(const TsneNeighbours& nn, double perplexity);

// Writes grad (n × 2) = 4 (Σ_j exaggeration·p_ij·w_ij (y_i − y_j) − Σ_j w_ij² (y_i − y_j) / Z)
// with w_ij = (1 + ||y_i − y_j||²)⁻¹, the second sum and Z = Σ_{i≠j} w_ij from the quadtree.
// Returns, when compute_kl, sklearn's BH estimate of KL(exaggeration·P || Q): the sum over the
// stored p_ij of p·log(max(p, FLT_MIN) / max(w_ij / Z, FLT_MIN)); else NaN. theta = 0 visits
// every point (exact repulsion). y is n × 2.
double tsne_bh_gradient(const TsneSparseP& p, const float* y, float exaggeration, double theta,
                        float* grad, bool compute_kl);

// tsne_optimise with tsne_bh_gradient on p; indices = 0 … n − 1.
TsneResult tsne_bh_from_probabilities(const TsneSparseP& p, const TsneOptions& o, double theta);

// Barnes-Hut t-SNE of x (n × d, row-major). Throws as tsne() does (the same subsample of
// o.max_points rows, the same UsageError / VaeError cases), and UsageError unless 0 ≤ theta ≤ 1
// (sklearn's range for angle).
TsneResult tsne_barnes_hut(const std::vector<float>& x, int64_t n, int64_t d, const TsneOptions& o,
                           double theta = 0.5);

}  // namespace vae
