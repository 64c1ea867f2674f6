// Cluster and embedding quality scores with scikit-learn's definitions.
#pragma once
#include <cstdint>
#include <vector>

namespace vae {

// Adjusted Rand index (Hubert & Arabie 1985), as sklearn.metrics.adjusted_rand_score: label
// values are arbitrary integers; 1.0 when the pair-confusion matrix has no disagreements
// (including the degenerate one-cluster / all-singletons cases). VaeError on size mismatch.
double adjusted_rand_index(const std::vector<int32_t>& labels_a, const std::vector<int32_t>& labels_b);

// sklearn.manifold.trustworthiness(X, Y, n_neighbors) with Euclidean distances: x is n × dx,
// y is n × dy (n = x.size() / dx). Ties in the high-dimensional ranking go to the lower index.
// UsageError when n_neighbors < 1 or n_neighbors ≥ n / 2 (as sklearn); O(n² log n) time, O(n)
// extra memory.
double trustworthiness(const std::vector<float>& x, int64_t dx, const std::vector<float>& y,
                       int64_t dy, int n_neighbors = 5);

}  // namespace vae
