// Models written over the op set: whole-loss finite-difference gradient checks in double
// precision, float vs double agreement, deterministic noise, training progress.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/backend.h"
#include "core/philox.h"
#include "data/dataset.h"
#include "models/model.h"

namespace {

using namespace vae;

// A small random rating matrix (rows × cols), ~40 % dense, ratings 1..5; every row non-empty.
Csr random_ratings(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<int32_t> r, c;
  std::vector<float> v;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const uint64_t k = static_cast<uint64_t>(i * cols + j);
      if (j != i % cols && philox_uniform(seed, 99, k) > 0.4f) continue;
      r.push_back(static_cast<int32_t>(i));
      c.push_back(static_cast<int32_t>(j));
      v.push_back(static_cast<float>(1 + philox_u32(seed, 98, k) % 5));
    }
  }
  return Csr::from_triplets(rows, cols, r, c, v);
}

// Two taste groups: a row of group g = r % 2 holds most items with j % 2 == g and few others,
// so there is structure a small bottleneck can learn.
Csr grouped_ratings(int64_t rows, int64_t cols, uint64_t seed) {
  std::vector<int32_t> r, c;
  std::vector<float> v;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const uint64_t k = static_cast<uint64_t>(i * cols + j);
      const bool liked = j % 2 == i % 2;
      if (philox_uniform(seed, 97, k) > (liked ? 0.8f : 0.1f)) continue;
      r.push_back(static_cast<int32_t>(i));
      c.push_back(static_cast<int32_t>(j));
      v.push_back(liked ? 4.0f + static_cast<float>(philox_u32(seed, 96, k) % 2) : 1.0f + static_cast<float>(philox_u32(seed, 96, k) % 2));
    }
  }
  return Csr::from_triplets(rows, cols, r, c, v);
}

Csr binary(Csr m) {
  std::fill(m.values.begin(), m.values.end(), 1.0f);
  return m;
}

template <typename T>
struct Fixture {
  std::unique_ptr<Backend<T>> be;
  CsrTensor<T> input;
  Tensor<int32_t> rows;
  std::unique_ptr<Model<T>> model;

  Fixture(const ModelConfig& cfg0, const Csr& data, int64_t max_batch, uint64_t seed = 7,
          GemmPrecision precision = GemmPrecision::fp32)
      : be(make_cpu_backend<T>(precision)) {
    ModelConfig cfg = cfg0;
    cfg.num_inputs = data.cols;
    cfg.num_rows = data.rows;
    input = be->upload_csr(data);
    std::vector<int32_t> idx(static_cast<size_t>(data.rows));
    std::iota(idx.begin(), idx.end(), 0);
    std::reverse(idx.begin(), idx.end());  // a batch order unlike the storage order
    rows = be->template upload<int32_t>(idx, data.rows, 1);
    model = make_model<T>(*be, cfg, max_batch);
    model->init(seed);
  }
  Batch<T> batch(int64_t n, bool with_users = true) const {
    Batch<T> b;
    b.input = input.view();
    b.rows = rows.cmat().rows_slice(0, n);
    if (with_users) b.users = b.rows;
    b.n = n;
    return b;
  }
  double loss(const Batch<T>& b, int64_t step, bool train) {
    Tensor<T> acc = be->zeros(1, 1);
    model->forward_backward(b, step, train, acc.mat());
    return be->read_scalar(acc.cmat());
  }
};

ModelConfig config(const std::string& kind) {
  ModelConfig c;
  c.kind = kind;
  if (kind == "vae") {
    c.latent = 3;
    c.beta = 0.7;
  } else if (kind == "multvae") {
    c.hidden = 6;
    c.latent = 3;
    c.beta = 0.3;
  } else if (kind == "cdae") {
    c.hidden = 5;
    c.lambda = 0.05;
  } else {
    c.hidden = 6;
    c.lambda = 0.3;
  }
  return c;
}

struct GradCase {
  std::string name;
  ModelConfig cfg;
  bool binary_input = false;
};

// Test names show the case, not its bytes.
void PrintTo(const GradCase& c, std::ostream* os) { *os << c.name; }

std::vector<GradCase> grad_cases() {
  std::vector<GradCase> v;
  v.push_back({"vae", config("vae")});
  {
    GradCase g{"vae_annealed", config("vae")};
    g.cfg.anneal_steps = 10;  // β_t = 0.7 · 3/10 at step 3
    v.push_back(g);
  }
  v.push_back({"autorec_masked", config("autorec")});
  {
    GradCase g{"autorec_dense", config("autorec")};
    g.cfg.loss = "dense";
    v.push_back(g);
  }
  {
    GradCase g{"autorec_relu_sigmoid", config("autorec")};
    g.cfg.act_hidden = "relu";
    g.cfg.act_out = "sigmoid";
    v.push_back(g);
  }
  v.push_back({"multvae", config("multvae"), true});
  v.push_back({"cdae_bce", config("cdae"), true});
  {
    GradCase g{"cdae_mse", config("cdae"), true};
    g.cfg.loss = "mse";
    v.push_back(g);
  }
  return v;
}

class ModelGradient : public ::testing::TestWithParam<GradCase> {};

// Central differences of the whole batch loss (noise fixed by the step) against
// forward_backward's gradient, on a spread of parameters from every tensor.
TEST_P(ModelGradient, WholeLossMatchesFiniteDifferences) {
  const GradCase& gc = GetParam();
  Csr data = random_ratings(9, 11, 3);
  if (gc.binary_input) data = binary(data);
  Fixture<double> f(gc.cfg, data, 9);
  const Batch<double> b = f.batch(7);
  const int64_t step = 3;
  f.loss(b, step, true);
  const std::vector<double> grad = f.be->download(CMat<double>(f.model->grad_buffer()));
  std::vector<double> theta = f.be->download(CMat<double>(f.model->param_buffer()));
  const double h = 1e-6;
  int checked = 0, bad = 0;
  for (const ParamInfo& p : f.model->params()) {
    const int64_t stride = std::max<int64_t>(1, p.size() / 25);
    for (int64_t i = 0; i < p.size(); i += stride) {
      const int64_t k = p.offset + i;
      const double saved = theta[k];
      theta[k] = saved + h;
      f.be->upload_into(theta, f.model->param_buffer());
      const double lp = f.loss(b, step, true);
      theta[k] = saved - h;
      f.be->upload_into(theta, f.model->param_buffer());
      const double lm = f.loss(b, step, true);
      theta[k] = saved;
      const double fd = (lp - lm) / (2 * h);
      const double tol = 1e-6 + 1e-5 * std::max(std::fabs(fd), std::fabs(grad[k]));
      ++checked;
      if (std::fabs(fd - grad[k]) > tol && bad++ < 5)
        ADD_FAILURE() << gc.name << " " << p.name << "[" << i << "]: analytic " << grad[k] << " vs fd " << fd;
    }
  }
  f.be->upload_into(theta, f.model->param_buffer());
  EXPECT_EQ(bad, 0) << bad << " of " << checked << " gradient entries differ";
  EXPECT_GT(checked, 40);
  // Every gradient entry is written (no stale values from an earlier step): a second call
  // after poisoning gives the same buffer.
  f.be->fill(f.model->grad_buffer(), std::nan(""));
  f.loss(b, step, true);
  const std::vector<double> again = f.be->download(CMat<double>(f.model->grad_buffer()));
  for (size_t k = 0; k < again.size(); ++k) ASSERT_EQ(again[k], grad[k]) << "entry " << k;
}

INSTANTIATE_TEST_SUITE_P(AllModels, ModelGradient, ::testing::ValuesIn(grad_cases()),
                         [](const auto& info) { return info.param.name; });

// The same model in float and double from the same seed: losses and gradients agree to float
// precision, so the double instantiation really checks the float code path.
TEST(ModelPrecision, FloatMatchesDouble) {
  for (const GradCase& gc : grad_cases()) {
    Csr data = random_ratings(9, 11, 5);
    if (gc.binary_input) data = binary(data);
    Fixture<double> fd(gc.cfg, data, 9);
    Fixture<float> ff(gc.cfg, data, 9);
    const double ld = fd.loss(fd.batch(9), 2, true), lf = ff.loss(ff.batch(9), 2, true);
    EXPECT_NEAR(lf, ld, 1e-4 * std::fabs(ld) + 1e-5) << gc.name;
    const auto gd = fd.be->download(CMat<double>(fd.model->grad_buffer()));
    const auto gf = ff.be->download(CMat<float>(ff.model->grad_buffer()));
    double num = 0, den = 0;
    for (size_t k = 0; k < gd.size(); ++k) {
      num += (gf[k] - gd[k]) * (gf[k] - gd[k]);
      den += gd[k] * gd[k];
    }
    EXPECT_LT(std::sqrt(num / std::max(den, 1e-30)), 1e-4) << gc.name;
  }
}

TEST(ModelShapes, ParameterLayoutsFollowTheArchitectures) {
  const int64_t I = 11;
  Csr data = random_ratings(9, I, 1);
  {
    ModelConfig c;
    c.kind = "vae";  // notebook defaults: 512, 256, L = 64
    Fixture<float> f(c, data, 4);
    const int64_t L = 64;
    EXPECT_EQ(f.model->latent_dim(), L);
    EXPECT_EQ(f.model->num_params(), (I * 512 + 512) + (512 * 256 + 256) + (256 * 2 * L + 2 * L) +
                                         (L * 256 + 256) + (256 * 512 + 512) + (512 * I + I));
  }
  {
    ModelConfig c;
    c.kind = "multvae";  // [I-600-200-600-I]
    Fixture<float> f(c, data, 4);
    EXPECT_EQ(f.model->num_params(), (I * 600 + 600) + (600 * 400 + 400) + (200 * 600 + 600) + (600 * I + I));
    EXPECT_DOUBLE_EQ(f.model->kl_weight(0), 0.0);
  }
  {
    ModelConfig c;
    c.kind = "autorec";
    Fixture<float> f(c, data, 4);
    EXPECT_EQ(f.model->num_params(), 2 * I * 500 + 500 + I);
    c.loss = "dense";  // the notebook's 10-unit bottleneck
    Fixture<float> g(c, data, 4);
    EXPECT_EQ(g.model->num_params(), 2 * I * 10 + 10 + I);
  }
  {
    ModelConfig c;
    c.kind = "cdae";
    Fixture<float> f(c, data, 4);
    EXPECT_EQ(f.model->num_params(), 2 * I * 50 + 50 + I + 9 * 50);
  }
  ModelConfig bad;
  bad.kind = "autorec";
  bad.loss = "hinge";
  EXPECT_THROW(Fixture<float>(bad, data, 4), UsageError);
  bad.kind = "nonsense";
  EXPECT_THROW(Fixture<float>(bad, data, 4), UsageError);
}

// Linear KL annealing: the notebook VAE scales β; Mult-VAE caps step/anneal at β (Liang et al.).
TEST(ModelAnnealing, KlWeightSchedules) {
  Csr data = random_ratings(5, 6, 1);
  ModelConfig c = config("vae");
  c.beta = 0.5;
  c.anneal_steps = 100;
  Fixture<float> v(c, data, 4);
  EXPECT_DOUBLE_EQ(v.model->kl_weight(0), 0.0);
  EXPECT_DOUBLE_EQ(v.model->kl_weight(50), 0.25);
  EXPECT_DOUBLE_EQ(v.model->kl_weight(1000), 0.5);
  ModelConfig m = config("multvae");
  m.beta = 0.2;
  m.anneal_steps = 200000;
  Fixture<float> mv(m, binary(data), 4);
  EXPECT_DOUBLE_EQ(mv.model->kl_weight(20000), 0.1);
  EXPECT_DOUBLE_EQ(mv.model->kl_weight(40000), 0.2);
  EXPECT_DOUBLE_EQ(mv.model->kl_weight(100000), 0.2);
  // Defaults only where nothing was given: the notebook VAE's β 1; Mult-VAE's 0.2 annealed over
  // 200 000 steps (or the given steps). A given β — 1 included — is kept, constant.
  ModelConfig vd = config("vae");
  vd.beta = -1;
  EXPECT_DOUBLE_EQ(Fixture<float>(vd, data, 4).model->kl_weight(7), 1.0);
  ModelConfig md = config("multvae");
  md.beta = -1;
  Fixture<float> mdf(md, binary(data), 4);
  EXPECT_DOUBLE_EQ(mdf.model->config().beta, 0.2);
  EXPECT_EQ(mdf.model->config().anneal_steps, 200000);
  md.anneal_steps = 1000;
  EXPECT_DOUBLE_EQ(Fixture<float>(md, binary(data), 4).model->kl_weight(100), 0.1);  // min(0.2, 100 / 1000)
  md.anneal_steps = 0;  // given as 0: no annealing, the default beta from the first step
  Fixture<float> off(md, binary(data), 4);
  EXPECT_EQ(off.model->config().anneal_steps, 0);
  EXPECT_DOUBLE_EQ(off.model->kl_weight(0), 0.2);
  EXPECT_DOUBLE_EQ(off.model->kl_weight(5), 0.2);
  ModelConfig one = config("multvae");
  one.beta = 1.0;
  Fixture<float> onef(one, binary(data), 4);
  EXPECT_DOUBLE_EQ(onef.model->config().beta, 1.0);
  EXPECT_EQ(onef.model->config().anneal_steps, 0);
  EXPECT_DOUBLE_EQ(onef.model->kl_weight(3), 1.0);
}

// Noise is a function of (seed, step): the same step repeats exactly, another step differs,
// and evaluation/predict are deterministic (z = μ, no dropout).
TEST(ModelNoise, DeterministicPerStepAndNoiseFreeEvaluation) {
  for (const char* kind : {"vae", "multvae", "cdae"}) {
    Csr data = binary(random_ratings(8, 10, 2));
    Fixture<float> f(config(kind), data, 8);
    const Batch<float> b = f.batch(8);
    const double a1 = f.loss(b, 5, true), a2 = f.loss(b, 5, true), a3 = f.loss(b, 6, true);
    EXPECT_EQ(a1, a2) << kind;
    EXPECT_NE(a1, a3) << kind;
    EXPECT_EQ(f.loss(b, 5, false), f.loss(b, 6, false)) << kind;
    Tensor<float> p1 = f.be->alloc<float>(8, 10), p2 = f.be->alloc<float>(8, 10);
    f.model->predict(b, p1.mat());
    f.loss(b, 9, true);  // a training pass in between must not leak into predict
    f.model->predict(b, p2.mat());
    EXPECT_EQ(f.be->download(p1.cmat()), f.be->download(p2.cmat())) << kind;
  }
}

// predict of a sub-batch equals the corresponding rows of a full-batch predict (work buffers
// sliced correctly), and the VAE's latent code is exposed.
TEST(ModelPredict, RowsIndependentOfBatchComposition) {
  for (const char* kind : {"vae", "autorec", "multvae", "cdae"}) {
    Csr data = random_ratings(8, 10, 4);
    if (std::string(kind) == "multvae" || std::string(kind) == "cdae") data = binary(data);
    Fixture<double> f(config(kind), data, 8);
    Tensor<double> full = f.be->alloc<double>(8, 10), part = f.be->alloc<double>(3, 10);
    f.model->predict(f.batch(8), full.mat());
    f.model->predict(f.batch(3), part.mat());
    const auto a = f.be->download(full.cmat()), c = f.be->download(part.cmat());
    for (size_t k = 0; k < c.size(); ++k) ASSERT_NEAR(a[k], c[k], 1e-12) << kind << " entry " << k;
  }
  Csr data = random_ratings(8, 10, 4);
  Fixture<double> f(config("vae"), data, 8);
  Tensor<double> ml = f.be->alloc<double>(8, 6);
  f.model->encode(f.batch(8), ml.mat());
  const auto h = f.be->download(ml.cmat());
  EXPECT_TRUE(std::all_of(h.begin(), h.end(), [](double x) { return std::isfinite(x); }));
  ModelConfig ac = config("autorec");
  Fixture<double> a(ac, data, 8);
  EXPECT_THROW(a.model->encode(a.batch(8), ml.mat()), VaeError);
}

// CDAE's per-user vector changes the scores of training users only when their ids are given.
TEST(ModelCdae, UserVectorsEnterOnlyWithUserIds) {
  Csr data = binary(random_ratings(6, 9, 8));
  Fixture<double> f(config("cdae"), data, 6);
  // Make the user table non-trivial: a few Adam steps.
  Tensor<double> m = f.be->zeros(1, f.model->num_params()), v = f.be->zeros(1, f.model->num_params());
  AdamConfig ad;
  ad.lr = 0.05;
  for (int s = 1; s <= 5; ++s) {
    f.loss(f.batch(6), s, true);
    f.be->adam_step(f.model->param_buffer(), f.model->grad_buffer(), m.mat(), v.mat(), ad, s);
  }
  Tensor<double> with = f.be->alloc<double>(6, 9), without = f.be->alloc<double>(6, 9);
  f.model->predict(f.batch(6, true), with.mat());
  f.model->predict(f.batch(6, false), without.mat());
  EXPECT_NE(f.be->download(with.cmat()), f.be->download(without.cmat()));
  // Only the batch's users receive a user-vector gradient.
  f.loss(f.batch(2), 9, true);
  const auto g = f.be->download(CMat<double>(f.model->grad("user.embedding")));
  const int64_t H = f.model->param("user.embedding").cols;
  // batch(2) holds rows 5 and 4 (reversed order); rows 0..3 get only the L2 term λ·V.
  const auto V = f.be->download(CMat<double>(f.model->param("user.embedding")));
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t j = 0; j < H; ++j) EXPECT_NEAR(g[r * H + j], 0.05 * V[r * H + j], 1e-12);
}

// A few hundred Adam steps reduce every model's training loss substantially.
TEST(ModelTraining, AdamReducesTheLoss) {
  for (const char* kind : {"vae", "autorec", "multvae", "cdae"}) {
    Csr data = grouped_ratings(32, 40, 11);
    if (std::string(kind) == "multvae" || std::string(kind) == "cdae") data = binary(data);
    ModelConfig c = config(kind);
    Fixture<float> f(c, data, 32);
    Tensor<float> m = f.be->zeros(1, f.model->num_params()), v = f.be->zeros(1, f.model->num_params());
    AdamConfig ad;
    ad.lr = 3e-3;
    const Batch<float> b = f.batch(32);
    const double first = f.loss(b, 0, false);
    for (int s = 1; s <= 150; ++s) {
      f.loss(b, s, true);
      f.be->adam_step(f.model->param_buffer(), f.model->grad_buffer(), m.mat(), v.mat(), ad, s);
    }
    const double last = f.loss(b, 0, false);
    // The multinomial NLL of a binary row with n items is at least n·log n (p uniform over its
    // items), so Mult-VAE is judged on the reducible part of its loss.
    double floor = 0;
    if (std::string(kind) == "multvae")
      for (int64_t r = 0; r < data.rows; ++r)
        floor += static_cast<double>(data.row_nnz(r)) * std::log(static_cast<double>(data.row_nnz(r))) / 32.0;
    EXPECT_TRUE(std::isfinite(last)) << kind;
    EXPECT_LT(last - floor, 0.8 * (first - floor)) << kind << ": " << first << " -> " << last << " (floor " << floor << ")";
  }
}

// The sparse first layer (CSR batch input, sparse_input "on") against the dense one from the
// same initialisation, batch and step: same dropout mask, same transforms, so the losses,
// every gradient entry and the predictions agree to double rounding. One batch row is empty.
TEST(ModelSparseInput, SameLossGradientsAndPredictionsAsDense) {
  for (const GradCase& gc : grad_cases()) {
    SCOPED_TRACE(gc.name);
    Csr full = random_ratings(9, 11, 3);
    std::vector<int32_t> r, c;
    std::vector<float> v;
    for (int64_t i = 0; i < full.rows; ++i)
      for (int64_t e = full.indptr[i]; e < full.indptr[i + 1]; ++e) {
        if (i == 4) continue;  // row 4 stays empty (batch row 4 of the reversed order)
        r.push_back(static_cast<int32_t>(i));
        c.push_back(full.indices[e]);
        v.push_back(full.values[e]);
      }
    Csr data = Csr::from_triplets(full.rows, full.cols, r, c, v);
    if (gc.binary_input) data = binary(data);
    ModelConfig dense_cfg = gc.cfg, sparse_cfg = gc.cfg;
    dense_cfg.sparse_input = "off";
    sparse_cfg.sparse_input = "on";
    Fixture<double> fd(dense_cfg, data, 9), fs(sparse_cfg, data, 9);
    ASSERT_FALSE(fd.model->sparse_input());
    ASSERT_TRUE(fs.model->sparse_input());
    for (int64_t n : {int64_t{7}, int64_t{9}}) {
      const double ld = fd.loss(fd.batch(n), 3, true), ls = fs.loss(fs.batch(n), 3, true);
      EXPECT_NEAR(ls, ld, 1e-12 * std::fabs(ld)) << "training loss, batch " << n;
      const auto gd = fd.be->download(CMat<double>(fd.model->grad_buffer()));
      const auto gs = fs.be->download(CMat<double>(fs.model->grad_buffer()));
      ASSERT_EQ(gd.size(), gs.size());
      double gmax = 0;
      for (double x : gd) gmax = std::max(gmax, std::fabs(x));
      for (size_t k = 0; k < gd.size(); ++k)
        ASSERT_NEAR(gs[k], gd[k], 1e-12 * gmax + 1e-12 * std::fabs(gd[k])) << "gradient entry " << k << ", batch " << n;
      const double ed = fd.loss(fd.batch(n), 0, false), es = fs.loss(fs.batch(n), 0, false);
      EXPECT_NEAR(es, ed, 1e-12 * std::fabs(ed)) << "evaluation loss";
      Tensor<double> pd = fd.be->alloc<double>(n, 11), ps = fs.be->alloc<double>(n, 11);
      fd.model->predict(fd.batch(n), pd.mat());
      fs.model->predict(fs.batch(n), ps.mat());
      const auto a = fd.be->download(pd.cmat()), b = fs.be->download(ps.cmat());
      for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(b[k], a[k], 1e-12 * (1 + std::fabs(a[k]))) << "prediction " << k;
    }
    if (fd.model->latent_dim() > 0) {
      Tensor<double> md = fd.be->alloc<double>(9, 2 * fd.model->latent_dim());
      Tensor<double> ms = fs.be->alloc<double>(9, 2 * fs.model->latent_dim());
      fd.model->encode(fd.batch(9), md.mat());
      fs.model->encode(fs.batch(9), ms.mat());
      const auto a = fd.be->download(md.cmat()), b = fs.be->download(ms.cmat());
      for (size_t k = 0; k < a.size(); ++k) ASSERT_NEAR(b[k], a[k], 1e-12 * (1 + std::fabs(a[k]))) << "latent " << k;
    }
  }
}

// One model trained on dense and on sparse input side by side, 30 Adam steps on the same data:
// each step's two losses and the two final weight vectors.
struct DenseAndSparse {
  std::vector<double> dense_loss, sparse_loss;
  std::vector<float> dense_weights, sparse_weights;
};
DenseAndSparse train_dense_and_sparse(const std::string& kind, GemmPrecision precision) {
  Csr data = grouped_ratings(24, 30, 5);
  if (kind == "multvae" || kind == "cdae") data = binary(data);
  ModelConfig a = config(kind), b = config(kind);
  a.sparse_input = "off";
  b.sparse_input = "on";
  Fixture<float> fd(a, data, 24, 7, precision), fs(b, data, 24, 7, precision);
  EXPECT_TRUE(fs.model->sparse_input() && !fd.model->sparse_input()) << kind;
  Tensor<float> md = fd.be->zeros(1, fd.model->num_params()), vd = fd.be->zeros(1, fd.model->num_params());
  Tensor<float> ms = fs.be->zeros(1, fs.model->num_params()), vs = fs.be->zeros(1, fs.model->num_params());
  AdamConfig ad;
  ad.lr = 3e-3;
  DenseAndSparse out;
  for (int s = 1; s <= 30; ++s) {
    out.dense_loss.push_back(fd.loss(fd.batch(24), s, true));
    out.sparse_loss.push_back(fs.loss(fs.batch(24), s, true));
    fd.be->adam_step(fd.model->param_buffer(), fd.model->grad_buffer(), md.mat(), vd.mat(), ad, s);
    fs.be->adam_step(fs.model->param_buffer(), fs.model->grad_buffer(), ms.mat(), vs.mat(), ad, s);
  }
  out.dense_weights = fd.be->download(fd.model->param_buffer());
  out.sparse_weights = fs.be->download(fs.model->param_buffer());
  return out;
}

// Float training with sparse input follows the dense trajectory (rounding apart) for 30 steps.
TEST(ModelSparseInput, FloatTrainingFollowsDense) {
  for (const char* kind : {"multvae", "cdae", "autorec"}) {
    const DenseAndSparse r = train_dense_and_sparse(kind, GemmPrecision::fp32);
    for (size_t s = 0; s < r.dense_loss.size(); ++s)
      ASSERT_NEAR(r.sparse_loss[s], r.dense_loss[s], 1e-4 * std::fabs(r.dense_loss[s])) << kind << " step " << s + 1;
  }
}

// Under exact precision the sparse first layer sums in double and rounds once, as the dense
// exact GEMM does (the row norms kept in double as l2_normalize_rows keeps them), so 30 Adam
// steps end on the same float weights, bit for bit: --sparse-input does not move results.
TEST(ModelSparseInput, ExactTrainingGivesTheDenseBits) {
  for (const char* kind : {"vae", "multvae", "cdae", "autorec"}) {
    const DenseAndSparse r = train_dense_and_sparse(kind, GemmPrecision::exact);
    EXPECT_EQ(r.sparse_loss, r.dense_loss) << kind;
    EXPECT_EQ(r.sparse_weights, r.dense_weights) << kind;
  }
}

TEST(ModelSparseInput, AutoRule) {
  EXPECT_FALSE(use_sparse_input("auto", kSparseInputMinColumns - 1));
  EXPECT_TRUE(use_sparse_input("auto", kSparseInputMinColumns));
  EXPECT_TRUE(use_sparse_input("", kSparseInputMinColumns));
  EXPECT_TRUE(use_sparse_input("auto", 1682, kSparseInputMaxDensity / 2));
  EXPECT_FALSE(use_sparse_input("auto", 1682, 0.063));  // ml-100k
  EXPECT_TRUE(use_sparse_input("on", 3));
  EXPECT_FALSE(use_sparse_input("off", 100000, 0.0001));
  EXPECT_THROW(use_sparse_input("yes", 10), UsageError);
  Csr data = random_ratings(5, 7, 1);
  Fixture<float> small(config("multvae"), binary(data), 4);
  EXPECT_FALSE(small.model->sparse_input());  // 7 items, default "auto"
}

TEST(ModelInit, SeedDeterminesInitialWeights) {
  Csr data = random_ratings(5, 7, 1);
  for (const char* kind : {"vae", "autorec", "multvae", "cdae"}) {
    Fixture<float> a(config(kind), data, 4, 1), b(config(kind), data, 4, 1), c(config(kind), data, 4, 2);
    const auto ta = a.be->download(CMat<float>(a.model->param_buffer()));
    EXPECT_EQ(ta, b.be->download(CMat<float>(b.model->param_buffer()))) << kind;
    EXPECT_NE(ta, c.be->download(CMat<float>(c.model->param_buffer()))) << kind;
  }
  // nn.Linear's U(±1/√fan_in) for the notebook VAE's first layer.
  ModelConfig c;
  c.kind = "vae";
  Fixture<float> f(c, random_ratings(5, 100, 1), 4);
  const auto w = f.be->download(CMat<float>(f.model->param("enc1.weight")));
  const float bound = 0.1f;
  float lo = 1, hi = -1;
  double mean = 0;
  for (float x : w) lo = std::min(lo, x), hi = std::max(hi, x), mean += x;
  mean /= static_cast<double>(w.size());
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.09f);
  EXPECT_GT(hi, 0.09f);
  EXPECT_NEAR(mean, 0.0, 0.005);
}

}  // namespace
