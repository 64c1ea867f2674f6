// Non-gradient baselines behind the Model interface so the trainer evaluates them exactly like
// the autoencoders: popularity (item counts, or item mean ratings for rating prediction) and
// EASE (Steck 2019), whose item–item matrix is computed in closed form on the host in double.
#pragma once
#include <memory>

#include "data/dataset.h"
#include "models/model.h"

namespace vae {

template <typename T>
class PopularityModel final : public Model<T> {
 public:
  // rating_mode: score = item mean training rating (global mean where an item has none);
  // otherwise score = number of training interactions.
  PopularityModel(Backend<T>& be, const Csr& train, bool rating_mode, int64_t max_batch);
  std::string kind() const override { return "popularity"; }
  void init(uint64_t) override {}
  void forward_backward(const Batch<T>&, int64_t, bool, Mat<T>) override {}
  void predict(const Batch<T>& b, Mat<T> out) override;
  const std::vector<float>& scores() const { return host_scores_; }

 private:
  std::vector<float> host_scores_;
  Tensor<T> row_;   // 1 × items
};

template <typename T>
class EaseModel final : public Model<T> {
 public:
  // B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹ over the binarised training matrix X.
  EaseModel(Backend<T>& be, const Csr& train, double lambda, int64_t max_batch);
  std::string kind() const override { return "ease"; }
  void init(uint64_t) override {}
  void forward_backward(const Batch<T>&, int64_t, bool, Mat<T>) override {}
  // scores = X_batch · B (B's zero diagonal keeps an item from recommending itself); the
  // caller passes binary input rows, as EASE was fitted on.
  void predict(const Batch<T>& b, Mat<T> out) override;
  double lambda() const { return lambda_; }
  // B, items × items (row i: the weight liking item i gives each item's score).
  Mat<T> item_item() const { return b_.mat(); }
  // Recomputes B for another λ from the cached eigen/Gram data.
  void set_lambda(double lambda);

 private:
  Csr train_bin_;
  std::vector<double> gram_;  // XᵀX, items × items
  double lambda_ = 0;
  bool solved_ = false;
  Tensor<T> b_;    // items × items
  Tensor<T> x_;    // max_batch × items work buffer
};

// Symmetric positive-definite inverse in place (row-major n × n, double); LAPACK when built
// with OpenBLAS, else a plain Cholesky. Throws VaeError if a is not positive definite.
void spd_inverse(std::vector<double>& a, int64_t n);

}  // namespace vae
