// CPU reference for the analysis hot loops. The distance matrix goes through a GEMM in row blocks
// (so the n × k cross products never exist at once); t-SNE's pair loop runs over i < j only and
// accumulates in double so the result does not depend on a summation order a GPU would not share.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <vector>

#include "analysis/analysis_ops.h"
#include "backend/cpu_gemm.h"
#include "core/error.h"

#if defined(VAE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace vae {
namespace {

// C (m × n) = alpha · A (m × k) · B(n × k)ᵀ, row-major.
void gemm_abt(int64_t m, int64_t n, int64_t k, float alpha, const float* a, const float* b,
              float* c) {
#if defined(VAE_HAVE_OPENBLAS)
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(k), b,
              static_cast<blasint>(k), 0.0f, c, static_cast<blasint>(n));
#else
  reference_gemm<float>(false, true, m, n, k, alpha, a, k, b, k, 0.0f, c, n);
#endif
}

// The rows of the exact t-SNE pair loop (i < j) cut into bands of about equal pair counts: row i
// has n − 1 − i pairs. The cut depends on n alone, never on the thread count, so each band's
// partial sums and their band-by-band total are the same bits on every machine. Returns the
// bands' first rows and n.
std::vector<int64_t> pair_bands(int64_t n) {
  constexpr int64_t kMaxBands = 16, kMinPairsPerBand = 1 << 14;
  const double total = 0.5 * static_cast<double>(n) * static_cast<double>(n - 1);
  const int64_t bands = std::clamp<int64_t>(static_cast<int64_t>(total / kMinPairsPerBand), 1, kMaxBands);
  std::vector<int64_t> start{0};
  double seen = 0.0;
  for (int64_t i = 0; i < n && static_cast<int64_t>(start.size()) < bands; ++i) {
    seen += static_cast<double>(n - 1 - i);
    if (seen >= total * static_cast<double>(start.size()) / static_cast<double>(bands) && i + 1 < n)
      start.push_back(i + 1);
  }
  start.push_back(n);
  return start;
}

class CpuAnalysisOps final : public AnalysisOps {
 public:
  std::string name() const override { return "cpu"; }

  void kmeans_assign(const float* x, int64_t n, int64_t d, const float* c, int k, int32_t* labels,
                     float* dist2) override {
    VAE_CHECK(n >= 0 && d >= 1 && k >= 1, "kmeans_assign: bad sizes");
    if (n == 0) return;
    std::vector<float> cnorm(k);
    for (int j = 0; j < k; ++j) cnorm[j] = row_norm2(c + j * d, d);
    // Block of rows small enough that the block × k cross products stay in cache-sized memory.
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(1024, (1 << 20) / k));
    std::vector<float> cross(static_cast<size_t>(std::min(block, n)) * k);
    for (int64_t r0 = 0; r0 < n; r0 += block) {
      const int64_t m = std::min(block, n - r0);
      gemm_abt(m, k, d, -2.0f, x + r0 * d, c, cross.data());
      for (int64_t i = 0; i < m; ++i) {
        const float xn = row_norm2(x + (r0 + i) * d, d);
        const float* row = cross.data() + i * k;
        int best = 0;
        float best_v = xn + cnorm[0] + row[0];
        for (int j = 1; j < k; ++j) {
          const float v = xn + cnorm[j] + row[j];
          if (v < best_v) {  // strict: ties keep the lower centre index
            best_v = v;
            best = j;
          }
        }
        labels[r0 + i] = best;
        if (dist2) dist2[r0 + i] = best_v > 0.0f ? best_v : 0.0f;
      }
    }
  }

  void kmeans_begin(const float* x, int64_t n, int64_t d) override {
    VAE_CHECK(!km_open_, "kmeans_begin: a K-Means session is already open");
    VAE_CHECK(n >= 0 && d >= 1 && (x != nullptr || n == 0), "kmeans_begin: bad data");
    km_x_ = x;
    km_n_ = n;
    km_d_ = d;
    km_open_ = true;
    km_stepped_ = false;
    km_labels_.assign(static_cast<size_t>(n), -1);
  }

  void kmeans_end() override {
    km_open_ = false;
    km_x_ = nullptr;
    km_labels_.clear();
    km_labels_.shrink_to_fit();
  }

  int64_t kmeans_step(const float* c, int k, double* sums, int64_t* counts) override {
    VAE_CHECK(km_open_, "kmeans_step outside a kmeans_begin/kmeans_end session");
    VAE_CHECK(k >= 1, "kmeans_step: k must be at least 1");
    const int64_t n = km_n_, d = km_d_;
    std::vector<int32_t> lab(static_cast<size_t>(n));
    kmeans_assign(km_x_, n, d, c, k, lab.data(), nullptr);
    std::fill(sums, sums + static_cast<int64_t>(k) * d, 0.0);
    std::fill(counts, counts + k, int64_t{0});
    int64_t changed = 0;
    for (int64_t i = 0; i < n; ++i) {
      const int32_t l = lab[i];
      changed += l != km_labels_[i];
      ++counts[l];
      const float* xi = km_x_ + i * d;
      double* s = sums + static_cast<int64_t>(l) * d;
      for (int64_t t = 0; t < d; ++t) s[t] += xi[t];
    }
    km_labels_.swap(lab);
    km_stepped_ = true;
    return changed;
  }

  void kmeans_step_labels(int32_t* labels) override {
    VAE_CHECK(km_open_ && km_stepped_, "kmeans_step_labels: no kmeans_step in this session");
    std::copy(km_labels_.begin(), km_labels_.end(), labels);
  }

  double tsne_gradient(const float* p, const float* y, int64_t n, float exaggeration,
                       float* grad, bool compute_kl) override {
    VAE_CHECK(n >= 2, "tsne_gradient: need at least two points");
    const std::vector<int64_t> band = pair_bands(n);
    const int64_t bands = static_cast<int64_t>(band.size()) - 1;
    // Pass 1: normaliser of the Student-t kernel over ordered pairs, a partial sum per band.
    std::vector<double> part(static_cast<size_t>(bands), 0.0);
    cpu_parallel_for(bands, [&](int64_t t) {
      double s = 0.0;
      for (int64_t i = band[t]; i < band[t + 1]; ++i) {
        const double yi0 = y[2 * i], yi1 = y[2 * i + 1];
        for (int64_t j = i + 1; j < n; ++j) {
          const double a = yi0 - y[2 * j], b = yi1 - y[2 * j + 1];
          s += 1.0 / (1.0 + a * a + b * b);
        }
      }
      part[t] = s;
    });
    double sum_w = 0.0;
    for (double s : part) sum_w += s;
    const double inv_sum = 1.0 / (2.0 * sum_w);
    const double eps = DBL_EPSILON;  // sklearn's MACHINE_EPSILON
    const double ex = exaggeration;
    // Pass 2 over i < j, each pair pushing on both ends: row i's own sum goes to own[i] (one band
    // writes it), the pushes on j > i to the band's own buffer, added band by band below.
    std::vector<double> own(static_cast<size_t>(2 * n), 0.0);
    std::vector<double> push(static_cast<size_t>(bands * 2 * n), 0.0);
    std::fill(part.begin(), part.end(), 0.0);
    cpu_parallel_for(bands, [&](int64_t t) {
      double* g = push.data() + t * 2 * n;
      double kl = 0.0;
      for (int64_t i = band[t]; i < band[t + 1]; ++i) {
        const double yi0 = y[2 * i], yi1 = y[2 * i + 1];
        const float* prow = p + i * n;
        double gi0 = 0.0, gi1 = 0.0;
        for (int64_t j = i + 1; j < n; ++j) {
          const double a = yi0 - y[2 * j], b = yi1 - y[2 * j + 1];
          const double w = 1.0 / (1.0 + a * a + b * b);
          const double q = std::max(w * inv_sum, eps);
          const double pij = ex * static_cast<double>(prow[j]);
          const double f = (pij - q) * w;
          gi0 += f * a;
          gi1 += f * b;
          g[2 * j] -= f * a;
          g[2 * j + 1] -= f * b;
        }
        if (compute_kl)
          for (int64_t j = i + 1; j < n; ++j) {
            const double a = yi0 - y[2 * j], b = yi1 - y[2 * j + 1];
            const double q = std::max(inv_sum / (1.0 + a * a + b * b), eps);
            const double pij = ex * static_cast<double>(prow[j]);
            kl += pij * std::log(std::max(pij, eps) / q);
          }
        own[2 * i] = gi0;
        own[2 * i + 1] = gi1;
      }
      part[t] = kl;
    });
    for (int64_t c = 0; c < 2 * n; ++c) {
      double g = 0.0;
      // Only bands that start above row c / 2 push on it.
      for (int64_t t = 0; t < bands && band[t] < c / 2; ++t) g += push[t * 2 * n + c];
      grad[c] = static_cast<float>(4.0 * (g + own[c]));
    }
    double kl = 0.0;
    for (double v : part) kl += v;
    // The loop saw each unordered pair once.
    return compute_kl ? 2.0 * kl : std::numeric_limits<double>::quiet_NaN();
  }

 private:
  // K-Means session: the caller's x and the labels of the last step (−1 before the first).
  const float* km_x_ = nullptr;
  int64_t km_n_ = 0, km_d_ = 0;
  bool km_open_ = false, km_stepped_ = false;
  std::vector<int32_t> km_labels_;

  static float row_norm2(const float* v, int64_t d) {
    double s = 0.0;
    for (int64_t t = 0; t < d; ++t) s += static_cast<double>(v[t]) * v[t];
    return static_cast<float>(s);
  }
};

}  // namespace

std::unique_ptr<AnalysisOps> make_cpu_analysis_ops() { return std::make_unique<CpuAnalysisOps>(); }

std::unique_ptr<AnalysisOps> make_analysis_ops(bool use_cuda) {
  return use_cuda ? make_cuda_analysis_ops() : make_cpu_analysis_ops();
}

}  // namespace vae
