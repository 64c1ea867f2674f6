// vae_gpu_bench: throughput of the backend ops and of whole training steps, on the CPU or the
// GPU backend, next to the machine's measured ceilings (a large device copy for bandwidth, a
// large GEMM for FLOP/s). One aligned line per case, and the same figures as JSON.
//
//   vae_gpu_bench [--device cpu|cuda] [--quick | --smoke] [--json FILE] [--data DIR] [--filter SUBSTR]
// On a GPU the times are CUDA-event times of each repetition's work (median), the host wall
// clock printed next to them; on the CPU they are wall-clock times.
//
// The latent-space analysis cases (K-Means Lloyd iteration, exact t-SNE) run on the
// AnalysisOps of the same device; the CPU runs the t-SNE cases at reduced sizes (said in the
// output).
//
// Timing: one warm-up call, then repeats until ~min_seconds have passed (at least 3), each
// bracketed by Backend::synchronize(); the median is reported. Inputs of small cases are
// rotated over enough copies to exceed the last-level cache, so each repeat reads from memory.
//
// --smoke runs every case once at small sizes (a few hundred users and items, 1 MiB copies,
// 64³ GEMMs, 3000 K-Means rows, 300 t-SNE points): a check that the bench itself works, which
// ctest runs on the CPU and on the CPU CUDA emulator. Its figures mean nothing.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/analysis_ops.h"
#include "analysis/tsne.h"
#include "analysis/tsne_bh.h"
#include "backend/backend.h"
#include "core/philox.h"
#include "data/dataset.h"
#include "data/shuffle.h"
#include "models/model.h"

namespace {

using namespace vae;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string device = "cpu";
  bool quick = false;
  bool smoke = false;
  std::string json;
  std::string data;
  std::string filter;
};

struct Result {
  std::string group, name;
  double seconds = 0;  // median; on a GPU the CUDA-event time of a repetition
  double bytes = 0, flops = 0;
  double items = 0;  // users (or rows) per call, for users/s
  std::string note;
  double wall_seconds = 0;  // median host wall clock of a repetition (launch to sync); < 0: none
};

class Bench {
 public:
  Bench(Backend<float>& be, const Options& o) : be_(be), o_(o) {}

  // Median seconds of fn over repeats (after one warm-up). `on` is the backend whose stream
  // runs fn's work (not always the bench's own: the exact-GEMM cases have a second one). On a
  // GPU each repetition is timed with CUDA events around its work there (device time, launch
  // gaps included) and the host wall clock is kept next to it; on the CPU, or with no backend
  // (work that waits for itself, like the analysis ops), the wall clock is the time.
  double time(Backend<float>* on, const std::function<void(int)>& fn, double min_seconds) {
    auto sync = [&] {
      if (on) on->synchronize();
    };
    fn(0);
    sync();
    std::vector<double> t, wall;
    const auto start = Clock::now();
    for (int r = 1;; ++r) {
      const auto t0 = Clock::now();
      double dev = -1.0;
      if (on)
        dev = on->device_seconds([&] { fn(r); });
      else
        fn(r);
      sync();
      wall.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      t.push_back(dev >= 0 ? dev : wall.back());
      const double total = std::chrono::duration<double>(Clock::now() - start).count();
      if (o_.smoke || (t.size() >= 3 && total >= min_seconds)) break;
      if (t.size() >= 1000) break;
    }
    std::sort(t.begin(), t.end());
    std::sort(wall.begin(), wall.end());
    last_wall_ = wall[wall.size() / 2];
    return t[t.size() / 2];
  }

  bool wanted(const std::string& name) const { return o_.filter.empty() || name.find(o_.filter) != std::string::npos; }

  void add(Result r) {
    if (r.wall_seconds == 0) r.wall_seconds = last_wall_;
    print(r);
    results_.push_back(std::move(r));
  }

  void print(const Result& r) const {
    char line[512];
    std::string rate;
    if (r.flops > 0) {
      const double tf = r.flops / r.seconds / 1e12;
      rate = fmt("%8.3f TFLOP/s", tf);
      if (peak_flops_ > 0) rate += fmt(" (%5.1f%% of gemm ceiling)", 100.0 * r.flops / r.seconds / peak_flops_);
    } else if (r.bytes > 0) {
      const double gb = r.bytes / r.seconds / 1e9;
      rate = fmt("%8.1f GB/s   ", gb);
      if (peak_bw_ > 0) {
        const double share = 100.0 * r.bytes / r.seconds / peak_bw_;
        rate += fmt(" (%5.1f%% of copy ceiling; floor %.3f ms)", share, 1e3 * r.bytes / peak_bw_);
        // The ceiling streams a buffer larger than the caches; a case that fits in them
        // (small operands on a CPU) can beat it, which is cache reuse, not a timing error.
        if (share > 100.0) rate += " [fits in cache]";
      }
    }
    if (r.items > 0) rate += fmt("  %.3g users/s", r.items / r.seconds);
    std::string note = r.note;
    if (gpu_ && r.wall_seconds > 0) note += (note.empty() ? "" : "; ") + fmt("wall %.4f ms", 1e3 * r.wall_seconds);
    std::snprintf(line, sizeof line, "%-8s %-56s %10.4f ms  %s%s%s", r.group.c_str(), r.name.c_str(), r.seconds * 1e3,
                  rate.c_str(), note.empty() ? "" : "  ", note.c_str());
    std::cout << line << "\n" << std::flush;
  }

  static std::string fmt(const char* f, double v) {
    char b[128];
    std::snprintf(b, sizeof b, f, v);
    return b;
  }
  static std::string fmt(const char* f, double v, double w) {
    char b[160];
    std::snprintf(b, sizeof b, f, v, w);
    return b;
  }

  nlohmann::json to_json(const std::string& device_name) const {
    nlohmann::json j;
    j["device"] = device_name;
    j["backend"] = be_.name();
    j["copy_ceiling_gbps"] = peak_bw_ / 1e9;
    j["gemm_ceiling_tflops"] = peak_flops_ / 1e12;
    j["cases"] = nlohmann::json::array();
    for (const Result& r : results_) {
      nlohmann::json c{{"group", r.group}, {"name", r.name}, {"ms", r.seconds * 1e3}};
      if (r.wall_seconds > 0) c["wall_ms"] = r.wall_seconds * 1e3;
      if (r.bytes > 0) c["gbps"] = r.bytes / r.seconds / 1e9, c["floor_ms"] = peak_bw_ > 0 ? 1e3 * r.bytes / peak_bw_ : 0.0;
      if (r.flops > 0) c["tflops"] = r.flops / r.seconds / 1e12, c["floor_ms"] = peak_flops_ > 0 ? 1e3 * r.flops / peak_flops_ : 0.0;
      if (r.items > 0) c["users_per_s"] = r.items / r.seconds;
      if (!r.note.empty()) c["note"] = r.note;
      j["cases"].push_back(c);
    }
    return j;
  }

  double peak_bw_ = 0, peak_flops_ = 0;

 private:
  Backend<float>& be_;
  const Options& o_;
  const bool gpu_ = be_.name() == "cuda";
  double last_wall_ = 0;  // wall median of the latest time() call, for the next add()
  std::vector<Result> results_;
};

std::vector<float> random_host(size_t n, uint64_t stream, float scale = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * philox_normal(42, stream, i);
  return v;
}

// ---- ceilings ----------------------------------------------------------------------------
void ceilings(Bench& b, Backend<float>& be, bool gpu, bool quick, bool smoke) {
  const size_t bytes = smoke ? (size_t{1} << 20) : gpu ? (size_t{1} << 30) : (size_t{256} << 20);
  Buffer src = be.alloc_bytes(bytes), dst = be.alloc_bytes(bytes);
  std::vector<char> zero(bytes, 1);
  be.copy_to_backend(src.get(), zero.data(), bytes);
  const double t = b.time(&be, [&](int) { be.copy_within(dst.get(), src.get(), bytes); }, quick ? 0.2 : 1.0);
  b.peak_bw_ = 2.0 * static_cast<double>(bytes) / t;  // read + write
  Result r{"ceiling", "device copy " + std::to_string(bytes >> 20) + " MiB", t, 2.0 * static_cast<double>(bytes), 0, 0, ""};
  b.add(r);
  const int64_t n = smoke ? 64 : gpu ? 8192 : (quick ? 1024 : 2048);
  Tensor<float> a = be.upload(random_host(static_cast<size_t>(n * n), 1), n, n);
  Tensor<float> bb = be.upload(random_host(static_cast<size_t>(n * n), 2), n, n);
  Tensor<float> c = be.alloc<float>(n, n);
  const double tg = b.time(&be, [&](int) { be.gemm(false, false, 1.0f, a.cmat(), bb.cmat(), 0.0f, c.mat()); }, quick ? 0.2 : 1.0);
  b.peak_flops_ = 2.0 * static_cast<double>(n) * n * n / tg;
  b.add(Result{"ceiling", "sgemm " + std::to_string(n) + "^3", tg, 0, 2.0 * static_cast<double>(n) * n * n, 0, ""});
}

// ---- per-op cases ------------------------------------------------------------------------
void op_cases(Bench& b, Backend<float>& be, int64_t B, int64_t I, const std::string& tag, bool quick) {
  const double min_s = quick ? 0.1 : 0.5;
  const size_t n = static_cast<size_t>(B * I);
  const double mat_bytes = 4.0 * static_cast<double>(n);
  // Rotate over enough copies that each repeat misses the last-level cache (≥ 256 MiB total).
  const int copies = static_cast<int>(std::clamp<double>(std::ceil(256.0 * (1 << 20) / mat_bytes), 1, 16));
  std::vector<Tensor<float>> xs, ys;
  for (int c = 0; c < copies; ++c) {
    xs.push_back(be.upload(random_host(n, 10 + c), B, I));
    ys.push_back(be.upload(random_host(n, 40 + c), B, I));
  }
  Tensor<float> out = be.alloc<float>(B, I), bias = be.upload(random_host(static_cast<size_t>(I), 3), 1, I);
  Tensor<float> dbias = be.alloc<float>(1, I), loss = be.zeros(1, 1);
  auto X = [&](int r) { return xs[r % copies].cmat(); };
  auto Y = [&](int r) { return ys[r % copies].cmat(); };
  const std::string shape = " " + std::to_string(B) + "x" + std::to_string(I) + " (" + tag + ")";
  if (b.wanted("bias_act"))
    b.add({"op", "bias_act relu" + shape, b.time(&be, [&](int r) { be.bias_act(X(r), bias.cmat(), Act::relu, out.mat()); }, min_s),
           2 * mat_bytes, 0, 0, ""});
  if (b.wanted("bias_act_backward"))
    b.add({"op", "bias_act_backward relu+dbias" + shape,
           b.time(&be, [&](int r) { be.bias_act_backward(X(r), Y(r), Act::relu, out.mat(), dbias.mat()); }, min_s),
           3 * mat_bytes, 0, 0, ""});
  if (b.wanted("mse"))
    b.add({"op", "mse_loss dense+grad" + shape,
           b.time(&be, [&](int r) { be.mse_loss(X(r), Y(r), false, 1.0f, out.mat(), loss.mat()); }, min_s), 3 * mat_bytes, 0, 0, ""});
  if (b.wanted("multinomial"))
    b.add({"op", "multinomial_nll+grad" + shape,
           b.time(&be, [&](int r) { be.multinomial_nll(X(r), Y(r), 1.0f, out.mat(), loss.mat()); }, min_s), 3 * mat_bytes, 0, 0, ""});
  if (b.wanted("dropout"))
    b.add({"op", "dropout q=0.5" + shape,
           b.time(&be, [&](int r) { be.dropout(X(r), 0.5f, 1, static_cast<uint64_t>(r), out.mat()); }, min_s), 2 * mat_bytes, 0, 0, ""});
  if (b.wanted("l2_normalize"))
    b.add({"op", "l2_normalize_rows" + shape, b.time(&be, [&](int r) { be.l2_normalize_rows(X(r), out.mat()); }, min_s),
           2 * mat_bytes, 0, 0, ""});
  if (b.wanted("topk")) {
    const int k = static_cast<int>(std::min<int64_t>(100, I));
    Tensor<int32_t> idx = be.alloc<int32_t>(B, k);
    Tensor<float> val = be.alloc<float>(B, k);
    Tensor<int32_t> none = be.alloc<int32_t>(0, 0);
    b.add({"op", "topk k=" + std::to_string(k) + shape,
           b.time(&be, [&](int r) { be.topk(X(r), CsrView<float>{}, none.cmat(), k, idx.mat(), val.mat()); }, min_s),
           mat_bytes, 0, static_cast<double>(B), ""});
  }
}

void gemm_cases(Bench& b, Backend<float>& be, int64_t B, int64_t I, int64_t H, const std::string& tag, bool quick) {
  if (!b.wanted("gemm")) return;
  const double min_s = quick ? 0.1 : 0.5;
  Tensor<float> x = be.upload(random_host(static_cast<size_t>(B * I), 5), B, I);
  Tensor<float> w = be.upload(random_host(static_cast<size_t>(H * I), 6), H, I);
  Tensor<float> h = be.alloc<float>(B, H), dw = be.alloc<float>(H, I);
  const double f = 2.0 * static_cast<double>(B) * I * H;
  const std::string s = " " + std::to_string(B) + "x" + std::to_string(I) + "x" + std::to_string(H) + " (" + tag + ")";
  b.add({"op", "gemm x.W^T" + s, b.time(&be, [&](int) { be.gemm(false, true, 1.0f, x.cmat(), w.cmat(), 0.0f, h.mat()); }, min_s), 0, f, 0, ""});
  b.add({"op", "gemm dY^T.x (dW)" + s, b.time(&be, [&](int) { be.gemm(true, false, 1.0f, h.cmat(), x.cmat(), 0.0f, dw.mat()); }, min_s), 0, f, 0, ""});
  // A layer's backward halves, h as dz: one kernel each with exact GEMMs, a GEMM and a kernel otherwise.
  Tensor<float> dx = be.alloc<float>(B, I), db = be.alloc<float>(1, H);
  b.add({"op", "layer backward dz.W * relu'" + s,
         b.time(&be, [&](int) { be.linear_backward_input(h.cmat(), w.cmat(), x.cmat(), Act::relu, dx.mat()); }, min_s), 0,
         f, 0, ""});
  b.add({"op", "layer backward dW, db" + s,
         b.time(&be, [&](int) { be.linear_backward_weight(h.cmat(), x.cmat(), dw.mat(), db.mat()); }, min_s), 0, f, 0,
         ""});
}

void adam_case(Bench& b, Backend<float>& be, int64_t n, const std::string& tag, bool quick) {
  if (!b.wanted("adam")) return;
  Tensor<float> p = be.upload(random_host(static_cast<size_t>(n), 7), 1, n), g = be.upload(random_host(static_cast<size_t>(n), 8), 1, n);
  Tensor<float> m = be.zeros(1, n), v = be.zeros(1, n);
  AdamConfig cfg;
  int64_t step = 0;
  b.add({"op", "adam_step " + std::to_string(n) + " params (" + tag + ")",
         b.time(&be, [&](int) { be.adam_step(p.mat(), g.cmat(), m.mat(), v.mat(), cfg, ++step); }, quick ? 0.1 : 0.5),
         7.0 * 4.0 * static_cast<double>(n), 0, 0, ""});
}

// ---- whole training steps and evaluation -------------------------------------------------
// Times one Adam training step (forward, loss, backward, Adam) of a model on real batches of
// the matrix; an epoch's time is steps_per_epoch × the median step.
// sparse: the first layer's input (auto, on, off; auto picks CSR input from 10 000 items on).
void model_case(Bench& b, Backend<float>& be, const Csr& train, const std::string& kind, int64_t batch,
                const std::string& tag, bool quick, const std::string& sparse = "auto") {
  if (!b.wanted(kind)) return;
  ModelConfig cfg;
  cfg.kind = kind;
  cfg.sparse_input = sparse;
  cfg.num_inputs = train.cols;
  cfg.num_rows = train.rows;
  auto model = make_model<float>(be, cfg, batch);
  model->init(1);
  CsrTensor<float> dev = be.upload_csr(train);
  std::vector<int32_t> order(static_cast<size_t>(train.rows));
  std::iota(order.begin(), order.end(), 0);
  philox_shuffle(order, 1, 9);
  Tensor<int32_t> rows = be.upload<int32_t>(order, train.rows, 1);
  Tensor<int32_t> batch_rows = be.alloc<int32_t>(std::min<int64_t>(batch, train.rows), 1);
  Tensor<float> m = be.zeros(1, model->num_params()), v = be.zeros(1, model->num_params()), loss = be.zeros(1, 1);
  const int64_t steps = (train.rows + batch - 1) / batch;
  const int64_t eb = std::min(batch, train.rows);               // evaluation batch: at most every row
  const int64_t full = std::max<int64_t>(1, train.rows / eb);     // evaluation: full batches only
  AdamConfig ad;
  int64_t step = 0;
  // One repetition = one epoch: every batch (the last, smaller one too) back to back, as the
  // trainer runs them, with plain launches or each step as a CUDA Graph.
  auto epoch = [&](bool graph) {
    for (int64_t bi = 0; bi < steps; ++bi) {
      const int64_t n = std::min(batch, train.rows - bi * batch);
      Batch<float> bt;
      bt.input = dev.view();
      bt.rows = batch_rows.cmat().rows_slice(0, n);
      bt.users = bt.rows;
      bt.n = n;
      auto ops = [&] {  // as the trainer's step
        be.take_rows(rows.cmat(), bi * batch, batch_rows.mat().rows_slice(0, n));
        model->forward_backward(bt, step, true, loss.mat());
        be.adam_step(model->param_buffer(), model->grad_buffer(), m.mat(), v.mat(), ad, step + 1);
      };
      if (graph)
        be.run_step(n, ops);
      else
        ops();
      ++step;
    }
  };
  // Graph rows only while the device takes graph steps: after a refusal run_step makes plain
  // launches (one warning, for the model whose step was refused) and no graph is kept to replay.
  auto graphs_refused = [&] { return !be.step_capture_failure().empty(); };
  const bool refused_before = graphs_refused();
  // Plain launches on one stream, and with the weight gradients on a second one (the default;
  // a branch costs the host 4 more API calls there); graph steps on one stream; graph steps
  // whose weight gradients are branches beside the backward pass (the default, last: its graphs
  // are the ones replayed below). The CPU has one kind of each.
  for (int mode = 0; mode < 4; ++mode) {
    const bool graph = mode > 1, one_stream = mode == 0 || mode == 2;
    if (one_stream && !be.supports_step_capture()) continue;
    if (graph && (!be.supports_step_capture() || refused_before)) continue;
    be.set_side_branches(!one_stream);
    const auto g0 = be.step_graph_stats();
    const double t = b.time(&be, [&](int) { epoch(graph); }, quick ? 0.2 : 1.0);
    const auto g1 = be.step_graph_stats();
    be.set_side_branches(true);
    if (graph && graphs_refused()) {
      std::fprintf(stderr, "warning: %s: the device refused a CUDA Graph step (%s); no graph rows\n", kind.c_str(),
                   be.step_capture_failure().c_str());
      continue;
    }
    char note[160];
    if (graph)  // replays without capture are what make graph steps cheap: show how many there were
      std::snprintf(note, sizeof note,
                    "%.3f ms/epoch, %lld steps; %lld captured, %lld replayed; %lld nodes per step, longest chain %lld",
                    1e3 * t, static_cast<long long>(steps), static_cast<long long>(g1.captures - g0.captures),
                    static_cast<long long>(g1.replays - g0.replays), static_cast<long long>(g1.nodes),
                    static_cast<long long>(g1.longest_chain));
    else
      std::snprintf(note, sizeof note, "%.3f ms/epoch, %lld steps", 1e3 * t, static_cast<long long>(steps));
    b.add({"train", kind + " epoch, batch " + std::to_string(batch) + (model->sparse_input() ? ", sparse in" : "") +
                        (graph ? ", CUDA Graph" : ", launches") + (one_stream ? ", one stream" : "") + " (" + tag + ")",
           t, 0, 0, static_cast<double>(train.rows), note});
  }
  // The bound of graph steps: the epoch's graphs replayed unchanged, nothing re-captured
  // (timing only: each replay repeats its batch's last noise and Adam step).
  if (be.supports_step_capture() && !graphs_refused()) {
    const double t = b.time(&be,
        [&](int) {
          for (int64_t bi = 0; bi < steps; ++bi)
            VAE_CHECK(be.replay_step(std::min(batch, train.rows - bi * batch)), "bench: no graph kept to replay");
        },
        quick ? 0.2 : 1.0);
    char note[96];
    std::snprintf(note, sizeof note, "%.3f ms/epoch, %lld replays", 1e3 * t, static_cast<long long>(steps));
    b.add({"train", kind + " epoch, batch " + std::to_string(batch) + ", graph replay only (" + tag + ")", t, 0, 0,
           static_cast<double>(train.rows), note});
  }
  // Where an epoch's device time goes: one more epoch with every op bracketed by events.
  be.set_op_profiling(true);
  epoch(false);
  const std::vector<OpTime> prof = be.op_profile();
  be.set_op_profiling(false);
  double all = 0;
  for (const OpTime& o : prof) all += o.seconds;
  for (size_t i = 0; i < prof.size() && i < 6; ++i) {
    char note[96];
    std::snprintf(note, sizeof note, "%lld calls, %.1f%% of the epoch's op time", static_cast<long long>(prof[i].calls),
                  all > 0 ? 100.0 * prof[i].seconds / all : 0.0);
    b.add({"profile", kind + " epoch: " + prof[i].op + " (" + tag + ")", prof[i].seconds, 0, 0, 0, note, -1});
  }
  // Evaluation: scores for a batch of users, top-100, heldout metrics against their own rows.
  const int k = static_cast<int>(std::min<int64_t>(100, train.cols));
  Tensor<float> scores = be.alloc<float>(eb, train.cols), val = be.alloc<float>(eb, k);
  Tensor<int32_t> idx = be.alloc<int32_t>(eb, k);
  Tensor<float> met = be.alloc<float>(eb, 6);
  const double te = b.time(&be,
      [&](int rr) {
        const int64_t bi = rr % full;
        Batch<float> bt;
        bt.input = dev.view();
        bt.rows = rows.cmat().rows_slice(bi * eb, eb);
        bt.n = eb;
        model->predict(bt, scores.mat());
        be.topk(scores.cmat(), dev.view(), bt.rows, k, idx.mat(), val.mat());  // rated items excluded
        be.heldout_metrics(idx.cmat(), dev.view(), bt.rows, {20, 50, 100}, met.mat());
      },
      quick ? 0.2 : 1.0);
  b.add({"eval", kind + " score+top-100+metrics, batch " + std::to_string(eb) + " (" + tag + ")", te, 0, 0,
         static_cast<double>(eb), ""});
}

// ---- latent-space analysis ----------------------------------------------------------------
// One Lloyd iteration of K-Means on ml-20m's user count in a 64-d latent space, k = 10: the
// fused assignment + per-cluster sums (AnalysisOps::kmeans_step, x resident) and the k × d centre
// update on the host, as kmeans() runs it. Floor: x read once.
void kmeans_case(Bench& b, AnalysisOps& ops, bool quick, bool smoke) {
  if (!b.wanted("kmeans")) return;
  const int64_t n = smoke ? 3000 : 136677, d = 64;
  const int k = 10;
  std::vector<float> x(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)  // ten blobs, interleaved
    for (int64_t t = 0; t < d; ++t)
      x[i * d + t] = (t == i % k ? 4.0f : 0.0f) + philox_normal(42, 90, static_cast<uint64_t>(i * d + t));
  std::vector<float> c(x.begin(), x.begin() + k * d);  // one point of each blob
  std::vector<double> sums(static_cast<size_t>(k * d));
  std::vector<int64_t> counts(k);
  ops.kmeans_begin(x.data(), n, d);
  struct End {
    AnalysisOps& ops;
    ~End() { ops.kmeans_end(); }
  } end{ops};
  const double t = b.time(nullptr,
      [&](int) {
        ops.kmeans_step(c.data(), k, sums.data(), counts.data());
        for (int j = 0; j < k; ++j)
          if (counts[j] > 0)
            for (int64_t e = 0; e < d; ++e) c[j * d + e] = static_cast<float>(sums[j * d + e] / counts[j]);
      },
      quick ? 0.2 : 1.0);
  char note[96];
  std::snprintf(note, sizeof note, "%.1f us per Lloyd iteration (assign + centre update, x resident)", t * 1e6);
  b.add({"analysis", "kmeans iteration " + std::to_string(n) + "x64 k=10", t, 4.0 * static_cast<double>(n * d), 0, static_cast<double>(n), note});
}

// A joint-probability matrix for timing t-SNE without the host's perplexity search (O(n²)
// exponentials × ~50 bisection steps, tens of seconds at 10 000 points): fixed-bandwidth
// Gaussian affinities of ten blobs in 10-d, symmetric, zero diagonal, summing to 1.
std::vector<float> gaussian_joint_p(int64_t n) {
  const int64_t d = 10;
  std::vector<float> z(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < d; ++t)
      z[i * d + t] = (t == i % d ? 6.0f : 0.0f) + philox_normal(42, 91, static_cast<uint64_t>(i * d + t));
  std::vector<float> p(static_cast<size_t>(n * n));
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float s = 0;
      for (int64_t t = 0; t < d; ++t) {
        const float e = z[i * d + t] - z[j * d + t];
        s += e * e;
      }
      const float v = i == j ? 0.0f : std::exp(-0.5f * s);
      p[i * n + j] = v;
      total += v;
    }
  const float inv = static_cast<float>(1.0 / total);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      if (i != j) p[i * n + j] = std::max(p[i * n + j] * inv, static_cast<float>(2.220446049250313e-16));
  return p;
}

// Exact t-SNE: one gradient (P resident; floor: P read once), and a whole 1000-iteration
// optimisation from P (tsne_from_probabilities: P upload, gradients, host updates; floor: P read
// per iteration). The CPU gets 2000 points under --quick and skips the whole run (one gradient
// takes ~0.2 s at 10 000 points, so 1000 iterations would be minutes); the per-iteration line
// then says what 1000 would cost.
void tsne_cases(Bench& b, AnalysisOps& ops, bool gpu, bool quick, bool smoke) {
  if (!b.wanted("tsne")) return;
  const int64_t n = smoke ? 300 : gpu || !quick ? 10000 : 2000;
  const int iterations = smoke ? 20 : 1000;
  const std::vector<float> p = gaussian_joint_p(n);
  const double p_bytes = 4.0 * static_cast<double>(n) * static_cast<double>(n);
  std::vector<float> y(static_cast<size_t>(2 * n)), grad(static_cast<size_t>(2 * n));
  for (int64_t t = 0; t < 2 * n; ++t) y[t] = 5.0f * philox_normal(42, 92, static_cast<uint64_t>(t));
  {
    ops.tsne_begin(p.data(), n);
    struct End {
      AnalysisOps& ops;
      ~End() { ops.tsne_end(); }
    } end{ops};
    const double t = b.time(nullptr, [&](int) { ops.tsne_gradient(p.data(), y.data(), n, 1.0f, grad.data(), false); },
                            quick ? 0.2 : 1.0);
    char note[96];
    std::snprintf(note, sizeof note, "x %d iterations = %.2f s", iterations, t * iterations);
    b.add({"analysis", "tsne gradient " + std::to_string(n) + " points (per iteration)", t, p_bytes, 0, 0, note});
  }
  if (!gpu) {
    std::cout << "(CPU: the " << n << "-point " << iterations
              << "-iteration exact t-SNE run skipped; the per-iteration line estimates it)\n";
    // What the CPU runs instead beyond 1000 points (--tsne-method auto): Barnes-Hut from the raw
    // latent vectors, neighbour search and P included; ten blobs in 64-d like a latent space.
    const int64_t d = 64;
    std::vector<float> x(static_cast<size_t>(n * d));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t t = 0; t < d; ++t)
        x[i * d + t] = (t % 10 == i % 10 ? 3.0f : 0.0f) + philox_normal(42, 93, static_cast<uint64_t>(i * d + t));
    TsneOptions o;
    o.iterations = iterations;
    o.seed = 1;
    int ran = 0;
    const double t = b.time(nullptr, [&](int) { ran = tsne_barnes_hut(x, n, d, o).iterations; }, 0.0);
    char note[128];
    std::snprintf(note, sizeof note, "%d iterations run, %.3f ms per iteration (neighbours and P included)", ran,
                  1e3 * t / std::max(ran, 1));
    b.add({"analysis", "tsne barnes-hut " + std::to_string(n) + "x64 " + std::to_string(iterations) + " iterations",
           t, 0, 0, 0, note});
    return;
  }
  TsneOptions o;
  o.iterations = iterations;
  o.seed = 1;
  int ran = 0;
  const double t = b.time(nullptr, [&](int) { ran = tsne_from_probabilities(ops, p, n, o).iterations; }, 0.0);
  char note[128];
  std::snprintf(note, sizeof note, "%d iterations run, %.3f ms per iteration (P upload included)", ran,
                1e3 * t / std::max(ran, 1));
  b.add({"analysis", "tsne " + std::to_string(n) + " points " + std::to_string(iterations) + " iterations", t,
         p_bytes * ran, 0, 0, note});
}

void analysis_cases(Bench& b, bool gpu, bool quick, bool smoke) {
  if (!b.wanted("kmeans") && !b.wanted("tsne")) return;
  std::unique_ptr<AnalysisOps> ops = make_analysis_ops(gpu);
  kmeans_case(b, *ops, quick, smoke);
  tsne_cases(b, *ops, gpu, quick, smoke);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "vae_gpu_bench: " << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--device") o.device = next();
    else if (a == "--quick") o.quick = true;
    else if (a == "--smoke") o.smoke = true;
    else if (a == "--json") o.json = next();
    else if (a == "--data") o.data = next();
    else if (a == "--filter") o.filter = next();
    else if (a == "-h" || a == "--help") {
      std::cout << "usage: vae_gpu_bench [--device cpu|cuda] [--quick | --smoke] [--json FILE] [--data ML100K_DIR] [--filter SUBSTR]\n"
                   "  --quick  shorter timings; the CPU skips the ml-20m-shaped cases\n"
                   "  --smoke  every case once at small sizes: checks the bench runs (figures mean nothing)\n";
      return 0;
    } else {
      std::cerr << "vae_gpu_bench: unknown argument " << a << " (see --help)\n";
      return 2;
    }
  }
  try {
    std::unique_ptr<Backend<float>> be;
    std::string device_name = "cpu";
    if (o.device == "cuda") {
      be = make_cuda_backend();
      device_name = cuda_device_name();
    } else if (o.device == "cpu") {
      be = make_cpu_backend<float>();
    } else {
      std::cerr << "vae_gpu_bench: --device must be cpu or cuda\n";
      return 2;
    }
    const bool gpu = o.device == "cuda";
    Bench b(*be, o);
    std::cout << "vae_gpu_bench on " << device_name << (o.smoke ? " (smoke: small sizes, figures mean nothing)" : o.quick ? " (quick)" : "") << "\n";
    ceilings(b, *be, gpu, o.quick, o.smoke);

    // ml-100k: the real files when given, else the synthetic set of the same shape.
    SyntheticSpec small_spec;
    if (o.smoke) {
      small_spec.users = 200;
      small_spec.items = 300;
      small_spec.ratings = 6000;
    }
    Dataset small = o.data.empty() ? make_synthetic(small_spec) : load_movielens_dir(o.data);
    const std::string small_tag = o.data.empty() ? (o.smoke ? "synthetic 200x300" : "synthetic ml-100k shape") : small.name;
    op_cases(b, *be, 64, small.num_items(), small_tag, o.quick);
    gemm_cases(b, *be, 64, small.num_items(), 512, small_tag, o.quick);
    adam_case(b, *be, o.smoke ? 20000 : 2037010, o.smoke ? "smoke" : "notebook VAE size", o.quick);
    Csr bin = small.ratings;
    std::fill(bin.values.begin(), bin.values.end(), 1.0f);
    model_case(b, *be, small.ratings, "vae", 64, small_tag, o.quick);
    model_case(b, *be, small.ratings, "autorec", 64, small_tag, o.quick);
    model_case(b, *be, bin, "cdae", 64, small_tag, o.quick);
    model_case(b, *be, bin, "multvae", 500, small_tag, o.quick);
    // The CLI's default GEMM precision (exact: double accumulation, CPU = GPU); the cases above
    // use float GEMMs, the precision of the PyTorch peers.
    std::unique_ptr<Backend<float>> exact =
        gpu ? make_cuda_backend(GemmPrecision::exact) : make_cpu_backend<float>(GemmPrecision::exact);
    gemm_cases(b, *exact, 64, small.num_items(), 512, small_tag + ", exact", o.quick);
    model_case(b, *exact, small.ratings, "vae", 64, small_tag + ", exact GEMMs", o.quick);

    // ml-20m shape: 136 677 users × 20 108 items, ~10 M interactions, batch 500.
    if (!o.quick || gpu || o.smoke) {
      SyntheticSpec big;
      big.users = o.smoke ? 700 : 136677;
      big.items = o.smoke ? 500 : 20108;
      big.ratings = o.smoke ? 10000 : 10000000;
      big.groups = 20;
      Dataset large = make_synthetic(big);
      Csr lb = large.ratings;
      std::fill(lb.values.begin(), lb.values.end(), 1.0f);
      const std::string lt = o.smoke ? "ml-20m cases at 700x500" : "ml-20m shape";
      // The real shape's 20 108 items pick the sparse first layer; the smoke's few, not by themselves.
      const std::string sparse = o.smoke ? "on" : "auto";
      op_cases(b, *be, 500, lb.cols, lt, o.quick);
      gemm_cases(b, *be, 500, lb.cols, 600, lt, o.quick);
      gemm_cases(b, *exact, 500, lb.cols, 600, lt + ", exact", o.quick);
      adam_case(b, *be, 2 * (lb.cols * 600) + 600 * 400 + 200 * 600 + 600 + 400 + 600 + lb.cols, "Mult-VAE " + lt, o.quick);
      model_case(b, *be, lb, "multvae", 500, lt, o.quick, sparse);
      if (gpu) {
        // The ml-20m target's precision (TF32 tensor cores): GEMMs, epochs and where the time goes.
        std::unique_ptr<Backend<float>> tf32 = make_cuda_backend(GemmPrecision::tf32);
        gemm_cases(b, *tf32, 500, lb.cols, 600, lt + ", TF32", o.quick);
        model_case(b, *tf32, lb, "multvae", 500, lt + ", TF32", o.quick, sparse);
        std::unique_ptr<Backend<float>> bf16 = make_cuda_backend(GemmPrecision::bf16);
        gemm_cases(b, *bf16, 500, lb.cols, 600, lt + ", BF16", o.quick);
      }
      // AutoRec and CDAE at the same scale (U-AutoRec over 20 108 items, hidden 500; CDAE with
      // one latent vector per user of the 136 677).
      Csr lr = large.ratings;
      model_case(b, *be, lr, "autorec", 500, lt, o.quick, sparse);
      model_case(b, *be, lb, "cdae", 500, lt, o.quick, sparse);
    } else {
      std::cout << "(--quick on the CPU: ml-20m-shaped cases skipped)\n";
    }
    analysis_cases(b, gpu, o.quick, o.smoke);
    if (!o.json.empty()) {
      std::ofstream f(o.json);
      f << b.to_json(device_name).dump(2) << "\n";
      if (!f) {
        std::cerr << "vae_gpu_bench: cannot write " << o.json << "\n";
        return 1;
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "vae_gpu_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
