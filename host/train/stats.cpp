#include "train/stats.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"

namespace vae {

double student_t975(int64_t dof) {
  static const double kTable[30] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                    2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                    2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};
  if (dof < 1) return NAN;
  if (dof <= 30) return kTable[dof - 1];
  const double z = 1.959963984540054, v = static_cast<double>(dof);
  const double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
  return z + (z3 + z) / (4 * v) + (5 * z5 + 16 * z3 + 3 * z) / (96 * v * v) +
         (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * v * v * v);
}

MeanCi mean_ci95(const std::vector<double>& x) {
  MeanCi c;
  double sum = 0;
  for (double v : x)
    if (std::isfinite(v)) sum += v, ++c.n;
  if (c.n == 0) return c;
  c.mean = sum / static_cast<double>(c.n);
  if (c.n < 2) return c;
  double ss = 0;  // two passes: the spread of metrics in [0, 1] is small next to their mean
  for (double v : x)
    if (std::isfinite(v)) ss += (v - c.mean) * (v - c.mean);
  const double sd = std::sqrt(ss / static_cast<double>(c.n - 1));
  c.half = student_t975(c.n - 1) * sd / std::sqrt(static_cast<double>(c.n));
  return c;
}

MeanCi paired_difference_ci95(const std::vector<double>& a, const std::vector<double>& b) {
  VAE_CHECK(a.size() == b.size(), "paired_difference_ci95: " + std::to_string(a.size()) + " and " +
                                      std::to_string(b.size()) + " values are not pairs of the same users");
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return mean_ci95(d);
}

std::string format_ci(const MeanCi& c) {
  char buf[64];
  if (!std::isfinite(c.mean)) return "-";
  if (!std::isfinite(c.half))
    std::snprintf(buf, sizeof buf, "%+.4f", c.mean);
  else
    std::snprintf(buf, sizeof buf, "%+.4f \xc2\xb1 %.4f", c.mean, c.half);
  return buf;
}

double normal_upper_tail(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

std::vector<bool> benjamini_hochberg(const std::vector<double>& p, double q) {
  std::vector<size_t> order;
  for (size_t i = 0; i < p.size(); ++i)
    if (!std::isnan(p[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] < p[b]; });
  const double m = static_cast<double>(order.size());
  size_t passed = 0;  // the largest rank whose p-value is within its bound
  for (size_t r = 0; r < order.size(); ++r)
    if (p[order[r]] <= q * static_cast<double>(r + 1) / m) passed = r + 1;
  std::vector<bool> out(p.size(), false);
  for (size_t r = 0; r < passed; ++r) out[order[r]] = true;
  return out;
}

MeanStd mean_pstd(const std::vector<double>& x) {
  MeanStd r;
  if (x.empty()) return r;
  double s = 0;
  for (double v : x) s += v;
  r.mean = s / static_cast<double>(x.size());
  double ss = 0;
  for (double v : x) ss += (v - r.mean) * (v - r.mean);
  r.std = std::sqrt(ss / static_cast<double>(x.size()));
  return r;
}

}  // namespace vae
