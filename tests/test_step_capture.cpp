// Backend::run_step's contract, checked on the CPU through a backend that imitates the CUDA
// backend's step graphs: the ops of a step under a new key are held back (as a stream capture
// records them without running them) and run when end_step() "launches" the graph; a later step
// under that key only records each op's fixed arguments (pointers, shapes, scalars) and its
// live ones (the noise streams, the KL weight, Adam's step, take_rows' offset: the list in
// backend.h), and when the fixed ones equal the capture's the kept ops run again with the new
// live values, as a replayed graph does. So the models' steps are checked, on every
// configuration, to change from step to step only in what the GPU's graphs take as live. The
// device can also be told to refuse a capture, as a driver may refuse a library call inside
// one: training then goes on with plain launches, with the same results and a warning.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/backend.h"
#include "backend/step_signature.h"
#include "data/dataset.h"
#include "train/trainer.h"

namespace vae {
namespace {

using Lives = std::vector<uint64_t>;

template <typename V>
uint64_t bits(V v) {
  static_assert(sizeof(V) <= sizeof(uint64_t) && std::is_trivially_copyable_v<V>, "a word");
  uint64_t w = 0;
  std::memcpy(&w, &v, sizeof(V));
  return w;
}
template <typename V>
V unbits(uint64_t w) {
  V v;
  std::memcpy(&v, &w, sizeof(V));
  return v;
}

class CapturingCpuBackend final : public Backend<float> {
 public:
  enum class Refuse { never, at_end, in_op, always_in_op };
  // refuse_from_capture: the first capture (1-based) the device refuses.
  CapturingCpuBackend(Refuse refuse, int64_t refuse_from_capture)
      : cpu_(make_cpu_backend<float>(GemmPrecision::exact)), refuse_(refuse), refuse_from_(refuse_from_capture) {}

  int64_t begun = 0;  // steps begun (capture or record)
  int drops = 0;

  std::string name() const override { return "cpu"; }
  Buffer alloc_bytes(size_t bytes) override {
    VAE_CHECK(mode_ == Mode::none, "alloc inside a step");
    return cpu_->alloc_bytes(bytes);
  }
  void copy_to_backend(void* dst, const void* src, size_t bytes) override {
    VAE_CHECK(mode_ == Mode::none, "copy from the host inside a step");
    cpu_->copy_to_backend(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    VAE_CHECK(mode_ == Mode::none, "copy to the host inside a step");
    cpu_->copy_to_host(dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, size_t bytes) override {
    op("copy_within", [=](const Lives&) { cpu_->copy_within(dst, src, bytes); }, dst, src, bytes);
  }
  GemmPrecision gemm_precision() const override { return cpu_->gemm_precision(); }

  bool supports_step_capture() const override { return true; }
  void begin_step(int64_t key, bool capture) override {
    VAE_CHECK(mode_ == Mode::none, "begin_step: a step is already open");
    ++begun;
    key_ = key;
    sig_.clear();
    lives_.clear();
    held_.clear();
    if (!capture && graphs_.count(key)) {
      mode_ = Mode::record;
      return;
    }
    mode_ = Mode::capture;
    ++captures_begun_;
  }
  bool end_step() override {
    VAE_CHECK(mode_ != Mode::none, "end_step without begin_step");
    const Mode mode = mode_;
    mode_ = Mode::none;
    if (mode == Mode::record) {
      const Graph& g = graphs_.at(key_);
      if (sig_ != g.sig || lives_.size() != g.lives) return false;  // capture afresh
      for (const auto& f : g.ops) f(lives_);
      ++stats_.replays;
      return true;
    }
    if (refuse_ == Refuse::at_end && captures_begun_ >= refuse_from_)
      throw CudaError("test.cu:1: cudaGraphInstantiate(&e, g, 0) failed: operation not supported");
    Graph& g = graphs_[key_];
    g.sig = std::move(sig_);
    g.lives = lives_.size();
    g.ops = std::move(held_);
    for (const auto& f : g.ops) f(lives_);
    ++stats_.captures;
    return true;
  }
  void abort_step() noexcept override {
    mode_ = Mode::none;
    held_.clear();
  }
  void drop_step_graphs() noexcept override {
    ++drops;
    graphs_.clear();
  }
  StepGraphStats step_graph_stats() const override { return stats_; }

  void fill(Mat<float> x, float v) override {
    op("fill", [=](const Lives&) { cpu_->fill(x, v); }, x, v);
  }
  void axpy(float a, CMat<float> x, Mat<float> y) override {
    op("axpy", [=](const Lives&) { cpu_->axpy(a, x, y); }, a, x, y);
  }
  void gemm(bool ta, bool tb, float alpha, CMat<float> a, CMat<float> b, float beta, Mat<float> c) override {
    // A library call the device refuses inside a capture (or everywhere: a real fault).
    if (refuse_ == Refuse::always_in_op ||
        (refuse_ == Refuse::in_op && mode_ == Mode::capture && captures_begun_ >= refuse_from_))
      throw CudaError("test.cu:2: cublasSgemm(...) failed: CUBLAS_STATUS_NOT_SUPPORTED");
    op("gemm", [=](const Lives&) { cpu_->gemm(ta, tb, alpha, a, b, beta, c); }, ta, tb, alpha, a, b, beta, c);
  }
  void bias_act(CMat<float> x, CMat<float> b, Act act, Mat<float> y) override {
    op("bias_act", [=](const Lives&) { cpu_->bias_act(x, b, act, y); }, x, b, act, y);
  }
  void bias_act_backward(CMat<float> dy, CMat<float> y, Act act, Mat<float> dx, Mat<float> db) override {
    op("bias_act_backward", [=](const Lives&) { cpu_->bias_act_backward(dy, y, act, dx, db); }, dy, y, act, dx, db);
  }
  void gather_rows_add(CMat<float> t, CMat<int32_t> r, Mat<float> y) override {
    op("gather_rows_add", [=](const Lives&) { cpu_->gather_rows_add(t, r, y); }, t, r, y);
  }
  void scatter_rows_add(CMat<float> dy, CMat<int32_t> r, Mat<float> dt) override {
    op("scatter_rows_add", [=](const Lives&) { cpu_->scatter_rows_add(dy, r, dt); }, dy, r, dt);
  }
  void mse_loss(CMat<float> p, CMat<float> t, bool masked, float s, Mat<float> dp, Mat<float> l) override {
    op("mse_loss", [=](const Lives&) { cpu_->mse_loss(p, t, masked, s, dp, l); }, p, t, masked, s, dp, l);
  }
  void multinomial_nll(CMat<float> lg, CMat<float> t, float s, Mat<float> dl, Mat<float> l) override {
    op("multinomial_nll", [=](const Lives&) { cpu_->multinomial_nll(lg, t, s, dl, l); }, lg, t, s, dl, l);
  }
  void bce_logits(CMat<float> lg, CMat<float> t, float s, Mat<float> dl, Mat<float> l) override {
    op("bce_logits", [=](const Lives&) { cpu_->bce_logits(lg, t, s, dl, l); }, lg, t, s, dl, l);
  }
  void reparameterize(CMat<float> ml, uint64_t seed, uint64_t stream, Mat<float> eps, Mat<float> z) override {
    const size_t k = live(stream);
    op("reparameterize", [=](const Lives& L) { cpu_->reparameterize(ml, seed, L[k], eps, z); }, ml, seed, eps, z);
  }
  void reparam_kl_backward(CMat<float> ml, CMat<float> eps, CMat<float> dz, float ks, Mat<float> dml,
                           Mat<float> l) override {
    const size_t k = live(ks);
    op("reparam_kl_backward",
       [=](const Lives& L) { cpu_->reparam_kl_backward(ml, eps, dz, unbits<float>(L[k]), dml, l); }, ml, eps, dz,
       dml, l);
  }
  void regularize(CMat<float> p, float lambda, Reg kind, Mat<float> g, Mat<float> l) override {
    op("regularize", [=](const Lives&) { cpu_->regularize(p, lambda, kind, g, l); }, p, lambda, kind, g, l);
  }
  void dropout(CMat<float> x, float q, uint64_t seed, uint64_t stream, Mat<float> y) override {
    const size_t k = live(stream);
    op("dropout", [=](const Lives& L) { cpu_->dropout(x, q, seed, L[k], y); }, x, q, seed, y);
  }
  void l2_normalize_rows(CMat<float> x, Mat<float> y) override {
    op("l2_normalize_rows", [=](const Lives&) { cpu_->l2_normalize_rows(x, y); }, x, y);
  }
  void csr_rows_to_dense(CsrView<float> c, CMat<int32_t> r, Mat<float> y) override {
    op("csr_rows_to_dense", [=](const Lives&) { cpu_->csr_rows_to_dense(c, r, y); }, c, r, y);
  }
  void take_rows(CMat<int32_t> s, int64_t off, Mat<int32_t> d) override {
    const size_t k = live(off);
    op("take_rows", [=](const Lives& L) { cpu_->take_rows(s, unbits<int64_t>(L[k]), d); }, s, d);
  }
  void csr_row_norms(CsrView<float> c, CMat<int32_t> r, Mat<double> n) override {
    op("csr_row_norms", [=](const Lives&) { cpu_->csr_row_norms(c, r, n); }, c, r, n);
  }
  void csr_linear_forward(const CsrBatch<float>& x, CMat<float> w, Mat<float> y) override {
    const size_t k = live(x.stream);
    op("csr_linear_forward", [=](const Lives& L) { cpu_->csr_linear_forward(with_stream(x, L[k]), w, y); }, x, w, y);
  }
  void csr_linear_weight_grad(const CsrBatch<float>& x, CMat<float> dy, Mat<float> dw) override {
    const size_t k = live(x.stream);
    op("csr_linear_weight_grad", [=](const Lives& L) { cpu_->csr_linear_weight_grad(with_stream(x, L[k]), dy, dw); },
       x, dy, dw);
  }
  void adam_step(Mat<float> p, CMat<float> g, Mat<float> m, Mat<float> v, const AdamConfig& c,
                 int64_t step) override {
    const size_t k = live(step);
    op("adam_step", [=](const Lives& L) { cpu_->adam_step(p, g, m, v, c, unbits<int64_t>(L[k])); }, p, g, m, v, c);
  }
  void topk(CMat<float> s, CsrView<float> ex, CMat<int32_t> er, int k, Mat<int32_t> idx, Mat<float> val) override {
    op("topk", [=](const Lives&) { cpu_->topk(s, ex, er, k, idx, val); }, s, ex, er, k, idx, val);
  }
  void heldout_metrics(CMat<int32_t> idx, CsrView<float> t, CMat<int32_t> tr, const std::vector<int>& ks,
                       Mat<float> out) override {
    op("heldout_metrics", [=](const Lives&) { cpu_->heldout_metrics(idx, t, tr, ks, out); }, idx, t, tr, ks, out);
  }
  void graded_metrics(CMat<float> s, CMat<float> t, int k, Mat<float> out) override {
    op("graded_metrics", [=](const Lives&) { cpu_->graded_metrics(s, t, k, out); }, s, t, k, out);
  }
  void rating_errors(CMat<float> p, CsrView<float> t, CMat<int32_t> tr, float lo, float hi, Mat<float> out) override {
    op("rating_errors", [=](const Lives&) { cpu_->rating_errors(p, t, tr, lo, hi, out); }, p, t, tr, lo, hi, out);
  }

 private:
  enum class Mode { none, capture, record };
  struct Graph {
    StepSignature sig;
    size_t lives = 0;
    std::vector<std::function<void(const Lives&)>> ops;
  };

  static CsrBatch<float> with_stream(CsrBatch<float> x, uint64_t stream) {
    x.stream = stream;
    return x;
  }

  // A live argument: its slot in the step's live values (outside a step, the next op's own).
  template <typename V>
  size_t live(V v) {
    lives_.push_back(bits(v));
    return lives_.size() - 1;
  }

  // One op: outside a step it runs at once; captured, it is held back; recorded, only its
  // fixed arguments count (the kept graph's ops run at end_step).
  template <typename F, typename... A>
  void op(const char* name, F f, const A&... fixed) {
    if (mode_ == Mode::none) {
      f(lives_);
      lives_.clear();
      return;
    }
    sig_.add_op(name, fixed...);
    if (mode_ == Mode::capture) held_.push_back(std::move(f));
  }
  std::unique_ptr<Backend<float>> cpu_;
  Refuse refuse_;
  int64_t refuse_from_;
  Mode mode_ = Mode::none;
  int64_t key_ = 0;
  int64_t captures_begun_ = 0;
  StepSignature sig_;  // the CUDA backend's record of a step
  Lives lives_;
  std::vector<std::function<void(const Lives&)>> held_;
  std::map<int64_t, Graph> graphs_;
  StepGraphStats stats_;
};

Dataset small_data() {
  SyntheticSpec spec;
  spec.users = 150;
  spec.items = 120;
  spec.ratings = 4000;
  return make_synthetic(spec);
}

TrainOptions small_run(const std::string& kind) {
  TrainOptions o;
  o.epochs = 3;
  o.model.kind = kind;
  o.model.hidden = 16;
  o.model.latent = 4;
  o.batch_size = 32;  // 120 training users: 3 full batches and a smaller last one per epoch
  return o;
}

struct Trained {
  TrainResult r;
  std::string log;
};

Trained train_on(Backend<float>& be, const Dataset& d, const TrainOptions& o) {
  std::ostringstream log;
  Trained run{run_experiment(be, d, o, log), ""};
  run.r.model_ptr.reset();  // it refers to the backend
  run.log = log.str();
  return run;
}

// The plain CPU run (no steps) every variant below must equal bit for bit.
Trained reference(const Dataset& d, const TrainOptions& o) {
  auto be = make_cpu_backend<float>(GemmPrecision::exact);
  return train_on(*be, d, o);
}

TEST(StepCapture, CapturedAndReplayedStepsTrainAsPlainOps) {
  const Dataset d = small_data();
  const TrainOptions o = small_run("vae");
  const Trained ref = reference(d, o);
  CapturingCpuBackend be(CapturingCpuBackend::Refuse::never, 0);
  const Trained got = train_on(be, d, o);
  EXPECT_EQ(got.r.metrics, ref.r.metrics);
  EXPECT_EQ(got.r.history.back().train_loss, ref.r.history.back().train_loss);
  // 3 epochs × 4 steps: one capture per batch size (32, and the last batch's 24), the rest replayed.
  EXPECT_EQ(be.step_graph_stats().captures, 2);
  EXPECT_EQ(be.step_graph_stats().replays, 10);
  EXPECT_TRUE(be.step_capture_failure().empty());
  EXPECT_NE(got.log.find("CUDA Graph steps: 2 captured, 10 replayed without capture\n"), std::string::npos) << got.log;
  EXPECT_EQ(got.log.find("warning:"), std::string::npos) << got.log;
}

// Every Adam-trained model under each protocol it takes, dense and sparse first layers, with
// weight decay (L2 and AdamW): a step's ops never wait for the device (this backend refuses a
// copy or an allocation inside a step, as the CUDA backend does), every step after the first of
// its batch size replays the kept ops with only its live arguments new (nothing else changes
// from step to step), and the results are the plain run's, bit for bit. That is what the GPU's
// graph steps need of the models.
TEST(StepCapture, EveryModelsStepsReplayWithOnlyTheirLiveArguments) {
  const Dataset d = small_data();
  struct Case {
    const char* kind;
    const char* protocol;
    const char* sparse;
    double weight_decay;
    bool adamw;
  };
  for (const Case& c : {Case{"vae", "seed", "off", 0, false}, Case{"vae", "heldout", "off", 0, false},
                        Case{"autorec", "ratings", "off", 0, false}, Case{"autorec", "seed", "on", 1e-4, false},
                        Case{"i-autorec", "ratings", "off", 0, false}, Case{"cdae", "seed", "off", 0, false},
                        Case{"cdae", "heldout", "on", 0, false}, Case{"multvae", "heldout", "off", 0, false},
                        Case{"multvae", "heldout", "on", 1e-3, true}, Case{"multvae", "seed", "on", 0, false}}) {
    SCOPED_TRACE(std::string(c.kind) + " " + c.protocol + " sparse " + c.sparse);
    TrainOptions o = small_run(c.kind);
    o.protocol = c.protocol;
    o.sparse_input = c.sparse;
    o.adam.weight_decay = c.weight_decay;
    o.adam.decoupled = c.adamw;
    const Trained ref = reference(d, o);
    CapturingCpuBackend be(CapturingCpuBackend::Refuse::never, 0);
    const Trained got = train_on(be, d, o);
    EXPECT_EQ(got.r.sparse_input, ref.r.sparse_input);
    ASSERT_EQ(got.r.history.size(), ref.r.history.size());
    for (size_t e = 0; e < ref.r.history.size(); ++e) {
      EXPECT_EQ(got.r.history[e].train_loss, ref.r.history[e].train_loss) << "epoch " << e + 1;
      EXPECT_EQ(got.r.history[e].metrics, ref.r.history[e].metrics) << "epoch " << e + 1;
    }
    const int64_t steps = 3 * ((ref.r.train_rows + o.batch_size - 1) / o.batch_size);
    const int64_t sizes = ref.r.train_rows % o.batch_size == 0 ? 1 : 2;
    EXPECT_EQ(be.step_graph_stats().captures, sizes);
    EXPECT_EQ(be.step_graph_stats().replays, steps - sizes);
    EXPECT_TRUE(be.step_capture_failure().empty()) << be.step_capture_failure();
  }
}

// The device refuses the second capture (the last, smaller batch's) when it is launched (an
// instantiation failure): that step's held-back ops never ran, so they run once as plain
// launches, and so does every later step; the results equal the plain run's.
TEST(StepCapture, ARefusedInstantiationFallsBackToPlainLaunches) {
  const Dataset d = small_data();
  for (const char* kind : {"vae", "multvae", "cdae"}) {
    SCOPED_TRACE(kind);
    const TrainOptions o = small_run(kind);
    const Trained ref = reference(d, o);
    CapturingCpuBackend be(CapturingCpuBackend::Refuse::at_end, 2);
    const Trained got = train_on(be, d, o);
    EXPECT_EQ(got.r.metrics, ref.r.metrics);
    ASSERT_EQ(got.r.history.size(), ref.r.history.size());
    for (size_t e = 0; e < ref.r.history.size(); ++e)
      EXPECT_EQ(got.r.history[e].train_loss, ref.r.history[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(be.step_graph_stats().captures, 1);
    EXPECT_EQ(be.step_graph_stats().replays, 2);
    EXPECT_EQ(be.begun, 4);  // no step graph is tried after the refusal
    EXPECT_EQ(be.drops, 1);  // and no kept graph is left to replay
    EXPECT_NE(be.step_capture_failure().find("cudaGraphInstantiate"), std::string::npos);
    const std::string& log = got.log;
    const size_t w = log.find("warning: the device refused a CUDA Graph step (test.cu:1: cudaGraphInstantiate");
    EXPECT_NE(w, std::string::npos) << log;
    EXPECT_EQ(log.find("warning:", w + 1), std::string::npos) << "warned once\n" << log;
    EXPECT_NE(log.find("CUDA Graph steps: 1 captured, 2 replayed without capture; off after the device refused a step (see above)"),
              std::string::npos)
        << log;
    // A later run on the backend (as compare's next model) makes plain launches from the start
    // and says why.
    const Trained next = train_on(be, d, o);
    EXPECT_EQ(next.r.metrics, ref.r.metrics);
    EXPECT_EQ(be.begun, 4);
    EXPECT_NE(next.log.find("note: CUDA Graph steps are off on this device since a step was refused (test.cu:1: "
                            "cudaGraphInstantiate"),
              std::string::npos)
        << next.log;
    EXPECT_EQ(next.log.find("warning:"), std::string::npos) << next.log;
  }
}

// A library call refused while its step is being captured: the same fallback.
TEST(StepCapture, AnOpRefusedInsideACaptureFallsBackToPlainLaunches) {
  const Dataset d = small_data();
  const TrainOptions o = small_run("vae");
  const Trained ref = reference(d, o);
  CapturingCpuBackend be(CapturingCpuBackend::Refuse::in_op, 1);
  const Trained got = train_on(be, d, o);
  EXPECT_EQ(got.r.metrics, ref.r.metrics);
  EXPECT_EQ(be.step_graph_stats().captures, 0);
  EXPECT_NE(be.step_capture_failure().find("CUBLAS_STATUS_NOT_SUPPORTED"), std::string::npos);
  EXPECT_NE(got.log.find("CUDA Graph steps: 0 captured"), std::string::npos) << got.log;
}

// A device error that is not the capture's fails the plain retry too, and training stops with
// it; an error that is not the device's (a shape check) is never retried.
TEST(StepCapture, OtherErrorsAreNotSwallowed) {
  const Dataset d = small_data();
  const TrainOptions o = small_run("vae");
  CapturingCpuBackend faulty(CapturingCpuBackend::Refuse::always_in_op, 0);
  try {
    train_on(faulty, d, o);
    FAIL() << "a device fault outside captures was swallowed";
  } catch (const CudaError& e) {
    EXPECT_NE(std::string(e.what()).find("CUBLAS_STATUS_NOT_SUPPORTED"), std::string::npos) << e.what();
  }

  CapturingCpuBackend be(CapturingCpuBackend::Refuse::never, 0);
  Tensor<float> y = be.zeros(2, 3), bad = be.zeros(3, 2);
  int calls = 0;
  EXPECT_THROW(be.run_step(2,
                           [&] {
                             ++calls;
                             be.fill(y.mat(), 1.0f);
                             VAE_CHECK(bad.rows() == y.rows(), "shapes differ");
                           }),
               VaeError);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(be.step_capture_failure().empty());
  EXPECT_EQ(be.download(y.cmat()), std::vector<float>(6, 0.0f));  // the aborted step's fill never ran
  be.run_step(2, [&] { be.fill(y.mat(), 2.0f); });                  // and the backend still works
  EXPECT_EQ(be.download(y.cmat()), std::vector<float>(6, 2.0f));
}

}  // namespace
}  // namespace vae
