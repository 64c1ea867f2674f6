// Blocked parallel SGD for SVD / SVD++ on the GPU (schedule and arithmetic: svd_sgd.h). Per
// epoch: one kernel shuffles every block's visiting order (one thread per block), then B
// sub-epoch kernels run one warp per block of the stratum, each followed for SVD++ by the
// kernel that applies that sub-epoch's deferred y updates (one thread per item factor). The
// host reads back B partial sums of err² per epoch; nothing else crosses the bus until download().
#include "svd_sgd.h"

#include <algorithm>
#include <string>

#include "backend/backend.h"
#include "cuda_check.h"
#include "models/svd.h"

namespace vae {

namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpsPerCta = 1;  // one rating block per CTA: 264 blocks spread over every SM
constexpr int kThreadsPerCta = 32 * kWarpsPerCta;

template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  DevBuf() = default;
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() {
    if (p) cudaFree(p);  // never throws from a destructor; a failed free only leaks
  }
  void alloc(size_t count) {
    VAE_CHECK(p == nullptr, "DevBuf: allocated twice");
    n = count;
    if (count) CUDA_CHECK(cudaMalloc(&p, count * sizeof(T)));
  }
  void upload(const std::vector<T>& v, cudaStream_t s) {
    alloc(v.size());
    if (n) CUDA_CHECK(cudaMemcpyAsync(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice, s));
  }
  void download(std::vector<T>& v, cudaStream_t s) const {
    v.resize(n);
    if (n) CUDA_CHECK(cudaMemcpyAsync(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost, s));
  }
};

struct Args {
  int blocks;
  int64_t factors;
  bool plus_plus;
  double mu, lr, reg, decay;
  const int64_t* block_ptr;
  const int32_t* order;
  const int32_t* user;
  const int32_t* item;
  const float* value;
  const double* inv_sqrt;
  double *bu, *bi, *pu, *qi;
  // SVD++ only
  const int64_t* row_ptr;
  const int32_t* row_items;
  const double* yj;  // read-only during a sub-epoch
  double *z, *g, *a;
  int64_t* stamp;    // the sub-epoch that last touched each user
  int64_t now;       // this sub-epoch: epoch · B + s
  double* sq;        // blocks partial sums of err²
};

// One thread per block of the B × B grid: the epoch's visiting order inside that block.
__global__ void shuffle_kernel(int64_t nblocks, const int64_t* block_ptr, uint64_t seed, uint64_t stream,
                               int32_t* order) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= nblocks) return;
  const int64_t first = block_ptr[b];
  svd_shuffle_block(order, first, block_ptr[b + 1] - first, seed, stream);
}

// After sub-epoch `now`: y_j ← a_u·y_j + g_u over the users of item j that the sub-epoch
// touched, ascending. One thread per (j, f).
__global__ void apply_implicit_kernel(int64_t items, int64_t factors, const int64_t* col_ptr,
                                      const int32_t* col_users, const int64_t* stamp, int64_t now, const double* a,
                                      const double* g, double* yj) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= items * factors) return;
  const int64_t j = t / factors, f = t % factors;
  double y = yj[t];
  for (int64_t k = col_ptr[j]; k < col_ptr[j + 1]; ++k) {
    const int64_t u = col_users[k];
    if (stamp[u] != now) continue;
    y = hd_add(hd_mul(a[u], y), g[u * factors + f]);
  }
  yj[t] = y;
}

// Sub-epoch s: warp b owns block (b, (b + s) mod B) and visits its ratings in order. Lane l
// holds factors f ≡ l (mod 32); lane 0 owns the biases, a_u and the err² sum. Blocks of one
// sub-epoch share no user and no item, so no two warps touch the same parameter.
__global__ void __launch_bounds__(kThreadsPerCta) subepoch_kernel(Args g, int s) {
  const int warp = static_cast<int>((static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5);
  const int lane = threadIdx.x & 31;
  if (warp >= g.blocks) return;  // uniform per warp: the shuffles below see all 32 lanes
  const int64_t blk = static_cast<int64_t>(warp) * g.blocks + (warp + s) % g.blocks;
  const int64_t k0 = g.block_ptr[blk], k1 = g.block_ptr[blk + 1];
  const int64_t F = g.factors;
  double local = 0.0;
  for (int64_t k = k0; k < k1; ++k) {
    const int32_t idx = g.order[k];
    const int64_t u = g.user[idx], i = g.item[idx];
    double* p = g.pu + u * F;
    double* q = g.qi + i * F;
    double* zu = g.plus_plus ? g.z + u * F : nullptr;
    double* gu = g.plus_plus ? g.g + u * F : nullptr;
    if (g.plus_plus) {
      // First touch in this sub-epoch: z_u from the current y, a fresh affine map.
      int64_t last = 0;
      if (lane == 0) last = g.stamp[u];
      last = __shfl_sync(kFullMask, last, 0);
      if (last != g.now) {
        for (int64_t f = lane; f < F; f += 32) {
          double acc = 0.0;
          for (int64_t kj = g.row_ptr[u]; kj < g.row_ptr[u + 1]; ++kj)
            acc = hd_add(acc, hd_mul(g.yj[static_cast<int64_t>(g.row_items[kj]) * F + f], g.inv_sqrt[u]));
          zu[f] = acc;
          gu[f] = 0.0;
        }
        if (lane == 0) {
          g.a[u] = 1.0;
          g.stamp[u] = g.now;
        }
      }
    }
    double acc = 0.0;
    for (int64_t f = lane; f < F; f += 32) {
      const double b = g.plus_plus ? hd_add(p[f], zu[f]) : p[f];
      acc = hd_add(acc, hd_mul(q[f], b));
    }
    for (int o = 16; o > 0; o >>= 1) acc = hd_add(acc, __shfl_xor_sync(kFullMask, acc, o));
    double err = 0.0;
    if (lane == 0) {
      err = svd_error(static_cast<double>(g.value[idx]), g.mu, g.bu[u], g.bi[i], acc);
      local = hd_add(local, hd_mul(err, err));
      g.bu[u] = svd_step(g.bu[u], err, g.lr, g.reg);
      g.bi[i] = svd_step(g.bi[i], err, g.lr, g.reg);
      if (g.plus_plus) g.a[u] = hd_mul(g.a[u], g.decay);
    }
    err = __shfl_sync(kFullMask, err, 0);
    const double lr_err = hd_mul(g.lr, err);
    for (int64_t f = lane; f < F; f += 32) {
      const double pf = p[f], qf = q[f];
      p[f] = svd_step(pf, hd_mul(err, qf), g.lr, g.reg);
      if (g.plus_plus) {
        const double zf = zu[f];
        q[f] = svd_step(qf, hd_mul(err, hd_add(pf, zf)), g.lr, g.reg);
        zu[f] = svd_step(zf, hd_mul(err, qf), g.lr, g.reg);
        gu[f] = svd_implicit_accumulate(gu[f], g.decay, lr_err, qf, g.inv_sqrt[u]);
      } else {
        q[f] = svd_step(qf, hd_mul(err, pf), g.lr, g.reg);
      }
    }
  }
  if (lane == 0) g.sq[warp] = hd_add(g.sq[warp], local);
}

unsigned grid_for(int64_t threads, int per_cta) {
  return static_cast<unsigned>((threads + per_cta - 1) / per_cta);
}

}  // namespace

struct SvdSgdCuda::Impl {
  SvdSgdConstants c;
  int blocks = 0;
  int64_t users = 0, items = 0, nnz = 0;
  cudaStream_t stream = nullptr;
  DevBuf<int64_t> block_ptr, row_ptr, col_ptr;
  DevBuf<int32_t> order, user, item, row_items, col_users;
  DevBuf<float> value;
  DevBuf<double> inv_sqrt, bu, bi, pu, qi, yj, z, g, a, sq;
  DevBuf<int64_t> stamp;

  ~Impl() {
    if (stream) cudaStreamDestroy(stream);
  }
};

SvdSgdCuda::SvdSgdCuda(const SvdBlockPlan& plan, const SvdSgdConstants& c, const SvdParamRefs& init)
    : impl_(std::make_unique<Impl>()) {
  if (!cuda_device_available()) throw VaeError("SVD on the GPU: no CUDA device found");
  Impl& m = *impl_;
  m.c = c;
  m.blocks = plan.blocks;
  m.users = static_cast<int64_t>(init.bu->size());
  m.items = static_cast<int64_t>(init.bi->size());
  m.nnz = plan.nnz();
  VAE_CHECK(c.factors >= 1, "SvdSgdCuda: factors must be positive");
  VAE_CHECK(static_cast<int64_t>(init.pu->size()) == m.users * c.factors &&
                static_cast<int64_t>(init.qi->size()) == m.items * c.factors,
            "SvdSgdCuda: factor matrices do not match the biases");
  VAE_CHECK(!c.plus_plus || static_cast<int64_t>(init.yj->size()) == m.items * c.factors,
            "SvdSgdCuda: implicit factors missing");
  VAE_CHECK(static_cast<int64_t>(plan.block_ptr.size()) == static_cast<int64_t>(plan.blocks) * plan.blocks + 1,
            "SvdSgdCuda: block pointer size");
  CUDA_CHECK(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking));
  cudaStream_t s = m.stream;
  m.block_ptr.upload(plan.block_ptr, s);
  m.user.upload(plan.user, s);
  m.item.upload(plan.item, s);
  m.value.upload(plan.value, s);
  m.order.alloc(static_cast<size_t>(m.nnz));
  m.bu.upload(*init.bu, s);
  m.bi.upload(*init.bi, s);
  m.pu.upload(*init.pu, s);
  m.qi.upload(*init.qi, s);
  m.sq.alloc(static_cast<size_t>(m.blocks));
  if (c.plus_plus) {
    m.yj.upload(*init.yj, s);
    m.inv_sqrt.upload(plan.inv_sqrt, s);
    m.row_ptr.upload(plan.row_ptr, s);
    m.row_items.upload(plan.row_items, s);
    m.col_ptr.upload(plan.col_ptr, s);
    m.col_users.upload(plan.col_users, s);
    m.z.alloc(static_cast<size_t>(m.users * c.factors));
    m.g.alloc(static_cast<size_t>(m.users * c.factors));
    m.a.alloc(static_cast<size_t>(m.users));
    m.stamp.alloc(static_cast<size_t>(m.users));
    if (m.users > 0) CUDA_CHECK(cudaMemsetAsync(m.stamp.p, 0xff, m.stamp.n * sizeof(int64_t), s));  // −1: never
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
}

SvdSgdCuda::~SvdSgdCuda() = default;

double SvdSgdCuda::run_epoch(int epoch) {
  Impl& m = *impl_;
  cudaStream_t s = m.stream;
  const int64_t F = m.c.factors;
  const int64_t nblocks = static_cast<int64_t>(m.blocks) * m.blocks;
  shuffle_kernel<<<grid_for(nblocks, 256), 256, 0, s>>>(nblocks, m.block_ptr.p, m.c.seed, svd_order_stream(epoch),
                                                         m.order.p);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cudaMemsetAsync(m.sq.p, 0, m.sq.n * sizeof(double), s));
  Args args{};
  args.blocks = m.blocks;
  args.factors = F;
  args.plus_plus = m.c.plus_plus;
  args.mu = m.c.mu;
  args.lr = m.c.lr;
  args.reg = m.c.reg;
  args.decay = m.c.decay;
  args.block_ptr = m.block_ptr.p;
  args.order = m.order.p;
  args.user = m.user.p;
  args.item = m.item.p;
  args.value = m.value.p;
  args.inv_sqrt = m.inv_sqrt.p;
  args.bu = m.bu.p;
  args.bi = m.bi.p;
  args.pu = m.pu.p;
  args.qi = m.qi.p;
  args.row_ptr = m.row_ptr.p;
  args.row_items = m.row_items.p;
  args.yj = m.yj.p;
  args.stamp = m.stamp.p;
  args.z = m.z.p;
  args.g = m.g.p;
  args.a = m.a.p;
  args.sq = m.sq.p;
  // Kernels on one stream run in order: sub-epoch s + 1 starts after every warp of s is done.
  const unsigned grid = grid_for(static_cast<int64_t>(m.blocks) * 32, kThreadsPerCta);
  for (int sub = 0; sub < m.blocks; ++sub) {
    args.now = static_cast<int64_t>(epoch) * m.blocks + sub;
    subepoch_kernel<<<grid, kThreadsPerCta, 0, s>>>(args, sub);
    CUDA_CHECK_LAUNCH();
    if (m.c.plus_plus && m.items > 0) {
      apply_implicit_kernel<<<grid_for(m.items * F, 256), 256, 0, s>>>(m.items, F, m.col_ptr.p, m.col_users.p,
                                                                       m.stamp.p, args.now, m.a.p, m.g.p, m.yj.p);
      CUDA_CHECK_LAUNCH();
    }
  }
  std::vector<double> sq;
  m.sq.download(sq, s);
  CUDA_CHECK(cudaStreamSynchronize(s));
  double total = 0.0;
  for (double v : sq) total = hd_add(total, v);
  return total;
}

void SvdSgdCuda::download(const SvdParamRefs& out) const {
  const Impl& m = *impl_;
  m.bu.download(*out.bu, m.stream);
  m.bi.download(*out.bi, m.stream);
  m.pu.download(*out.pu, m.stream);
  m.qi.download(*out.qi, m.stream);
  if (m.c.plus_plus) m.yj.download(*out.yj, m.stream);
  CUDA_CHECK(cudaStreamSynchronize(m.stream));
}

}  // namespace vae
