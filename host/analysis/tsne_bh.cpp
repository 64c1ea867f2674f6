#include "analysis/tsne_bh.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "backend/cpu_gemm.h"
#include "core/error.h"

namespace vae {
namespace {

// Points per task of the parallel loops: enough work to pay for a task, enough tasks to balance.
constexpr int64_t kPointsPerTask = 256;
// Below this depth cells still split; deeper, the points left together share a leaf (only
// near-identical float positions get there).
constexpr int kMaxTreeDepth = 64;

int64_t task_count(int64_t n) { return (n + kPointsPerTask - 1) / kPointsPerTask; }

// sklearn's _QuadTree in 2-D: cells split at the centre of their box into 4 children; a cell's
// points are one contiguous run of the tree order, so "does this cell hold point s" is a range
// check. Cells are stored in depth-first order with the index of the cell after their subtree,
// so a query walks the tree without a stack. Centres of mass are summed in double over the run
// (sklearn updates them incrementally in float; the tree itself is the same).
class QuadTree {
 public:
  // 24 bytes, so the cells a query walks stay in cache; distances are still taken in double.
  struct Cell {
    float cx, cy;    // centre of mass (a one-point leaf: exactly its point)
    float far2;      // summarised from squared distances above (max side of the box)² / theta²;
                     // -1: all its points at one position
    int32_t first;   // the run order[first, first + count)
    int32_t count;
    int32_t next;    // the cell after this subtree; next == own index + 1 for a leaf
  };

  void build(const float* y, int64_t n, double theta) {
    order_.resize(n);
    for (int64_t i = 0; i < n; ++i) order_[i] = static_cast<int32_t>(i);
    double lo[2], hi[2];
    for (int ax = 0; ax < 2; ++ax) {
      float mn = y[ax], mx = y[ax];
      for (int64_t i = 0; i < n; ++i) {
        // A NaN would not split: every query would walk all the points.
        if (!std::isfinite(y[2 * i + ax]))
          throw VaeError("t-SNE: the embedding diverged (non-finite coordinate of point " +
                         std::to_string(i) + "); try a lower learning rate");
        mn = std::min(mn, y[2 * i + ax]);
        mx = std::max(mx, y[2 * i + ax]);
      }
      // sklearn's bounds: the maximum pushed out so every point lies strictly inside the box.
      const double m = mx;
      lo[ax] = mn;
      hi[ax] = std::max(m * (1.0 + 1e-3 * ((m > 0) - (m < 0))), m + 1e-3);
    }
    cells_.clear();
    cells_.reserve(static_cast<size_t>(2 * n));
    y_ = y;
    inv_theta2_ = theta > 0 ? 1.0 / (theta * theta) : std::numeric_limits<double>::infinity();
    build_cell(0, static_cast<int32_t>(n), lo[0], hi[0], lo[1], hi[1], 0);
    tx_.resize(n);
    ty_.resize(n);
    for (int64_t s = 0; s < n; ++s) {
      tx_[s] = y[2 * order_[s]];
      ty_[s] = y[2 * order_[s] + 1];
    }
  }

  // Σ_j w_sj and Σ_j w_sj² (y_s − y_j) over all points j ≠ the one at tree slot s, cells
  // summarised by their centre of mass where width² < theta² · distance² (never a cell holding
  // s, which sklearn summarises for theta > 1/√2 only).
  void repulsion(int32_t s, double& z, double& fx, double& fy) const {
    const double px = tx_[s], py = ty_[s];
    z = fx = fy = 0.0;
    const int32_t end = static_cast<int32_t>(cells_.size());
    for (int32_t c = 0; c < end;) {
      const Cell& cell = cells_[c];
      const double dx = px - cell.cx, dy = py - cell.cy;
      const double d2 = dx * dx + dy * dy;
      const bool holds_s = static_cast<uint32_t>(s - cell.first) < static_cast<uint32_t>(cell.count);
      if (!holds_s && (cell.count == 1 || d2 > cell.far2)) {
        const double w = 1.0 / (1.0 + d2);
        const double cw = cell.count * w;
        z += cw;
        fx += cw * w * dx;
        fy += cw * w * dy;
        c = cell.next;
      } else if (cell.far2 < 0) {
        // The other points at s's own position: distance 0, w = 1, no force.
        z += cell.count - 1;
        c = cell.next;
      } else if (cell.next == c + 1) {
        // A leaf of points too close to split further, or one holding s: point by point.
        for (int32_t t = cell.first; t < cell.first + cell.count; ++t) {
          if (t == s) continue;
          const double ex = px - tx_[t], ey = py - ty_[t];
          const double w = 1.0 / (1.0 + ex * ex + ey * ey);
          z += w;
          fx += w * w * ex;
          fy += w * w * ey;
        }
        c = cell.next;
      } else {
        ++c;
      }
    }
  }

  int32_t point_at(int32_t s) const { return order_[s]; }

 private:
  void build_cell(int32_t first, int32_t count, double x0, double x1, double y0, double y1,
                  int depth) {
    const int32_t id = static_cast<int32_t>(cells_.size());
    cells_.push_back({});
    double sx = 0, sy = 0;
    float mnx = std::numeric_limits<float>::max(), mxx = -mnx, mny = mnx, mxy = -mnx;
    for (int32_t t = first; t < first + count; ++t) {
      const float px = y_[2 * order_[t]], py = y_[2 * order_[t] + 1];
      sx += px;
      sy += py;
      mnx = std::min(mnx, px);
      mxx = std::max(mxx, px);
      mny = std::min(mny, py);
      mxy = std::max(mxy, py);
    }
    const double wx = x1 - x0, wy = y1 - y0;
    // theta = 0: far2 = ∞, nothing is summarised.
    const double far2 = std::max(wx * wx, wy * wy) * inv_theta2_;
    cells_[id] = {static_cast<float>(sx / count), static_cast<float>(sy / count),
                  static_cast<float>(far2), first, count, 0};
    const bool identical = mnx == mxx && mny == mxy;
    // Points at one position (duplicate users): the centre of mass is exact for them, so the
    // cell is always summarised, and a query among them adds w = 1 per other point in O(1)
    // instead of walking them (c² per iteration for c duplicates).
    if (count > 1 && identical) cells_[id].far2 = -1.0f;
    if (count > 1 && !identical && depth < kMaxTreeDepth) {
      // Children in sklearn's order: (x low, y low), (x low, y high), (x high, y low), (x high, y high).
      const double mx = (x0 + x1) / 2, my = (y0 + y1) / 2;
      int32_t* b = order_.data() + first;
      int32_t* e = b + count;
      int32_t* x_split = std::partition(b, e, [&](int32_t i) { return y_[2 * i] < mx; });
      int32_t* y_split_lo = std::partition(b, x_split, [&](int32_t i) { return y_[2 * i + 1] < my; });
      int32_t* y_split_hi = std::partition(x_split, e, [&](int32_t i) { return y_[2 * i + 1] < my; });
      const int32_t* bounds[5] = {b, y_split_lo, x_split, y_split_hi, e};
      const double boxes[4][4] = {{x0, mx, y0, my}, {x0, mx, my, y1}, {mx, x1, y0, my}, {mx, x1, my, y1}};
      for (int q = 0; q < 4; ++q) {
        const int32_t size = static_cast<int32_t>(bounds[q + 1] - bounds[q]);
        if (size > 0)
          build_cell(static_cast<int32_t>(bounds[q] - order_.data()), size, boxes[q][0],
                     boxes[q][1], boxes[q][2], boxes[q][3], depth + 1);
      }
    }
    cells_[id].next = static_cast<int32_t>(cells_.size());
  }

  std::vector<Cell> cells_;
  std::vector<int32_t> order_;    // point ids in tree order
  std::vector<double> tx_, ty_;   // their positions, in that order
  const float* y_ = nullptr;      // during build
  double inv_theta2_ = 0;
};

// The gradient with its buffers, kept across the iterations of one optimisation.
class BhGradient {
 public:
  double operator()(const TsneSparseP& p, const float* y, float exaggeration, double theta,
                    float* grad, bool compute_kl) {
    const int64_t n = p.n;
    tree_.build(y, n, theta);
    neg_.resize(2 * n);
    z_.resize(n);
    kl_.resize(n);
    // Repulsion in tree order (neighbouring queries walk the same cells), stored by point.
    cpu_parallel_for(task_count(n), [&](int64_t t) {
      const int64_t end = std::min(n, (t + 1) * kPointsPerTask);
      for (int64_t s = t * kPointsPerTask; s < end; ++s) {
        const int32_t i = tree_.point_at(static_cast<int32_t>(s));
        tree_.repulsion(static_cast<int32_t>(s), z_[i], neg_[2 * i], neg_[2 * i + 1]);
      }
    });
    double z = 0.0;
    for (int64_t i = 0; i < n; ++i) z += z_[i];  // index order: the same bits on any thread count
    z = std::max(z, DBL_EPSILON);                // sklearn's FLOAT64_EPS
    const double ex = exaggeration;
    const double tiny = FLT_MIN;                 // sklearn's FLOAT32_TINY
    cpu_parallel_for(task_count(n), [&](int64_t t) {
      const int64_t end = std::min(n, (t + 1) * kPointsPerTask);
      for (int64_t i = t * kPointsPerTask; i < end; ++i) {
        const double yi0 = y[2 * i], yi1 = y[2 * i + 1];
        double ax = 0.0, ay = 0.0, kl = 0.0;
        for (int64_t e = p.row_start[i]; e < p.row_start[i + 1]; ++e) {
          const int64_t j = p.col[e];
          const double dx = yi0 - y[2 * j], dy = yi1 - y[2 * j + 1];
          const double w = 1.0 / (1.0 + dx * dx + dy * dy);
          const double pij = ex * static_cast<double>(p.val[e]);
          ax += pij * w * dx;
          ay += pij * w * dy;
          if (compute_kl) kl += pij * std::log(std::max(pij, tiny) / std::max(w / z, tiny));
        }
        grad[2 * i] = static_cast<float>(4.0 * (ax - neg_[2 * i] / z));
        grad[2 * i + 1] = static_cast<float>(4.0 * (ay - neg_[2 * i + 1] / z));
        kl_[i] = kl;
      }
    });
    if (!compute_kl) return std::numeric_limits<double>::quiet_NaN();
    double kl = 0.0;
    for (int64_t i = 0; i < n; ++i) kl += kl_[i];
    return kl;
  }

 private:
  QuadTree tree_;
  std::vector<double> neg_, z_, kl_;  // per point: Σ w² (y_i − y_j), Σ w, KL terms
};

void check_sparse_p(const TsneSparseP& p) {
  VAE_CHECK(p.n >= 2 && p.n <= std::numeric_limits<int32_t>::max() &&
                static_cast<int64_t>(p.row_start.size()) == p.n + 1 && p.row_start[0] == 0 &&
                p.col.size() == p.val.size() &&
                p.row_start[p.n] == static_cast<int64_t>(p.col.size()),
            "t-SNE: sparse P is not a CSR matrix of n ≥ 2 rows");
}

}  // namespace

int64_t tsne_bh_neighbour_count(int64_t n, double perplexity) {
  return std::min<int64_t>(n - 1, static_cast<int64_t>(3.0 * perplexity + 1.0));
}

TsneNeighbours tsne_nearest_neighbours(const std::vector<float>& x, int64_t n, int64_t d, int64_t k) {
  VAE_CHECK(n >= 2 && n <= std::numeric_limits<int32_t>::max() && d >= 1 &&
                static_cast<int64_t>(x.size()) == n * d,
            "t-SNE: x is not an n × d matrix with n ≥ 2");
  VAE_CHECK(k >= 1 && k < n, "t-SNE: need 1 ≤ neighbours < n");
  // Double keeps the cancellation in ||x||² + ||y||² − 2x·y from reordering close neighbours.
  const std::vector<double> xd(x.begin(), x.end());
  std::vector<double> norm(n);
  for (int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (int64_t t = 0; t < d; ++t) s += xd[i * d + t] * xd[i * d + t];
    norm[i] = s;
  }
  // Row blocks of at most 4 Mi distances (32 MB) whatever n.
  const int64_t block = std::clamp<int64_t>((int64_t{1} << 22) / n, 8, 1024);
  std::vector<double> dots(static_cast<size_t>(std::min(block, n) * n));
  TsneNeighbours nn;
  nn.n = n;
  nn.k = k;
  nn.index.resize(static_cast<size_t>(n * k));
  nn.sqdist.resize(static_cast<size_t>(n * k));
  using Candidate = std::pair<double, int32_t>;  // (distance, index): ties to the lower index
  for (int64_t i0 = 0; i0 < n; i0 += block) {
    const int64_t rows = std::min(block, n - i0);
    reference_gemm<double>(false, true, rows, n, d, 1.0, &xd[i0 * d], d, xd.data(), d, 0.0,
                           dots.data(), n);
    cpu_parallel_for(task_count(rows), [&](int64_t t) {
      std::vector<Candidate> heap;  // max-heap of the k best so far
      heap.reserve(k);
      std::vector<std::pair<float, int32_t>> exact(k);
      const int64_t end = std::min(rows, (t + 1) * kPointsPerTask);
      for (int64_t r = t * kPointsPerTask; r < end; ++r) {
        const int64_t i = i0 + r;
        const double* dr = &dots[r * n];
        heap.clear();
        for (int64_t j = 0; j < n; ++j) {
          if (j == i) continue;
          const Candidate c{norm[i] + norm[j] - 2.0 * dr[j], static_cast<int32_t>(j)};
          if (static_cast<int64_t>(heap.size()) < k) {
            heap.push_back(c);
            std::push_heap(heap.begin(), heap.end());
          } else if (c < heap.front()) {
            std::pop_heap(heap.begin(), heap.end());
            heap.back() = c;
            std::push_heap(heap.begin(), heap.end());
          }
        }
        // The distances the exact path would give (its P must match when k = n − 1).
        for (int64_t q = 0; q < k; ++q) {
          const int64_t j = heap[q].second;
          double s = 0.0;
          for (int64_t u = 0; u < d; ++u) {
            const double e = xd[i * d + u] - xd[j * d + u];
            s += e * e;
          }
          exact[q] = {static_cast<float>(s), heap[q].second};
        }
        std::sort(exact.begin(), exact.end());
        for (int64_t q = 0; q < k; ++q) {
          nn.sqdist[i * k + q] = exact[q].first;
          nn.index[i * k + q] = exact[q].second;
        }
      }
    });
  }
  return nn;
}

TsneSparseP tsne_sparse_joint_probabilities(const TsneNeighbours& nn, double perplexity) {
  const int64_t n = nn.n, k = nn.k;
  VAE_CHECK(n >= 2 && n <= std::numeric_limits<int32_t>::max() && k >= 1 && k < n &&
                static_cast<int64_t>(nn.index.size()) == n * k &&
                static_cast<int64_t>(nn.sqdist.size()) == n * k,
            "t-SNE: neighbour lists are not n × k with 1 ≤ k < n");
  VAE_CHECK(perplexity > 0, "t-SNE: perplexity must be positive");
  std::vector<double> cond(static_cast<size_t>(n * k));
  const double desired_entropy = std::log(perplexity);
  cpu_parallel_for(task_count(n), [&](int64_t t) {
    const int64_t end = std::min(n, (t + 1) * kPointsPerTask);
    for (int64_t i = t * kPointsPerTask; i < end; ++i)
      tsne_conditional_row(&nn.sqdist[i * k], k, -1, desired_entropy, &cond[i * k]);
  });

  // P + Pᵀ: row i = its own neighbours merged with the rows that list i (in row order).
  std::vector<int64_t> in_start(n + 1, 0);
  for (int64_t e = 0; e < n * k; ++e) {
    const int32_t j = nn.index[e];
    VAE_CHECK(j >= 0 && j < n, "t-SNE: neighbour index out of range");
    ++in_start[j + 1];
  }
  for (int64_t i = 0; i < n; ++i) in_start[i + 1] += in_start[i];
  std::vector<int32_t> in_from(static_cast<size_t>(n * k));
  std::vector<double> in_val(static_cast<size_t>(n * k));
  {
    std::vector<int64_t> fill(in_start.begin(), in_start.end() - 1);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t q = 0; q < k; ++q) {
        const int64_t slot = fill[nn.index[i * k + q]]++;
        in_from[slot] = static_cast<int32_t>(i);
        in_val[slot] = cond[i * k + q];
      }
  }
  TsneSparseP p;
  p.n = n;
  p.row_start.assign(n + 1, 0);
  p.col.reserve(static_cast<size_t>(2 * n * k));
  std::vector<double> sym;
  sym.reserve(static_cast<size_t>(2 * n * k));
  std::vector<std::pair<int32_t, double>> own(k);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t q = 0; q < k; ++q) own[q] = {nn.index[i * k + q], cond[i * k + q]};
    std::sort(own.begin(), own.end());
    for (int64_t q = 1; q < k; ++q)
      VAE_CHECK(own[q].first != own[q - 1].first, "t-SNE: a neighbour listed twice");
    int64_t a = 0, b = in_start[i];
    const int64_t b_end = in_start[i + 1];
    while (a < k || b < b_end) {
      const int32_t ja = a < k ? own[a].first : std::numeric_limits<int32_t>::max();
      const int32_t jb = b < b_end ? in_from[b] : std::numeric_limits<int32_t>::max();
      const int32_t j = std::min(ja, jb);
      double v = 0.0;
      if (ja == j) v += own[a++].second;
      if (jb == j) v += in_val[b++];
      VAE_CHECK(j != i, "t-SNE: a point listed among its own neighbours");
      p.col.push_back(j);
      sym.push_back(v);
    }
    p.row_start[i + 1] = static_cast<int64_t>(p.col.size());
  }
  double total = 0.0;
  for (double v : sym) total += v;
  total = std::max(total, DBL_EPSILON);  // sklearn's MACHINE_EPSILON
  p.val.resize(sym.size());
  for (size_t e = 0; e < sym.size(); ++e) p.val[e] = static_cast<float>(sym[e] / total);
  return p;
}

double tsne_bh_gradient(const TsneSparseP& p, const float* y, float exaggeration, double theta,
                        float* grad, bool compute_kl) {
  check_sparse_p(p);
  VAE_CHECK(theta >= 0, "t-SNE: theta must be ≥ 0");
  BhGradient g;
  return g(p, y, exaggeration, theta, grad, compute_kl);
}

TsneResult tsne_bh_from_probabilities(const TsneSparseP& p, const TsneOptions& o, double theta) {
  check_sparse_p(p);
  VAE_CHECK(theta >= 0, "t-SNE: theta must be ≥ 0");
  BhGradient g;
  return tsne_optimise(p.n, o, [&](const float* y, float exaggeration, float* grad, bool compute_kl) {
    return g(p, y, exaggeration, theta, grad, compute_kl);
  });
}

TsneResult tsne_barnes_hut(const std::vector<float>& x, int64_t n, int64_t d, const TsneOptions& o,
                           double theta) {
  std::vector<float> rows;
  std::vector<int32_t> indices = tsne_checked_rows(x, n, d, o, rows);
  if (!(theta >= 0.0 && theta <= 1.0))
    throw UsageError("t-SNE: theta (Barnes-Hut angle) must be between 0 and 1 (got " +
                     std::to_string(theta) + ")");
  const int64_t m = static_cast<int64_t>(indices.size());
  TsneSparseP p;
  {
    const TsneNeighbours nn = tsne_nearest_neighbours(rows.empty() ? x : rows, m, d,
                                                      tsne_bh_neighbour_count(m, o.perplexity));
    p = tsne_sparse_joint_probabilities(nn, o.perplexity);
  }
  TsneResult r = tsne_bh_from_probabilities(p, o, theta);
  r.indices = std::move(indices);
  return r;
}

}  // namespace vae
