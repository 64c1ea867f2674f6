// The blocked schedule's CPU twin must round exactly like the GPU kernels, which never fuse a
// multiply and an add (kernels/svd_sgd.h): keep GCC from contracting a·b + c into an FMA on
// targets that have one. (Before any include, so inlined helpers get the same options.)
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "models/svd.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <queue>

#include "core/error.h"
#include "core/philox.h"
#include "kernels/svd_sgd.h"

namespace vae {

bool is_svd_kind(const std::string& kind) { return kind == "svd" || kind == "svdpp"; }

const char* svd_schedule_name(SvdSchedule s) { return s == SvdSchedule::serial ? "serial" : "blocked"; }

int default_svd_blocks(int64_t users, int64_t items) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({264, users, items})));
}

namespace {

// Largest count first to the lightest block (ties: lower index, lower block).
std::vector<int32_t> balance_blocks(const std::vector<int64_t>& counts, int blocks) {
  std::vector<int32_t> idx(counts.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return counts[a] > counts[b]; });
  using Load = std::pair<int64_t, int32_t>;
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> heap;
  for (int32_t b = 0; b < blocks; ++b) heap.push({0, b});
  std::vector<int32_t> out(counts.size(), 0);
  for (int32_t i : idx) {
    Load l = heap.top();
    heap.pop();
    out[i] = l.second;
    l.first += counts[i];
    heap.push(l);
  }
  return out;
}

}  // namespace

SvdBlockPlan make_svd_block_plan(const Csr& train, int blocks) {
  if (blocks < 1 || blocks > 4096) throw UsageError("--svd-blocks must be between 1 and 4096");
  if (train.nnz() >= INT32_MAX) throw UsageError("the blocked SVD schedule takes at most 2^31 - 1 training ratings");
  SvdBlockPlan p;
  p.blocks = blocks;
  const int64_t U = train.rows, I = train.cols, B = blocks;
  std::vector<int64_t> ucount(static_cast<size_t>(U)), icount(static_cast<size_t>(I), 0);
  for (int64_t u = 0; u < U; ++u) ucount[u] = train.row_nnz(u);
  for (int32_t i : train.indices) ++icount[i];
  p.user_block = balance_blocks(ucount, blocks);
  p.item_block = balance_blocks(icount, blocks);
  // Counting sort of the ratings by block, stable so each block keeps storage order.
  p.block_ptr.assign(static_cast<size_t>(B * B + 1), 0);
  for (int64_t u = 0; u < U; ++u)
    for (int64_t k = train.indptr[u]; k < train.indptr[u + 1]; ++k)
      ++p.block_ptr[static_cast<size_t>(p.user_block[u] * B + p.item_block[train.indices[k]] + 1)];
  for (size_t b = 1; b < p.block_ptr.size(); ++b) p.block_ptr[b] += p.block_ptr[b - 1];
  std::vector<int64_t> fill(p.block_ptr.begin(), p.block_ptr.end() - 1);
  const size_t n = static_cast<size_t>(train.nnz());
  p.user.resize(n);
  p.item.resize(n);
  p.value.resize(n);
  for (int64_t u = 0; u < U; ++u)
    for (int64_t k = train.indptr[u]; k < train.indptr[u + 1]; ++k) {
      const int32_t i = train.indices[k];
      const int64_t at = fill[static_cast<size_t>(p.user_block[u] * B + p.item_block[i])]++;
      p.user[at] = static_cast<int32_t>(u);
      p.item[at] = i;
      p.value[at] = train.values[k];
    }
  p.inv_sqrt.assign(static_cast<size_t>(U), 0.0);
  for (int64_t u = 0; u < U; ++u)
    if (ucount[u] > 0) p.inv_sqrt[u] = 1.0 / std::sqrt(static_cast<double>(ucount[u]));
  p.row_ptr = train.indptr;
  p.row_items = train.indices;
  const Csr t = train.transpose();  // sorted: each item's users ascending
  p.col_ptr = t.indptr;
  p.col_users = t.indices;
  return p;
}

void svd_block_order(const SvdBlockPlan& plan, uint64_t seed, int epoch, std::vector<int32_t>& order) {
  order.resize(static_cast<size_t>(plan.nnz()));
  const uint64_t stream = svd_order_stream(epoch);
  const size_t nb = plan.block_ptr.size() - 1;
  for (size_t b = 0; b < nb; ++b)
    svd_shuffle_block(order.data(), plan.block_ptr[b], plan.block_ptr[b + 1] - plan.block_ptr[b], seed, stream);
}

SvdModel::SvdModel(const Csr& train, float rating_min, float rating_max, SvdOptions opt)
    : train_(train), lo_(rating_min), hi_(rating_max), opt_(opt) {
  if (opt_.factors <= 0) opt_.factors = opt_.plus_plus ? 20 : 100;
  if (opt_.lr <= 0) opt_.lr = opt_.plus_plus ? 0.007 : 0.005;
  if (opt_.epochs < 1) throw UsageError("--epochs must be at least 1");
  if (opt_.reg < 0) throw UsageError("SVD regularisation must be non-negative");
  if (train_.nnz() == 0) throw UsageError("SVD: the training split has no ratings");
  if (opt_.cuda && opt_.schedule != SvdSchedule::blocked)
    throw UsageError("SVD on the GPU uses the blocked schedule (the serial one is CPU-only)");
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
  nptr_ = train_.indptr;
  if (opt_.plus_plus) nitems_ = train_.indices;
  item_counts_.assign(static_cast<size_t>(items_), 0);
  for (int32_t i : train_.indices) ++item_counts_[i];
  if (opt_.schedule == SvdSchedule::blocked) {
    if (opt_.blocks == 0) opt_.blocks = default_svd_blocks(users_, items_);
    plan_ = std::make_unique<SvdBlockPlan>(make_svd_block_plan(train_, opt_.blocks));
  }
}

SvdModel::SvdModel(SvdState s) : trainable_(false), lo_(s.rating_min), hi_(s.rating_max), opt_(s.options) {
  users_ = static_cast<int64_t>(s.bu.size());
  items_ = static_cast<int64_t>(s.bi.size());
  f_ = opt_.factors;
  auto need = [](bool ok, const std::string& what) {
    if (!ok) throw VaeError("SVD state: " + what);
  };
  need(f_ >= 1, "factors must be positive");
  need(static_cast<int64_t>(s.pu.size()) == users_ * f_, "user factors are not users x factors");
  need(static_cast<int64_t>(s.qi.size()) == items_ * f_, "item factors are not items x factors");
  need(opt_.plus_plus ? static_cast<int64_t>(s.yj.size()) == items_ * f_ : s.yj.empty(),
       "implicit factors do not fit the model kind");
  need(static_cast<int64_t>(s.user_counts.size()) == users_, "one rating count per user expected");
  need(static_cast<int64_t>(s.item_counts.size()) == items_, "one rating count per item expected");
  mu_ = s.mu;
  bu_ = std::move(s.bu);
  bi_ = std::move(s.bi);
  pu_ = std::move(s.pu);
  qi_ = std::move(s.qi);
  yj_ = std::move(s.yj);
  nptr_.assign(static_cast<size_t>(users_ + 1), 0);
  for (int64_t u = 0; u < users_; ++u) {
    need(s.user_counts[u] >= 0, "negative rating count");
    nptr_[u + 1] = nptr_[u] + s.user_counts[u];
  }
  for (int32_t c : s.item_counts) need(c >= 0, "negative rating count");
  item_counts_ = std::move(s.item_counts);
  if (opt_.plus_plus) {
    need(static_cast<int64_t>(s.implicit_items.size()) == nptr_.back(),
         "the implicit item lists do not match the users' rating counts");
    for (int32_t i : s.implicit_items) need(i >= 0 && i < items_ && item_counts_[i] > 0, "implicit item out of range");
    nitems_ = std::move(s.implicit_items);
  }
  train_.rows = users_;
  train_.cols = items_;
  train_.indptr.assign(static_cast<size_t>(users_ + 1), 0);
  epoch_ = opt_.epochs;
}

SvdModel::~SvdModel() = default;

int64_t SvdModel::num_params() const {
  return static_cast<int64_t>(bu_.size() + bi_.size() + pu_.size() + qi_.size() + yj_.size());
}

SvdState SvdModel::state() const {
  SvdState s;
  s.options = opt_;
  s.rating_min = lo_;
  s.rating_max = hi_;
  s.mu = mu_;
  s.bu = bu_;
  s.bi = bi_;
  s.pu = pu_;
  s.qi = qi_;
  s.yj = yj_;
  s.user_counts.resize(static_cast<size_t>(users_));
  for (int64_t u = 0; u < users_; ++u) s.user_counts[u] = static_cast<int32_t>(nptr_[u + 1] - nptr_[u]);
  s.item_counts = item_counts_;
  s.implicit_items = nitems_;
  return s;
}

bool SvdModel::trained_on(const Csr& train) const {
  if (train.rows != users_ || train.cols != items_) return false;
  for (int64_t u = 0; u < users_; ++u)
    if (train.row_nnz(u) != nptr_[u + 1] - nptr_[u]) return false;
  std::vector<int32_t> counts(static_cast<size_t>(items_), 0);
  for (int32_t i : train.indices) ++counts[i];
  if (counts != item_counts_) return false;
  return !opt_.plus_plus || train.indices == nitems_;
}

void SvdModel::user_vector_into(int64_t u, double* v) const {
  const double* p = &pu_[u * f_];
  std::copy(p, p + f_, v);
  if (!opt_.plus_plus) return;
  const int64_t n = nptr_[u + 1] - nptr_[u];
  if (n == 0) return;
  const double s = 1.0 / std::sqrt(static_cast<double>(n));
  for (int64_t k = nptr_[u]; k < nptr_[u + 1]; ++k) {
    const double* y = &yj_[static_cast<int64_t>(nitems_[k]) * f_];
    for (int64_t f = 0; f < f_; ++f) v[f] += s * y[f];
  }
}

std::vector<double> SvdModel::user_vector(int64_t u) const {
  VAE_CHECK(u >= 0 && u < users_, "user_vector: user out of range");
  std::vector<double> v(static_cast<size_t>(f_));
  user_vector_into(u, v.data());
  return v;
}

double SvdModel::run_epoch() {
  if (!trainable_) throw UsageError("a model loaded from a file cannot be trained further");
  double r = 0;
  if (opt_.schedule == SvdSchedule::serial) r = run_serial_epoch();
  else if (opt_.cuda) r = run_cuda_epoch();
  else r = run_blocked_epoch();
  ++epoch_;
  return r;
}

double SvdModel::run_serial_epoch() {
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

// The CPU twin of kernels/svd_sgd.cu, operation for operation (see kernels/svd_sgd.h).
double SvdModel::run_blocked_epoch() {
  const SvdBlockPlan& P = *plan_;
  const int B = P.blocks;
  const int64_t F = f_;
  const bool pp = opt_.plus_plus;
  const double lr = opt_.lr, reg = opt_.reg;
  const double c = hd_sub(1.0, hd_mul(lr, reg));
  svd_block_order(P, opt_.seed, epoch_, order_);
  std::vector<double> z, g, a;
  std::vector<int64_t> stamp;  // SVD++: the sub-epoch that last touched each user
  if (pp) {
    z.assign(static_cast<size_t>(users_ * F), 0.0);
    g.assign(static_cast<size_t>(users_ * F), 0.0);
    a.assign(static_cast<size_t>(users_), 1.0);
    stamp.assign(static_cast<size_t>(users_), -1);
  }
  std::vector<double> sq(static_cast<size_t>(B), 0.0);
  for (int s = 0; s < B; ++s) {
    const int64_t now = static_cast<int64_t>(epoch_) * B + s;
    for (int b = 0; b < B; ++b) {
      const int cb = (b + s) % B;
      double local = 0.0;
      for (int64_t k = P.block_begin(b, cb); k < P.block_end(b, cb); ++k) {
        const int32_t idx = order_[k];
        const int64_t u = P.user[idx], i = P.item[idx];
        double* p = &pu_[u * F];
        double* q = &qi_[i * F];
        double* zu = pp ? &z[u * F] : nullptr;
        double* gu = pp ? &g[u * F] : nullptr;
        if (pp && stamp[u] != now) {
          for (int64_t f = 0; f < F; ++f) {
            double acc = 0.0;
            for (int64_t kj = P.row_ptr[u]; kj < P.row_ptr[u + 1]; ++kj)
              acc = hd_add(acc, hd_mul(yj_[static_cast<int64_t>(P.row_items[kj]) * F + f], P.inv_sqrt[u]));
            zu[f] = acc;
            gu[f] = 0.0;
          }
          a[u] = 1.0;
          stamp[u] = now;
        }
        const double dot = svd_warp_dot(q, p, zu, F);
        const double err = svd_error(static_cast<double>(P.value[idx]), mu_, bu_[u], bi_[i], dot);
        local = hd_add(local, hd_mul(err, err));
        bu_[u] = svd_step(bu_[u], err, lr, reg);
        bi_[i] = svd_step(bi_[i], err, lr, reg);
        if (pp) a[u] = hd_mul(a[u], c);
        const double lr_err = hd_mul(lr, err);
        for (int64_t f = 0; f < F; ++f) {
          const double pf = p[f], qf = q[f];
          p[f] = svd_step(pf, hd_mul(err, qf), lr, reg);
          if (pp) {
            const double zf = zu[f];
            q[f] = svd_step(qf, hd_mul(err, hd_add(pf, zf)), lr, reg);
            zu[f] = svd_step(zf, hd_mul(err, qf), lr, reg);
            gu[f] = svd_implicit_accumulate(gu[f], c, lr_err, qf, P.inv_sqrt[u]);
          } else {
            q[f] = svd_step(qf, hd_mul(err, pf), lr, reg);
          }
        }
      }
      sq[b] = hd_add(sq[b], local);
    }
    // SVD++: this sub-epoch's users' y updates, item by item, users ascending.
    if (pp)
      for (int64_t j = 0; j < items_; ++j)
        for (int64_t k = P.col_ptr[j]; k < P.col_ptr[j + 1]; ++k) {
          const int64_t u = P.col_users[k];
          if (stamp[u] != now) continue;
          for (int64_t f = 0; f < F; ++f) yj_[j * F + f] = hd_add(hd_mul(a[u], yj_[j * F + f]), g[u * F + f]);
        }
  }
  double total = 0.0;
  for (int b = 0; b < B; ++b) total = hd_add(total, sq[b]);
  return std::sqrt(total / static_cast<double>(P.nnz()));
}

double SvdModel::run_cuda_epoch() {
  const SvdParamRefs refs{&bu_, &bi_, &pu_, &qi_, &yj_};
  if (!cuda_) {
    SvdSgdConstants c;
    c.mu = mu_;
    c.lr = opt_.lr;
    c.reg = opt_.reg;
    c.decay = hd_sub(1.0, hd_mul(opt_.lr, opt_.reg));
    c.factors = f_;
    c.plus_plus = opt_.plus_plus;
    c.seed = opt_.seed;
    cuda_ = std::make_unique<SvdSgdCuda>(*plan_, c, refs);
  }
  const double total = cuda_->run_epoch(epoch_);
  cuda_->download(refs);  // the host copy answers predictions after every epoch
  return std::sqrt(total / static_cast<double>(plan_->nnz()));
}

void SvdModel::fit(const std::function<void(int, double)>& on_epoch) {
  for (int e = 1; e <= opt_.epochs; ++e) {
    const double r = run_epoch();
    if (!std::isfinite(r)) throw VaeError(kind() + " diverged at epoch " + std::to_string(e) + ": lower --lr (or --lambda, if it is large)");
    if (on_epoch) on_epoch(e, r);
  }
}

double SvdModel::predict(int64_t u, int64_t i) const {
  const bool ku = user_known(u);
  const bool ki = item_known(i);
  double est = mu_;
  if (ku) est += bu_[u];
  if (ki) est += bi_[i];
  if (ku && ki) {
    std::vector<double> v(static_cast<size_t>(f_));
    user_vector_into(u, v.data());
    const double* q = &qi_[i * f_];
    for (int64_t f = 0; f < f_; ++f) est += q[f] * v[f];
  }
  return std::clamp(est, static_cast<double>(lo_), static_cast<double>(hi_));
}

void SvdModel::score_with(double bu, const std::vector<double>& v, std::vector<float>& out) const {
  VAE_CHECK(static_cast<int64_t>(v.size()) == f_, "score_with: user vector size differs from the factors");
  out.assign(static_cast<size_t>(items_), 0.0f);
  for (int64_t i = 0; i < items_; ++i) {
    double est = mu_ + bu;
    if (item_known(i)) {
      est += bi_[i];
      const double* q = &qi_[i * f_];
      for (int64_t f = 0; f < f_; ++f) est += q[f] * v[f];
    }
    out[i] = static_cast<float>(est);
  }
}

void SvdModel::score_items(int64_t u, std::vector<float>& out) const {
  VAE_CHECK(u >= 0 && u < users_, "score_items: user out of range");
  if (user_known(u)) score_with(bu_[u], user_vector(u), out);
  else score_with(0.0, std::vector<double>(static_cast<size_t>(f_), 0.0), out);
}

std::pair<double, std::vector<double>> SvdModel::fold_in(const std::vector<std::pair<int32_t, float>>& ratings) const {
  std::vector<std::pair<int32_t, float>> known;
  for (const auto& ir : ratings)
    if (item_known(ir.first)) known.push_back(ir);
  double bu = 0;
  std::vector<double> p(static_cast<size_t>(f_), 0.0), v(static_cast<size_t>(f_), 0.0);
  if (known.empty()) return {bu, v};
  // SVD++: the given items' implicit term, summed as for a stored user (user_vector_into).
  std::vector<double> z(static_cast<size_t>(f_), 0.0);
  if (opt_.plus_plus) {
    const double s = 1.0 / std::sqrt(static_cast<double>(known.size()));
    for (const auto& ir : known) {
      const double* y = &yj_[static_cast<int64_t>(ir.first) * f_];
      for (int64_t f = 0; f < f_; ++f) z[f] += s * y[f];
    }
  }
  const double lr = opt_.lr, reg = opt_.reg;
  for (int e = 0; e < opt_.epochs; ++e)
    for (const auto& [i, r] : known) {
      const double* q = &qi_[static_cast<int64_t>(i) * f_];
      double dot = 0;
      for (int64_t f = 0; f < f_; ++f) dot += q[f] * (p[f] + z[f]);
      const double err = r - (mu_ + bu + bi_[i] + dot);
      bu += lr * (err - reg * bu);
      for (int64_t f = 0; f < f_; ++f) p[f] += lr * (err * q[f] - reg * p[f]);
    }
  for (int64_t f = 0; f < f_; ++f) v[f] = p[f] + z[f];
  return {bu, v};
}

RatingErrors SvdModel::evaluate(const Csr& test) const {
  VAE_CHECK(test.rows == users_ && test.cols == items_, "SVD evaluate: test matrix shape differs from training");
  RatingErrors e;
  double sq = 0, ab = 0;
  e.rows.assign(static_cast<size_t>(test.rows), {0.0, 0});
  for (int64_t u = 0; u < test.rows; ++u)
    for (int64_t k = test.indptr[u]; k < test.indptr[u + 1]; ++k) {
      const double d = predict(u, test.indices[k]) - test.values[k];
      sq += d * d;
      ab += std::fabs(d);
      ++e.count;
      e.rows[u].first += d * d;
      ++e.rows[u].second;
    }
  if (e.count) {
    e.rmse = std::sqrt(sq / static_cast<double>(e.count));
    e.mae = ab / static_cast<double>(e.count);
  }
  return e;
}

}  // namespace vae
