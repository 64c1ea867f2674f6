// Elementwise ops and the losses that reduce over a flat index (one pass each: the gradient is
// written and the loss term returned by the same functor, then one block adds the partials).
// Arithmetic mirrors the CPU oracle operation for operation (float where it uses T, double
// where it uses double); the _rn intrinsics stop nvcc from contracting a·b + c into an FMA
// where the oracle rounds twice, so most outputs agree with it to the last bit.
#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <vector>

#include "activation.h"
#include "core/philox.h"
#include "launch.cuh"

namespace vae::cuda {

namespace {


__device__ __forceinline__ double softplus_d(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }

__global__ void finalize_kernel(const double* partials, int nparts, Live<double> outer_live, double inner,
                                bool take_sqrt, float* loss, double* total_out) {
  __shared__ double sh[kThreads];
  double acc = 0.0;
  for (int i = threadIdx.x; i < nparts; i += kThreads) acc += partials[i];
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) {
    if (total_out) *total_out = s;
    if (loss) {
      const double g = take_sqrt ? sqrt(s) : s;
      const double outer = outer_live.get();
      // _rn: no FMA contraction, so the sum rounds as the CPU's (built with -ffp-contract=off).
      loss[0] = static_cast<float>(__dadd_rn(static_cast<double>(loss[0]), __dmul_rn(outer, __dmul_rn(inner, g))));
    }
  }
}

// Runs a loss functor: partial sums + finalize when the loss is wanted, else gradients only.
template <typename F>
struct Discard {
  F f;
  __device__ void operator()(int64_t i) const { (void)f(i); }
};

template <typename F>
void run_loss(const OpContext& c, int64_t n, const F& f, float* loss, Live<double> outer, double inner) {
  if (loss) {
    const int parts = launch_reduce(c.stream, n, f, c.partials);
    finalize_loss(c, parts, outer, inner, false, loss, nullptr);
  } else {
    launch_elementwise(c.stream, n, Discard<F>{f});
  }
}

struct FillF {
  float* x;
  float v;
  __device__ void operator()(int64_t i) const { x[i] = v; }
};

struct AxpyF {
  float alpha;
  const float* x;
  float* y;
  __device__ void operator()(int64_t i) const { y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i])); }
};

struct ScaleF {
  float* x;
  float beta;
  __device__ void operator()(int64_t i) const { x[i] = beta == 0.0f ? 0.0f : __fmul_rn(beta, x[i]); }
};

struct BiasActF {
  const float* x;
  const float* bias;  // nullptr: none
  float* y;           // may alias x: each index reads before it writes
  int64_t cols;
  Act act;
  __device__ void operator()(int64_t i) const {
    y[i] = bias_activate(x[i], bias != nullptr, bias ? bias[i % cols] : 0.0f, act);
  }
};

struct GatherAddF {
  const float* table;
  int64_t table_rows;
  const int32_t* rows;
  float* y;
  int64_t cols;
  int* err;
  __device__ void operator()(int64_t i) const {
    const int64_t r = i / cols, j = i - r * cols;
    const int32_t t = rows[r];
    if (t == -1) return;  // kNoRow (host/backend/backend.h): no vector to add
    if (t < 0 || t >= table_rows) {
      record_error(err, kErrGatherRange);
      return;
    }
    y[i] = __fadd_rn(y[i], table[static_cast<int64_t>(t) * cols + j]);
  }
};

// The non-atomic scatter is race-free only for distinct rows: checked first (O(n²) compares,
// n = batch rows, so no scratch is needed).
struct ScatterCheckF {
  const int32_t* rows;
  int64_t dtable_rows;
  int* err;
  __device__ void operator()(int64_t r) const {
    const int32_t t = rows[r];
    if (t < 0 || t >= dtable_rows) record_error(err, kErrScatterRange);
    for (int64_t q = 0; q < r; ++q)
      if (rows[q] == t) {
        record_error(err, kErrScatterDuplicate);
        break;
      }
  }
};

struct ScatterAddF {
  const float* dy;
  const int32_t* rows;
  float* dtable;
  int64_t dtable_rows;
  int64_t cols;
  __device__ void operator()(int64_t i) const {
    const int64_t r = i / cols, j = i - r * cols;
    const int32_t t = rows[r];
    if (t < 0 || t >= dtable_rows) return;  // reported by ScatterCheckF
    float* dst = dtable + static_cast<int64_t>(t) * cols + j;
    *dst = __fadd_rn(*dst, dy[i]);
  }
};

struct MseF {
  const float* pred;
  const float* target;
  float* dpred;
  float two_scale;
  bool masked;
  __device__ double operator()(int64_t i) const {
    const float t = target[i];
    if (masked && t == 0.0f) {
      if (dpred) dpred[i] = 0.0f;
      return 0.0;
    }
    const float d = __fsub_rn(pred[i], t);
    if (dpred) dpred[i] = __fmul_rn(two_scale, d);
    return static_cast<double>(d) * static_cast<double>(d);
  }
};

struct BceF {
  const float* logits;
  const float* target;
  float* dlogits;
  double s;
  __device__ double operator()(int64_t i) const {
    const double x = logits[i], t = target[i];
    if (dlogits) dlogits[i] = static_cast<float>(s * (hd_sigmoid(x) - t));
    return softplus_d(x) - __dmul_rn(t, x);
  }
};

struct ReparamF {
  const float* ml;
  int64_t L;
  uint64_t seed;
  Live<uint64_t> stream;
  float* eps;
  float* z;
  __device__ void operator()(int64_t i) const {
    const int64_t r = i / L, j = i - r * L;
    const float e = philox_normal(seed, stream.get(), static_cast<uint64_t>(i));  // i = r·L + j
    const float mu = ml[r * 2 * L + j], lv = ml[r * 2 * L + L + j];
    if (eps) eps[i] = e;
    z[i] = static_cast<float>(__dadd_rn(static_cast<double>(mu),
                                        __dmul_rn(static_cast<double>(e), exp(0.5 * static_cast<double>(lv)))));
  }
};

struct KlF {
  const float* ml;
  const float* eps;  // nullptr: z = μ
  const float* dz;   // nullptr: no reconstruction path
  float* dml;        // nullptr: loss only; may alias ml (each (r, j) reads before it writes)
  int64_t L;
  Live<double> kl_scale;
  __device__ double operator()(int64_t i) const {
    const double ks = kl_scale.get();
    const int64_t r = i / L, j = i - r * L;
    const int64_t im = r * 2 * L + j, il = im + L;
    const double m = ml[im], l = ml[il], el = exp(l);
    const double term = __dadd_rn(__dadd_rn(1.0 + l, -__dmul_rn(m, m)), -el);
    if (dml) {
      double dmu = __dmul_rn(ks, m), dlv = __dmul_rn(__dmul_rn(ks, 0.5), el - 1.0);
      if (dz) {
        const double g = dz[i];
        dmu = __dadd_rn(dmu, g);
        if (eps)
          dlv = __dadd_rn(dlv, __dmul_rn(__dmul_rn(__dmul_rn(g, static_cast<double>(eps[i])), 0.5),
                                         exp(0.5 * l)));
      }
      dml[im] = static_cast<float>(dmu);
      dml[il] = static_cast<float>(dlv);
    }
    return term;
  }
};

struct SquareF {
  const float* p;
  __device__ double operator()(int64_t i) const {
    const double v = p[i];
    return v * v;
  }
};

struct RegSquaredGradF {
  const float* p;
  float* grad;
  float lambda;
  __device__ void operator()(int64_t i) const { grad[i] = __fadd_rn(grad[i], __fmul_rn(lambda, p[i])); }
};

// grad += ½λ · p / ‖p‖ with ‖p‖² read from the device scalar the reduction left (no host sync).
struct RegNormGradF {
  const float* p;
  float* grad;
  const double* sq;
  double half_lambda;
  __device__ void operator()(int64_t i) const {
    const double nrm = sqrt(*sq);
    if (!(nrm > 0)) return;  // PyTorch's norm backward: no gradient at 0
    const double f = half_lambda / nrm;
    grad[i] = static_cast<float>(__dadd_rn(static_cast<double>(grad[i]), __dmul_rn(f, static_cast<double>(p[i]))));
  }
};

struct DropoutF {
  const float* x;
  float* y;  // may alias x
  float q, keep_scale;
  uint64_t seed;
  Live<uint64_t> stream;
  bool drop_all;
  __device__ void operator()(int64_t i) const {
    if (drop_all) {
      y[i] = __fmul_rn(x[i], 0.0f);  // PyTorch's p = 1: x · 0 (NaN stays NaN)
      return;
    }
    const float u = philox_uniform(seed, stream.get(), static_cast<uint64_t>(i));
    y[i] = __fmul_rn(x[i], u > q ? keep_scale : 0.0f);
  }
};

struct AdamF {
  float* params;
  const float* grads;
  float* m;
  float* v;
  AdamScalars s;
  __device__ void operator()(int64_t i) const {
    double p = params[i];
    double g = grads[i];
    if (!s.decoupled) g = __dadd_rn(g, __dmul_rn(s.weight_decay, p));
    p = __dmul_rn(p, s.shrink);
    const double mi = __dadd_rn(__dmul_rn(s.beta1, static_cast<double>(m[i])), __dmul_rn(1.0 - s.beta1, g));
    const double vi = __dadd_rn(__dmul_rn(s.beta2, static_cast<double>(v[i])),
                                __dmul_rn(__dmul_rn(1.0 - s.beta2, g), g));
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
    p = __dsub_rn(p, __ddiv_rn(__dmul_rn(s.step_size.get(), mi), __dadd_rn(sqrt(vi) / s.sqrt_bc2.get(), s.eps)));
    params[i] = static_cast<float>(p);
  }
};

}  // namespace

void finalize_loss(const OpContext& c, int nparts, Live<double> outer, double inner, bool take_sqrt,
                   float* loss, double* total_out) {
  if (!loss && !total_out) return;
  finalize_kernel<<<1, kThreads, 0, c.stream>>>(c.partials, nparts, outer, inner, take_sqrt, loss, total_out);
  CUDA_CHECK_LAUNCH();
}

void fill(const OpContext& c, float* x, int64_t n, float v) { launch_elementwise(c.stream, n, FillF{x, v}); }

void axpy(const OpContext& c, float alpha, const float* x, float* y, int64_t n) {
  launch_elementwise(c.stream, n, AxpyF{alpha, x, y});
}

void scale(const OpContext& c, float* x, int64_t n, float beta) {
  launch_elementwise(c.stream, n, ScaleF{x, beta});
}

void bias_act(const OpContext& c, const float* x, const float* bias, Act act, float* y, int64_t rows,
              int64_t cols) {
  launch_elementwise(c.stream, rows * cols, BiasActF{x, bias, y, cols, act});
}

void gather_rows_add(const OpContext& c, const float* table, int64_t table_rows, const int32_t* rows,
                     float* y, int64_t n, int64_t cols) {
  launch_elementwise(c.stream, n * cols, GatherAddF{table, table_rows, rows, y, cols, c.error});
}

void scatter_rows_add(const OpContext& c, const float* dy, const int32_t* rows, float* dtable,
                      int64_t dtable_rows, int64_t n, int64_t cols) {
  launch_elementwise(c.stream, n, ScatterCheckF{rows, dtable_rows, c.error});
  launch_elementwise(c.stream, n * cols, ScatterAddF{dy, rows, dtable, dtable_rows, cols});
}

void mse_loss(const OpContext& c, const float* pred, const float* target, int64_t n, bool masked,
              float scale, float* dpred, float* loss) {
  if (!dpred && !loss) return;
  run_loss(c, n, MseF{pred, target, dpred, 2.0f * scale, masked}, loss,
           static_cast<double>(scale), 1.0);
}

void bce_logits(const OpContext& c, const float* logits, const float* target, int64_t n, float scale,
                float* dlogits, float* loss) {
  if (!dlogits && !loss) return;
  const double s = scale;
  run_loss(c, n, BceF{logits, target, dlogits, s}, loss, s, 1.0);
}

void reparameterize(const OpContext& c, const float* mu_logvar, int64_t rows, int64_t latent,
                    uint64_t seed, Live<uint64_t> stream, float* eps, float* z) {
  launch_elementwise(c.stream, rows * latent, ReparamF{mu_logvar, latent, seed, stream, eps, z});
}

void reparam_kl_backward(const OpContext& c, const float* mu_logvar, const float* eps,
                         const float* dz, int64_t rows, int64_t latent, Live<double> kl_scale,
                         float* d_mu_logvar, float* loss) {
  if (!d_mu_logvar && !loss) return;
  run_loss(c, rows * latent, KlF{mu_logvar, eps, dz, d_mu_logvar, latent, kl_scale}, loss, kl_scale, -0.5);
}

void regularize(const OpContext& c, const float* p, int64_t n, float lambda, Reg kind, float* grad,
                float* loss) {
  const double lam = lambda;
  if (kind == Reg::l2_squared) {
    if (loss) {
      const int parts = launch_reduce(c.stream, n, SquareF{p}, c.partials);
      finalize_loss(c, parts, 0.5 * lam, 1.0, false, loss, nullptr);
    }
    if (grad) launch_elementwise(c.stream, n, RegSquaredGradF{p, grad, lambda});
    return;
  }
  if (!loss && !grad) return;
  // ‖p‖² stays on the device (scalars[0]) for the gradient pass.
  const int parts = launch_reduce(c.stream, n, SquareF{p}, c.partials);
  finalize_loss(c, parts, 0.5 * lam, 1.0, true, loss, c.scalars);
  if (grad && n > 0) launch_elementwise(c.stream, n, RegNormGradF{p, grad, c.scalars, 0.5 * lam});
}

void dropout(const OpContext& c, const float* x, int64_t n, float q, uint64_t seed, Live<uint64_t> stream,
             float* y) {
  const bool all = q >= 1.0f;
  const float keep = all ? 0.0f : 1.0f / (1.0f - q);
  launch_elementwise(c.stream, n, DropoutF{x, y, q, keep, seed, stream, all});
}

void adam_step(const OpContext& c, float* params, const float* grads, float* m, float* v, int64_t n,
               const AdamScalars& s) {
  launch_elementwise(c.stream, n, AdamF{params, grads, m, v, s});
}

namespace {

struct TakeRowsF {
  const int32_t* src;
  Live<int64_t> offset;
  int32_t* dst;
  __device__ void operator()(int64_t i) const { dst[i] = src[offset.get() + i]; }
};

// The first node of every step graph: the step's live values into the backend's live block.
__global__ void step_prologue_kernel(LiveValues lives, uint64_t* block) {
  for (int i = threadIdx.x; i < lives.count; i += blockDim.x) block[i] = lives.v[i];
}

cudaKernelNodeParams prologue_params(LiveValues& lives, uint64_t*& block, void* (&args)[2]) {
  args[0] = &lives;
  args[1] = &block;
  cudaKernelNodeParams p{};
  p.func = reinterpret_cast<void*>(&step_prologue_kernel);
  p.gridDim = dim3(1);
  p.blockDim = dim3(kMaxLives);
  p.sharedMemBytes = 0;
  p.kernelParams = args;
  p.extra = nullptr;
  return p;
}

}  // namespace

void take_rows(const OpContext& c, const int32_t* src, Live<int64_t> offset, int32_t* dst, int64_t n) {
  launch_elementwise(c.stream, n, TakeRowsF{src, offset, dst});
}

void launch_step_prologue(cudaStream_t s, uint64_t* block) {
  step_prologue_kernel<<<1, kMaxLives, 0, s>>>(LiveValues{}, block);  // values set before each launch
  CUDA_CHECK_LAUNCH();
}

cudaGraphNode_t find_step_prologue(cudaGraph_t step) {
  size_t n = 0;
  CUDA_CHECK(cudaGraphGetRootNodes(step, nullptr, &n));
  if (n != 1) throw ::vae::CudaError("step graph: " + std::to_string(n) + " root nodes where the prologue should be the one");
  cudaGraphNode_t root = nullptr;
  CUDA_CHECK(cudaGraphGetRootNodes(step, &root, &n));
  cudaGraphNodeType type{};
  CUDA_CHECK(cudaGraphNodeGetType(root, &type));
  if (type != cudaGraphNodeTypeKernel) throw ::vae::CudaError("step graph: its root is not the prologue kernel");
  return root;
}

int64_t graph_longest_chain(cudaGraph_t g) {
  size_t n = 0;
  CUDA_CHECK(cudaGraphGetNodes(g, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  if (n > 0) CUDA_CHECK(cudaGraphGetNodes(g, nodes.data(), &n));
  size_t e = 0;
#if CUDART_VERSION >= 12030
  auto get_edges = [&](cudaGraphNode_t* from, cudaGraphNode_t* to, cudaGraphEdgeData* data) {
#if CUDART_VERSION >= 13000
    CUDA_CHECK(cudaGraphGetEdges(g, from, to, data, &e));
#else
    CUDA_CHECK(cudaGraphGetEdges_v2(g, from, to, data, &e));
#endif
  };
  get_edges(nullptr, nullptr, nullptr);
  std::vector<cudaGraphNode_t> from(e), to(e);
  std::vector<cudaGraphEdgeData> data(e);  // asked for, so that no edge kind makes the query lossy
  if (e > 0) get_edges(from.data(), to.data(), data.data());
#else
  CUDA_CHECK(cudaGraphGetEdges(g, nullptr, nullptr, &e));
  std::vector<cudaGraphNode_t> from(e), to(e);
  if (e > 0) CUDA_CHECK(cudaGraphGetEdges(g, from.data(), to.data(), &e));
#endif
  // Longest path in nodes, over a topological order (Kahn's).
  std::unordered_map<cudaGraphNode_t, size_t> index;
  for (size_t i = 0; i < n; ++i) index[nodes[i]] = i;
  std::vector<std::vector<size_t>> next(n);
  std::vector<size_t> waiting(n, 0);
  for (size_t i = 0; i < e; ++i) {
    const size_t f = index.at(from[i]), t = index.at(to[i]);
    next[f].push_back(t);
    ++waiting[t];
  }
  std::vector<int64_t> depth(n, 1);
  std::vector<size_t> ready;
  for (size_t i = 0; i < n; ++i)
    if (waiting[i] == 0) ready.push_back(i);
  int64_t longest = 0;
  while (!ready.empty()) {
    const size_t i = ready.back();
    ready.pop_back();
    longest = std::max(longest, depth[i]);
    for (const size_t t : next[i]) {
      depth[t] = std::max(depth[t], depth[i] + 1);
      if (--waiting[t] == 0) ready.push_back(t);
    }
  }
  return longest;
}

void set_step_lives(cudaGraphExec_t exec, cudaGraphNode_t prologue, const LiveValues& lives,
                    uint64_t* block) {
  LiveValues l = lives;  // the arguments are copied by the call
  void* args[2];
  const cudaKernelNodeParams p = prologue_params(l, block, args);
  CUDA_CHECK(cudaGraphExecKernelNodeSetParams(exec, prologue, &p));
}

}  // namespace vae::cuda
