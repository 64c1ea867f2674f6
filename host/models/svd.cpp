#include "models/svd.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/philox.h"

namespace vae {

SvdModel::SvdModel(const Csr& train, float rating_min, float rating_max, SvdOptions opt)
    : train_(train), lo_(rating_min), hi_(rating_max), opt_(opt) {
  if (opt_.factors <= 0) opt_.factors = opt_.plus_plus ? 20 : 100;
  if (opt_.lr <= 0) opt_.lr = opt_.plus_plus ? 0.007 : 0.005;
  if (opt_.epochs < 1) throw UsageError("--epochs must be at least 1");
  if (opt_.reg < 0) throw UsageError("SVD regularisation must be non-negative");
  if (train_.nnz() == 0) throw UsageError("SVD: the training split has no ratings");
  users_ = train_.rows;
  items_ = train_.cols;
  f_ = opt_.factors;
  double sum = 0;
  for (float v : train_.values) sum += v;
  mu_ = sum / static_cast<double>(train_.nnz());
  bu_.assign(static_cast<size_t>(users_), 0.0);
  bi_.assign(static_cast<size_t>(items_), 0.0);
  auto normal_init = [&](std::vector<double>& m, int64_t rows, uint64_t which) {
    m.resize(static_cast<size_t>(rows * f_));
    const uint64_t stream = rng_stream(RngStream::init, 500000 + which);
    for (size_t k = 0; k < m.size(); ++k) m[k] = opt_.init_std * philox_normal(opt_.seed, stream, k);
  };
  normal_init(pu_, users_, 0);
  normal_init(qi_, items_, 1);
  if (opt_.plus_plus) normal_init(yj_, items_, 2);
  item_seen_.assign(static_cast<size_t>(items_), 0);
  for (int32_t i : train_.indices) item_seen_[i] = 1;
}

int64_t SvdModel::num_params() const {
  return static_cast<int64_t>(bu_.size() + bi_.size() + pu_.size() + qi_.size() + yj_.size());
}

void SvdModel::user_vector(int64_t u, double* v) const {
  const double* p = &pu_[u * f_];
  std::copy(p, p + f_, v);
  if (!opt_.plus_plus) return;
  const int64_t n = train_.row_nnz(u);
  if (n == 0) return;
  const double s = 1.0 / std::sqrt(static_cast<double>(n));
  for (int64_t k = train_.indptr[u]; k < train_.indptr[u + 1]; ++k) {
    const double* y = &yj_[static_cast<int64_t>(train_.indices[k]) * f_];
    for (int64_t f = 0; f < f_; ++f) v[f] += s * y[f];
  }
}

double SvdModel::run_epoch() {
  const double lr = opt_.lr, reg = opt_.reg;
  std::vector<double> impl(static_cast<size_t>(f_));
  double sq = 0;
  for (int64_t u = 0; u < users_; ++u) {
    const int64_t k0 = train_.indptr[u], k1 = train_.indptr[u + 1];
    const double inv_sqrt = k1 > k0 ? 1.0 / std::sqrt(static_cast<double>(k1 - k0)) : 0.0;
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t i = train_.indices[k];
      double* p = &pu_[u * f_];
      double* q = &qi_[i * f_];
      // Surprise recomputes the implicit sum for every rating (the y_j move after each one).
      std::fill(impl.begin(), impl.end(), 0.0);
      if (opt_.plus_plus)
        for (int64_t kj = k0; kj < k1; ++kj) {
          const double* y = &yj_[static_cast<int64_t>(train_.indices[kj]) * f_];
          for (int64_t f = 0; f < f_; ++f) impl[f] += y[f] * inv_sqrt;
        }
      double dot = 0;
      for (int64_t f = 0; f < f_; ++f) dot += q[f] * (p[f] + impl[f]);
      const double err = train_.values[k] - (mu_ + bu_[u] + bi_[i] + dot);
      sq += err * err;
      bu_[u] += lr * (err - reg * bu_[u]);
      bi_[i] += lr * (err - reg * bi_[i]);
      for (int64_t f = 0; f < f_; ++f) {
        const double pf = p[f], qf = q[f];
        p[f] += lr * (err * qf - reg * pf);
        q[f] += lr * (err * (pf + impl[f]) - reg * qf);
        if (opt_.plus_plus)
          for (int64_t kj = k0; kj < k1; ++kj) {
            double& y = yj_[static_cast<int64_t>(train_.indices[kj]) * f_ + f];
            y += lr * (err * qf * inv_sqrt - reg * y);
          }
      }
    }
  }
  return std::sqrt(sq / static_cast<double>(train_.nnz()));
}

void SvdModel::fit(const std::function<void(int, double)>& on_epoch) {
  for (int e = 1; e <= opt_.epochs; ++e) {
    const double r = run_epoch();
    if (!std::isfinite(r)) throw VaeError(kind() + " diverged at epoch " + std::to_string(e) + ": lower --lr");
    if (on_epoch) on_epoch(e, r);
  }
}

double SvdModel::predict(int64_t u, int64_t i) const {
  const bool ku = u >= 0 && u < users_ && train_.row_nnz(u) > 0;
  const bool ki = i >= 0 && i < items_ && item_seen_[i];
  double est = mu_;
  if (ku) est += bu_[u];
  if (ki) est += bi_[i];
  if (ku && ki) {
    std::vector<double> v(static_cast<size_t>(f_));
    user_vector(u, v.data());
    const double* q = &qi_[i * f_];
    for (int64_t f = 0; f < f_; ++f) est += q[f] * v[f];
  }
  return std::clamp(est, static_cast<double>(lo_), static_cast<double>(hi_));
}

void SvdModel::score_items(int64_t u, std::vector<float>& out) const {
  VAE_CHECK(u >= 0 && u < users_, "score_items: user out of range");
  out.assign(static_cast<size_t>(items_), 0.0f);
  std::vector<double> v(static_cast<size_t>(f_));
  user_vector(u, v.data());
  for (int64_t i = 0; i < items_; ++i) {
    double est = mu_ + bu_[u] + bi_[i];
    const double* q = &qi_[i * f_];
    for (int64_t f = 0; f < f_; ++f) est += q[f] * v[f];
    out[i] = static_cast<float>(est);
  }
}

RatingErrors SvdModel::evaluate(const Csr& test) const {
  VAE_CHECK(test.rows == users_ && test.cols == items_, "SVD evaluate: test matrix shape differs from training");
  RatingErrors e;
  double sq = 0, ab = 0;
  for (int64_t u = 0; u < test.rows; ++u)
    for (int64_t k = test.indptr[u]; k < test.indptr[u + 1]; ++k) {
      const double d = predict(u, test.indices[k]) - test.values[k];
      sq += d * d;
      ab += std::fabs(d);
      ++e.count;
    }
  if (e.count) {
    e.rmse = std::sqrt(sq / static_cast<double>(e.count));
    e.mae = ab / static_cast<double>(e.count);
  }
  return e;
}

}  // namespace vae
