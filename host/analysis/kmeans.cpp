#include "analysis/kmeans.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "analysis/cluster_metrics.h"
#include "core/error.h"
#include "core/philox.h"
#include "data/shuffle.h"

namespace vae {
namespace {

void check_data(const std::vector<float>& x, int64_t n, int64_t d, const char* what) {
  VAE_CHECK(n >= 0 && d >= 1, std::string(what) + ": need n ≥ 0 and d ≥ 1");
  VAE_CHECK(static_cast<int64_t>(x.size()) == n * d,
            std::string(what) + ": " + std::to_string(x.size()) + " values for " + std::to_string(n) +
                " × " + std::to_string(d));
  for (size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]))
      throw VaeError(std::string(what) + ": non-finite value at row " + std::to_string(i / d) +
                     ", column " + std::to_string(i % d));
}

void check_options(const KMeansOptions& o) {
  if (o.max_iter < 1) throw UsageError("k-means: max_iter must be at least 1");
  if (!(o.tol >= 0)) throw UsageError("k-means: tol must be ≥ 0");
}

// sklearn's _tolerance: tol scaled by the mean per-feature variance, so it is unit-free.
double scaled_tolerance(const std::vector<float>& x, int64_t n, int64_t d, double tol) {
  if (tol == 0 || n == 0) return 0;
  std::vector<double> mean(d, 0.0), var(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < d; ++t) mean[t] += x[i * d + t];
  for (int64_t t = 0; t < d; ++t) mean[t] /= static_cast<double>(n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < d; ++t) {
      const double e = x[i * d + t] - mean[t];
      var[t] += e * e;
    }
  double s = 0;
  for (int64_t t = 0; t < d; ++t) s += var[t] / static_cast<double>(n);
  return s / static_cast<double>(d) * tol;
}

double inertia_of(const std::vector<float>& x, int64_t n, int64_t d, const std::vector<float>& c,
                  const std::vector<int32_t>& labels) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += row_dist2(&x[i * d], &c[labels[i] * d], d);
  return s;
}

// Keeps x resident in a device twin for every assignment and Lloyd step in between; ended even
// on a throw.
class KMeansSession {
 public:
  KMeansSession(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d) : ops_(ops) {
    ops_.kmeans_begin(x.data(), n, d);
  }
  ~KMeansSession() { ops_.kmeans_end(); }
  KMeansSession(const KMeansSession&) = delete;
  KMeansSession& operator=(const KMeansSession&) = delete;

 private:
  AnalysisOps& ops_;
};

// One Lloyd run from the given centres (sklearn's _kmeans_single_lloyd), inside a session on x.
KMeansResult lloyd(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d,
                   std::vector<float> centers, int k, int max_iter, double tol_abs) {
  std::vector<int32_t> labels(n, 0);
  std::vector<double> sums(static_cast<size_t>(k) * d);
  std::vector<int64_t> counts(k);
  std::vector<float> new_centers(centers.size());
  bool strict = false;
  int it = 0;
  for (; it < max_iter; ++it) {
    // E-step and the M-step's sums in one call, so a device twin returns only k × d numbers;
    // the sums come in a fixed order with double accumulation on every backend.
    const int64_t changed = ops.kmeans_step(centers.data(), k, sums.data(), counts.data());
    // Empty clusters take the points farthest from their (old) centres, farthest first, as
    // sklearn's _relocate_empty_clusters_dense; each donor cluster loses that point.
    std::vector<int> empty;
    for (int j = 0; j < k; ++j)
      if (counts[j] == 0) empty.push_back(j);
    if (!empty.empty()) {
      ops.kmeans_step_labels(labels.data());
      std::vector<double> far(n);
      for (int64_t i = 0; i < n; ++i) far[i] = row_dist2(&x[i * d], &centers[labels[i] * d], d);
      std::vector<int64_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return far[a] > far[b]; });
      for (size_t e = 0; e < empty.size(); ++e) {
        const int64_t p = order[e];
        const int32_t from = labels[p];
        const int to = empty[e];
        for (int64_t t = 0; t < d; ++t) {
          sums[from * d + t] -= x[p * d + t];
          sums[to * d + t] = x[p * d + t];
        }
        --counts[from];
        counts[to] = 1;
      }
    }
    double shift = 0;
    for (int j = 0; j < k; ++j) {
      for (int64_t t = 0; t < d; ++t) {
        // A donor emptied by relocation (possible only in degenerate data) keeps its centre.
        const float v = counts[j] > 0 ? static_cast<float>(sums[j * d + t] / counts[j])
                                      : centers[j * d + t];
        const double e = static_cast<double>(v) - centers[j * d + t];
        shift += e * e;
        new_centers[j * d + t] = v;
      }
    }
    centers.swap(new_centers);
    // Relocation moves sums, never labels: "unchanged" compares the assignments themselves.
    if (it > 0 && changed == 0) {
      strict = true;
      break;
    }
    if (shift <= tol_abs) break;
  }
  // Converged on the labels: they are the last step's. Stopped on the shift or max_iter: one more
  // E-step so the labels match the final centres.
  if (strict)
    ops.kmeans_step_labels(labels.data());
  else
    ops.kmeans_assign(x.data(), n, d, centers.data(), k, labels.data(), nullptr);
  KMeansResult r;
  r.k = k;
  r.d = d;
  r.inertia = inertia_of(x, n, d, centers, labels);
  r.iterations = std::min(it + 1, max_iter);
  r.centers = std::move(centers);
  r.labels = std::move(labels);
  r.best_init = 0;
  return r;
}

void check_k(int64_t k, int64_t n) {
  if (k < 1) throw UsageError("k-means: k must be at least 1 (got " + std::to_string(k) + ")");
  if (k > n)
    throw UsageError("k-means: k = " + std::to_string(k) + " clusters but only " +
                     std::to_string(n) + " points");
}

// k-means++ inside a session on x.
std::vector<float> plusplus(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d,
                            int k, uint64_t seed, uint64_t run) {
  PhiloxSeq rng(seed, rng_stream(RngStream::kmeans, run));
  std::vector<float> centers(static_cast<size_t>(k) * d);
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  std::vector<int32_t> lab(n);
  std::vector<float> closest(n), cand_dist(n), best_dist(n);
  const int64_t first = rng.below(static_cast<uint32_t>(n));
  std::copy_n(&x[first * d], d, centers.begin());
  ops.kmeans_assign(x.data(), n, d, &x[first * d], 1, lab.data(), closest.data());
  double pot = 0;
  for (int64_t i = 0; i < n; ++i) pot += closest[i];
  std::vector<double> cum(n);
  for (int c = 1; c < k; ++c) {
    double acc = 0;
    for (int64_t i = 0; i < n; ++i) cum[i] = acc += closest[i];
    double best_pot = 0;
    int64_t best_id = -1;
    for (int t = 0; t < trials; ++t) {
      // Sample ∝ D²: first index whose running sum reaches u · pot (u ∈ (0, 1], so points at
      // distance 0 — the chosen centres — are never drawn unless all are).
      const double r = rng.uniform() * pot;
      int64_t id = std::lower_bound(cum.begin(), cum.end(), r) - cum.begin();
      id = std::min<int64_t>(id, n - 1);
      ops.kmeans_assign(x.data(), n, d, &x[id * d], 1, lab.data(), cand_dist.data());
      double cand_pot = 0;
      for (int64_t i = 0; i < n; ++i) {
        cand_dist[i] = std::min(cand_dist[i], closest[i]);
        cand_pot += cand_dist[i];
      }
      if (best_id < 0 || cand_pot < best_pot) {  // first minimum, as np.argmin
        best_pot = cand_pot;
        best_id = id;
        best_dist.swap(cand_dist);
      }
    }
    std::copy_n(&x[best_id * d], d, centers.begin() + c * d);
    closest.swap(best_dist);
    pot = best_pot;
  }
  return centers;
}

}  // namespace

double row_dist2(const float* a, const float* b, int64_t d) {
  double s = 0;
  for (int64_t t = 0; t < d; ++t) {
    const double e = static_cast<double>(a[t]) - b[t];
    s += e * e;
  }
  return s;
}


std::vector<float> kmeans_plusplus(AnalysisOps& ops, const std::vector<float>& x, int64_t n,
                                   int64_t d, int k, uint64_t seed, uint64_t run) {
  check_data(x, n, d, "k-means++");
  check_k(k, n);
  KMeansSession session(ops, x, n, d);
  return plusplus(ops, x, n, d, k, seed, run);
}

KMeansResult kmeans(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d,
                    const KMeansOptions& o) {
  check_data(x, n, d, "k-means");
  check_options(o);
  if (o.n_init < 1) throw UsageError("k-means: n_init must be at least 1");
  check_k(o.k, n);
  const double tol_abs = scaled_tolerance(x, n, d, o.tol);
  KMeansSession session(ops, x, n, d);
  KMeansResult best;
  for (int run = 0; run < o.n_init; ++run) {
    std::vector<float> init = plusplus(ops, x, n, d, o.k, o.seed, static_cast<uint64_t>(run));
    KMeansResult r = lloyd(ops, x, n, d, std::move(init), o.k, o.max_iter, tol_abs);
    if (run == 0 || r.inertia < best.inertia) {  // strictly lower: ties keep the earlier run
      best = std::move(r);
      best.best_init = run;
    }
  }
  return best;
}

KMeansResult kmeans_from_centers(AnalysisOps& ops, const std::vector<float>& x, int64_t n,
                                 int64_t d, const std::vector<float>& initial_centers,
                                 const KMeansOptions& o) {
  check_data(x, n, d, "k-means");
  check_options(o);
  VAE_CHECK(!initial_centers.empty() && initial_centers.size() % d == 0,
            "k-means: initial centres are not a k × d matrix");
  const int64_t k = static_cast<int64_t>(initial_centers.size()) / d;
  check_data(initial_centers, k, d, "k-means initial centres");
  if (k > n)
    throw UsageError("k-means: k = " + std::to_string(k) + " clusters but only " +
                     std::to_string(n) + " points");
  const double tol_abs = scaled_tolerance(x, n, d, o.tol);
  KMeansSession session(ops, x, n, d);
  return lloyd(ops, x, n, d, initial_centers, static_cast<int>(k), o.max_iter, tol_abs);
}

KScan kmeans_scan(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d, int k_min,
                  int k_max, const KMeansOptions& o, int64_t max_rows) {
  if (k_min < 2 || k_max < k_min)
    throw UsageError("k-means scan: the range of k must run from 2 or more upwards (got " + std::to_string(k_min) +
                     ".." + std::to_string(k_max) + ")");
  if (k_max >= n)
    throw UsageError("k-means scan: k up to " + std::to_string(k_max) + " needs more than " + std::to_string(k_max) +
                     " rows (users), there are " + std::to_string(n));
  check_data(x, n, d, "k-means");
  KScan scan;
  const std::vector<int32_t> sample = silhouette_sample(n, max_rows, o.seed);
  scan.silhouette_rows = static_cast<int64_t>(sample.size());
  double best_s = -std::numeric_limits<double>::infinity();
  for (int k = k_min; k <= k_max; ++k) {
    KMeansOptions ok = o;
    ok.k = k;
    KMeansResult r = kmeans(ops, x, n, d, ok);
    KScanRow row;
    row.k = k;
    row.inertia = r.inertia;
    row.iterations = r.iterations;
    try {
      row.silhouette = silhouette_score(x, d, r.labels, sample);
    } catch (const UsageError&) {  // the sample missed all clusters but one
      row.silhouette = std::numeric_limits<double>::quiet_NaN();
    }
    if (row.silhouette > best_s) {  // strictly: ties keep the smaller k; NaN never wins
      best_s = row.silhouette;
      scan.best_k = k;
      scan.best = std::move(r);
    }
    scan.rows.push_back(row);
  }
  if (scan.best_k == 0) throw UsageError("k-means scan: no k gave a silhouette score (too few rows sampled)");
  return scan;
}

}  // namespace vae
