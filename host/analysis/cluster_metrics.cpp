#include "analysis/cluster_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <utility>

#include "backend/cpu_gemm.h"
#include "core/error.h"
#include "core/philox.h"
#include "data/shuffle.h"

namespace vae {

double adjusted_rand_index(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  VAE_CHECK(a.size() == b.size(), "adjusted_rand_index: label vectors differ in length (" +
                                      std::to_string(a.size()) + " vs " + std::to_string(b.size()) + ")");
  const int64_t n = static_cast<int64_t>(a.size());
  // sklearn's pair_confusion_matrix, from the sparse contingency table; exact integers
  // (__int128 for the products, which overflow 64 bits from n ≈ 55 000).
  std::map<std::pair<int32_t, int32_t>, int64_t> cont;
  std::map<int32_t, int64_t> na, nb;
  for (int64_t i = 0; i < n; ++i) {
    ++cont[{a[i], b[i]}];
    ++na[a[i]];
    ++nb[b[i]];
  }
  __int128 sum_sq = 0, sum_ck = 0, sum_kc = 0;
  for (const auto& [key, c] : cont) {
    sum_sq += static_cast<__int128>(c) * c;
    sum_ck += static_cast<__int128>(c) * nb[key.second];
    sum_kc += static_cast<__int128>(c) * na[key.first];
  }
  const __int128 tp = sum_sq - n;
  const __int128 fp = sum_ck - sum_sq;  // C[0, 1]
  const __int128 fn = sum_kc - sum_sq;  // C[1, 0]
  const __int128 tn = static_cast<__int128>(n) * n - fp - fn - sum_sq;
  if (fn == 0 && fp == 0) return 1.0;
  const __int128 num = tp * tn - fn * fp;
  const __int128 den = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn);
  return 2.0 * static_cast<double>(num) / static_cast<double>(den);
}

double trustworthiness(const std::vector<float>& x, int64_t dx, const std::vector<float>& y,
                       int64_t dy, int n_neighbors) {
  VAE_CHECK(dx >= 1 && dy >= 1 && x.size() % dx == 0, "trustworthiness: bad dimensions");
  const int64_t n = static_cast<int64_t>(x.size()) / dx;
  VAE_CHECK(static_cast<int64_t>(y.size()) == n * dy,
            "trustworthiness: X has " + std::to_string(n) + " rows but Y has " +
                std::to_string(y.size() / dy));
  if (n_neighbors < 1 || n_neighbors >= n / 2.0)
    throw UsageError("trustworthiness: n_neighbors (" + std::to_string(n_neighbors) +
                     ") must be at least 1 and less than n_samples / 2 (" + std::to_string(n) +
                     " samples)");
  auto d2 = [](const float* a, const float* b, int64_t d) {
    double s = 0;
    for (int64_t t = 0; t < d; ++t) {
      const double e = static_cast<double>(a[t]) - b[t];
      s += e * e;
    }
    return s;
  };
  std::vector<double> dist(n);
  std::vector<int64_t> order(n), rank(n);
  std::vector<std::pair<double, int64_t>> low(n);
  double t = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Rank of every j among i's neighbours in X (1 = nearest; i itself last, as dist = inf).
    for (int64_t j = 0; j < n; ++j)
      dist[j] = j == i ? std::numeric_limits<double>::infinity() : d2(&x[i * dx], &x[j * dx], dx);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return dist[a] < dist[b]; });
    for (int64_t r = 0; r < n; ++r) rank[order[r]] = r + 1;
    // The n_neighbors nearest in Y (excluding i).
    int64_t m = 0;
    for (int64_t j = 0; j < n; ++j)
      if (j != i) low[m++] = {d2(&y[i * dy], &y[j * dy], dy), j};
    std::partial_sort(low.begin(), low.begin() + n_neighbors, low.begin() + m);
    for (int q = 0; q < n_neighbors; ++q) {
      const int64_t excess = rank[low[q].second] - n_neighbors;
      if (excess > 0) t += static_cast<double>(excess);
    }
  }
  const double nn = n_neighbors;
  return 1.0 - t * (2.0 / (n * nn * (2.0 * n - 3.0 * nn - 1.0)));
}

std::vector<int32_t> silhouette_sample(int64_t n, int64_t max_rows, uint64_t seed) {
  VAE_CHECK(n >= 0 && n <= std::numeric_limits<int32_t>::max(), "silhouette_sample: bad number of rows");
  return philox_subset(n, max_rows, seed, rng_stream(RngStream::silhouette, 1));
}

double silhouette_score(const std::vector<float>& x, int64_t d, const std::vector<int32_t>& labels,
                        const std::vector<int32_t>& sample) {
  VAE_CHECK(d >= 1 && x.size() % static_cast<size_t>(d) == 0, "silhouette_score: x is not n × d");
  const int64_t n = static_cast<int64_t>(x.size()) / d;
  VAE_CHECK(static_cast<int64_t>(labels.size()) == n,
            "silhouette_score: " + std::to_string(labels.size()) + " labels for " + std::to_string(n) + " rows");
  std::vector<int32_t> rows = sample;
  if (rows.empty()) {
    rows.resize(static_cast<size_t>(n));
    std::iota(rows.begin(), rows.end(), 0);
  }
  const int64_t m = static_cast<int64_t>(rows.size());
  // Dense cluster ids of the sampled rows, and their sizes in the sample.
  std::map<int32_t, int32_t> dense;
  std::vector<int32_t> c(static_cast<size_t>(m));
  std::vector<char> seen(sample.empty() ? 0 : static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < m; ++i) {
    VAE_CHECK(rows[i] >= 0 && rows[i] < n, "silhouette_score: sample index out of range");
    if (!sample.empty()) {
      VAE_CHECK(!seen[rows[i]], "silhouette_score: row " + std::to_string(rows[i]) + " twice in the sample");
      seen[rows[i]] = 1;
    }
    c[i] = dense.emplace(labels[rows[i]], static_cast<int32_t>(dense.size())).first->second;
  }
  const int64_t k = static_cast<int64_t>(dense.size());
  if (k < 2 || k > m - 1)
    throw UsageError("silhouette score: " + std::to_string(k) + " clusters among " + std::to_string(m) +
                     " rows (it needs between 2 and rows - 1)");
  std::vector<int64_t> size(static_cast<size_t>(k), 0);
  for (int32_t l : c) ++size[l];

  std::vector<double> xs(static_cast<size_t>(m * d)), norm(static_cast<size_t>(m), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < d; ++j) {
      const double v = x[static_cast<size_t>(rows[i]) * d + j];
      VAE_CHECK(std::isfinite(v), "silhouette_score: x holds a non-finite value");
      xs[i * d + j] = v;
      norm[i] += v * v;
    }
  // Row blocks of the m × m distances (‖x‖² + ‖y‖² − 2x·y, as sklearn's euclidean_distances),
  // summed per cluster; at most 4 Mi distances at a time whatever m.
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(m, (int64_t{1} << 22) / std::max<int64_t>(m, 1)));
  std::vector<double> dots, sums(static_cast<size_t>(k));
  double total = 0;
  for (int64_t i0 = 0; i0 < m; i0 += block) {
    const int64_t r = std::min(block, m - i0);
    dots.assign(static_cast<size_t>(r * m), 0.0);
    reference_gemm<double>(false, true, r, m, d, 1.0, &xs[i0 * d], d, xs.data(), d, 0.0, dots.data(), m);
    for (int64_t q = 0; q < r; ++q) {
      const int64_t i = i0 + q;
      std::fill(sums.begin(), sums.end(), 0.0);
      for (int64_t j = 0; j < m; ++j)
        if (j != i) sums[c[j]] += std::sqrt(std::max(0.0, norm[i] + norm[j] - 2.0 * dots[q * m + j]));
      const int32_t own = c[i];
      if (size[own] == 1) continue;  // s = 0
      const double a = sums[own] / static_cast<double>(size[own] - 1);
      double b = std::numeric_limits<double>::infinity();
      for (int64_t l = 0; l < k; ++l)
        if (l != own) b = std::min(b, sums[l] / static_cast<double>(size[l]));
      const double top = std::max(a, b);
      if (top > 0) total += (b - a) / top;
    }
  }
  return total / static_cast<double>(m);
}

int active_latent_units(const std::vector<float>& z, int64_t n, int64_t dim) {
  VAE_CHECK(n >= 0 && dim >= 0 && static_cast<int64_t>(z.size()) >= n * dim, "active_latent_units: z is not n × dim");
  if (n < 2) return 0;
  int active = 0;
  for (int64_t j = 0; j < dim; ++j) {
    double mean = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i) mean += z[i * dim + j];
    mean /= static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) sq += (z[i * dim + j] - mean) * (z[i * dim + j] - mean);
    active += sq / static_cast<double>(n) > kActiveUnitVariance;
  }
  return active;
}

}  // namespace vae
