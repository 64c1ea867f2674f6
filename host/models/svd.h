// Biased matrix factorisation baselines with the meaning of the Surprise library's SVD and
// SVD++ (the write-up's recommender), trained by SGD over the observed ratings:
//   SVD:   r̂ = μ + b_u + b_i + q_iᵀ p_u
//   SVD++: r̂ = μ + b_u + b_i + q_iᵀ (p_u + |N(u)|^−½ Σ_{j ∈ N(u)} y_j)
// with Surprise's defaults (SVD: 100 factors, lr 0.005; SVD++: 20 factors, lr 0.007; both
// 20 epochs, reg 0.02, init N(0, 0.1²)).
//
// Two SGD schedules:
//  - serial (the default on the CPU, the oracle): Surprise's update order — one pass per epoch
//    over the ratings in storage order (user by user), each rating updating biases and factors
//    at once;
//  - blocked (DSGD, Gemulla et al. 2011): users and items cut into B blocks each, an epoch is B
//    sub-epochs of B independent blocks, ratings inside a block visited in a seeded shuffled
//    order (see kernels/svd_sgd.h). Deterministic for (data, seed, B) and bit-identical between
//    the CPU twin and the GPU (SvdOptions::cuda). SVD++ moves y_j after each sub-epoch rather
//    than after every rating (a user's own implicit term still follows every rating; see
//    kernels/svd_sgd.h).
// Predictions are clipped to the rating range; an unknown user or item drops its terms and
// both unknown gives μ, as Surprise does.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset.h"

namespace vae {

class SvdSgdCuda;

bool is_svd_kind(const std::string& kind);  // "svd" or "svdpp"

enum class SvdSchedule { serial, blocked };
const char* svd_schedule_name(SvdSchedule s);

struct SvdOptions {
  bool plus_plus = false;
  int factors = 0;     // 0 = 100 (SVD) / 20 (SVD++)
  int epochs = 20;
  double lr = 0;       // 0 = 0.005 (SVD) / 0.007 (SVD++)
  double reg = 0.02;
  double init_std = 0.1;
  uint64_t seed = 1;
  SvdSchedule schedule = SvdSchedule::serial;
  int blocks = 0;      // blocked: B (0 = default_svd_blocks)
  bool cuda = false;   // blocked: run the epochs on the GPU
};

// B when none is given: 264 = 2 × the 132 SMs of an H100/H200, fixed rather than queried so a
// CPU run of the blocked schedule reproduces a GPU run; at most min(users, items).
int default_svd_blocks(int64_t users, int64_t items);

// The blocked schedule's layout: ratings grouped by block (row block r, column block c) at
// [block_ptr[r·B + c], block_ptr[r·B + c + 1]), storage (user, item) order inside a block.
// Users and items go to blocks by greedy balancing of their rating counts (largest first to
// the lightest block, ties to the lower index), so blocks hold similar numbers of ratings.
struct SvdBlockPlan {
  int blocks = 0;
  std::vector<int32_t> user_block, item_block;
  std::vector<int64_t> block_ptr;
  std::vector<int32_t> user, item;
  std::vector<float> value;
  std::vector<double> inv_sqrt;  // per user: |N(u)|^−½ (0 without ratings)
  // SVD++: the training structure by user (CSR) and by item (CSC, users ascending).
  std::vector<int64_t> row_ptr, col_ptr;
  std::vector<int32_t> row_items, col_users;
  int64_t nnz() const { return static_cast<int64_t>(user.size()); }
  int64_t block_begin(int r, int c) const { return block_ptr[static_cast<size_t>(r) * blocks + c]; }
  int64_t block_end(int r, int c) const { return block_ptr[static_cast<size_t>(r) * blocks + c + 1]; }
};
SvdBlockPlan make_svd_block_plan(const Csr& train, int blocks);
// Epoch e's visiting order: order[k] (k in a block's range) is a rating index of that block.
void svd_block_order(const SvdBlockPlan& plan, uint64_t seed, int epoch, std::vector<int32_t>& order);

struct RatingErrors {
  double rmse = NAN, mae = NAN;  // NaN when there was no rating to test (count 0)
  int64_t count = 0;
  std::vector<std::pair<double, int64_t>> rows;  // per test row (user): squared-error sum, ratings
};

// What a model file stores (models/ and analysis/model_file.cpp share it).
struct SvdState {
  SvdOptions options;  // resolved factors / lr
  float rating_min = 1, rating_max = 5;
  double mu = 0;
  std::vector<double> bu, bi, pu, qi, yj;  // yj empty for SVD
  std::vector<int32_t> user_counts;        // training ratings per user (0 = unknown user)
  std::vector<int32_t> item_counts;        // training ratings per item (0 = unknown item)
  std::vector<int32_t> implicit_items;     // SVD++: N(u) of every user, CSR order (empty for SVD)
};

class SvdModel {
 public:
  // train: users × items ratings; the rating range clips predictions.
  SvdModel(const Csr& train, float rating_min, float rating_max, SvdOptions opt);
  // A trained model from its stored state (predicts; cannot train further). Throws VaeError
  // naming the first inconsistent size.
  explicit SvdModel(SvdState state);
  ~SvdModel();
  SvdModel(const SvdModel&) = delete;
  SvdModel& operator=(const SvdModel&) = delete;

  const SvdOptions& options() const { return opt_; }
  std::string kind() const { return opt_.plus_plus ? "svdpp" : "svd"; }
  int64_t num_users() const { return users_; }
  int64_t num_items() const { return items_; }
  int64_t factors() const { return f_; }
  float rating_min() const { return lo_; }
  float rating_max() const { return hi_; }
  const SvdBlockPlan* block_plan() const { return plan_.get(); }  // blocked schedule only

  // One SGD pass over the training ratings; returns the training RMSE seen during the pass.
  double run_epoch();
  // All epochs; on_epoch(epoch, train_rmse) after each (may be empty).
  void fit(const std::function<void(int, double)>& on_epoch = {});

  // Clipped prediction for dense indices (u or i may be out of the training range: unknown).
  double predict(int64_t u, int64_t i) const;
  // Unclipped estimates of every item for user u (Surprise's terms: unknown user / items drop
  // theirs), into out (items entries).
  void score_items(int64_t u, std::vector<float>& out) const;
  RatingErrors evaluate(const Csr& test) const;

  int64_t user_ratings(int64_t u) const { return nptr_[u + 1] - nptr_[u]; }  // training ratings
  bool user_known(int64_t u) const { return u >= 0 && u < users_ && nptr_[u + 1] > nptr_[u]; }
  bool item_known(int64_t i) const { return i >= 0 && i < items_ && item_counts_[i] > 0; }
  // p_u (+ |N(u)|^−½ Σ y_j for SVD++): the vector q_i is multiplied with.
  std::vector<double> user_vector(int64_t u) const;

  // New-user fold-in: b_u and p_u from the given (item, rating) pairs with every item parameter
  // fixed, by the training updates themselves — from b_u = 0, p_u = 0, `epochs` passes over the
  // pairs in the given order with the model's lr and reg; SVD++'s implicit term is the given
  // items' |N|^−½ Σ y_j. Pairs on unknown items are skipped. Returns (b_u, user vector).
  std::pair<double, std::vector<double>> fold_in(const std::vector<std::pair<int32_t, float>>& ratings) const;
  // Unclipped μ + b_u + b_i + q_iᵀ v for every item (unknown items: μ + b_u) into out.
  void score_with(double bu, const std::vector<double>& v, std::vector<float>& out) const;

  double global_mean() const { return mu_; }
  const std::vector<double>& user_bias() const { return bu_; }
  const std::vector<double>& item_bias() const { return bi_; }
  const std::vector<double>& user_factors() const { return pu_; }  // users × factors
  const std::vector<double>& item_factors() const { return qi_; }  // items × factors
  const std::vector<double>& implicit_factors() const { return yj_; }  // items × factors (SVD++)
  int64_t num_params() const;
  SvdState state() const;
  // True when train has exactly the model's training users, items (and, for SVD++, N(u)).
  bool trained_on(const Csr& train) const;

 private:
  void user_vector_into(int64_t u, double* v) const;
  double run_serial_epoch();
  double run_blocked_epoch();
  double run_cuda_epoch();

  Csr train_;  // empty for a restored model
  bool trainable_ = true;
  float lo_, hi_;
  SvdOptions opt_;
  int64_t users_, items_, f_;
  double mu_ = 0;
  std::vector<double> bu_, bi_, pu_, qi_, yj_;
  std::vector<int64_t> nptr_;     // users + 1: each user's training ratings
  std::vector<int32_t> nitems_;   // SVD++: the items of nptr_ (N(u)); empty for SVD
  std::vector<int32_t> item_counts_;
  int epoch_ = 0;                 // epochs run so far (the blocked order depends on it)
  std::unique_ptr<SvdBlockPlan> plan_;
  std::unique_ptr<SvdSgdCuda> cuda_;
  std::vector<int32_t> order_;    // blocked CPU twin: the epoch's visiting order
};

}  // namespace vae
