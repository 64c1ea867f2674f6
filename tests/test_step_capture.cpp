// Backend::run_step's contract, checked on the CPU through a backend that imitates step
// capture: the ops issued while a step is captured are held back (as a CUDA stream capture
// records them without running them) and run only when end_step() "launches" the graph. The
// device can be told to refuse a capture, as a driver may refuse a library call inside one:
// training then goes on with plain launches, with the same results and a warning.
#include <gtest/gtest.h>

#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "data/dataset.h"
#include "train/trainer.h"

namespace vae {
namespace {

class CapturingCpuBackend final : public Backend<float> {
 public:
  enum class Refuse { never, at_end, in_op, always_in_op };
  CapturingCpuBackend(Refuse refuse, int64_t refuse_from_capture)
      : cpu_(make_cpu_backend<float>(GemmPrecision::exact)), refuse_(refuse), refuse_from_(refuse_from_capture) {}

  int64_t ops_run = 0;  // ops that ran: held-back ones when their step launched
  int64_t begun = 0;

  std::string name() const override { return "cpu"; }
  Buffer alloc_bytes(size_t bytes) override {
    VAE_CHECK(!capturing_, "alloc inside a step");
    return cpu_->alloc_bytes(bytes);
  }
  void copy_to_backend(void* dst, const void* src, size_t bytes) override {
    VAE_CHECK(!capturing_, "copy from the host inside a step");
    cpu_->copy_to_backend(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    VAE_CHECK(!capturing_, "copy to the host inside a step");
    cpu_->copy_to_host(dst, src, bytes);
  }
  void copy_within(void* dst, const void* src, size_t bytes) override {
    op([=] { cpu_->copy_within(dst, src, bytes); });
  }
  GemmPrecision gemm_precision() const override { return cpu_->gemm_precision(); }

  bool supports_step_capture() const override { return true; }
  void begin_step(int64_t, bool) override {
    VAE_CHECK(!capturing_, "begin_step: a step is already open");
    ++begun;
    capturing_ = true;
    ++captures_begun_;
  }
  bool end_step() override {
    VAE_CHECK(capturing_, "end_step without begin_step");
    capturing_ = false;
    std::vector<std::function<void()>> held;
    held.swap(held_);
    if (refuse_ == Refuse::at_end && captures_begun_ >= refuse_from_)
      throw CudaError("test.cu:1: cudaGraphInstantiate(&e, g, 0) failed: operation not supported");
    for (auto& f : held) f();
    ++stats_.captures;
    return true;
  }
  void abort_step() noexcept override {
    capturing_ = false;
    held_.clear();
  }
  void drop_step_graphs() noexcept override { ++drops; }
  StepGraphStats step_graph_stats() const override { return stats_; }
  int drops = 0;

  void fill(Mat<float> x, float v) override {
    op([=] { cpu_->fill(x, v); });
  }
  void axpy(float a, CMat<float> x, Mat<float> y) override {
    op([=] { cpu_->axpy(a, x, y); });
  }
  void gemm(bool ta, bool tb, float alpha, CMat<float> a, CMat<float> b, float beta, Mat<float> c) override {
    // A library call the device refuses inside a capture (or everywhere: a real fault).
    if (refuse_ == Refuse::always_in_op || (refuse_ == Refuse::in_op && capturing_ && captures_begun_ >= refuse_from_))
      throw CudaError("test.cu:2: cublasSgemm(...) failed: CUBLAS_STATUS_NOT_SUPPORTED");
    op([=] { cpu_->gemm(ta, tb, alpha, a, b, beta, c); });
  }
  void bias_act(CMat<float> x, CMat<float> b, Act act, Mat<float> y) override {
    op([=] { cpu_->bias_act(x, b, act, y); });
  }
  void bias_act_backward(CMat<float> dy, CMat<float> y, Act act, Mat<float> dx, Mat<float> db) override {
    op([=] { cpu_->bias_act_backward(dy, y, act, dx, db); });
  }
  void gather_rows_add(CMat<float> t, CMat<int32_t> r, Mat<float> y) override {
    op([=] { cpu_->gather_rows_add(t, r, y); });
  }
  void scatter_rows_add(CMat<float> dy, CMat<int32_t> r, Mat<float> dt) override {
    op([=] { cpu_->scatter_rows_add(dy, r, dt); });
  }
  void mse_loss(CMat<float> p, CMat<float> t, bool masked, float s, Mat<float> dp, Mat<float> l) override {
    op([=] { cpu_->mse_loss(p, t, masked, s, dp, l); });
  }
  void multinomial_nll(CMat<float> lg, CMat<float> t, float s, Mat<float> dl, Mat<float> l) override {
    op([=] { cpu_->multinomial_nll(lg, t, s, dl, l); });
  }
  void bce_logits(CMat<float> lg, CMat<float> t, float s, Mat<float> dl, Mat<float> l) override {
    op([=] { cpu_->bce_logits(lg, t, s, dl, l); });
  }
  void reparameterize(CMat<float> ml, uint64_t seed, uint64_t stream, Mat<float> eps, Mat<float> z) override {
    op([=] { cpu_->reparameterize(ml, seed, stream, eps, z); });
  }
  void reparam_kl_backward(CMat<float> ml, CMat<float> eps, CMat<float> dz, float k, Mat<float> dml,
                           Mat<float> l) override {
    op([=] { cpu_->reparam_kl_backward(ml, eps, dz, k, dml, l); });
  }
  void regularize(CMat<float> p, float lambda, Reg kind, Mat<float> g, Mat<float> l) override {
    op([=] { cpu_->regularize(p, lambda, kind, g, l); });
  }
  void dropout(CMat<float> x, float q, uint64_t seed, uint64_t stream, Mat<float> y) override {
    op([=] { cpu_->dropout(x, q, seed, stream, y); });
  }
  void l2_normalize_rows(CMat<float> x, Mat<float> y) override {
    op([=] { cpu_->l2_normalize_rows(x, y); });
  }
  void csr_rows_to_dense(CsrView<float> c, CMat<int32_t> r, Mat<float> y) override {
    op([=] { cpu_->csr_rows_to_dense(c, r, y); });
  }
  void take_rows(CMat<int32_t> s, int64_t off, Mat<int32_t> d) override {
    op([=] { cpu_->take_rows(s, off, d); });
  }
  void csr_row_norms(CsrView<float> c, CMat<int32_t> r, Mat<float> n) override {
    op([=] { cpu_->csr_row_norms(c, r, n); });
  }
  void csr_linear_forward(const CsrBatch<float>& x, CMat<float> w, Mat<float> y) override {
    op([=] { cpu_->csr_linear_forward(x, w, y); });
  }
  void csr_linear_weight_grad(const CsrBatch<float>& x, CMat<float> dy, Mat<float> dw) override {
    op([=] { cpu_->csr_linear_weight_grad(x, dy, dw); });
  }
  void adam_step(Mat<float> p, CMat<float> g, Mat<float> m, Mat<float> v, const AdamConfig& c,
                 int64_t step) override {
    op([=] { cpu_->adam_step(p, g, m, v, c, step); });
  }
  void topk(CMat<float> s, CsrView<float> ex, CMat<int32_t> er, int k, Mat<int32_t> idx, Mat<float> val) override {
    op([=] { cpu_->topk(s, ex, er, k, idx, val); });
  }
  void heldout_metrics(CMat<int32_t> idx, CsrView<float> t, CMat<int32_t> tr, const std::vector<int>& ks,
                       Mat<float> out) override {
    op([=] { cpu_->heldout_metrics(idx, t, tr, ks, out); });
  }
  void graded_metrics(CMat<float> s, CMat<float> t, int k, Mat<float> out) override {
    op([=] { cpu_->graded_metrics(s, t, k, out); });
  }
  void rating_errors(CMat<float> p, CsrView<float> t, CMat<int32_t> tr, float lo, float hi, Mat<float> out) override {
    op([=] { cpu_->rating_errors(p, t, tr, lo, hi, out); });
  }

 private:
  template <typename F>
  void op(F f) {
    if (capturing_) {
      held_.push_back(f);
      return;
    }
    f();
    ++ops_run;
  }

  std::unique_ptr<Backend<float>> cpu_;
  Refuse refuse_;
  int64_t refuse_from_;
  bool capturing_ = false;
  int64_t captures_begun_ = 0;
  std::vector<std::function<void()>> held_;
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

TEST(StepCapture, HeldBackStepsTrainAsPlainOps) {
  const Dataset d = small_data();
  const TrainOptions o = small_run("vae");
  const Trained ref = reference(d, o);
  CapturingCpuBackend be(CapturingCpuBackend::Refuse::never, 0);
  const Trained got = train_on(be, d, o);
  EXPECT_EQ(got.r.metrics, ref.r.metrics);
  EXPECT_EQ(got.r.history.back().train_loss, ref.r.history.back().train_loss);
  EXPECT_EQ(be.step_graph_stats().captures, 12);  // 3 epochs × 4 steps
  EXPECT_TRUE(be.step_capture_failure().empty());
  EXPECT_NE(got.log.find("CUDA Graph steps: 12 captured, 0 replayed without capture\n"), std::string::npos) << got.log;
  EXPECT_EQ(got.log.find("warning:"), std::string::npos) << got.log;
}

// Every Adam-trained model under each protocol it takes, dense and sparse first layers, with
// weight decay (L2 and AdamW): a step's ops never wait for the device (this backend refuses a
// copy or an allocation inside a step, as the CUDA backend does), and holding them back until
// the step launches changes nothing. That is what the GPU's graph steps need of the models.
TEST(StepCapture, EveryModelsStepRunsHeldBack) {
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
    EXPECT_EQ(be.step_graph_stats().captures, steps);
    EXPECT_TRUE(be.step_capture_failure().empty()) << be.step_capture_failure();
  }
}

// The device refuses the third capture when it is launched (an instantiation failure): that
// step's held-back ops never ran, so they run once as plain launches, and so does every later
// step; the results equal the plain run's.
TEST(StepCapture, ARefusedInstantiationFallsBackToPlainLaunches) {
  const Dataset d = small_data();
  for (const char* kind : {"vae", "multvae", "cdae"}) {
    SCOPED_TRACE(kind);
    const TrainOptions o = small_run(kind);
    const Trained ref = reference(d, o);
    CapturingCpuBackend be(CapturingCpuBackend::Refuse::at_end, 3);
    const Trained got = train_on(be, d, o);
    EXPECT_EQ(got.r.metrics, ref.r.metrics);
    ASSERT_EQ(got.r.history.size(), ref.r.history.size());
    for (size_t e = 0; e < ref.r.history.size(); ++e)
      EXPECT_EQ(got.r.history[e].train_loss, ref.r.history[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(be.step_graph_stats().captures, 2);
    EXPECT_EQ(be.begun, 3);  // no capture is tried after the refusal
    EXPECT_EQ(be.drops, 1);  // and no kept graph is left to replay
    EXPECT_NE(be.step_capture_failure().find("cudaGraphInstantiate"), std::string::npos);
    const std::string& log = got.log;
    const size_t w = log.find("warning: the device refused a CUDA Graph step (test.cu:1: cudaGraphInstantiate");
    EXPECT_NE(w, std::string::npos) << log;
    EXPECT_EQ(log.find("warning:", w + 1), std::string::npos) << "warned once\n" << log;
    EXPECT_NE(log.find("CUDA Graph steps: 2 captured, 0 replayed without capture; off after the device refused a step (see above)"),
              std::string::npos)
        << log;
    // A later run on the backend (as compare's next model) makes plain launches from the start
    // and says why.
    const Trained next = train_on(be, d, o);
    EXPECT_EQ(next.r.metrics, ref.r.metrics);
    EXPECT_EQ(be.begun, 3);
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
