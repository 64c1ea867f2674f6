#include "models/baselines.h"

#include <cmath>
#include <sstream>

#ifdef VAE_HAVE_OPENBLAS
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
}
#endif

namespace vae {

namespace {
ModelConfig baseline_config(const char* kind, const Csr& train) {
  ModelConfig c;
  c.kind = kind;
  c.num_inputs = train.cols;
  c.num_rows = train.rows;
  return c;
}
}  // namespace

// ---- popularity ------------------------------------------------------------------------

template <typename T>
PopularityModel<T>::PopularityModel(Backend<T>& be, const Csr& train, bool rating_mode,
                                    int64_t max_batch)
    : Model<T>(be, baseline_config("popularity", train), max_batch) {
  std::vector<double> count(train.cols, 0.0), sum(train.cols, 0.0);
  double total = 0;
  for (int64_t k = 0; k < train.nnz(); ++k) {
    count[train.indices[k]] += 1;
    sum[train.indices[k]] += train.values[k];
    total += train.values[k];
  }
  const double global_mean = train.nnz() ? total / train.nnz() : 0.0;
  host_scores_.resize(train.cols);
  for (int64_t i = 0; i < train.cols; ++i) {
    host_scores_[i] = static_cast<float>(rating_mode ? (count[i] ? sum[i] / count[i] : global_mean)
                                                     : count[i]);
  }
  this->allocate_params();
  row_ = be.template upload<T>(std::vector<T>(host_scores_.begin(), host_scores_.end()), 1, train.cols);
}

template <typename T>
void PopularityModel<T>::predict(const Batch<T>& b, Mat<T> out) {
  VAE_CHECK(b.n <= this->max_batch_ && out.rows == b.n && out.cols == row_.cols(),
            "popularity predict: bad output shape");
  if (b.n == 0) return;
  // Every row gets the same item scores: zeros plus the score row as a bias, exact on every
  // backend (a rank-1 GEMM would round counts and means under --precision tf32 / bf16).
  this->be_.fill(out, T(0));
  this->be_.bias_act(out, row_.cmat(), Act::identity, out);
}

// ---- EASE ------------------------------------------------------------------------------

void spd_inverse(std::vector<double>& a, int64_t n) {
  VAE_CHECK(static_cast<int64_t>(a.size()) == n * n, "spd_inverse: size mismatch");
  if (n == 0) return;
#ifdef VAE_HAVE_OPENBLAS
  const int ni = static_cast<int>(n);
  int info = 0;
  const char uplo = 'L';
  dpotrf_(&uplo, &ni, a.data(), &ni, &info);
  if (info != 0) throw VaeError("spd_inverse: matrix not positive definite (dpotrf info " + std::to_string(info) + ")");
  dpotri_(&uplo, &ni, a.data(), &ni, &info);
  if (info != 0) throw VaeError("spd_inverse: dpotri failed (info " + std::to_string(info) + ")");
  // Column-major lower = row-major upper: mirror it into the other triangle.
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i + 1; j < n; ++j) a[j * n + i] = a[i * n + j];
#else
  // Cholesky a = L·Lᵀ (L in the lower triangle, row-major).
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0)) throw VaeError("spd_inverse: matrix not positive definite at row " + std::to_string(j));
    const double ljj = std::sqrt(d);
    a[j * n + j] = ljj;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[i * n + j];
      const double* ri = &a[i * n];
      const double* rj = &a[j * n];
      for (int64_t k = 0; k < j; ++k) s -= ri[k] * rj[k];
      a[i * n + j] = s / ljj;
    }
  }
  // M = L⁻¹ (lower), by forward substitution column by column.
  std::vector<double> m(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    m[i * n + i] = 1.0 / a[i * n + i];
    for (int64_t j = 0; j < i; ++j) {
      double s = 0;
      for (int64_t k = j; k < i; ++k) s += a[i * n + k] * m[k * n + j];
      m[i * n + j] = -s / a[i * n + i];
    }
  }
  // a⁻¹ = Mᵀ·M; entry (i, j) sums over k ≥ max(i, j).
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t k = i; k < n; ++k) s += m[k * n + i] * m[k * n + j];
      a[i * n + j] = s;
      a[j * n + i] = s;
    }
  }
#endif
}

template <typename T>
EaseModel<T>::EaseModel(Backend<T>& be, const Csr& train, double lambda, int64_t max_batch)
    : Model<T>(be, baseline_config("ease", train), max_batch), train_bin_(train) {
  std::fill(train_bin_.values.begin(), train_bin_.values.end(), 1.0f);
  const int64_t n = train.cols;
  gram_.assign(static_cast<size_t>(n * n), 0.0);
  for (int64_t u = 0; u < train.rows; ++u) {
    const int64_t b = train.indptr[u], e = train.indptr[u + 1];
    for (int64_t p = b; p < e; ++p)
      for (int64_t q = b; q < e; ++q) gram_[train.indices[p] * n + train.indices[q]] += 1.0;
  }
  this->allocate_params();
  b_ = be.template alloc<T>(n, n);
  x_ = be.template alloc<T>(max_batch, n);
  set_lambda(lambda);
}

template <typename T>
void EaseModel<T>::set_lambda(double lambda) {
  VAE_CHECK(lambda > 0, "EASE lambda must be positive");
  if (solved_ && lambda == lambda_) return;  // an items × items solve: never twice for one lambda
  solved_ = true;
  lambda_ = lambda;
  const int64_t n = train_bin_.cols;
  std::vector<double> p = gram_;
  for (int64_t i = 0; i < n; ++i) p[i * n + i] += lambda;
  try {
    spd_inverse(p, n);
  } catch (const VaeError&) {
    // G + λI is positive definite in exact arithmetic; in doubles a tiny λ leaves it singular.
    std::ostringstream m;
    m << "EASE: the item Gram matrix plus lambda " << lambda
      << " on its diagonal is numerically singular (not positive definite): raise --ease-lambda (its grid runs 10 to 2000)";
    throw UsageError(m.str());
  }
  // B_ij = −P_ij / P_jj off the diagonal, 0 on it.
  std::vector<T> bh(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      bh[i * n + j] = i == j ? T(0) : static_cast<T>(-p[i * n + j] / p[j * n + j]);
  // A lambda dwarfing every co-occurrence count leaves weights below the float range: every
  // score 0, every ranking a tie broken by item order. Said, not ranked.
  bool co_rated = false, any_weight = false;
  for (int64_t i = 0; i < n && !(co_rated && any_weight); ++i)
    for (int64_t j = 0; j < n; ++j)
      if (i != j) {
        co_rated = co_rated || gram_[i * n + j] > 0;
        any_weight = any_weight || bh[i * n + j] != T(0);
      }
  if (co_rated && !any_weight) {
    std::ostringstream m;
    m << "EASE: lambda " << lambda << " is so large that every item weight is 0 in " << (sizeof(T) == 4 ? "float" : "double")
      << " (every score ties): lower --ease-lambda (its grid runs 10 to 2000)";
    throw UsageError(m.str());
  }
  this->be_.upload_into(bh, b_.mat());
}

template <typename T>
void EaseModel<T>::predict(const Batch<T>& b, Mat<T> out) {
  VAE_CHECK(b.n <= this->max_batch_ && out.rows == b.n && out.cols == b_.cols(),
            "EASE predict: bad output shape");
  if (b.n == 0) return;
  Mat<T> x = x_.mat().rows_slice(0, b.n);
  this->be_.csr_rows_to_dense(b.input, b.rows, x);
  this->be_.gemm(false, false, T(1), x, b_.cmat(), T(0), out);
}

template class PopularityModel<float>;
template class PopularityModel<double>;
template class EaseModel<float>;
template class EaseModel<double>;

}  // namespace vae
