// Biased matrix factorisation baselines with the meaning of the Surprise library's SVD and
// SVD++ (the write-up's recommender), trained by SGD over the observed ratings:
//   SVD:   r̂ = μ + b_u + b_i + q_iᵀ p_u
//   SVD++: r̂ = μ + b_u + b_i + q_iᵀ (p_u + |N(u)|^−½ Σ_{j ∈ N(u)} y_j)
// with Surprise's defaults (SVD: 100 factors, lr 0.005; SVD++: 20 factors, lr 0.007; both
// 20 epochs, reg 0.02, init N(0, 0.1²)) and its update order: one pass per epoch over the
// ratings in storage order (user by user), each rating updating biases and factors at once.
// Predictions are clipped to the rating range; an unknown user or item drops its terms and
// both unknown gives μ, as Surprise does.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace vae {

struct SvdOptions {
  bool plus_plus = false;
  int factors = 0;     // 0 = 100 (SVD) / 20 (SVD++)
  int epochs = 20;
  double lr = 0;       // 0 = 0.005 (SVD) / 0.007 (SVD++)
  double reg = 0.02;
  double init_std = 0.1;
  uint64_t seed = 1;
};

struct RatingErrors {
  double rmse = 0, mae = 0;
  int64_t count = 0;
};

class SvdModel {
 public:
  // train: users × items ratings; the rating range clips predictions.
  SvdModel(const Csr& train, float rating_min, float rating_max, SvdOptions opt);
  const SvdOptions& options() const { return opt_; }
  std::string kind() const { return opt_.plus_plus ? "svdpp" : "svd"; }

  // One SGD pass over the training ratings; returns the training RMSE seen during the pass.
  double run_epoch();
  // All epochs; on_epoch(epoch, train_rmse) after each (may be empty).
  void fit(const std::function<void(int, double)>& on_epoch = {});

  // Clipped prediction for dense indices (u or i may be out of the training range: unknown).
  double predict(int64_t u, int64_t i) const;
  // Unclipped scores of every item for user u (recommendations), into out (items entries).
  void score_items(int64_t u, std::vector<float>& out) const;
  RatingErrors evaluate(const Csr& test) const;

  double global_mean() const { return mu_; }
  const std::vector<double>& user_bias() const { return bu_; }
  const std::vector<double>& item_bias() const { return bi_; }
  const std::vector<double>& user_factors() const { return pu_; }  // users × factors
  const std::vector<double>& item_factors() const { return qi_; }  // items × factors
  const std::vector<double>& implicit_factors() const { return yj_; }  // items × factors (SVD++)
  int64_t num_params() const;

 private:
  // p_u + |N(u)|^−½ Σ y_j for SVD++ (p_u for SVD) into v.
  void user_vector(int64_t u, double* v) const;
  Csr train_;
  float lo_, hi_;
  SvdOptions opt_;
  int64_t users_, items_, f_;
  double mu_ = 0;
  std::vector<double> bu_, bi_, pu_, qi_, yj_;
  std::vector<uint8_t> item_seen_;
};

}  // namespace vae
