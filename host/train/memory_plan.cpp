#include "train/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/error.h"
#include "models/vae.h"

namespace vae {

namespace {

constexpr int64_t kFloat = 4, kInt32 = 4, kInt64 = 8;

// The defaults each model's constructor fills in (keep in step with host/models/*.cpp; the
// memory-plan test builds every model and compares).
struct Shape {
  int64_t hidden = 0, latent = 0;
};

Shape resolved_shape(const ModelConfig& c) {
  Shape s;
  if (c.kind == "vae") {
    s.latent = c.latent > 0 ? c.latent : 64;
  } else if (c.kind == "multvae") {
    s.hidden = c.hidden > 0 ? c.hidden : 600;
    s.latent = c.latent > 0 ? c.latent : 200;
  } else if (c.kind == "cdae") {
    s.hidden = c.hidden > 0 ? c.hidden : 50;
  } else if (c.kind == "autorec" || c.kind == "i-autorec") {
    s.hidden = c.hidden > 0 ? c.hidden : (c.loss == "dense" ? 10 : 500);
  } else {
    throw UsageError("memory plan: '" + c.kind + "' is not an autoencoder");
  }
  return s;
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

int64_t planned_param_count(const ModelConfig& c) {
  const Shape s = resolved_shape(c);
  const int64_t I = c.num_inputs, H = s.hidden, L = s.latent;
  if (c.kind == "vae") {
    constexpr int64_t h1 = NotebookVae<float>::kH1, h2 = NotebookVae<float>::kH2;
    return (h1 * I + h1) + (h2 * h1 + h2) + (2 * L * h2 + 2 * L) + (h2 * L + h2) + (h1 * h2 + h1) + (I * h1 + I);
  }
  if (c.kind == "multvae") return (H * I + H) + (2 * L * H + 2 * L) + (H * L + H) + (I * H + I);
  if (c.kind == "cdae") return (H * I + H) + c.num_rows * H + (I * H + I);
  return (H * I + H) + (I * H + I);  // AutoRec
}

int64_t planned_model_buffer_bytes(const ModelConfig& c, int64_t batch, bool sparse) {
  const Shape s = resolved_shape(c);
  const int64_t I = c.num_inputs, H = s.hidden, L = s.latent, B = batch;
  // Columns of B-row work buffers, plus fixed-size extras; the sparse path drops the dense
  // (transformed) input and keeps the loss target.
  int64_t cols = 0, fixed = 0;
  if (c.kind == "vae") {
    // x, out, g_out | e1, d2, g_d2, g_e1 | e2, d1, g_d1, g_e2 | eps, z, g_z | ml, g_ml
    cols = 3 * I + 4 * NotebookVae<float>::kH1 + 4 * NotebookVae<float>::kH2 + 3 * L + 2 * 2 * L;
    fixed = 2 * L * L;  // select_mu
  } else if (c.kind == "multvae") {
    // x, logits, g_logits (+ xin dense | norms sparse: a double, two float columns) | e1, d1,
    // g_d1, g_e1 | eps, z, g_z | ml, g_ml
    cols = 3 * I + (sparse ? 2 : I) + 4 * H + 3 * L + 2 * 2 * L;
    fixed = 2 * L * L;
  } else if (c.kind == "cdae") {
    cols = 3 * I + (sparse ? 0 : I) + 2 * H;  // x, out, g_out (+ xin) | h, g_h
  } else {
    cols = 3 * I + 2 * H;  // x, out, dout | h, dh
  }
  return (B * cols + fixed) * kFloat;
}

int64_t csr_device_bytes(const Csr& m) { return (m.rows + 1) * kInt64 + m.nnz() * (kInt32 + kFloat); }

MemoryPlan plan_memory(const ModelConfig& cfg, int64_t batch, bool sparse, int kmax, int num_ks,
                       int64_t dataset_bytes) {
  VAE_CHECK(batch > 0 && kmax >= 0 && num_ks >= 0, "plan_memory: bad batch or cut-offs");
  MemoryPlan p;
  p.batch_rows = batch;
  p.fixed_width = cfg.kind == "vae";
  if (cfg.kind == "vae" || cfg.kind == "multvae") p.latent = resolved_shape(cfg).latent;
  const int64_t n = planned_param_count(cfg), I = cfg.num_inputs;
  p.parameters = 3 * n * kFloat;  // theta, gradient, best-epoch copy
  p.adam = 2 * n * kFloat;
  // Evaluator: scores, truth (B × I), top-k indices and values (B × kmax), metrics
  // (B × (2·|ks| + 3)), the loss accumulators of trainer and evaluator.
  const int64_t k = std::min<int64_t>(kmax, I);
  const int64_t eval = batch * (2 * I * kFloat + k * (kInt32 + kFloat) + (2 * num_ks + 3) * kFloat) + 2 * kFloat;
  p.batch_dense = planned_model_buffer_bytes(cfg, batch, false) + eval;
  p.batch_sparse = planned_model_buffer_bytes(cfg, batch, true) + eval;
  p.dataset = dataset_bytes;
  p.sparse = sparse;
  return p;
}

namespace {

// What the process holds before the plan's buffers (its libraries, the loaded data), so the
// plan reconciles with the resident size a user measures.
std::string host_baseline() {
  const int64_t rss = process_resident_bytes();
  return rss > 0 ? "; the process holds " + mib(rss) + " MiB besides: its libraries and the loaded data" : "";
}

}  // namespace

std::string format_memory_plan(const MemoryPlan& p, const std::string& device, bool have_free,
                               size_t free_bytes) {
  std::string s = "memory plan: weights+gradients+best copy " + mib(p.parameters) + " MiB, Adam state " + mib(p.adam) +
                  " MiB, batch buffers " + mib(p.batch()) + " MiB (dense input " + mib(p.batch_dense) +
                  " / sparse input " + mib(p.batch_sparse) + ", " + (p.sparse ? "sparse" : "dense") +
                  " in use), dataset CSR " + mib(p.dataset) + " MiB, total " + mib(p.total()) + " MiB";
  if (have_free) s += " of " + mib(static_cast<int64_t>(free_bytes)) + " MiB free on " + device;
  else s += " (host memory, " + device + host_baseline() + ")";
  return s;
}

int64_t memory_plan_reserve(const MemoryPlan& p) { return std::max<int64_t>(256 << 20, p.total() / 50); }

void check_memory_plan(const MemoryPlan& p, const std::string& device, size_t free_bytes) {
  const int64_t need = p.total() + memory_plan_reserve(p);
  if (need <= static_cast<int64_t>(free_bytes)) return;
  std::string msg = "memory plan: the run needs " + mib(p.total()) + " MiB (+ " + mib(memory_plan_reserve(p)) +
                    " MiB headroom) but only " + mib(static_cast<int64_t>(free_bytes)) + " MiB are free on " +
                    device + ". " +
                    // At batch 1 what is left of the batch buffers is latent-sized, not batch-sized.
                    (p.batch_rows > 1 ? "Reduce --batch-size (batch buffers, " + mib(p.batch()) + " MiB, grow with it) or "
                                      : "The batch buffers (" + mib(p.batch()) + " MiB) are at --batch-size 1 already: ") +
                    (p.fixed_width ? std::string("use --model multvae with a small --hidden (the notebook VAE's "
                                                 "512-wide layers hold its parameters and Adam state, ")
                                   : std::string("--hidden (parameters and Adam state, ")) +
                    mib(p.parameters + p.adam) + " MiB, grow with " + (p.fixed_width ? "items" : "hidden x items") + ")" +
                    (p.latent > 0 ? ", or --latent (now " + std::to_string(p.latent) + "; both terms grow with it)" : "");
  if (!p.sparse && p.batch_sparse < p.batch_dense)
    msg += ", or use --sparse-input on (saves " + mib(p.batch_dense - p.batch_sparse) + " MiB)";
  throw UsageError(msg);
}

int64_t host_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

int64_t process_resident_bytes() {
  std::ifstream in("/proc/self/status");  // "Name:\tvae_gpu" lines too: read line by line
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;  // "VmRSS:  231024 kB"
  return 0;
}

EasePlan plan_ease(int64_t items, int64_t batch, int64_t dataset_bytes) {
  EasePlan p;
  p.items = items;
  const int64_t sq = items * items;
#ifdef VAE_HAVE_OPENBLAS
  constexpr int64_t kFactor = 0;  // LAPACK inverts in place
#else
  constexpr int64_t kFactor = 8;
#endif
  p.host = (8 + 8 + kFactor + kFloat) * sq;
  p.backend = kFloat * sq + 3 * batch * items * kFloat + dataset_bytes;
  return p;
}

std::string format_ease_plan(const EasePlan& p, const std::string& device) {
  const std::string base = device == "cpu" ? host_baseline() : "";  // "; the process holds ..."
  return "memory plan (EASE, " + std::to_string(p.items) + " items): the items x items solve " + mib(p.host) +
         " MiB of host memory at its peak, then B and the batch buffers " + mib(p.backend) + " MiB on " + device +
         (base.empty() ? std::string() : " (" + base.substr(2) + ")");
}

void check_ease_plan(const EasePlan& p, const std::string& device, int64_t host_free, int64_t backend_free) {
  const bool shared = backend_free <= 0;  // the backend is the host (the CPU)
  const int64_t host_need = p.host + (shared ? p.backend : 0);
  auto refuse = [&](int64_t need, int64_t free, const std::string& where) {
    throw UsageError("memory plan: EASE at " + std::to_string(p.items) + " items needs " + mib(need) +
                     " MiB but only " + mib(free) + " MiB are free on " + where +
                     ": its items x items solve grows with the square of the items; a model that grows with "
                     "them (--model multvae) or fewer items fit");
  };
  if (host_free > 0 && host_need > host_free) refuse(host_need, host_free, "this machine (available memory)");
  if (!shared && p.backend > backend_free) refuse(p.backend, backend_free, device);
}

}  // namespace vae
