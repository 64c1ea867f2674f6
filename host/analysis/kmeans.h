// K-Means as scikit-learn's KMeans(algorithm="lloyd"): k-means++ seeding with
// 2 + floor(ln k) local trials, n_init restarts keeping the lowest inertia, Lloyd iterations until
// the squared centre shift falls to tol × mean feature variance or max_iter, empty clusters
// re-seeded from the points farthest from their centres. Random draws come from Philox
// (RngStream::kmeans), so results are reproducible for a seed on every platform (they are not
// sklearn's numbers for the same seed: the generators differ). Each call below runs inside one
// AnalysisOps K-Means session on x (kmeans_begin/kmeans_end), so a device twin uploads x once;
// a Lloyd iteration is one AnalysisOps::kmeans_step plus the k × d centre update on the host.
#pragma once
#include <cstdint>
#include <vector>

#include "analysis/analysis_ops.h"

namespace vae {

struct KMeansOptions {
  int k = 3;
  int n_init = 10;
  int max_iter = 300;
  double tol = 1e-4;  // relative: multiplied by the mean per-feature variance of x
  uint64_t seed = 1;
};

struct KMeansResult {
  int k = 0;
  int64_t d = 0;
  std::vector<float> centers;   // k × d
  std::vector<int32_t> labels;  // n, in [0, k)
  double inertia = 0;           // Σ_i ||x_i − centre(label_i)||² (double, direct differences)
  int iterations = 0;           // Lloyd iterations of the kept run
  int best_init = 0;            // which of the n_init runs was kept (0-based)
};

// x is n × d row-major. Throws UsageError for k < 1, k > n, n_init < 1, max_iter < 1, tol < 0;
// VaeError when x.size() ≠ n·d or x holds a non-finite value.
KMeansResult kmeans(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d,
                    const KMeansOptions& o);

// Lloyd iterations from the given initial centres (k × d, k = initial_centers.size() / d); o.k,
// o.n_init and o.seed are ignored. Lets CPU and GPU runs be compared from the same start.
KMeansResult kmeans_from_centers(AnalysisOps& ops, const std::vector<float>& x, int64_t n,
                                 int64_t d, const std::vector<float>& initial_centers,
                                 const KMeansOptions& o);

// k-means++ seeding alone (run r of kmeans() uses run = r): k × d centres.
std::vector<float> kmeans_plusplus(AnalysisOps& ops, const std::vector<float>& x, int64_t n,
                                   int64_t d, int k, uint64_t seed, uint64_t run = 0);

// Choosing k the notebook way: K-Means (the options of o, but k) for every k in [k_min, k_max],
// each with its inertia (the elbow) and its silhouette score (cluster_metrics.h) over one seeded
// sample of at most max_rows rows, the same rows for every k so that the scores compare.
// best_k is the k of the highest silhouette (ties: the smaller k); best its K-Means result.
struct KScanRow {
  int k = 0;
  double inertia = 0;
  double silhouette = 0;  // NaN when the sampled rows hold fewer than two of the clusters
  int iterations = 0;
};
struct KScan {
  std::vector<KScanRow> rows;   // k ascending
  int best_k = 0;
  int64_t silhouette_rows = 0;  // rows the silhouettes were taken over
  KMeansResult best;
};
// UsageError unless 2 ≤ k_min ≤ k_max < n (a silhouette needs two clusters and a row more than k).
KScan kmeans_scan(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d, int k_min,
                  int k_max, const KMeansOptions& o, int64_t max_rows = 5000);

// ||a − b||² of two d-vectors, the differences taken in double (the inertia's distance).
double row_dist2(const float* a, const float* b, int64_t d);

}  // namespace vae
