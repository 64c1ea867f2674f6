#include "models/model.h"

#include <cmath>

#include "core/philox.h"
#include "models/autorec.h"
#include "models/cdae.h"
#include "models/multvae.h"
#include "models/vae.h"

namespace vae {

template <typename T>
const ParamInfo& Model<T>::info(const std::string& name) const {
  for (const ParamInfo& p : params_)
    if (p.name == name) return p;
  throw VaeError(kind() + ": no parameter named '" + name + "'");
}

namespace {
// Each parameter tensor draws from its own Philox stream (by its index in the layout), so
// adding a layer never changes the initial values of the others.
uint64_t init_stream(const std::vector<ParamInfo>& params, const std::string& name) {
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].name == name)
      return rng_stream(RngStream::init, 1000 * static_cast<uint64_t>(i + 1));
  throw VaeError("no parameter named '" + name + "'");
}
}  // namespace

template <typename T>
void Model<T>::init_normal(std::vector<T>& host, const std::string& name, double std, uint64_t seed) const {
  const ParamInfo& p = info(name);
  const uint64_t stream = init_stream(params_, name);
  for (int64_t i = 0; i < p.size(); ++i)
    host[p.offset + i] = static_cast<T>(std * philox_normal(seed, stream, static_cast<uint64_t>(i)));
}

template <typename T>
void Model<T>::init_uniform(std::vector<T>& host, const std::string& name, double a, uint64_t seed) const {
  const ParamInfo& p = info(name);
  const uint64_t stream = init_stream(params_, name);
  for (int64_t i = 0; i < p.size(); ++i) {
    // philox_uniform is in (0, 1]; map to (−a, a].
    const double u = philox_uniform(seed, stream, static_cast<uint64_t>(i));
    host[p.offset + i] = static_cast<T>(a * (2.0 * u - 1.0));
  }
}

bool use_sparse_input(const std::string& mode, int64_t num_inputs, double density) {
  if (mode == "on") return true;
  if (mode == "off") return false;
  if (mode != "auto" && !mode.empty())
    throw UsageError("--sparse-input must be auto, on or off, not '" + mode + "'");
  return num_inputs >= kSparseInputMinColumns || (density >= 0 && density < kSparseInputMaxDensity);
}

template <typename T>
std::unique_ptr<Model<T>> make_model(Backend<T>& be, const ModelConfig& cfg, int64_t max_batch) {
  VAE_CHECK(cfg.num_inputs > 0, "model needs at least one input column");
  VAE_CHECK(max_batch > 0, "model needs a positive batch size");
  if (cfg.kind == "vae") return std::make_unique<NotebookVae<T>>(be, cfg, max_batch);
  if (cfg.kind == "autorec" || cfg.kind == "i-autorec") return std::make_unique<AutoRec<T>>(be, cfg, max_batch);
  if (cfg.kind == "multvae") return std::make_unique<MultVae<T>>(be, cfg, max_batch);
  if (cfg.kind == "cdae") return std::make_unique<Cdae<T>>(be, cfg, max_batch);
  throw UsageError("unknown model '" + cfg.kind + "'");
}

template class Model<float>;
template class Model<double>;
template std::unique_ptr<Model<float>> make_model(Backend<float>&, const ModelConfig&, int64_t);
template std::unique_ptr<Model<double>> make_model(Backend<double>&, const ModelConfig&, int64_t);

}  // namespace vae
