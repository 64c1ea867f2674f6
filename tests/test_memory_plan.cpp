// The memory plan: its per-model formulas against what the models really allocate (a backend
// that counts every allocation), the numbers for the ml-20m-shaped Mult-VAE, the refusal
// message, and the plan line the trainer prints.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "backend/backend.h"
#include "data/dataset.h"
#include "models/model.h"
#include "train/memory_plan.h"
#include "train/trainer.h"

namespace vae {
namespace {

// The CPU backend with a running total of the bytes it was asked to allocate.
class CountingBackend final : public Backend<float> {
 public:
  int64_t allocated = 0;

  std::string name() const override { return "cpu"; }
  GemmPrecision gemm_precision() const override { return cpu_->gemm_precision(); }
  Buffer alloc_bytes(size_t bytes) override {
    allocated += static_cast<int64_t>(bytes);
    return cpu_->alloc_bytes(bytes);
  }
  void copy_to_backend(void* d, const void* s, size_t n) override { cpu_->copy_to_backend(d, s, n); }
  void copy_to_host(void* d, const void* s, size_t n) override { cpu_->copy_to_host(d, s, n); }
  void copy_within(void* d, const void* s, size_t n) override { cpu_->copy_within(d, s, n); }
  void fill(Mat<float> x, float v) override { cpu_->fill(x, v); }
  void axpy(float a, CMat<float> x, Mat<float> y) override { cpu_->axpy(a, x, y); }
  void gemm(bool ta, bool tb, float al, CMat<float> a, CMat<float> b, float be, Mat<float> c) override {
    cpu_->gemm(ta, tb, al, a, b, be, c);
  }
  void bias_act(CMat<float> x, CMat<float> b, Act a, Mat<float> y) override { cpu_->bias_act(x, b, a, y); }
  void bias_act_backward(CMat<float> dy, CMat<float> y, Act a, Mat<float> dx, Mat<float> db) override {
    cpu_->bias_act_backward(dy, y, a, dx, db);
  }
  void gather_rows_add(CMat<float> t, CMat<int32_t> r, Mat<float> y) override { cpu_->gather_rows_add(t, r, y); }
  void scatter_rows_add(CMat<float> dy, CMat<int32_t> r, Mat<float> dt) override { cpu_->scatter_rows_add(dy, r, dt); }
  void mse_loss(CMat<float> p, CMat<float> t, bool m, float s, Mat<float> d, Mat<float> l) override {
    cpu_->mse_loss(p, t, m, s, d, l);
  }
  void multinomial_nll(CMat<float> x, CMat<float> t, float s, Mat<float> d, Mat<float> l) override {
    cpu_->multinomial_nll(x, t, s, d, l);
  }
  void bce_logits(CMat<float> x, CMat<float> t, float s, Mat<float> d, Mat<float> l) override {
    cpu_->bce_logits(x, t, s, d, l);
  }
  void reparameterize(CMat<float> ml, uint64_t seed, uint64_t st, Mat<float> eps, Mat<float> z) override {
    cpu_->reparameterize(ml, seed, st, eps, z);
  }
  void reparam_kl_backward(CMat<float> ml, CMat<float> eps, CMat<float> dz, float k, Mat<float> d,
                           Mat<float> l) override {
    cpu_->reparam_kl_backward(ml, eps, dz, k, d, l);
  }
  void regularize(CMat<float> p, float lam, Reg k, Mat<float> g, Mat<float> l) override {
    cpu_->regularize(p, lam, k, g, l);
  }
  void dropout(CMat<float> x, float q, uint64_t seed, uint64_t st, Mat<float> y) override {
    cpu_->dropout(x, q, seed, st, y);
  }
  void l2_normalize_rows(CMat<float> x, Mat<float> y) override { cpu_->l2_normalize_rows(x, y); }
  void csr_rows_to_dense(CsrView<float> c, CMat<int32_t> r, Mat<float> y) override { cpu_->csr_rows_to_dense(c, r, y); }
  void take_rows(CMat<int32_t> s, int64_t o, Mat<int32_t> d) override { cpu_->take_rows(s, o, d); }
  void csr_row_norms(CsrView<float> c, CMat<int32_t> r, Mat<double> n) override { cpu_->csr_row_norms(c, r, n); }
  void csr_linear_forward(const CsrBatch<float>& x, CMat<float> w, Mat<float> y) override {
    cpu_->csr_linear_forward(x, w, y);
  }
  void csr_linear_weight_grad(const CsrBatch<float>& x, CMat<float> dy, Mat<float> dw) override {
    cpu_->csr_linear_weight_grad(x, dy, dw);
  }
  void adam_step(Mat<float> p, CMat<float> g, Mat<float> m, Mat<float> v, const AdamConfig& c, int64_t s) override {
    cpu_->adam_step(p, g, m, v, c, s);
  }
  void topk(CMat<float> s, CsrView<float> e, CMat<int32_t> er, int k, Mat<int32_t> i, Mat<float> v) override {
    cpu_->topk(s, e, er, k, i, v);
  }
  void heldout_metrics(CMat<int32_t> i, CsrView<float> t, CMat<int32_t> tr, const std::vector<int>& ks,
                       Mat<float> o) override {
    cpu_->heldout_metrics(i, t, tr, ks, o);
  }
  void graded_metrics(CMat<float> s, CMat<float> t, int k, Mat<float> o) override { cpu_->graded_metrics(s, t, k, o); }
  void rating_errors(CMat<float> p, CsrView<float> t, CMat<int32_t> tr, float lo, float hi, Mat<float> o) override {
    cpu_->rating_errors(p, t, tr, lo, hi, o);
  }

 private:
  std::unique_ptr<Backend<float>> cpu_ = make_cpu_backend<float>();
};

ModelConfig cfg_of(const std::string& kind, int64_t items, int64_t rows) {
  ModelConfig c;
  c.kind = kind;
  c.num_inputs = items;
  c.num_rows = rows;
  return c;
}

// Every model, defaults and explicit sizes, dense and sparse: parameters × 2 (weights and
// gradients) + work buffers = exactly what its constructor allocates.
TEST(MemoryPlan, FormulasMatchWhatTheModelsAllocate) {
  std::vector<ModelConfig> cfgs;
  for (const char* k : {"vae", "multvae", "cdae", "autorec", "i-autorec"}) cfgs.push_back(cfg_of(k, 37, 19));
  ModelConfig a = cfg_of("autorec", 41, 12);
  a.loss = "dense";
  cfgs.push_back(a);
  ModelConfig m = cfg_of("multvae", 53, 8);
  m.hidden = 17;
  m.latent = 5;
  cfgs.push_back(m);
  ModelConfig v = cfg_of("vae", 29, 8);
  v.latent = 3;
  cfgs.push_back(v);
  ModelConfig c = cfg_of("cdae", 31, 44);
  c.hidden = 7;
  cfgs.push_back(c);
  for (const ModelConfig& base : cfgs)
    for (bool sparse : {false, true}) {
      SCOPED_TRACE(base.kind + (sparse ? " sparse" : " dense") + " I=" + std::to_string(base.num_inputs));
      ModelConfig cfg = base;
      cfg.sparse_input = sparse ? "on" : "off";
      CountingBackend be;
      const int64_t batch = 13;
      auto model = make_model<float>(be, cfg, batch);
      EXPECT_EQ(model->sparse_input(), sparse);
      EXPECT_EQ(model->num_params(), planned_param_count(cfg));
      EXPECT_EQ(be.allocated, 2 * 4 * planned_param_count(cfg) + planned_model_buffer_bytes(cfg, batch, sparse));
    }
  EXPECT_THROW(planned_param_count(cfg_of("ease", 5, 5)), UsageError);
}

// Mult-VAE [I-600-200-600-I] on the ml-20m shape (20 108 items after the heldout filter),
// batch 500, heldout cut-offs {20, 50, 100}: the numbers by hand.
TEST(MemoryPlan, MultVaeMl20mShape) {
  const int64_t I = 20108, H = 600, L = 200, B = 500;
  ModelConfig c = cfg_of("multvae", I, 116677);
  const int64_t P = (H * I + H) + (2 * L * H + 2 * L) + (H * L + H) + (I * H + I);  // 24 511 308
  EXPECT_EQ(planned_param_count(c), P);
  // x, logits, g_logits (+ xin | the sparse path's row norms in double) | e1, d1, g_d1, g_e1 |
  // eps, z, g_z | ml, g_ml; select_mu 2L × L.
  EXPECT_EQ(planned_model_buffer_bytes(c, B, false), 4 * (B * (4 * I + 4 * H + 7 * L) + 2 * L * L));
  EXPECT_EQ(planned_model_buffer_bytes(c, B, true), 4 * (B * (3 * I + 4 * H + 7 * L) + 2 * L * L) + 8 * B);
  const MemoryPlan p = plan_memory(c, B, true, 100, 3, 123456789);
  EXPECT_EQ(p.parameters, 3 * 4 * P);  // 294 135 696 bytes = 280.5 MiB
  EXPECT_EQ(p.adam, 2 * 4 * P);        // 186.7 MiB
  const int64_t eval = B * (2 * I * 4 + 100 * 8 + 9 * 4) + 8;
  EXPECT_EQ(p.batch_dense, 4 * (B * (4 * I + 4 * H + 7 * L) + 2 * L * L) + eval);
  EXPECT_EQ(p.batch_sparse, 4 * (B * (3 * I + 4 * H + 7 * L) + 2 * L * L) + 8 * B + eval);
  EXPECT_EQ(p.batch_dense - p.batch_sparse, 4 * B * (I - 2));  // the dense transformed input, less the norms
  EXPECT_EQ(p.dataset, 123456789);
  EXPECT_EQ(p.total(), p.parameters + p.adam + p.batch_sparse + p.dataset);
  const std::string line = format_memory_plan(p, "NVIDIA H200", true, size_t{140} << 30);
  EXPECT_EQ(line.rfind("memory plan: weights+gradients+best copy 280.5 MiB, Adam state 187.0 MiB, batch buffers ", 0), 0u) << line;
  EXPECT_NE(line.find("of 143360.0 MiB free on NVIDIA H200"), std::string::npos) << line;
  // On the host the process's own resident memory is named beside the plan (what a user's
  // measurement of the run adds up to).
  const std::string host = format_memory_plan(p, "cpu", false, 0);
  EXPECT_NE(host.find("(host memory, cpu; the process holds "), std::string::npos) << host;
  const int64_t rss = process_resident_bytes();
  EXPECT_GT(rss, 1 << 20);
  EXPECT_LT(rss, int64_t{1} << 40);

  // An ml-20m training set (10M ratings, 116 677 rows): 8 bytes a rating, 8 a row.
  Csr m;
  m.rows = 3;
  m.cols = 4;
  m.indptr = {0, 1, 1, 3};
  m.indices = {0, 1, 3};
  m.values = {1, 1, 1};
  EXPECT_EQ(csr_device_bytes(m), 4 * 8 + 3 * 8);
}

TEST(MemoryPlan, RefusalNamesWhatToReduce) {
  ModelConfig c = cfg_of("multvae", 20108, 116677);
  const MemoryPlan dense = plan_memory(c, 500, false, 100, 3, 100 << 20);
  EXPECT_NO_THROW(check_memory_plan(dense, "GPU", size_t{8} << 30));
  try {
    check_memory_plan(dense, "Tiny GPU", size_t{600} << 20);
    FAIL() << "no exception";
  } catch (const UsageError& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("Tiny GPU"), std::string::npos) << w;
    EXPECT_NE(w.find("--batch-size"), std::string::npos) << w;
    EXPECT_NE(w.find("--hidden"), std::string::npos) << w;
    EXPECT_NE(w.find("--sparse-input on"), std::string::npos) << w;
  }
  const MemoryPlan sparse = plan_memory(c, 500, true, 100, 3, 100 << 20);
  try {
    check_memory_plan(sparse, "Tiny GPU", size_t{600} << 20);
    FAIL() << "no exception";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()).find("--sparse-input"), std::string::npos) << e.what();  // already on
  }
  // At batch 1 a smaller batch is no advice: the latent size is (its buffers are L x L).
  ModelConfig wide = cfg_of("vae", 1682, 943);
  wide.latent = 200000;
  const MemoryPlan one = plan_memory(wide, 1, false, 100, 3, 1 << 20);
  try {
    check_memory_plan(one, "Tiny GPU", size_t{600} << 20);
    FAIL() << "no exception";
  } catch (const UsageError& e) {
    const std::string w = e.what();
    EXPECT_EQ(w.find("Reduce --batch-size"), std::string::npos) << w;
    EXPECT_NE(w.find("are at --batch-size 1 already"), std::string::npos) << w;
    EXPECT_NE(w.find("--latent (now 200000"), std::string::npos) << w;
  }
}

// The trainer prints the plan before training and runs the sparse path when asked; sparse and
// dense runs reach the same ranking quality.
TEST(MemoryPlan, TrainerPrintsThePlanAndHonoursSparseInput) {
  SyntheticSpec spec;
  spec.users = 300;
  spec.items = 400;
  spec.ratings = 12000;
  const Dataset d = make_synthetic(spec);
  double ndcg[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    TrainOptions o;
    o.protocol = "heldout";
    o.epochs = 3;
    o.model.kind = "multvae";
    o.model.hidden = 32;
    o.model.latent = 8;
    o.batch_size = 64;
    o.sparse_input = i == 0 ? "off" : "on";
    auto be = make_cpu_backend<float>();
    std::ostringstream log;
    const TrainResult r = run_experiment(*be, d, o, log);
    EXPECT_EQ(r.sparse_input, i == 1);
    EXPECT_NE(log.str().find("memory plan: weights+gradients+best copy "), std::string::npos) << log.str();
    EXPECT_NE(log.str().find("(host memory, cpu; "), std::string::npos) << log.str();
    EXPECT_EQ(r.memory_plan.rfind("memory plan:", 0), 0u);
    EXPECT_NE(log.str().find(i == 0 ? "dense input (off)" : "sparse input (on)"), std::string::npos) << log.str();
    ndcg[i] = r.metric("ndcg@100");
  }
  EXPECT_NEAR(ndcg[1], ndcg[0], 0.01);
  TrainOptions bad;
  bad.model.kind = "multvae";
  bad.sparse_input = "maybe";
  EXPECT_THROW(resolve_defaults(bad), UsageError);
}

}  // namespace
}  // namespace vae
