// Blocked (stratified, DSGD-style) parallel SGD for SVD / SVD++: the arithmetic shared by the
// CPU twin (host/models/svd.cpp) and the CUDA kernels (svd_sgd.cu), and the GPU engine.
//
// The schedule (see SvdBlockPlan in models/svd.h): users fall into B row blocks and items into
// B column blocks; an epoch is B sub-epochs, and sub-epoch s visits the blocks (b, (b + s) mod B)
// for every b at once — they share no user and no item, so they run in parallel without races.
// One warp owns one block and visits its ratings one after another in an order that is a fixed
// function of (seed, epoch, block): an inside-out Fisher–Yates shuffle whose t-th draw is
// philox_u32(seed, svd_order_stream(epoch), first rating slot of the block + t). Sub-epochs run
// in the order s = 0 … B−1 every epoch.
//
// Bit-identity between the twin and the GPU: everything is double precision; every product and
// sum below goes through hd_mul / hd_add / hd_sub (core/hd_math.h), which are __dmul_rn / __dadd_rn / __dsub_rn
// on the device (no FMA contraction) and plain operators on the host (svd.cpp turns contraction
// off; x86-64's baseline ISA has no FMA anyway). A warp's dot product is 32 lane partials (lane l sums factors f ≡ l mod 32
// in increasing f) folded by an xor butterfly (16, 8, 4, 2, 1); svd_warp_dot emulates that order
// on the host. Same inputs → the same bits on both sides.
//
// SVD++ (a deviation from Surprise, which moves every y_j of N(u) after each rating of u): the
// y_j of a user's other items lie in other blocks, so they cannot move during a sub-epoch. When
// a sub-epoch first touches user u, its implicit vector z_u = Σ_{j ∈ N(u)} y_j·|N(u)|^-1/2 is
// computed from the current y (CSR order) and then updated like p_u (which is exactly how
// Surprise's z moves under the user's own y updates); the user's y updates are composed into one
// affine map y ↦ a_u·y + g_u (a_u = c^m, c = 1 − lr·reg, g_u accumulating lr·err·q_i·|N(u)|^-1/2
// with the same decay) and applied right after the sub-epoch, item by item, users ascending.
// So a user's own updates are Surprise's, and users of the same sub-epoch see each other's y
// changes one sub-epoch late (applying them once per epoch instead made the SGD oscillate).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "core/philox.h"

namespace vae {

// Philox stream of epoch e's visiting order (apart from the trainer's batch-order streams).
VAE_HD uint64_t svd_order_stream(int epoch) {
  return rng_stream(RngStream::shuffle, (uint64_t{1} << 40) + static_cast<uint64_t>(epoch));
}

// Inside-out Fisher–Yates: order[first + t] for t < n becomes a permutation of first … first+n−1.
// The bound uses one 32-bit draw (multiply-shift, bias ≤ n / 2^32) so both sides draw alike.
VAE_HD void svd_shuffle_block(int32_t* order, int64_t first, int64_t n, uint64_t seed, uint64_t stream) {
  for (int64_t t = 0; t < n; ++t) {
    const uint32_t w = philox_u32(seed, stream, static_cast<uint64_t>(first + t));
    const int64_t j = static_cast<int64_t>((static_cast<uint64_t>(w) * static_cast<uint64_t>(t + 1)) >> 32);
    if (j != t) order[first + t] = order[first + j];
    order[first + j] = static_cast<int32_t>(first + t);
  }
}

// Surprise's prediction error r − (μ + b_u + b_i + dot), in its summation order.
VAE_HD double svd_error(double r, double mu, double bu, double bi, double dot) {
  return hd_sub(r, hd_add(hd_add(hd_add(mu, bu), bi), dot));
}
// x += lr (g − reg x): the bias, p_u and z_u updates.
VAE_HD double svd_step(double x, double g, double lr, double reg) {
  return hd_add(x, hd_mul(lr, hd_sub(g, hd_mul(reg, x))));
}
// g_u ← c·g_u + (lr·err)·q_f·|N(u)|^-1/2 (SVD++ deferred y update).
VAE_HD double svd_implicit_accumulate(double g, double c, double lr_err, double qf, double inv_sqrt) {
  return hd_add(hd_mul(g, c), hd_mul(hd_mul(lr_err, qf), inv_sqrt));
}

// Host emulation of the warp's dot product Σ_f a_f·b_f (see the header comment).
inline double svd_warp_dot(const double* a, const double* b, const double* z, int64_t f) {
  double lane[32] = {};
  for (int64_t k = 0; k < f; ++k) {
    const double bk = z ? hd_add(b[k], z[k]) : b[k];
    lane[k & 31] = hd_add(lane[k & 31], hd_mul(a[k], bk));
  }
  for (int o = 16; o > 0; o >>= 1)
    for (int l = 0; l < o; ++l) lane[l] = hd_add(lane[l], lane[l + o]);
  return lane[0];
}

// ---- the GPU engine --------------------------------------------------------------------

struct SvdBlockPlan;

struct SvdSgdConstants {
  double mu = 0, lr = 0, reg = 0;
  double decay = 1;  // c = 1 − lr·reg, computed once on the host
  int64_t factors = 0;
  bool plus_plus = false;
  uint64_t seed = 1;
};

// The parameters the engine trains, host side (users × factors, items × factors row-major).
struct SvdParamRefs {
  std::vector<double>* bu;
  std::vector<double>* bi;
  std::vector<double>* pu;
  std::vector<double>* qi;
  std::vector<double>* yj;  // SVD++ only (may be empty otherwise)
};

// Blocked SGD on the GPU: uploads the plan and parameters once, runs epochs on the device.
// Throws VaeError when no CUDA device is usable.
class SvdSgdCuda {
 public:
  // Copies the plan and the initial parameters to the device.
  SvdSgdCuda(const SvdBlockPlan& plan, const SvdSgdConstants& c, const SvdParamRefs& init);
  ~SvdSgdCuda();
  SvdSgdCuda(const SvdSgdCuda&) = delete;
  SvdSgdCuda& operator=(const SvdSgdCuda&) = delete;
  // Epoch `epoch` (0-based); returns Σ err² over the pass (row blocks summed in order).
  double run_epoch(int epoch);
  // Copies the device parameters into the host vectors.
  void download(const SvdParamRefs& out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace vae
