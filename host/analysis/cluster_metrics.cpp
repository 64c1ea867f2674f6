#include "analysis/cluster_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <string>
#include <utility>

#include "core/error.h"

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

}  // namespace vae
