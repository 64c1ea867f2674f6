// Every neural model against PyTorch: the same initial weights, the same batch, the same ε and
// the same dropout mask give the same loss and gradients (tests/torch_parity.py is the PyTorch
// side, written the way the papers' PyTorch ports write each model).
// Skipped when no Python with torch is found (Debian's python3-torch works; VAE_PYTHON picks
// an interpreter).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/philox.h"
#include "data/dataset.h"
#include "models/model.h"

namespace {

using namespace vae;
namespace fs = std::filesystem;

std::string python_with_torch() {
  std::vector<std::string> candidates;
  if (const char* p = std::getenv("VAE_PYTHON")) candidates.push_back(p);
  candidates.push_back("/usr/bin/python3");
  candidates.push_back("python3");
  for (const std::string& py : candidates) {
    const std::string cmd = py + " -c 'import torch, numpy' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) == 0) return py;
  }
  return "";
}

void write_f64(const fs::path& p, const std::vector<double>& v) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(double)));
}

std::vector<double> read_f64(const fs::path& p, size_t n) {
  std::vector<double> v(n);
  std::ifstream f(p, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(double)));
  EXPECT_TRUE(f.good()) << "short read of " << p;
  return v;
}

Csr batch_ratings(int64_t rows, int64_t cols) {
  std::vector<int32_t> r, c;
  std::vector<float> v;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const uint64_t k = static_cast<uint64_t>(i * cols + j);
      if (j != i % cols && philox_uniform(17, 1, k) > 0.3f) continue;
      r.push_back(static_cast<int32_t>(i));
      c.push_back(static_cast<int32_t>(j));
      v.push_back(static_cast<float>(1 + philox_u32(17, 2, k) % 5));
    }
  return Csr::from_triplets(rows, cols, r, c, v);
}

struct ParityCase {
  std::string name;
  ModelConfig cfg;
};

void PrintTo(const ParityCase& c, std::ostream* os) { *os << c.name; }

class TorchParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(TorchParity, LossAndGradientsMatchPyTorch) {
  const std::string py = python_with_torch();
  if (py.empty()) GTEST_SKIP() << "no python3 with torch and numpy (install python3-torch or set VAE_PYTHON)";
  const ParityCase& pc = GetParam();
  const int64_t n = 16, items = 50;
  Csr data = batch_ratings(n, items);
  const bool binary = pc.cfg.kind == "multvae" || pc.cfg.kind == "cdae";  // as the trainer feeds them
  if (binary) std::fill(data.values.begin(), data.values.end(), 1.0f);
  auto be = make_cpu_backend<float>();
  ModelConfig cfg = pc.cfg;
  cfg.num_inputs = items;
  cfg.num_rows = n;
  auto model = make_model<float>(*be, cfg, n);
  const uint64_t seed = 5;
  const int64_t step = 7;
  model->init(seed);
  CsrTensor<float> input = be->upload_csr(data);
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  Tensor<int32_t> rows = be->upload<int32_t>(idx, n, 1);
  Batch<float> b;
  b.input = input.view();
  b.rows = rows.cmat();
  b.users = b.rows;
  b.n = n;
  Tensor<float> loss = be->zeros(1, 1);
  model->forward_backward(b, step, true, loss.mat());
  const double our_loss = be->read_scalar(loss.cmat());

  const fs::path dir = fs::temp_directory_path() / ("vae_torch_parity_" + pc.name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  nlohmann::json m;
  m["kind"] = cfg.kind;
  m["x_shape"] = {n, items};
  std::vector<double> x(static_cast<size_t>(n * items), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = data.indptr[r]; k < data.indptr[r + 1]; ++k) x[r * items + data.indices[k]] = data.values[k];
  write_f64(dir / "x.bin", x);
  const ModelConfig& mc = model->config();  // defaults filled in by the model
  if (cfg.kind == "vae" || cfg.kind == "multvae") {
    const int64_t L = model->latent_dim();
    std::vector<double> eps(static_cast<size_t>(n * L));
    for (size_t i = 0; i < eps.size(); ++i)
      eps[i] = philox_normal(seed, rng_stream(RngStream::eps, step), i);  // the noise contract
    write_f64(dir / "eps.bin", eps);
    m["latent"] = L;
    m["eps_shape"] = {n, L};
    m["beta"] = model->kl_weight(step);
  }
  if (cfg.kind != "vae") {
    m["hidden"] = mc.hidden;
    m["lambda"] = mc.lambda;
    m["loss"] = mc.loss;
  }
  if (binary) {
    // Element (r, c) of the batch is kept when its uniform draw exceeds the rate (the dropout
    // contract, dense and sparse paths alike); PyTorch then scales the kept ones by 1/(1 - q).
    const float q = static_cast<float>(mc.dropout);
    std::vector<double> keep(static_cast<size_t>(n * items));
    for (size_t i = 0; i < keep.size(); ++i)
      keep[i] = q <= 0.0f || philox_uniform(seed, rng_stream(RngStream::dropout, step), i) > q ? 1.0 : 0.0;
    write_f64(dir / "keep.bin", keep);
    m["dropout"] = mc.dropout;
    int64_t kept = 0;
    for (const double k : keep) kept += k > 0;
    if (q > 0) {
      EXPECT_TRUE(kept > 0 && kept < n * items) << "a mask that drops nothing or everything tests little";
    }
  }
  m["params"] = nlohmann::json::array();
  for (const ParamInfo& p : model->params()) {
    const std::vector<float> w = be->download(CMat<float>(model->param(p.name)));
    write_f64(dir / (p.name + ".bin"), std::vector<double>(w.begin(), w.end()));
    m["params"].push_back({{"name", p.name}, {"shape", {p.rows, p.cols}}});
  }
  std::ofstream(dir / "manifest.json") << m.dump(1);

  const std::string cmd = py + " " + VAE_SOURCE_DIR "/tests/torch_parity.py " + dir.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  double torch_loss = NAN;
  std::ifstream(dir / "loss.txt") >> torch_loss;
  EXPECT_NEAR(our_loss, torch_loss, 1e-5 * std::fabs(torch_loss)) << pc.name;
  for (const ParamInfo& p : model->params()) {
    const std::vector<float> g = be->download(CMat<float>(model->grad(p.name)));
    const std::vector<double> ref = read_f64(dir / (p.name + ".grad"), g.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      num += (g[i] - ref[i]) * (g[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    // Our float gradient against torch's float64 one, relative in the tensor's norm.
    EXPECT_LE(std::sqrt(num), 1e-5 * std::sqrt(den) + 1e-12) << pc.name << " " << p.name << ": |ours - torch| "
                                                              << std::sqrt(num) << " vs |torch| " << std::sqrt(den);
  }
  fs::remove_all(dir);
}

std::vector<ParityCase> parity_cases() {
  ParityCase vae{"vae", {}};
  vae.cfg.kind = "vae";
  vae.cfg.latent = 8;
  ParityCase vae_beta{"vae_annealed", {}};
  vae_beta.cfg.kind = "vae";
  vae_beta.cfg.latent = 8;
  vae_beta.cfg.beta = 0.5;
  vae_beta.cfg.anneal_steps = 20;
  ParityCase ar{"autorec_masked", {}};
  ar.cfg.kind = "autorec";
  ar.cfg.hidden = 20;
  ar.cfg.lambda = 0.5;
  ParityCase ard{"autorec_dense", {}};
  ard.cfg.kind = "autorec";
  ard.cfg.loss = "dense";
  ard.cfg.lambda = 0.1;
  // Mult-VAE with a constant KL weight large enough to matter in the gradients; the sparse
  // first layer (CSR batch, fused normalisation and dropout) must give the dense one's.
  ParityCase mv{"multvae", {}};
  mv.cfg.kind = "multvae";
  mv.cfg.hidden = 24;
  mv.cfg.latent = 6;
  mv.cfg.beta = 0.5;
  mv.cfg.sparse_input = "off";
  // A case's variant: another name, one setting changed.
  auto variant = [](ParityCase c, const char* name, auto&& edit) {
    c.name = name;
    edit(c.cfg);
    return c;
  };
  const ParityCase mvs = variant(mv, "multvae_sparse", [](ModelConfig& c) { c.sparse_input = "on"; });
  // No dropout: the mask path is not what makes it agree.
  const ParityCase mv0 = variant(mv, "multvae_no_dropout", [](ModelConfig& c) { c.dropout = 0; });
  ParityCase cd{"cdae", {}};
  cd.cfg.kind = "cdae";
  cd.cfg.hidden = 12;
  cd.cfg.lambda = 0.05;
  cd.cfg.sparse_input = "off";
  const ParityCase cds = variant(cd, "cdae_sparse", [](ModelConfig& c) { c.sparse_input = "on"; });
  const ParityCase cdm = variant(cd, "cdae_mse", [](ModelConfig& c) { c.loss = "mse"; });
  return {vae, vae_beta, ar, ard, mv, mvs, mv0, cd, cds, cdm};
}

// Adam as torch.optim.Adam / AdamW take it, step by step: the same gradients give the same
// parameters (in double, so only the formula can differ), default settings and others.
TEST(TorchParityAdam, StepsMatchTorchOptim) {
  const std::string py = python_with_torch();
  if (py.empty()) GTEST_SKIP() << "no python3 with torch and numpy (install python3-torch or set VAE_PYTHON)";
  const int64_t n = 257, steps = 6;
  auto be = make_cpu_backend<double>();
  auto draws = [](uint64_t stream, double scale) {
    std::vector<double> v(static_cast<size_t>(n));
    for (size_t i = 0; i < v.size(); ++i) v[i] = scale * philox_normal(23, stream, i);
    return v;
  };
  struct Case {
    const char* name;
    AdamConfig cfg;
  };
  std::vector<Case> cases(4);
  cases[0].name = "defaults";
  cases[1] = {"l2", {0.01, 0.8, 0.95, 1e-6, 0.1, false}};
  cases[2] = {"adamw", {0.01, 0.8, 0.95, 1e-6, 0.1, true}};
  cases[3] = {"large_eps", {0.05, 0.9, 0.999, 0.5, 0.0, false}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path dir = fs::temp_directory_path() / ("vae_torch_adam_" + std::string(c.name) + "_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::vector<double> p0 = draws(1, 1.0);
    write_f64(dir / "p0.bin", p0);
    Tensor<double> p = be->upload(p0, 1, n), m = be->zeros(1, n), v = be->zeros(1, n);
    for (int64_t t = 1; t <= steps; ++t) {
      // Gradients of changing scale and sign, some exactly 0 (a parameter no batch touched).
      std::vector<double> g = draws(static_cast<uint64_t>(1 + t), t % 2 ? 1.0 : 1e-3);
      for (size_t i = 0; i < g.size(); i += 7) g[i] = 0.0;
      write_f64(dir / ("g" + std::to_string(t) + ".bin"), g);
      be->adam_step(p.mat(), be->upload(g, 1, n).cmat(), m.mat(), v.mat(), c.cfg, t);
    }
    nlohmann::json j = {{"kind", "adam"}, {"n", n}, {"steps", steps}, {"lr", c.cfg.lr}, {"beta1", c.cfg.beta1},
                        {"beta2", c.cfg.beta2}, {"eps", c.cfg.eps}, {"weight_decay", c.cfg.weight_decay},
                        {"decoupled", c.cfg.decoupled}};
    std::ofstream(dir / "manifest.json") << j.dump(1);
    const std::string cmd = py + " " + VAE_SOURCE_DIR "/tests/torch_parity.py " + dir.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    const std::vector<double> ours = be->download(p.cmat()), ref = read_f64(dir / "p.bin", static_cast<size_t>(n));
    int bad = 0;
    for (int64_t i = 0; i < n; ++i)
      if (!(std::fabs(ours[i] - ref[i]) <= 1e-13 + 1e-12 * std::fabs(ref[i])) && ++bad <= 5)
        ADD_FAILURE() << "p[" << i << "] " << ours[i] << " vs torch " << ref[i];
    EXPECT_EQ(bad, 0);
    fs::remove_all(dir);
  }
}

INSTANTIATE_TEST_SUITE_P(Notebook, TorchParity, ::testing::ValuesIn(parity_cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
