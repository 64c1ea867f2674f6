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

// sklearn.metrics.silhouette_score(X, labels) with Euclidean distances, over the rows in
// `sample` (all n rows when empty; sklearn's sample_size draws such a subset, and the score then
// compares the sampled rows with each other only). For row i in cluster A: a = mean distance to
// the other sampled members of A, b = the smallest mean distance to the sampled members of
// another cluster, s = (b − a) / max(a, b), 0 when i is A's only sampled member (and when
// a = b = 0). Distances in double; label values are arbitrary integers. UsageError unless the
// sample holds 2 ≤ clusters ≤ rows − 1 (as sklearn); VaeError on inconsistent sizes, an index
// out of range or one given twice.
// O(m² d) time for m sampled rows, O(m d) memory.
double silhouette_score(const std::vector<float>& x, int64_t d, const std::vector<int32_t>& labels,
                        const std::vector<int32_t>& sample = {});

// The rows silhouette scores of one K-Means scan are taken over: at most max_rows of n,
// a seeded uniform subset (RngStream::silhouette), sorted; all rows when n ≤ max_rows.
std::vector<int32_t> silhouette_sample(int64_t n, int64_t max_rows, uint64_t seed);

// Active units (Burda et al. 2016), the VAE literature's check of a collapsed posterior: the
// dimensions of the latent means z (n × dim, row-major) whose population variance across the n
// users exceeds kActiveUnitVariance. 0 for fewer than two users.
constexpr double kActiveUnitVariance = 0.01;
int active_latent_units(const std::vector<float>& z, int64_t n, int64_t dim);

}  // namespace vae
