// Confidence intervals for the metrics: each ranking metric is a mean over the evaluated users,
// so its uncertainty is that of a mean, and two models of one split are compared user by user.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace vae {

struct MeanCi {
  double mean = NAN;
  double half = NAN;  // half-width of the 95 % interval: mean ± half (NaN below 2 values)
  int64_t n = 0;
  // The interval excludes 0: the difference is larger than the users' spread explains.
  bool excludes_zero() const { return std::isfinite(half) && std::fabs(mean) > half; }
};

// Student's t quantile t(0.975; dof) (exact to 3 decimals up to 30 degrees of freedom, a
// Cornish-Fisher expansion beyond); NaN for dof < 1.
double student_t975(int64_t dof);
// The mean of x and its 95 % interval (t with n − 1 degrees of freedom). Non-finite values are
// not used.
MeanCi mean_ci95(const std::vector<double>& x);
// a − b user by user (the same users in the same order: a paired t interval). Throws VaeError
// when the sizes differ.
MeanCi paired_difference_ci95(const std::vector<double>& a, const std::vector<double>& b);
// The mean of x and its population standard deviation (numpy's std, ddof 0: what Surprise's
// cross-validation table reports over folds). NaN for an empty x.
struct MeanStd {
  double mean = NAN;
  double std = NAN;
};
MeanStd mean_pstd(const std::vector<double>& x);
// "+0.0123 ± 0.0045" (4 decimals, the tables' precision).
std::string format_ci(const MeanCi& c);

// P(Z ≥ z) for a standard normal Z: the one-sided p-value of a z statistic.
double normal_upper_tail(double z);
// Benjamini–Hochberg at false-discovery rate q over the p-values p: which of them are
// discoveries (p_(i) ≤ q·i/m for the largest such rank i, and every smaller p). NaN is never one.
std::vector<bool> benjamini_hochberg(const std::vector<double>& p, double q);

}  // namespace vae
