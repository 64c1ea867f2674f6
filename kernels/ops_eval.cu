// Evaluation kernels: per-row top-k with exclusion, the held-out (binary) and graded ranking
// metrics, and rating errors, all reduced on the device so only n × few numbers come back.
//
// Top-k (one block per row): every score maps to a 32-bit rank key (larger = ranked earlier,
// NaN below −inf, −0 = +0), and (key, index) to a unique 64-bit key whose low word is the
// complemented index, so "descending 64-bit key" is exactly the oracle's order (score
// descending, NaN last, ties by lower index). An MSB-first radix select (4 passes of 8 bits,
// shared-memory histogram) finds the rank key T of the k-th entry; the entries above T and
// the first (by index) entries equal to T are gathered into shared memory and bitonic-sorted.
// Shared memory: key_capacity(k, m) × 8 bytes of keys + an m-bit exclusion bitmap.
#include <cmath>
#include <string>

#include "launch.cuh"

namespace vae::cuda {

namespace {

constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ uint32_t rank_key(float s) {
  if (isnan(s)) return 0u;
  if (s == 0.0f) s = 0.0f;  // −0 ties with +0, as in the oracle's comparison
  const uint32_t b = __float_as_uint(s);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// Unique per (score, index); 0 is below every real key (a real index is < 2³² − 1).
__device__ __forceinline__ uint64_t compose_key(uint32_t u, int64_t j) {
  return (static_cast<uint64_t>(u) << 32) | static_cast<uint32_t>(0xFFFFFFFFu - static_cast<uint32_t>(j));
}
__device__ __forceinline__ int32_t key_index(uint64_t key) {
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}

__device__ __forceinline__ double rank_discount(int64_t pos) {
  return 1.0 / log2(static_cast<double>(pos) + 2.0);
}

struct SelectShared {
  int hist[256];
  int warp_counts[kWarps];
  uint32_t prefix, mask;
  int remaining, kk, gt_pos;
};

__device__ __forceinline__ bool excluded(const uint32_t* bitmap, int64_t j) {
  return bitmap != nullptr && ((bitmap[j >> 5] >> (j & 31)) & 1u);
}

// All threads of the block call this. Leaves the top min(k, #candidates) entries of s[0, m)
// (candidates: not set in bitmap) in keys[0, kk) in ranking order and returns kk. keys must
// hold key_capacity(k, m) entries.
__device__ int block_topk(const float* s, int64_t m, const uint32_t* bitmap, int k, uint64_t* keys,
                          SelectShared& sm) {
  const int tid = threadIdx.x;
  // Radix select of the rank key at position kk.
  for (int pass = 0; pass < 4; ++pass) {
    const int shift = 24 - 8 * pass;
    for (int b = tid; b < 256; b += kThreads) sm.hist[b] = 0;
    if (pass == 0 && tid == 0) {
      sm.prefix = 0u;
      sm.mask = 0u;
    }
    __syncthreads();
    const uint32_t prefix = sm.prefix, mask = sm.mask;
    for (int64_t j = tid; j < m; j += kThreads) {
      if (excluded(bitmap, j)) continue;
      const uint32_t u = rank_key(s[j]);
      if ((u & mask) == prefix) atomicAdd(&sm.hist[(u >> shift) & 0xFFu], 1);  // integer: exact
    }
    __syncthreads();
    if (tid == 0) {
      if (pass == 0) {
        int total = 0;
        for (int b = 0; b < 256; ++b) total += sm.hist[b];
        sm.kk = k < total ? k : total;
        sm.remaining = sm.kk;
      }
      if (sm.remaining > 0) {
        int cum = 0, b = 255;
        for (; b > 0; --b) {
          if (cum + sm.hist[b] >= sm.remaining) break;
          cum += sm.hist[b];
        }
        sm.remaining -= cum;
        sm.prefix = prefix | (static_cast<uint32_t>(b) << shift);
        sm.mask = mask | (0xFFu << shift);
      }
    }
    __syncthreads();
    if (sm.kk == 0) return 0;
  }
  const uint32_t thr = sm.prefix;
  const int kk = sm.kk, need = sm.remaining, n_gt = kk - need;
  if (tid == 0) sm.gt_pos = 0;
  __syncthreads();

  // Gather: everything above thr (any order: the sort fixes it), and the first `need` entries
  // equal to thr in index order (block-wide scan per chunk of kThreads columns).
  const int lane = tid & 31, warp = tid >> 5;
  int tie_base = 0;  // every thread keeps the same running count
  for (int64_t base = 0; base < m; base += kThreads) {
    const int64_t j = base + tid;
    bool cand = false;
    uint32_t u = 0u;
    if (j < m && !excluded(bitmap, j)) {
      cand = true;
      u = rank_key(s[j]);
    }
    if (cand && u > thr) keys[atomicAdd(&sm.gt_pos, 1)] = compose_key(u, j);
    const bool tie = cand && u == thr;
    const unsigned ballot = __ballot_sync(0xFFFFFFFFu, tie);
    if (lane == 0) sm.warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < kWarps; ++w) {
      if (w < warp) before += sm.warp_counts[w];
      total += sm.warp_counts[w];
    }
    if (tie) {
      const int pos = tie_base + before + __popc(ballot & ((1u << lane) - 1u));
      if (pos < need) keys[n_gt + pos] = compose_key(u, j);
    }
    tie_base += total;
    __syncthreads();  // warp_counts is rewritten by the next chunk
  }

  // Bitonic sort, descending, padded to a power of two with 0 keys (below every real key).
  int p2 = 1;
  while (p2 < kk) p2 <<= 1;
  for (int i = kk + tid; i < p2; i += kThreads) keys[i] = 0ull;
  __syncthreads();
  for (int size = 2; size <= p2; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < p2; i += kThreads) {
        const int l = i ^ stride;
        if (l > i) {
          const uint64_t a = keys[i], b = keys[l];
          const bool desc = (i & size) == 0;
          if (desc ? (a < b) : (a > b)) {
            keys[i] = b;
            keys[l] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  return kk;
}

__global__ void topk_kernel(const float* scores, int64_t n, int64_t m, CsrView<float> ex, bool excluding,
                            const int32_t* ex_rows, int k, int cap, int32_t* idx, float* val, int* err) {
  extern __shared__ uint64_t dyn_smem[];
  __shared__ SelectShared sm;
  uint64_t* keys = dyn_smem;
  uint32_t* bitmap = excluding ? reinterpret_cast<uint32_t*>(dyn_smem + cap) : nullptr;
  const int64_t words = (m + 31) / 32;
  const int tid = threadIdx.x;
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const float* s = scores + r * m;
    bool ok = true;
    if (excluding) {
      const int32_t er = ex_rows[r];
      if (er < 0 || er >= ex.rows) {
        ok = false;  // uniform over the block
        if (tid == 0) record_error(err, kErrTopkExcludeRange);
      } else {
        for (int64_t w = tid; w < words; w += kThreads) bitmap[w] = 0u;
        __syncthreads();
        for (int64_t q = ex.indptr[er] + tid; q < ex.indptr[er + 1]; q += kThreads) {
          const int32_t c = ex.indices[q];
          if (c >= 0 && c < m) atomicOr(&bitmap[c >> 5], 1u << (c & 31));
        }
        __syncthreads();
      }
    }
    const int kk = ok ? block_topk(s, m, bitmap, k, keys, sm) : 0;
    int32_t* ir = idx + r * k;
    float* vr = val ? val + r * k : nullptr;
    for (int i = tid; i < k; i += kThreads) {
      if (i < kk) {
        const int32_t j = key_index(keys[i]);
        ir[i] = j;
        if (vr) vr[i] = s[j];
      } else {
        ir[i] = -1;
        if (vr) vr[i] = -INFINITY;
      }
    }
    __syncthreads();  // keys and bitmap are reused by the next row
  }
}

// sklearn.metrics.ndcg_score per row with tie averaging (see the oracle's graded_metrics).
__global__ void graded_metrics_kernel(const float* scores, const float* truth, int64_t n, int64_t m, int k,
                                      float* out) {
  extern __shared__ uint64_t dyn_smem[];
  __shared__ SelectShared sm;
  __shared__ double sh[kThreads];
  uint64_t* keys = dyn_smem;
  const int tid = threadIdx.x;
  const int kk = static_cast<int>(k < m ? k : m);
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const float* s = scores + r * m;
    const float* t = truth + r * m;
    double tsum = 0.0;
    for (int64_t j = tid; j < m; j += kThreads) tsum += static_cast<double>(t[j]);
    tsum = block_sum(tsum, sh);

    // IDCG ranks the true gains themselves (their ties do not matter).
    double idcg = 0.0;
    block_topk(t, m, nullptr, kk, keys, sm);
    if (tid == 0)
      for (int i = 0; i < kk; ++i) idcg = __dadd_rn(idcg, __dmul_rn(static_cast<double>(t[key_index(keys[i])]), rank_discount(i)));
    __syncthreads();

    const int got = block_topk(s, m, nullptr, kk, keys, sm);  // == kk (nothing excluded)
    // The group of equal scores that reaches rank kk also counts its members ranked after the
    // cut: i.e. every item of the row with that score.
    double cnt = 0.0, gs = 0.0;
    if (got > 0) {
      const float sv = s[key_index(keys[got - 1])];
      const bool sv_nan = isnan(sv);
      for (int64_t j = tid; j < m; j += kThreads) {
        const bool same = sv_nan ? isnan(s[j]) : s[j] == sv;
        if (same) {
          cnt += 1.0;
          gs += static_cast<double>(t[j]);
        }
      }
    }
    cnt = block_sum(cnt, sh);
    gs = block_sum(gs, sh);
    if (tid == 0) {
      double hit_gain = 0.0, dcg = 0.0;
      for (int i = 0; i < got; ++i) hit_gain += static_cast<double>(t[key_index(keys[i])]);
      for (int g0 = 0; g0 < got;) {
        const float sv = s[key_index(keys[g0])];
        const bool sv_nan = isnan(sv);
        int g1 = g0;
        double gsum = 0.0, dsum = 0.0;
        while (g1 < got) {
          const int32_t j = key_index(keys[g1]);
          if (!(sv_nan ? isnan(s[j]) : s[j] == sv)) break;
          gsum += static_cast<double>(t[j]);
          dsum += rank_discount(g1);
          ++g1;
        }
        double count = static_cast<double>(g1 - g0);
        if (g1 == got) {
          gsum = gs;
          count = cnt;
        }
        dcg = __dadd_rn(dcg, __dmul_rn(gsum / count, dsum));
        g0 = g1;
      }
      out[r * 2 + 0] = static_cast<float>(idcg == 0.0 ? 0.0 : dcg / idcg);
      out[r * 2 + 1] = static_cast<float>(tsum == 0.0 ? 0.0 : hit_gain / tsum);
    }
    __syncthreads();
  }
}

struct KList {
  int n;
  int k[kMaxKs];
};

// One thread per row: the ranks are walked once, recording hits/DCG whenever the rank count
// reaches a requested k (the same running sums as the oracle's per-k loops).
__global__ void heldout_metrics_kernel(const int32_t* idx, int64_t n, int64_t idx_cols, CsrView<float> target,
                                       const int32_t* target_rows, KList ks, int kmax, float* out, int* err) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const int nk = ks.n;
  float* o = out + r * 2 * nk;
  const int32_t tr = target_rows[r];
  if (tr < 0 || tr >= target.rows) {
    record_error(err, kErrHeldoutTargetRange);
    for (int q = 0; q < 2 * nk; ++q) o[q] = 0.0f;
    return;
  }
  const int64_t b = target.indptr[tr], e = target.indptr[tr + 1];
  int64_t npos = 0;
  for (int64_t p = b; p < e; ++p) npos += target.values[p] > 0.0f;
  if (npos == 0) {
    for (int q = 0; q < 2 * nk; ++q) o[q] = 0.0f;
    return;
  }
  const int32_t* row = idx + r * idx_cols;
  double hits = 0.0, dcg = 0.0;
  for (int i = 0; i < kmax; ++i) {
    const int32_t item = row[i];
    bool hit = false;
    if (item >= 0) {
      int64_t lo = b, hi = e;  // lower_bound over the row's ascending indices
      while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (target.indices[mid] < item) lo = mid + 1;
        else hi = mid;
      }
      hit = lo < e && target.indices[lo] == item && target.values[lo] > 0.0f;
    }
    if (hit) {
      hits += 1.0;
      dcg += rank_discount(i);
    }
    for (int q = 0; q < nk; ++q) {
      if (ks.k[q] != i + 1) continue;
      const int64_t ideal = ks.k[q] < npos ? ks.k[q] : npos;
      double idcg = 0.0;
      for (int64_t p = 0; p < ideal; ++p) idcg += rank_discount(p);
      o[q] = static_cast<float>(hits / static_cast<double>(ideal));
      o[nk + q] = static_cast<float>(dcg / idcg);
    }
  }
}

__global__ void rating_errors_kernel(const float* pred, int64_t n, int64_t cols, CsrView<float> target,
                                     const int32_t* target_rows, float lo, float hi, float* out, int* err) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  float* o = out + r * 3;
  const int32_t tr = target_rows[r];
  if (tr < 0 || tr >= target.rows) {
    record_error(err, kErrRatingTargetRange);
    o[0] = o[1] = o[2] = 0.0f;
    return;
  }
  const float* p = pred + r * cols;
  const int64_t b = target.indptr[tr], e = target.indptr[tr + 1];
  double sse = 0.0, sae = 0.0;
  for (int64_t q = b; q < e; ++q) {
    const int32_t c = target.indices[q];
    if (c < 0 || c >= cols) continue;
    const float v = p[c];
    const float clipped = v < lo ? lo : (hi < v ? hi : v);  // std::clamp, NaN passes through
    const double d = static_cast<double>(clipped) - static_cast<double>(target.values[q]);
    sse = __dadd_rn(sse, __dmul_rn(d, d));
    sae += fabs(d);
  }
  o[0] = static_cast<float>(sse);
  o[1] = static_cast<float>(sae);
  o[2] = static_cast<float>(e - b);
}

int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// Sort room for the top min(k, m) keys, never fewer than 2: nvcc compiles thread 0's serial loops
// over keys[0, kk) with paired 16-byte shared loads, and memcheck flagged the one-key (8-byte)
// allocation of k = 1 as read past its end.
int64_t key_capacity(int64_t k, int64_t m) { return next_pow2(std::max<int64_t>(2, std::min<int64_t>(k, m))); }

// Raises the kernel's dynamic shared memory limit when needed; throws when the device cannot.
template <typename K>
void reserve_smem(const OpContext& c, K kernel, size_t bytes, const std::string& what) {
  cudaFuncAttributes attr{};
  CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  const size_t limit = c.smem_optin > attr.sharedSizeBytes ? c.smem_optin - attr.sharedSizeBytes : 0;
  if (bytes > limit)
    throw VaeError(what + " needs " + std::to_string(bytes) + " bytes of shared memory per block; the device allows " +
                   std::to_string(limit) + " (use a smaller k)");
  // Without the opt-in a block's static and dynamic shared memory together get 48 KiB: top-k's
  // own ~1 KB of static counters leaves a window just under 48 KiB of dynamic bytes that fails.
  if (bytes > static_cast<size_t>(attr.maxDynamicSharedSizeBytes) || bytes + attr.sharedSizeBytes > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

unsigned rows_grid(int64_t n) { return static_cast<unsigned>(std::min<int64_t>(n, kMaxGrid)); }
unsigned thread_grid(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

void topk(const OpContext& c, const float* scores, int64_t n, int64_t m, CsrView<float> exclude,
          const int32_t* exclude_rows, int k, int32_t* idx, float* val) {
  if (n == 0 || k == 0) return;
  VAE_CHECK(m < (int64_t{1} << 31) - 1, "topk: too many columns for 32-bit indices");
  const bool excluding = exclude.rows > 0;
  const int64_t cap = key_capacity(k, m);
  const size_t bytes = static_cast<size_t>(cap) * 8 + (excluding ? static_cast<size_t>((m + 31) / 32) * 4 : 0);
  reserve_smem(c, topk_kernel, bytes, "topk (k = " + std::to_string(k) + ", " + std::to_string(m) + " columns)");
  topk_kernel<<<rows_grid(n), kThreads, bytes, c.stream>>>(scores, n, m, exclude, excluding, exclude_rows, k,
                                                           static_cast<int>(cap), idx, val, c.error);
  CUDA_CHECK_LAUNCH();
}

void heldout_metrics(const OpContext& c, const int32_t* idx, int64_t n, int64_t idx_cols,
                     CsrView<float> target, const int32_t* target_rows, const std::vector<int>& ks,
                     float* out) {
  VAE_CHECK(static_cast<int>(ks.size()) <= kMaxKs, "heldout_metrics: at most 32 cut-offs");
  if (n == 0 || ks.empty()) return;
  KList kl{};
  kl.n = static_cast<int>(ks.size());
  int kmax = 0;
  for (size_t q = 0; q < ks.size(); ++q) {
    kl.k[q] = ks[q];
    kmax = std::max(kmax, ks[q]);
  }
  heldout_metrics_kernel<<<thread_grid(n), kThreads, 0, c.stream>>>(idx, n, idx_cols, target, target_rows, kl,
                                                                     kmax, out, c.error);
  CUDA_CHECK_LAUNCH();
}

void graded_metrics(const OpContext& c, const float* scores, const float* truth, int64_t n, int64_t m, int k,
                    float* out) {
  if (n == 0) return;
  VAE_CHECK(m < (int64_t{1} << 31) - 1, "graded_metrics: too many columns for 32-bit indices");
  const int64_t cap = key_capacity(k, m);
  const size_t bytes = static_cast<size_t>(cap) * 8;
  reserve_smem(c, graded_metrics_kernel, bytes, "graded_metrics (k = " + std::to_string(k) + ")");
  graded_metrics_kernel<<<rows_grid(n), kThreads, bytes, c.stream>>>(scores, truth, n, m, k, out);
  CUDA_CHECK_LAUNCH();
}

void rating_errors(const OpContext& c, const float* pred, int64_t n, int64_t cols, CsrView<float> target,
                   const int32_t* target_rows, float lo, float hi, float* out) {
  if (n == 0) return;
  rating_errors_kernel<<<thread_grid(n), kThreads, 0, c.stream>>>(pred, n, cols, target, target_rows, lo, hi,
                                                                  out, c.error);
  CUDA_CHECK_LAUNCH();
}

const char* device_error_message(int code) {
  switch (code) {
    case kErrGatherRange: return "gather_rows_add: row index out of range";
    case kErrScatterRange: return "scatter_rows_add: row index out of range";
    case kErrScatterDuplicate: return "scatter_rows_add: rows must be distinct";
    case kErrCsrRowRange: return "csr_rows_to_dense: row index out of range";
    case kErrTopkExcludeRange: return "topk: exclude row out of range";
    case kErrHeldoutTargetRange: return "heldout_metrics: target row out of range";
    case kErrRatingTargetRange: return "rating_errors: target row out of range";
    default: return "unknown device error";
  }
}

}  // namespace vae::cuda
