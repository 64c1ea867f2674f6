// The model interface shared by AutoRec, the notebook VAE, Mult-VAE and CDAE. A model owns one
// flat parameter buffer (and an equally shaped gradient buffer) on its backend, so Adam is a
// single op over all parameters. Models are written once over Backend<T>; T = double on the CPU
// backend exists for gradient checks.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace vae {

// One named parameter inside the flat buffer.
struct ParamInfo {
  std::string name;
  int64_t rows = 0, cols = 0;
  int64_t offset = 0;  // elements from the buffer start
  int64_t size() const { return rows * cols; }
};

// A batch of input rows. `rows` (n × 1, on the backend) index rows of `input`;
// `users` (n × 1) are the dataset-level row ids CDAE uses for its per-user vector
// (same as rows for the training matrix). `target` is what the loss compares against
// (the input itself for autoencoders).
template <typename T>
struct Batch {
  CsrView<T> input;
  CMat<int32_t> rows;
  CMat<int32_t> users;
  int64_t n = 0;
};

// Hyper-parameters every model reads what it needs from; unknown keys are ignored.
struct ModelConfig {
  std::string kind;  // vae | autorec | i-autorec | multvae | cdae
  int64_t num_inputs = 0;  // items (user-based) or users (item-based AutoRec)
  int64_t num_rows = 0;    // rows of the training matrix (CDAE's per-user table)
  int hidden = 0;          // 0 = the model's default
  int latent = 0;
  std::string act_hidden;  // AutoRec g
  std::string act_out;     // AutoRec f
  std::string loss;        // AutoRec: masked|dense; CDAE: bce|mse
  double lambda = -1.0;    // L2 strength (AutoRec, CDAE); < 0 = the model's default
  double dropout = -1.0;   // input dropout (Mult-VAE 0.5, CDAE 0.5); < 0 = default
  double beta = -1.0;      // VAE KL weight (final value when annealing); < 0 = the model's default
                           // (notebook VAE 1; Mult-VAE 0.2, reached by min(beta, step / 200 000)
                           // unless anneal_steps says otherwise)
  int64_t anneal_steps = -1;  // linear KL annealing length: 0 = off (constant beta); < 0 = the
                              // model's default (Mult-VAE with its default beta: 200 000; else off)
  float rating_min = 1.0f, rating_max = 5.0f;
  // First layer on the batch's CSR rows instead of a densified batch: on | off | auto
  // (use_sparse_input). Results agree with the dense path to rounding.
  std::string sparse_input = "auto";
};

// "auto" turns the sparse first layer on from this many input columns: below it a dense GEMM
// on the densified batch is as fast on both backends, above it the batch is mostly zeros that
// the dense path multiplies anyway (ml-20m: 20 108 items at 0.5 % density).
constexpr int64_t kSparseInputMinColumns = 5000;
// ... or when the training matrix is sparser than this (density known to the trainer only).
constexpr double kSparseInputMaxDensity = 0.005;
// Resolves mode (on | off | auto) for a model with num_inputs columns; density < 0 = unknown.
// Throws UsageError for any other mode.
bool use_sparse_input(const std::string& mode, int64_t num_inputs, double density = -1.0);

template <typename T>
class Model {
 public:
  virtual ~Model() = default;
  virtual std::string kind() const = 0;
  const ModelConfig& config() const { return cfg_; }

  // Parameters: layout, flat buffers.
  const std::vector<ParamInfo>& params() const { return params_; }
  Mat<T> param_buffer() const { return theta_.mat(); }
  Mat<T> grad_buffer() const { return grad_.mat(); }
  Mat<T> param(const std::string& name) const { return view(theta_, name); }
  Mat<T> grad(const std::string& name) const { return view(grad_, name); }
  int64_t num_params() const { return theta_.size(); }

  // Initialises parameters deterministically from seed (identical on every backend: drawn on
  // the host from Philox, then uploaded).
  virtual void init(uint64_t seed) = 0;

  // Loss of the batch (accumulated into loss_acc, 1 × 1, as the sum over the batch's terms
  // scaled as the model's paper/notebook defines it) and, when train is true, its gradient in
  // grad_buffer() (overwritten). step (0-based global step) picks the noise and annealing.
  virtual void forward_backward(const Batch<T>& b, int64_t step, bool train, Mat<T> loss_acc) = 0;

  // Deterministic scores (no dropout, z = μ) for the batch: out is n × num_outputs.
  virtual void predict(const Batch<T>& b, Mat<T> out) = 0;
  // Both at once: the evaluation loss (forward_backward with train false) and the scores
  // predict gives, from one forward pass where the model keeps its output (forward_output).
  void evaluate(const Batch<T>& b, Mat<T> loss_acc, Mat<T> out) {
    const T* kept = forward_output();
    if (!kept) {
      forward_backward(b, 0, false, loss_acc);
      predict(b, out);
      return;
    }
    VAE_CHECK(out.rows == b.n && out.cols == num_outputs(), kind() + " evaluate: bad output shape");
    if (b.n == 0) return;
    forward_backward(b, 0, false, loss_acc);
    be_.copy_within(out.data, kept, static_cast<size_t>(out.size()) * sizeof(T));
  }
  virtual int64_t num_outputs() const { return cfg_.num_inputs; }
  // Largest batch the work buffers were sized for.
  int64_t max_batch() const { return max_batch_; }
  // Whether the first layer reads the batch's CSR rows (config().sparse_input resolved).
  bool sparse_input() const { return sparse_; }

  // Extra regulariser terms (e.g. λ/2‖W‖²) are already part of forward_backward's loss;
  // this reports the KL weight in force at a step (VAEs), for logging.
  virtual double kl_weight(int64_t /*step*/) const { return 0.0; }

  // Latent codes for VAEs: n × latent (μ) or n × 2·latent (μ | logvar). Others throw.
  virtual int64_t latent_dim() const { return 0; }
  virtual void encode(const Batch<T>& /*b*/, Mat<T> /*mu_logvar*/) {
    throw VaeError(kind() + " has no latent space");
  }

 protected:
  // A network's output buffer as forward_backward(train false) leaves it (what predict
  // copies out), or null: evaluate then runs predict's own forward.
  virtual const T* forward_output() const { return nullptr; }
  Model(Backend<T>& be, ModelConfig cfg, int64_t max_batch)
      : be_(be), cfg_(std::move(cfg)), max_batch_(max_batch),
        sparse_(use_sparse_input(cfg_.sparse_input, cfg_.num_inputs)),
        anneal_steps_given_(cfg_.anneal_steps >= 0) {
    if (cfg_.anneal_steps < 0) cfg_.anneal_steps = 0;  // off unless the model's own default says otherwise
  }
  // Registers parameters (call in the constructor), then allocate_params().
  void add_param(const std::string& name, int64_t rows, int64_t cols) {
    ParamInfo p{name, rows, cols, next_offset_};
    next_offset_ += rows * cols;
    params_.push_back(p);
  }
  void allocate_params() {
    theta_ = be_.template alloc<T>(1, next_offset_);
    grad_ = be_.zeros(1, next_offset_);
  }
  // Host-side init helpers: N(0, std²) or U(−a, a), drawn from Philox per parameter index.
  void init_normal(std::vector<T>& host, const std::string& name, double std, uint64_t seed) const;
  void init_uniform(std::vector<T>& host, const std::string& name, double a, uint64_t seed) const;
  const ParamInfo& info(const std::string& name) const;
  Mat<T> view(const Tensor<T>& t, const std::string& name) const {
    const ParamInfo& p = info(name);
    return Mat<T>{t.data() + p.offset, p.rows, p.cols};
  }

  Backend<T>& be_;
  ModelConfig cfg_;
  int64_t max_batch_;
  bool sparse_ = false;
  bool anneal_steps_given_ = false;  // cfg.anneal_steps was set (0 included) rather than left < 0
  std::vector<ParamInfo> params_;
  int64_t next_offset_ = 0;
  Tensor<T> theta_, grad_;
};

// Creates the model of cfg.kind sized for batches of up to max_batch rows.
template <typename T>
std::unique_ptr<Model<T>> make_model(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch);

}  // namespace vae
