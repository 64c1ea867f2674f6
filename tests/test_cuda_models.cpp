// Whole models on the CUDA backend against the CPU oracle: the same initialisation and batch
// must give the same loss, gradients and predictions, and 50 Adam steps the same loss curve
// (relative 1e-4 per step). A GPU trajectory must also repeat bit for bit, and training with
// CUDA Graph steps must give exactly the run that plain launches give, and weight gradients on
// a side stream exactly the run with everything on one stream. Every test skips
// without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/philox.h"
#include "data/dataset.h"
#include "models/model.h"
#include "train/trainer.h"

namespace vae {
namespace {

constexpr int64_t kUsers = 96, kItems = 401, kBatch = 37;

// Ratings 1…5 at ~8 % density; every row has at least one rating.
Csr make_ratings(bool binary, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Csr m;
  m.rows = kUsers;
  m.cols = kItems;
  m.indptr.assign(1, 0);
  for (int64_t r = 0; r < kUsers; ++r) {
    for (int64_t c = 0; c < kItems; ++c) {
      if (u(g) >= 0.08 && c != (r * 7) % kItems) continue;
      m.indices.push_back(static_cast<int32_t>(c));
      m.values.push_back(binary ? 1.0f : static_cast<float>(1 + static_cast<int>(u(g) * 5.0)));
    }
    m.indptr.push_back(static_cast<int64_t>(m.indices.size()));
  }
  return m;
}

struct ModelCase {
  std::string name;
  ModelConfig cfg;
  bool binary = false;      // implicit feedback input
  bool transpose = false;   // item-based: rows are items
};

std::vector<ModelCase> model_cases() {
  std::vector<ModelCase> v;
  auto add = [&](std::string name, std::string kind, auto tweak, bool binary = false, bool transpose = false) {
    ModelCase c;
    c.name = std::move(name);
    c.cfg.kind = std::move(kind);
    c.cfg.num_inputs = transpose ? kUsers : kItems;
    c.cfg.num_rows = transpose ? kItems : kUsers;
    tweak(c.cfg);
    c.binary = binary;
    c.transpose = transpose;
    v.push_back(std::move(c));
  };
  add("vae", "vae", [](ModelConfig& c) { c.latent = 16; c.anneal_steps = 20; });
  add("autorec-masked", "autorec", [](ModelConfig& c) { c.loss = "masked"; c.hidden = 40; });
  add("autorec-dense", "autorec", [](ModelConfig& c) { c.loss = "dense"; });
  add("i-autorec", "i-autorec", [](ModelConfig& c) { c.loss = "masked"; c.hidden = 40; }, false, true);
  add("multvae", "multvae", [](ModelConfig& c) { c.hidden = 64; c.latent = 16; c.beta = 0.2; c.anneal_steps = 20; }, true);
  add("cdae", "cdae", [](ModelConfig& c) { c.hidden = 30; }, true);
  add("cdae-mse", "cdae", [](ModelConfig& c) { c.hidden = 30; c.loss = "mse"; }, true);
  // The sparse first layer (CSR batch input): the same checks, GPU sparse against CPU sparse.
  const size_t dense_cases = v.size();
  for (size_t i = 0; i < dense_cases; ++i) {
    ModelCase c = v[i];
    c.name += "-sparse";
    c.cfg.sparse_input = "on";
    v.push_back(c);
  }
  for (ModelCase& c : v)
    if (c.cfg.sparse_input == "auto") c.cfg.sparse_input = "off";  // 401 items: auto would be dense anyway
  return v;
}

::testing::AssertionResult rel_close(const std::vector<float>& got, const std::vector<float>& ref, double tol) {
  if (got.size() != ref.size()) return ::testing::AssertionFailure() << "size " << got.size() << " != " << ref.size();
  double num = 0.0, den = 0.0;
  int nonfinite = 0, shown = 0;
  std::ostringstream os;
  os.precision(9);
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    if (!std::isfinite(g) || !std::isfinite(r)) {
      ++nonfinite;
      continue;
    }
    num += (g - r) * (g - r);
    den += r * r;
    if (std::fabs(g - r) > 1e-6 + std::fabs(r) * 1e-4 && shown++ < 8) os << "  [" << i << "] gpu " << g << " cpu " << r << "\n";
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (nonfinite == 0 && rel <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "relative error " << rel << " (tol " << tol << "), " << nonfinite
                                       << " non-finite values; first mismatches:\n" << os.str();
}

// One backend with its copy of the data and the model.
struct Side {
  std::unique_ptr<Backend<float>> be;
  CsrTensor<float> input;
  std::unique_ptr<Model<float>> model;
  Tensor<float> loss;

  Side(std::unique_ptr<Backend<float>> b, const Csr& data, const ModelConfig& cfg) : be(std::move(b)) {
    input = be->upload_csr(data);
    model = make_model<float>(*be, cfg, kBatch);
    model->init(11);
    loss = be->zeros(1, 1);
  }
  // Loss of one training step on rows; gradients left in the model's grad buffer.
  double step(const std::vector<int32_t>& rows, int64_t step, bool train) {
    Tensor<int32_t> r = be->upload(rows, static_cast<int64_t>(rows.size()), 1);
    Batch<float> b{input.view(), r.cmat(), r.cmat(), static_cast<int64_t>(rows.size())};
    be->fill(loss.mat(), 0.0f);
    model->forward_backward(b, step, train, loss.mat());
    return be->read_scalar(loss.cmat());
  }
  std::vector<float> predict(const std::vector<int32_t>& rows) {
    Tensor<int32_t> r = be->upload(rows, static_cast<int64_t>(rows.size()), 1);
    Batch<float> b{input.view(), r.cmat(), r.cmat(), static_cast<int64_t>(rows.size())};
    Tensor<float> out = be->alloc<float>(b.n, model->num_outputs());
    model->predict(b, out.mat());
    return be->download(out.cmat());
  }
  std::vector<float> params() { return be->download(CMat<float>(model->param_buffer())); }
  std::vector<float> grads() { return be->download(CMat<float>(model->grad_buffer())); }
};

std::vector<int32_t> batch_rows(int64_t n_rows, int64_t step) {
  std::vector<int32_t> perm(static_cast<size_t>(n_rows));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(static_cast<unsigned>(step / 2 + 1)));
  const int64_t start = (step % 2) * kBatch;
  return std::vector<int32_t>(perm.begin() + start, perm.begin() + std::min(n_rows, start + kBatch));
}

class CudaModels : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  }
  static Csr data_for(const ModelCase& c) {
    const Csr m = make_ratings(c.binary, 5);
    return c.transpose ? m.transpose() : m;
  }
};

TEST_F(CudaModels, GradientsMatchCpuFromTheSameInitAndBatch) {
  for (const ModelCase& c : model_cases()) {
    SCOPED_TRACE(c.name);
    const Csr data = data_for(c);
    Side cpu(make_cpu_backend<float>(), data, c.cfg), gpu(make_cuda_backend(), data, c.cfg);
    ASSERT_EQ(gpu.params(), cpu.params()) << "initialisation differs";
    const std::vector<int32_t> rows = batch_rows(data.rows, 3);
    const double lc = cpu.step(rows, 3, true), lg = gpu.step(rows, 3, true);
    EXPECT_NEAR(lg, lc, 1e-5 * std::fabs(lc)) << "training loss";
    EXPECT_TRUE(rel_close(gpu.grads(), cpu.grads(), 1e-4));
    // Evaluation loss (no noise, z = μ) and predictions.
    const double ec = cpu.step(rows, 0, false), eg = gpu.step(rows, 0, false);
    EXPECT_NEAR(eg, ec, 1e-5 * std::fabs(ec)) << "evaluation loss";
    EXPECT_TRUE(rel_close(gpu.predict(rows), cpu.predict(rows), 1e-5));
  }
}

// On the GPU the sparse path follows the dense one (same init, batch, dropout mask).
TEST_F(CudaModels, SparseInputMatchesTheDensePathOnTheGpu) {
  for (const ModelCase& c : model_cases()) {
    if (c.cfg.sparse_input != "on") continue;
    SCOPED_TRACE(c.name);
    const Csr data = data_for(c);
    ModelCase d = c;
    d.cfg.sparse_input = "off";
    Side sparse(make_cuda_backend(), data, c.cfg), dense(make_cuda_backend(), data, d.cfg);
    ASSERT_TRUE(sparse.model->sparse_input());
    ASSERT_FALSE(dense.model->sparse_input());
    const std::vector<int32_t> rows = batch_rows(data.rows, 5);
    const double ls = sparse.step(rows, 5, true), ld = dense.step(rows, 5, true);
    EXPECT_NEAR(ls, ld, 1e-5 * std::fabs(ld));
    EXPECT_TRUE(rel_close(sparse.grads(), dense.grads(), 1e-4));
    EXPECT_TRUE(rel_close(sparse.predict(rows), dense.predict(rows), 1e-5));
  }
}

// 50 Adam steps of case c from the same start on be: the per-step losses and the final weights.
std::vector<double> fifty_adam_steps(std::unique_ptr<Backend<float>> be, const ModelCase& c, const Csr& data,
                                     std::vector<float>* final_params) {
  AdamConfig adam;
  adam.lr = 1e-3;
  Side s(std::move(be), data, c.cfg);
  Tensor<float> m = s.be->zeros(1, s.model->num_params()), v = s.be->zeros(1, s.model->num_params());
  std::vector<double> curve;
  for (int64_t step = 0; step < 50; ++step) {
    curve.push_back(s.step(batch_rows(data.rows, step), step, true));
    s.be->adam_step(s.model->param_buffer(), s.model->grad_buffer(), m.mat(), v.mat(), adam, step + 1);
  }
  *final_params = s.params();
  return curve;
}

// Largest relative difference between two loss curves, and where.
std::pair<double, int> worst_rel(const std::vector<double>& got, const std::vector<double>& ref) {
  double worst = 0.0;
  int at = 0;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    const double rel = std::fabs(got[i] - ref[i]) / std::max(std::fabs(ref[i]), 1e-30);
    if (!(rel <= worst)) {
      worst = rel;
      at = static_cast<int>(i);
    }
  }
  return {worst, at};
}

// 50 Adam steps from the same start: the per-step loss curves agree to 1e-4 relative.
TEST_F(CudaModels, FiftyAdamStepsFollowTheCpuLossCurve) {
  for (const ModelCase& c : model_cases()) {
    SCOPED_TRACE(c.name);
    const Csr data = data_for(c);
    std::vector<float> pc, pg, pg2;
    const std::vector<double> cc = fifty_adam_steps(make_cpu_backend<float>(), c, data, &pc);
    const std::vector<double> cg = fifty_adam_steps(make_cuda_backend(), c, data, &pg);
    const auto [worst, at] = worst_rel(cg, cc);
    EXPECT_LT(worst, 1e-4) << "step " << at << ": gpu " << cg[at] << " cpu " << cc[at];
    // Same seed, same device: bit-identical.
    const std::vector<double> cg2 = fifty_adam_steps(make_cuda_backend(), c, data, &pg2);
    EXPECT_EQ(cg2, cg);
    EXPECT_EQ(pg2, pg);
  }
}

// With --precision exact on both devices the GEMMs round alike, and every other op already
// mirrors the oracle's arithmetic, so 50 steps end where the CPU ends: loss curves to 1e-6
// relative (a stray last-bit flip may remain) instead of the 1e-4 of float GEMMs.
TEST_F(CudaModels, ExactGemmsKeepFiftyStepsOnTheCpuRun) {
  for (const ModelCase& c : model_cases()) {
    SCOPED_TRACE(c.name);
    const Csr data = data_for(c);
    std::vector<float> pc, pg;
    const std::vector<double> cc = fifty_adam_steps(make_cpu_backend<float>(GemmPrecision::exact), c, data, &pc);
    const std::vector<double> cg = fifty_adam_steps(make_cuda_backend(GemmPrecision::exact), c, data, &pg);
    const auto [worst, at] = worst_rel(cg, cc);
    EXPECT_LE(worst, 1e-6) << "step " << at << ": gpu " << cg[at] << " cpu " << cc[at];
    EXPECT_TRUE(rel_close(pg, pc, 1e-6));
  }
}

// The trainer's CUDA Graph steps replay exactly the kernels that plain launches run, with each
// step's live arguments (batch offset, noise streams, Adam step, KL weight) read from the graph's
// live block: the runs are bit-identical, the last, smaller batch (training rows not a multiple
// of 64) included, and no step is captured twice.
TEST_F(CudaModels, GraphStepsGiveExactlyThePlainLaunchRun) {
  SyntheticSpec spec;
  spec.users = 300;
  spec.items = 700;
  spec.ratings = 15000;
  const Dataset d = make_synthetic(spec);
  struct Case {
    const char* kind;
    const char* protocol;
    const char* sparse;
  };
  for (const Case& c : {Case{"vae", "seed", "off"}, Case{"autorec", "ratings", "off"}, Case{"cdae", "seed", "off"},
                        Case{"multvae", "heldout", "off"}, Case{"multvae", "heldout", "on"}}) {
    SCOPED_TRACE(std::string(c.kind) + " " + c.protocol + " sparse " + c.sparse);
    std::vector<TrainResult> runs;
    Backend<float>::StepGraphStats graph_stats;
    // Plain launches, graph steps, graph steps with every op on the main stream.
    for (int run = 0; run < 3; ++run) {
      const bool graph = run > 0;
      TrainOptions o;
      o.protocol = c.protocol;
      o.epochs = 3;
      o.batch_size = 64;
      o.model.kind = c.kind;
      o.model.hidden = 48;
      o.model.latent = 8;
      o.sparse_input = c.sparse;
      o.cuda_graph = graph;
      o.quiet = true;
      auto be = make_cuda_backend();
      if (run == 2) be->set_side_branches(false);
      std::ostringstream log;
      runs.push_back(run_experiment(*be, d, o, log));
      if (run == 1) {
        graph_stats = be->step_graph_stats();
        EXPECT_EQ(be->step_capture_failure(), "") << "the device refused a step graph";
      }
      if (run == 2) {  // one stream: the graph is one chain
        const Backend<float>::StepGraphStats one = be->step_graph_stats();
        EXPECT_EQ(one.longest_chain, one.nodes);
      }
    }
    ASSERT_NE(runs[0].train_rows % 64, 0) << "the case needs a last, smaller batch";
    for (int run : {1, 2}) {
      ASSERT_EQ(runs[run].history.size(), runs[0].history.size());
      for (size_t e = 0; e < runs[0].history.size(); ++e) {
        EXPECT_EQ(runs[run].history[e].train_loss, runs[0].history[e].train_loss) << "run " << run << " epoch " << e + 1;
        EXPECT_EQ(runs[run].history[e].metrics, runs[0].history[e].metrics) << "run " << run << " epoch " << e + 1;
      }
    }
    EXPECT_TRUE(std::isfinite(runs[1].history.back().train_loss));
    // Captured once per batch size, every other step replayed without capture.
    const int64_t steps = 3 * ((runs[0].train_rows + 63) / 64);
    EXPECT_EQ(graph_stats.captures, 2);
    EXPECT_EQ(graph_stats.replays, steps - 2);
    EXPECT_GT(graph_stats.nodes, 10);  // a step's kernels: every layer's GEMMs, activations, losses, Adam
    // The weight gradients branch off the backward pass: fewer nodes on its longest chain.
    EXPECT_GT(graph_stats.longest_chain, 5);
    EXPECT_LT(graph_stats.longest_chain, graph_stats.nodes);
  }
}

// --profile-ops on the GPU: a table of the model's ops after training, the run unchanged
// (profiling forces plain launches, which give the same run as graphs).
TEST_F(CudaModels, ProfileOpsTableAfterTraining) {
  SyntheticSpec spec;
  spec.users = 200;
  spec.items = 300;
  spec.ratings = 6000;
  const Dataset d = make_synthetic(spec);
  std::vector<double> losses;
  for (bool prof : {false, true}) {
    TrainOptions o;
    o.epochs = 2;
    o.model.kind = "vae";
    o.profile_ops = prof;
    auto be = make_cuda_backend();
    std::ostringstream log;
    const TrainResult r = run_experiment(*be, d, o, log);
    const std::string out = log.str();
    if (prof) {
      EXPECT_NE(out.find("Device time per op over 2 epochs"), std::string::npos) << out;
      for (const char* op : {"gemm", "adam_step", "reparameterize", "graded_metrics", "all ops"})
        EXPECT_NE(out.find(op), std::string::npos) << op << "\n" << out;
      EXPECT_EQ(out.find("CUDA Graph steps"), std::string::npos) << out;
    }
    losses.push_back(r.history.back().train_loss);
  }
  EXPECT_EQ(losses[0], losses[1]);
}

// A step cut short by an exception is discarded and the backend keeps working; nothing that
// waits for the device is allowed inside a step.
TEST_F(CudaModels, AnAbortedStepLeavesTheBackendUsable) {
  auto be = make_cuda_backend();
  ASSERT_TRUE(be->supports_step_capture());
  Tensor<float> a = be->upload(std::vector<float>{1, 2, 3, 4, 5, 6}, 2, 3), y = be->zeros(2, 3);
  Tensor<float> bad = be->zeros(3, 2);
  be->begin_step(2, false);
  be->fill(y.mat(), 7.0f);
  EXPECT_THROW(be->axpy(1.0f, bad.cmat(), y.mat()), VaeError);  // shape check, before any launch
  be->abort_step();
  // The recorded fill never ran; plain work runs again.
  EXPECT_EQ(be->download(y.cmat()), std::vector<float>(6, 0.0f));
  be->axpy(2.0f, a.cmat(), y.mat());
  EXPECT_EQ(be->download(y.cmat()), (std::vector<float>{2, 4, 6, 8, 10, 12}));
  be->begin_step(3, false);
  EXPECT_THROW(be->download(y.cmat()), VaeError);
  EXPECT_THROW(be->begin_step(4, false), VaeError);
  EXPECT_THROW(be->alloc<float>(2, 2), VaeError);  // cudaMalloc: illegal in a capture
  EXPECT_THROW(be->copy_within(y.data() + 1, y.data(), 2 * sizeof(float)), VaeError);  // overlapping
  be->copy_within(a.data(), y.data(), 2 * sizeof(float));  // disjoint: an ordinary op of the step
  be->abort_step();
  EXPECT_EQ(be->step_graph_stats().captures, 0);
  EXPECT_FALSE(be->replay_step(2));
}

// Steps under one key: captured once, then replayed with each step's live arguments (the
// batch's offset in the order, the noise streams, the KL weight, Adam's step) and nothing
// captured again — every step's results are bit-identical to the same ops launched one by one
// on a second backend (and the batch rows to the CPU's). A changed fixed argument (axpy's
// alpha) is noticed and the step captured afresh; a step aborted while it was only being
// recorded leaves the graph usable.
TEST_F(CudaModels, StepGraphsReplayWithEachStepsLiveArguments) {
  auto graph = make_cuda_backend();
  auto plain = make_cuda_backend();
  auto cpu = make_cpu_backend<float>();
  std::vector<int32_t> order(40);
  std::iota(order.begin(), order.end(), 0);
  std::reverse(order.begin(), order.end());
  std::vector<float> x0(40 * 6), w0(8 * 5), p0(6 * 5, 0.5f);
  for (size_t i = 0; i < x0.size(); ++i) x0[i] = static_cast<float>(i % 11) - 4.0f;
  for (size_t i = 0; i < w0.size(); ++i) w0[i] = 0.25f * static_cast<float>(i % 7) - 0.5f;
  struct Side {
    Backend<float>* be;
    Tensor<int32_t> order, rows;
    Tensor<float> x, xb, y, w, p, g, m, v, z, eps, dml, loss;
  };
  auto make_side = [&](Backend<float>& be) {
    Side s{&be, be.upload(order, 40, 1), be.alloc<int32_t>(8, 1), be.upload(x0, 40, 6), be.alloc<float>(8, 6),
           be.alloc<float>(8, 6), be.upload(w0, 8, 5), be.upload(p0, 6, 5), be.alloc<float>(6, 5), be.zeros(6, 5),
           be.zeros(6, 5), be.alloc<float>(8, 3), be.alloc<float>(8, 3), be.alloc<float>(8, 6), be.zeros(1, 1)};
    return s;
  };
  Side sides[3] = {make_side(*cpu), make_side(*plain), make_side(*graph)};
  AdamConfig ad;
  auto step_ops = [&](Side& s, int64_t step, float alpha) {
    Backend<float>& be = *s.be;
    be.take_rows(s.order.cmat(), 8 * (step % 5), s.rows.mat());
    be.fill(s.xb.mat(), 0.0f);
    be.gather_rows_add(s.x.cmat(), s.rows.cmat(), s.xb.mat());
    be.dropout(s.xb.cmat(), 0.5f, 17, rng_stream(RngStream::dropout, static_cast<uint64_t>(step)), s.y.mat());
    be.axpy(alpha, s.xb.cmat(), s.y.mat());
    // xb read as μ | log σ² (8 × 2·3): noise and KL weight change every step.
    be.reparameterize(s.xb.cmat(), 5, rng_stream(RngStream::eps, static_cast<uint64_t>(step)), s.eps.mat(), s.z.mat());
    be.reparam_kl_backward(s.xb.cmat(), s.eps.cmat(), s.z.cmat(), 0.1f * static_cast<float>(step + 1), s.dml.mat(),
                           s.loss.mat());
    be.gemm(true, false, 1.0f, s.y.cmat(), s.w.cmat(), 0.0f, s.g.mat());
    be.adam_step(s.p.mat(), s.g.cmat(), s.m.mat(), s.v.mat(), ad, step + 1);
  };
  for (int64_t step = 0; step < 7; ++step) {
    const float alpha = step < 5 ? 1.0f : 10.0f;
    step_ops(sides[0], step, alpha);
    step_ops(sides[1], step, alpha);
    graph->run_step(8, [&] { step_ops(sides[2], step, alpha); });
    SCOPED_TRACE("step " + std::to_string(step));
    EXPECT_EQ(graph->download(sides[2].rows.cmat()), cpu->download(sides[0].rows.cmat()));
    for (auto t : {&Side::y, &Side::z, &Side::eps, &Side::dml, &Side::loss, &Side::p, &Side::m, &Side::v})
      EXPECT_EQ(graph->download((sides[2].*t).cmat()), plain->download((sides[1].*t).cmat()));
  }
  // Steps 0 and 5 (alpha changed) captured; the others replayed.
  EXPECT_EQ(graph->step_graph_stats().captures, 2);
  EXPECT_EQ(graph->step_graph_stats().replays, 5);
  // A step under a kept key that throws while being recorded launches nothing and is
  // discarded; the next one replays as before.
  const std::vector<float> p_before = graph->download(sides[2].p.cmat());
  Tensor<float> bad = graph->zeros(3, 3);
  graph->begin_step(8, false);
  graph->fill(sides[2].p.mat(), 0.0f);
  EXPECT_THROW(graph->axpy(1.0f, bad.cmat(), sides[2].p.mat()), VaeError);
  graph->abort_step();
  EXPECT_EQ(graph->download(sides[2].p.cmat()), p_before);
  step_ops(sides[1], 7, 10.0f);
  graph->run_step(8, [&] { step_ops(sides[2], 7, 10.0f); });
  EXPECT_EQ(graph->download(sides[2].p.cmat()), plain->download(sides[1].p.cmat()));
  EXPECT_EQ(graph->step_graph_stats().replays, 6);
  EXPECT_TRUE(graph->replay_step(8));
  EXPECT_FALSE(graph->replay_step(99));
}

}  // namespace
}  // namespace vae
