#include "analysis/tsne.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "backend/cpu_gemm.h"
#include "core/error.h"
#include "core/philox.h"
#include "data/shuffle.h"

namespace vae {
namespace {

constexpr double kMachineEpsilon = DBL_EPSILON;  // sklearn's MACHINE_EPSILON
constexpr double kPerplexityTolerance = 1e-5;
constexpr int kBinarySearchSteps = 100;
constexpr int kCheckEvery = 50;          // sklearn's _N_ITER_CHECK
constexpr int kNoProgressIters = 300;    // n_iter_without_progress (after exaggeration)
constexpr double kMinGradNorm = 1e-7;
constexpr float kMinGain = 0.01f;

struct Phase {
  int last;  // iterations run up to (exclusive); the phase starts after the previous one
  float momentum;
  float exaggeration;
  int no_progress;
};

void check_schedule(const TsneOptions& o) {
  if (o.iterations < 1) throw UsageError("t-SNE: iterations must be at least 1");
  if (o.exaggeration_iterations < 0) throw UsageError("t-SNE: exaggeration iterations must be ≥ 0");
}

}  // namespace

void tsne_conditional_row(const float* sqd, int64_t len, int64_t skip, double desired_entropy,
                          double* prow) {
  double beta_min = -std::numeric_limits<double>::infinity();
  double beta_max = std::numeric_limits<double>::infinity();
  double beta = 1.0;
  for (int step = 0; step < kBinarySearchSteps; ++step) {
    double sum_p = 0.0;
    for (int64_t j = 0; j < len; ++j) {
      prow[j] = j == skip ? 0.0 : std::exp(-static_cast<double>(sqd[j]) * beta);
      sum_p += prow[j];
    }
    if (sum_p == 0.0) sum_p = 1e-8;  // sklearn's EPSILON_DBL
    double sum_dp = 0.0;
    for (int64_t j = 0; j < len; ++j) {
      prow[j] /= sum_p;
      sum_dp += static_cast<double>(sqd[j]) * prow[j];
    }
    const double entropy = std::log(sum_p) + beta * sum_dp;
    const double diff = entropy - desired_entropy;
    if (std::fabs(diff) <= kPerplexityTolerance) break;
    if (diff > 0.0) {
      beta_min = beta;
      beta = std::isinf(beta_max) ? beta * 2.0 : (beta + beta_max) / 2.0;
    } else {
      beta_max = beta;
      beta = std::isinf(beta_min) ? beta / 2.0 : (beta + beta_min) / 2.0;
    }
  }
}

std::vector<int32_t> tsne_subsample(int64_t n, int64_t max_points, uint64_t seed) {
  VAE_CHECK(n >= 0 && n <= std::numeric_limits<int32_t>::max(), "t-SNE: bad number of rows");
  return philox_subset(n, max_points, seed, rng_stream(RngStream::tsne, 1));
}

std::vector<float> tsne_joint_probabilities(const std::vector<float>& x, int64_t n, int64_t d,
                                            double perplexity) {
  VAE_CHECK(n >= 2 && d >= 1 && static_cast<int64_t>(x.size()) == n * d,
            "t-SNE: x is not an n × d matrix with n ≥ 2");
  VAE_CHECK(perplexity > 0, "t-SNE: perplexity must be positive");
  std::vector<float> p(static_cast<size_t>(n) * n);
  const double desired_entropy = std::log(perplexity);
  // Rows are independent: blocks of them on the CPU pool, each row's bits as in a serial loop.
  constexpr int64_t kRowsPerTask = 16;
  cpu_parallel_for((n + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t task) {
    std::vector<float> sqd(n);
    std::vector<double> prow(n);
    for (int64_t i = task * kRowsPerTask; i < std::min(n, (task + 1) * kRowsPerTask); ++i) {
      // Squared distances as sklearn hands them to the search: exact (double), stored as float32.
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t t = 0; t < d; ++t) {
          const double e = static_cast<double>(x[i * d + t]) - x[j * d + t];
          s += e * e;
        }
        sqd[j] = static_cast<float>(s);
      }
      tsne_conditional_row(sqd.data(), n, i, desired_entropy, prow.data());
      for (int64_t j = 0; j < n; ++j) p[i * n + j] = static_cast<float>(prow[j]);
    }
  });
  // P = (P_cond + P_condᵀ) / sum, clamped at machine epsilon off the diagonal.
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) total += static_cast<double>(p[i * n + j]) + p[j * n + i];
  total = std::max(2.0 * total, kMachineEpsilon);
  for (int64_t i = 0; i < n; ++i) {
    p[i * n + i] = 0.0f;
    for (int64_t j = i + 1; j < n; ++j) {
      const double v = (static_cast<double>(p[i * n + j]) + p[j * n + i]) / total;
      const float f = static_cast<float>(std::max(v, kMachineEpsilon));
      p[i * n + j] = f;
      p[j * n + i] = f;
    }
  }
  return p;
}

std::vector<int32_t> tsne_checked_rows(const std::vector<float>& x, int64_t n, int64_t d,
                                       const TsneOptions& o, std::vector<float>& rows) {
  VAE_CHECK(n >= 0 && d >= 1 && static_cast<int64_t>(x.size()) == n * d,
            "t-SNE: " + std::to_string(x.size()) + " values for " + std::to_string(n) + " × " +
                std::to_string(d));
  for (size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]))
      throw VaeError("t-SNE: non-finite value at row " + std::to_string(i / d));
  if (!(o.perplexity > 0)) throw UsageError("t-SNE: perplexity must be positive");
  check_schedule(o);
  if (n < 2) throw UsageError("t-SNE needs at least 2 points (got " + std::to_string(n) + ")");

  std::vector<int32_t> indices = tsne_subsample(n, o.max_points, o.seed);
  const int64_t m = static_cast<int64_t>(indices.size());
  if (m < 2) throw UsageError("t-SNE: max_points leaves fewer than 2 points");
  // sklearn refuses this too: the Gaussian cannot spread over more neighbours than exist.
  if (o.perplexity >= static_cast<double>(m))
    throw UsageError("t-SNE: perplexity " + std::to_string(o.perplexity) +
                     " must be less than the number of points (" + std::to_string(m) +
                     "); choose a smaller perplexity (5-50 is usual, at most about n / 3)");
  rows.clear();
  if (m != n) {
    rows.resize(static_cast<size_t>(m) * d);
    for (int64_t i = 0; i < m; ++i)
      std::copy_n(&x[static_cast<int64_t>(indices[i]) * d], d, &rows[i * d]);
  }
  return indices;
}

TsneResult tsne(AnalysisOps& ops, const std::vector<float>& x, int64_t n, int64_t d,
                const TsneOptions& o) {
  std::vector<float> rows;
  std::vector<int32_t> indices = tsne_checked_rows(x, n, d, o, rows);
  const int64_t m = static_cast<int64_t>(indices.size());
  const std::vector<float> p = tsne_joint_probabilities(rows.empty() ? x : rows, m, d, o.perplexity);
  TsneResult r = tsne_from_probabilities(ops, p, m, o);
  r.indices = std::move(indices);
  return r;
}

TsneResult tsne_from_probabilities(AnalysisOps& ops, const std::vector<float>& p, int64_t m,
                                   const TsneOptions& o) {
  VAE_CHECK(m >= 2 && static_cast<int64_t>(p.size()) == m * m,
            "t-SNE: P is not an n × n matrix with n ≥ 2");
  check_schedule(o);  // before tsne_begin: a device twin would upload P for nothing
  // Lets a device twin keep P resident for the whole optimisation; ended even on a throw.
  ops.tsne_begin(p.data(), m);
  struct Session {
    AnalysisOps& ops;
    ~Session() { ops.tsne_end(); }
  } session{ops};
  return tsne_optimise(m, o, [&](const float* y, float exaggeration, float* grad, bool compute_kl) {
    return ops.tsne_gradient(p.data(), y, m, exaggeration, grad, compute_kl);
  });
}

TsneResult tsne_optimise(int64_t m, const TsneOptions& o, const TsneGradient& gradient) {
  VAE_CHECK(m >= 2, "t-SNE: fewer than 2 points to embed");
  check_schedule(o);
  TsneResult r;
  r.indices.resize(static_cast<size_t>(m));
  std::iota(r.indices.begin(), r.indices.end(), 0);
  r.n = m;
  r.y.resize(static_cast<size_t>(2 * m));
  const uint64_t init_stream = rng_stream(RngStream::tsne, 0);
  for (int64_t t = 0; t < 2 * m; ++t)
    r.y[t] = 1e-4f * philox_normal(o.seed, init_stream, static_cast<uint64_t>(t));
  r.learning_rate = o.learning_rate > 0
                        ? o.learning_rate
                        : std::max(static_cast<double>(m) / o.early_exaggeration / 4.0, 50.0);
  const float lr = static_cast<float>(r.learning_rate);

  const int explore = std::min(o.exaggeration_iterations, o.iterations);
  std::vector<float> grad(2 * m), update(2 * m), gains(2 * m);
  double error = 0;
  int last = -1;  // last iteration run
  const Phase phases[2] = {
      {explore, 0.5f, static_cast<float>(o.early_exaggeration), o.exaggeration_iterations},
      {o.iterations, 0.8f, 1.0f, kNoProgressIters}};
  for (int ph = 0; ph < 2; ++ph) {
    const Phase& f = phases[ph];
    const int first = ph == 0 ? 0 : last + 1;
    if (first >= f.last) continue;
    // sklearn's _gradient_descent: fresh momentum buffer and gains each phase.
    std::fill(update.begin(), update.end(), 0.0f);
    std::fill(gains.begin(), gains.end(), 1.0f);
    double best_error = std::numeric_limits<double>::max();
    int best_iter = first;
    for (int i = first; i < f.last; ++i) {
      const bool check = (i + 1) % kCheckEvery == 0;
      const bool compute_kl = check || i == f.last - 1;  // as sklearn's compute_error
      const double kl = gradient(r.y.data(), f.exaggeration, grad.data(), compute_kl);
      if (compute_kl) error = kl;
      last = i;
      for (int64_t t = 0; t < 2 * m; ++t) {
        // Delta-bar-delta: grow the gain where the step keeps its direction, shrink otherwise.
        gains[t] = update[t] * grad[t] < 0.0f ? gains[t] + 0.2f : gains[t] * 0.8f;
        gains[t] = std::max(gains[t], kMinGain);
        grad[t] *= gains[t];
        update[t] = f.momentum * update[t] - lr * grad[t];
        r.y[t] += update[t];
      }
      if (check) {
        r.kl_history.push_back({i + 1, error});
        double gn = 0;
        for (float g : grad) gn += static_cast<double>(g) * g;
        if (error < best_error) {
          best_error = error;
          best_iter = i;
        } else if (i - best_iter > f.no_progress) {
          break;
        }
        if (std::sqrt(gn) <= kMinGradNorm) break;
      }
    }
  }
  r.iterations = last + 1;
  r.kl_divergence = error;
  if (r.kl_history.empty() || r.kl_history.back().iteration != r.iterations)
    r.kl_history.push_back({r.iterations, error});
  return r;
}

}  // namespace vae
