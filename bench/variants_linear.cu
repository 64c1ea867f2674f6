// Dense-layer variants for the notebook VAE's MLP at batch 64 (ml-100k's 1682 items), timed as
// CUDA Graph replays and checked against each other (the llm.c habit: variants live here; only
// a winner moves to kernels/). The question: how much of a VAE step's GPU time is the separate
// bias/activation kernels, which cuBLASLt can fold into the GEMMs' epilogues?
//
//   v1  the shipped ops through the CUDA backend (fp32 GEMMs): per layer, forward gemm + bias_act
//       (2 kernels); backward bias_act_backward + dW gemm + dx gemm (3, the first layer 2).
//   v2  cuBLASLt with epilogues: forward GEMM with RELU_AUX_BIAS (ReLU layers: bias, ReLU and a
//       bit mask in one kernel) or BIAS; backward the dW GEMM (BGRADB folds the top layer's
//       bias gradient into it) and the dx GEMM with DRELU_BGRAD (the layer below's ReLU gradient
//       and bias gradient from its mask): 1 kernel forward, 2 backward (the first layer 1).
//
// Chains: the encoder 1682-512-256-128 (ReLU, ReLU, identity) and the decoder 64-256-512-1682.
// v2's outputs (activations, dW, db) must match v1's to a relative 1e-5 (both FP32, summed in
// different orders); an epilogue the library refuses for FP32 is reported, not failed.
//
//   vae_linear_variants [--reps N]     (without a CUDA device it says so and exits 0)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "variants_common.cuh"

namespace {

using namespace vae;

// cuBLASLt refusals are answers here (an epilogue not offered for FP32), so they throw.
#define LT(expr)                                                                                  \
  do {                                                                                            \
    const cublasStatus_t s_ = (expr);                                                             \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                              \
      throw std::runtime_error(std::string(#expr).substr(0, 40) + ": cuBLAS status " +          \
                               std::to_string(static_cast<int>(s_)));                            \
  } while (0)

struct Layer {
  int64_t in, out;
  bool relu;
};

struct Chain {
  const char* name;
  std::vector<Layer> layers;
};

std::vector<float> rand_vec(size_t n, uint64_t seed, float scale) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// ‖got − ref‖ / ‖ref‖, NaN anywhere failing.
double rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

float* dev_upload(const std::vector<float>& h) {
  float* p = nullptr;
  CK(cudaMalloc(&p, std::max<size_t>(1, h.size()) * sizeof(float)));
  CK(cudaMemcpy(p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
  return p;
}

std::vector<float> dev_download(const float* p, size_t n) {
  std::vector<float> h(n);
  CK(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
  return h;
}

// One cuBLASLt GEMM, column-major: D (m × n, ldd) = op(A) · op(B), with an epilogue.
struct LtGemm {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  const float* A = nullptr;
  const float* B = nullptr;
  float* D = nullptr;

  LtGemm(cublasLtHandle_t lt, cublasLtMatmulPreference_t pref, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
         const float* A_, int64_t lda, const float* B_, int64_t ldb, float* D_, int64_t ldd, cublasLtEpilogue_t epi,
         const float* bias, void* aux, int64_t aux_ld)
      : A(A_), B(B_), D(D_) {
    LT(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));  // strict FP32: no TF32
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    if (aux) {
      LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
      LT(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld));
    }
    // Layouts as stored (before op).
    LT(cublasLtMatrixLayoutCreate(&a, CUDA_R_32F, ta ? k : m, ta ? m : k, lda));
    LT(cublasLtMatrixLayoutCreate(&b, CUDA_R_32F, tb ? n : k, tb ? k : n, ldb));
    LT(cublasLtMatrixLayoutCreate(&d, CUDA_R_32F, m, n, ldd));
    cublasLtMatmulHeuristicResult_t h{};
    int found = 0;
    LT(cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, d, d, pref, 1, &h, &found));
    if (found < 1) throw std::runtime_error("no cuBLASLt algorithm for this epilogue");
    algo = h.algo;
  }
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;
  ~LtGemm() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
  void run(cublasLtHandle_t lt, void* ws, size_t ws_bytes, cudaStream_t s) const {
    const float one = 1.0f, zero = 0.0f;
    LT(cublasLtMatmul(lt, desc, &one, A, a, B, b, &zero, D, d, D, d, &algo, ws, ws_bytes, s));
  }
};

}  // namespace

int run(int argc, char** argv) {
  int reps = 50;
  if (const int rc = parse_reps(argc, argv, "vae_linear_variants", 3, reps)) return rc < 0 ? 0 : rc;
  if (!cuda_device_available()) {
    std::printf("vae_linear_variants: no CUDA device: nothing to time\n");
    return 0;
  }
  auto gpu = make_cuda_backend(GemmPrecision::fp32);
  std::printf("vae_linear_variants on %s: dense layers, forward + backward, batch 64, graph replays, median of %d\n",
              cuda_device_name().c_str(), reps);
  constexpr int64_t kB = 64;
  const std::vector<Chain> chains = {{"encoder 1682-512-256-128", {{1682, 512, true}, {512, 256, true}, {256, 128, false}}},
                                     {"decoder 64-256-512-1682", {{64, 256, true}, {256, 512, true}, {512, 1682, false}}}};
  cublasLtHandle_t lt = nullptr;
  if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
    std::printf("cublasLtCreate failed\n");
    return 1;
  }
  const size_t ws_bytes = size_t{32} << 20;
  void* ws = nullptr;
  CK(cudaMalloc(&ws, ws_bytes));
  cublasLtMatmulPreference_t pref = nullptr;
  LT(cublasLtMatmulPreferenceCreate(&pref));
  LT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes));
  cudaStream_t s = nullptr;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));

  bool all_ok = true;
  int64_t key = 1;
  for (const Chain& c : chains) {
    const size_t L = c.layers.size();
    // Host data shared by both variants.
    std::vector<std::vector<float>> hw(L), hb(L);
    for (size_t l = 0; l < L; ++l) {
      const Layer& ly = c.layers[l];
      hw[l] = rand_vec(static_cast<size_t>(ly.out * ly.in), 100 + l, 1.0f / std::sqrt(static_cast<float>(ly.in)));
      hb[l] = rand_vec(static_cast<size_t>(ly.out), 200 + l, 0.1f);
    }
    const std::vector<float> hx = rand_vec(static_cast<size_t>(kB * c.layers[0].in), 7, 1.0f);
    const std::vector<float> hg = rand_vec(static_cast<size_t>(kB * c.layers.back().out), 8, 1e-3f);

    // ---- v1: the backend's ops -------------------------------------------------------------
    std::vector<Tensor<float>> W, bias, Y, dY, dW, db;
    for (size_t l = 0; l < L; ++l) {
      const Layer& ly = c.layers[l];
      W.push_back(gpu->upload(hw[l], ly.out, ly.in));
      bias.push_back(gpu->upload(hb[l], 1, ly.out));
      Y.push_back(gpu->alloc<float>(kB, ly.out));
      dY.push_back(gpu->alloc<float>(kB, ly.out));
      dW.push_back(gpu->alloc<float>(ly.out, ly.in));
      db.push_back(gpu->alloc<float>(1, ly.out));
    }
    Tensor<float> X = gpu->upload(hx, kB, c.layers[0].in), G = gpu->upload(hg, kB, c.layers.back().out);
    int v1_kernels = 0;
    auto v1 = [&] {
      v1_kernels = 0;
      for (size_t l = 0; l < L; ++l) {
        CMat<float> x = l == 0 ? X.cmat() : Y[l - 1].cmat();
        gpu->gemm(false, true, 1.0f, x, W[l].cmat(), 0.0f, Y[l].mat());
        gpu->bias_act(Y[l].cmat(), bias[l].cmat(), c.layers[l].relu ? Act::relu : Act::identity, Y[l].mat());
        v1_kernels += 2;
      }
      gpu->copy_within(dY[L - 1].data(), G.data(), G.cmat().size() * sizeof(float));
      ++v1_kernels;
      for (size_t l = L; l-- > 0;) {
        CMat<float> x = l == 0 ? X.cmat() : Y[l - 1].cmat();
        gpu->bias_act_backward(dY[l].cmat(), Y[l].cmat(), c.layers[l].relu ? Act::relu : Act::identity, dY[l].mat(),
                               db[l].mat());
        gpu->gemm(true, false, 1.0f, dY[l].cmat(), x, 0.0f, dW[l].mat());
        v1_kernels += 2;
        if (l > 0) {
          gpu->gemm(false, false, 1.0f, dY[l].cmat(), W[l].cmat(), 0.0f, dY[l - 1].mat());
          ++v1_kernels;
        }
      }
    };
    v1();
    gpu->synchronize();
    std::vector<double> t_plain, t_graph;
    for (int i = 0; i < reps; ++i) t_plain.push_back(gpu->device_seconds(v1));
    gpu->run_step(key, v1);
    if (!gpu->step_capture_failure().empty()) {  // plain launches then, and no graph to time
      std::printf("%s: the device refused the step graph (%s); no graph timings\n", c.name,
                  gpu->step_capture_failure().c_str());
      t_graph.push_back(NAN);
    }
    for (int i = 0; i < reps && gpu->step_capture_failure().empty(); ++i)
      t_graph.push_back(gpu->device_seconds([&] { VAE_CHECK(gpu->replay_step(key), "no graph kept to replay"); }));
    ++key;
    std::printf("\n%s, batch %lld\n", c.name, static_cast<long long>(kB));
    std::printf("  v1 (shipped ops)        plain %8.4f ms   graph %8.4f ms   %2d kernels (+1 graph prologue)\n",
                1e3 * median(t_plain), 1e3 * median(t_graph), v1_kernels);

    // ---- v2: cuBLASLt epilogues ------------------------------------------------------------
    try {
      std::vector<float*> w2(L), b2(L), y2(L), dp2(L), dw2(L), db2(L);
      std::vector<void*> mask(L, nullptr);
      std::vector<int64_t> mask_ld(L, 0);
      for (size_t l = 0; l < L; ++l) {
        const Layer& ly = c.layers[l];
        w2[l] = dev_upload(hw[l]);
        b2[l] = dev_upload(hb[l]);
        CK(cudaMalloc(&y2[l], static_cast<size_t>(kB * ly.out) * sizeof(float)));
        CK(cudaMalloc(&dp2[l], static_cast<size_t>(kB * ly.out) * sizeof(float)));
        CK(cudaMalloc(&dw2[l], static_cast<size_t>(ly.out * ly.in) * sizeof(float)));
        CK(cudaMalloc(&db2[l], static_cast<size_t>(ly.out) * sizeof(float)));
        if (ly.relu) {  // one bit per output element, rows padded to 128 bits
          mask_ld[l] = (ly.out + 127) / 128 * 128;
          CK(cudaMalloc(&mask[l], static_cast<size_t>(mask_ld[l] / 8 * kB)));
        }
      }
      float* x2 = dev_upload(hx);
      float* g2 = dev_upload(hg);
      // Row-major M (r × c) is column-major Mᵀ (c × r) with ld c: y' (out × B) = W'ᵀ · x',
      // dW' (in × out) = x' · dp'ᵀ, dx' (in × B) = W' · dp'.
      std::vector<std::unique_ptr<LtGemm>> fwd, bwd_w, bwd_x;
      for (size_t l = 0; l < L; ++l) {
        const Layer& ly = c.layers[l];
        const float* x = l == 0 ? x2 : y2[l - 1];
        fwd.push_back(std::make_unique<LtGemm>(lt, pref, true, false, ly.out, kB, ly.in, w2[l], ly.in, x, ly.in, y2[l],
                                               ly.out, ly.relu ? CUBLASLT_EPILOGUE_RELU_AUX_BIAS : CUBLASLT_EPILOGUE_BIAS,
                                               b2[l], mask[l], mask_ld[l]));
      }
      for (size_t l = 0; l < L; ++l) {
        const Layer& ly = c.layers[l];
        const float* x = l == 0 ? x2 : y2[l - 1];
        const bool top = l + 1 == L;  // its bias gradient rides on its dW GEMM (identity top)
        bwd_w.push_back(std::make_unique<LtGemm>(lt, pref, false, true, ly.in, ly.out, kB, x, ly.in, dp2[l], ly.out,
                                                 dw2[l], ly.in, top ? CUBLASLT_EPILOGUE_BGRADB : CUBLASLT_EPILOGUE_DEFAULT,
                                                 top ? db2[l] : nullptr, nullptr, 0));
        if (l > 0) {
          const Layer& below = c.layers[l - 1];
          if (!below.relu) throw std::runtime_error("chain layout: a non-ReLU hidden layer");
          bwd_x.push_back(std::make_unique<LtGemm>(lt, pref, false, false, ly.in, kB, ly.out, w2[l], ly.in, dp2[l],
                                                   ly.out, dp2[l - 1], ly.in, CUBLASLT_EPILOGUE_DRELU_BGRAD, db2[l - 1],
                                                   mask[l - 1], mask_ld[l - 1]));
        } else {
          bwd_x.push_back(nullptr);
        }
      }
      if (c.layers.back().relu) throw std::runtime_error("chain layout: a ReLU top layer");
      int v2_kernels = 0;
      auto v2 = [&] {
        v2_kernels = 0;
        for (size_t l = 0; l < L; ++l, ++v2_kernels) fwd[l]->run(lt, ws, ws_bytes, s);
        CK(cudaMemcpyAsync(dp2[L - 1], g2, static_cast<size_t>(kB * c.layers.back().out) * sizeof(float),
                           cudaMemcpyDeviceToDevice, s));
        ++v2_kernels;
        for (size_t l = L; l-- > 0;) {
          bwd_w[l]->run(lt, ws, ws_bytes, s);
          ++v2_kernels;
          if (l > 0) {
            bwd_x[l]->run(lt, ws, ws_bytes, s);
            ++v2_kernels;
          }
        }
      };
      v2();
      CK(cudaStreamSynchronize(s));
      // Check against v1 (which the op tests check against the CPU oracle).
      double worst = 0;
      const char* worst_what = "";
      for (size_t l = 0; l < L; ++l) {
        const Layer& ly = c.layers[l];
        const struct {
          const char* what;
          const float* got;
          const Tensor<float>& ref;
          size_t n;
        } cmp[] = {{"activation", y2[l], Y[l], static_cast<size_t>(kB * ly.out)},
                   {"dW", dw2[l], dW[l], static_cast<size_t>(ly.out * ly.in)},
                   {"db", db2[l], db[l], static_cast<size_t>(ly.out)}};
        for (const auto& k : cmp) {
          const double e = rel_err(dev_download(k.got, k.n), gpu->download(k.ref.cmat()));
          if (e > worst) worst = e, worst_what = k.what;
        }
      }
      // A pre-activation within rounding of 0 may be ReLU'd differently by the two GEMMs, which
      // moves a whole gradient element: count such flips so a mismatch they explain is told apart.
      int64_t flips = 0;
      for (size_t l = 0; l < L; ++l) {
        if (!c.layers[l].relu) continue;
        const std::vector<float> a2 = dev_download(y2[l], static_cast<size_t>(kB * c.layers[l].out));
        const std::vector<float> a1 = gpu->download(Y[l].cmat());
        for (size_t i = 0; i < a1.size(); ++i) flips += (a1[i] > 0) != (a2[i] > 0);
      }
      const bool ok = worst <= 1e-5 || flips > 0;
      if (worst > 1e-5 && flips > 0)
        std::printf("  (%lld ReLU inputs within rounding of 0 switched sides between v1 and v2: the error above is theirs)\n",
                    static_cast<long long>(flips));
      all_ok = all_ok && ok;
      cudaGraph_t g = nullptr;
      CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      v2();
      CK(cudaStreamEndCapture(s, &g));
      cudaGraphExec_t ge = nullptr;
      CK(cudaGraphInstantiate(&ge, g, 0));
      std::vector<double> t2;
      for (int i = 0; i < reps; ++i) {
        CK(cudaEventRecord(e0, s));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        t2.push_back(1e-3 * ms);
      }
      std::printf("  v2 (cuBLASLt epilogues)                   graph %8.4f ms   %2d kernels   worst rel. error %.2e (%s) %s\n",
                  1e3 * median(t2), v2_kernels, worst, worst_what, ok ? "ok" : "MISMATCH");
      std::printf("  per VAE step (this chain once): v2 saves %.4f ms of graph time over v1\n",
                  1e3 * (median(t_graph) - median(t2)));
      CK(cudaGraphExecDestroy(ge));
      CK(cudaGraphDestroy(g));
      for (size_t l = 0; l < L; ++l) {
        for (float* p : {w2[l], b2[l], y2[l], dp2[l], dw2[l], db2[l]}) CK(cudaFree(p));
        if (mask[l]) CK(cudaFree(mask[l]));
      }
      CK(cudaFree(x2));
      CK(cudaFree(g2));
    } catch (const std::exception& e) {
      // A refusal (an epilogue this library offers only for other types) is a finding, not a failure.
      cudaGetLastError();
      cudaStreamCaptureStatus st;
      if (cudaStreamIsCapturing(s, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
        cudaGraph_t g = nullptr;
        cudaStreamEndCapture(s, &g);
        if (g) cudaGraphDestroy(g);
      }
      std::printf("  v2 (cuBLASLt epilogues) not available: %s\n", e.what());
    }
  }
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtDestroy(lt);
  CK(cudaFree(ws));
  std::printf("\n%s\n", all_ok ? "all variants match" : "MISMATCHES above");
  return all_ok ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::printf("vae_linear_variants: %s\n", e.what());
    return 1;
  }
}
