#include "analysis/model_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "analysis/safetensors.h"
#include "core/error.h"
#include "train/trainer.h"

namespace vae {

namespace {

constexpr const char* kFormat = "vae_gpu-model";
constexpr const char* kFormatVersion = "1";

bool is_known_kind(const std::string& k) {
  return k == "vae" || k == "autorec" || k == "i-autorec" || k == "multvae" || k == "cdae";
}
// Models whose rows carry state (CDAE's user vectors) or are the input (item-based AutoRec).
bool has_row_state(const std::string& k) { return k == "cdae" || k == "i-autorec"; }

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}
uint64_t fnv1a_str(uint64_t h, const std::string& s) { return fnv1a(h, s.c_str(), s.size() + 1); }

// Checksum over everything but itself: metadata in key order, tensors in name order.
std::string content_checksum(const std::map<std::string, std::string>& meta,
                             const std::vector<const StTensor*>& tensors) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& kv : meta) {
    if (kv.first == "checksum") continue;
    h = fnv1a_str(fnv1a_str(h, kv.first), kv.second);
  }
  std::vector<const StTensor*> sorted = tensors;
  std::sort(sorted.begin(), sorted.end(), [](const StTensor* a, const StTensor* b) { return a->name < b->name; });
  for (const StTensor* t : sorted) {
    h = fnv1a_str(fnv1a_str(h, t->name), t->dtype);
    const uint64_t rank = t->shape.size();
    h = fnv1a(h, &rank, sizeof rank);
    for (int64_t s : t->shape) h = fnv1a(h, &s, sizeof s);
    h = fnv1a(h, t->data.data(), t->data.size());
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

nlohmann::json config_to_json(const ModelConfig& c) {
  return nlohmann::json{{"kind", c.kind},         {"num_inputs", c.num_inputs},
                        {"num_rows", c.num_rows}, {"hidden", c.hidden},
                        {"latent", c.latent},     {"act_hidden", c.act_hidden},
                        {"act_out", c.act_out},   {"loss", c.loss},
                        {"lambda", c.lambda},     {"dropout", c.dropout},
                        {"beta", c.beta},         {"anneal_steps", c.anneal_steps},
                        {"rating_min", c.rating_min}, {"rating_max", c.rating_max}};
}

ModelConfig config_from_json(const nlohmann::json& j) {
  ModelConfig c;
  c.kind = j.at("kind").get<std::string>();
  c.num_inputs = j.at("num_inputs").get<int64_t>();
  c.num_rows = j.at("num_rows").get<int64_t>();
  c.hidden = j.at("hidden").get<int>();
  c.latent = j.at("latent").get<int>();
  c.act_hidden = j.at("act_hidden").get<std::string>();
  c.act_out = j.at("act_out").get<std::string>();
  c.loss = j.at("loss").get<std::string>();
  c.lambda = j.at("lambda").get<double>();
  c.dropout = j.at("dropout").get<double>();
  c.beta = j.at("beta").get<double>();
  c.anneal_steps = j.at("anneal_steps").get<int64_t>();
  c.rating_min = j.at("rating_min").get<float>();
  c.rating_max = j.at("rating_max").get<float>();
  return c;
}

std::string ids_json(const std::vector<int32_t>& map, const std::vector<std::string>& ids) {
  nlohmann::json a = nlohmann::json::array();
  for (int32_t i : map) a.push_back(ids.at(static_cast<size_t>(i)));
  return a.dump();
}

// Original ids → dataset indices; DataError naming the first id the dataset lacks.
std::vector<int32_t> ids_to_indices(const std::string& path, const std::string& json_text,
                                    const std::vector<std::string>& ids, const char* what) {
  const nlohmann::json a = nlohmann::json::parse(json_text);
  if (!a.is_array()) throw DataError(path, 0, std::string("metadata '") + what + "' is not a JSON array");
  std::unordered_map<std::string, int32_t> index;
  index.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) index.emplace(ids[i], static_cast<int32_t>(i));
  std::vector<int32_t> out;
  out.reserve(a.size());
  for (const auto& e : a) {
    const std::string id = e.get<std::string>();
    auto it = index.find(id);
    if (it == index.end())
      throw DataError(path, 0, std::string(what) + " id '" + id + "' of the model is not in the dataset");
    out.push_back(it->second);
  }
  return out;
}

const std::string& meta_at(const StFile& f, const std::string& path, const std::string& key) {
  auto it = f.metadata.find(key);
  if (it == f.metadata.end()) throw DataError(path, 0, "metadata has no '" + key + "' entry");
  return it->second;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

ModelFileInfo parse_info(const StFile& f, const std::string& path, const Dataset& d) {
  auto fmt = f.metadata.find("format");
  if (fmt == f.metadata.end() || fmt->second != kFormat)
    throw DataError(path, 0, "not a vae_gpu model file (metadata 'format' is not '" + std::string(kFormat) + "')");
  const std::string& version = meta_at(f, path, "format_version");
  if (version != kFormatVersion)
    throw DataError(path, 0, "model file format version " + version + " is not supported (this build reads " +
                                 kFormatVersion + ")");
  std::vector<const StTensor*> ts;
  for (const auto& t : f.tensors) ts.push_back(&t);
  if (content_checksum(f.metadata, ts) != meta_at(f, path, "checksum"))
    throw DataError(path, 0, "checksum mismatch: the file is corrupt");

  ModelFileInfo info;
  try {
    info.config = config_from_json(nlohmann::json::parse(meta_at(f, path, "config")));
    info.protocol = meta_at(f, path, "protocol");
    info.dataset = meta_at(f, path, "dataset");
    info.dataset_source = meta_at(f, path, "dataset_source");
    info.fingerprint = meta_at(f, path, "dataset_fingerprint");
    const nlohmann::json input = nlohmann::json::parse(meta_at(f, path, "input"));
    info.binary_input = input.at("binary").get<bool>();
    info.input_threshold = input.at("threshold").get<double>();
    info.batch_size = std::stoll(meta_at(f, path, "batch_size"));
    info.seed = std::stoull(meta_at(f, path, "seed"));
    info.best_epoch = std::stoi(meta_at(f, path, "best_epoch"));
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    throw DataError(path, 0, std::string("malformed metadata: ") + e.what());
  }
  const std::string& kind = info.config.kind;
  if (kind == "popularity" || kind == "ease")
    throw DataError(path, 0, kind + " has no trained parameters to load: use --model " + kind + " instead of --model-file");
  if (!is_known_kind(kind)) throw DataError(path, 0, "unknown model kind '" + kind + "'");
  if (info.fingerprint != d.fingerprint())
    throw DataError(path, 0, "the model was trained on dataset '" + info.dataset + "' (" + info.dataset_source +
                                 ", fingerprint " + info.fingerprint + "), not on the loaded '" + d.name +
                                 "' (" + d.source + ", fingerprint " + d.fingerprint() +
                                 "): pass the training data with --data");
  info.item_based = kind == "i-autorec";
  const std::string column_kind = meta_at(f, path, "column_kind");
  if (column_kind != (info.item_based ? "user" : "item"))
    throw DataError(path, 0, "column_kind '" + column_kind + "' does not fit model " + kind);
  try {
    info.column_map = ids_to_indices(path, meta_at(f, path, "columns"),
                                     info.item_based ? d.user_ids : d.item_ids, info.item_based ? "user" : "item");
    if (has_row_state(kind))
      info.row_map = ids_to_indices(path, meta_at(f, path, "rows"), info.item_based ? d.item_ids : d.user_ids,
                                    info.item_based ? "item" : "user");
  } catch (const DataError&) {
    throw;
  } catch (const std::exception& e) {
    throw DataError(path, 0, std::string("malformed id list: ") + e.what());
  }
  if (static_cast<int64_t>(info.column_map.size()) != info.config.num_inputs)
    throw DataError(path, 0, "the config says " + std::to_string(info.config.num_inputs) + " inputs but the file maps " +
                                 std::to_string(info.column_map.size()) + " columns");
  if (has_row_state(kind) && static_cast<int64_t>(info.row_map.size()) != info.config.num_rows)
    throw DataError(path, 0, "the config says " + std::to_string(info.config.num_rows) + " rows but the file maps " +
                                 std::to_string(info.row_map.size()));
  if (info.batch_size < 1) throw DataError(path, 0, "batch_size must be positive");
  return info;
}

}  // namespace

std::string model_file_checksum(const std::map<std::string, std::string>& metadata,
                                const std::vector<StTensor>& tensors) {
  std::vector<const StTensor*> ts;
  for (const auto& t : tensors) ts.push_back(&t);
  return content_checksum(metadata, ts);
}

ModelFileInfo model_file_info(const TrainResult& r, const Dataset& d) {
  VAE_CHECK(r.model_ptr != nullptr, "model_file_info: the run kept no model");
  ModelFileInfo i;
  i.config = r.model_ptr->config();
  if (i.config.kind.empty()) i.config.kind = r.model;
  i.protocol = r.protocol;
  i.dataset = d.name;
  i.dataset_source = d.source;
  i.fingerprint = d.fingerprint();
  i.column_map = r.column_map;
  if (has_row_state(r.model)) i.row_map = r.row_map;
  i.item_based = r.item_based;
  i.binary_input = r.binary_input;
  i.input_threshold = r.input_threshold;
  i.batch_size = r.batch_size > 0 ? r.batch_size : 64;
  i.seed = r.seed;
  i.best_epoch = r.best_epoch;
  return i;
}

bool model_kind_saveable(const std::string& kind) { return is_known_kind(kind); }

void save_model_file(const std::string& path, Backend<float>& be, const Model<float>& model,
                     const ModelFileInfo& info, const Dataset& d) {
  if (!model_kind_saveable(model.kind()))
    throw UsageError(model.kind() + " has no trained parameters to save (refit it with --model " + model.kind() + ")");
  VAE_CHECK(static_cast<int64_t>(info.column_map.size()) == model.config().num_inputs,
            "save_model_file: column map does not match the model's inputs");
  const std::vector<float> theta = be.download(CMat<float>(model.param_buffer()));
  std::vector<StTensor> tensors;
  for (const ParamInfo& p : model.params()) {
    std::vector<float> v(theta.begin() + p.offset, theta.begin() + p.offset + p.size());
    tensors.push_back(st_tensor_f32(p.name, {p.rows, p.cols}, v));
  }
  std::map<std::string, std::string> meta;
  meta["format"] = kFormat;
  meta["format_version"] = kFormatVersion;
  meta["model"] = model.kind();
  ModelConfig cfg = model.config();
  cfg.kind = model.kind();
  meta["config"] = config_to_json(cfg).dump();
  meta["protocol"] = info.protocol;
  meta["dataset"] = info.dataset;
  meta["dataset_source"] = info.dataset_source;
  meta["dataset_fingerprint"] = info.fingerprint;
  meta["input"] = nlohmann::json{{"binary", info.binary_input}, {"threshold", info.input_threshold}}.dump();
  meta["batch_size"] = std::to_string(info.batch_size);
  meta["seed"] = std::to_string(info.seed);
  meta["best_epoch"] = std::to_string(info.best_epoch);
  meta["column_kind"] = info.item_based ? "user" : "item";
  meta["columns"] = ids_json(info.column_map, info.item_based ? d.user_ids : d.item_ids);
  if (has_row_state(model.kind())) {
    meta["row_kind"] = info.item_based ? "item" : "user";
    meta["rows"] = ids_json(info.row_map, info.item_based ? d.item_ids : d.user_ids);
  }
  std::vector<const StTensor*> ts;
  for (const auto& t : tensors) ts.push_back(&t);
  meta["checksum"] = content_checksum(meta, ts);
  save_safetensors(path, tensors, meta);
}

bool write_model_file(const std::string& dir, Backend<float>& be, const TrainResult& r, const Dataset& d) {
  if (!r.model_ptr || !model_kind_saveable(r.model)) return false;
  save_model_file(dir + "/" + kModelFileName, be, *r.model_ptr, model_file_info(r, d), d);
  return true;
}

ModelFileInfo read_model_file_info(const std::string& path, const Dataset& d) {
  return parse_info(load_safetensors(path), path, d);
}

LoadedModel load_model_file(const std::string& path, Backend<float>& be, const Dataset& d, int64_t max_batch) {
  const StFile f = load_safetensors(path);
  LoadedModel lm;
  lm.info = parse_info(f, path, d);
  const int64_t batch = std::max<int64_t>(lm.info.batch_size, max_batch);
  try {
    lm.model = make_model<float>(be, lm.info.config, batch);
  } catch (const std::exception& e) {
    throw DataError(path, 0, "cannot rebuild the " + lm.info.config.kind + " model: " + e.what());
  }
  Model<float>& m = *lm.model;
  if (m.kind() != lm.info.config.kind)
    throw DataError(path, 0, "cannot rebuild the " + lm.info.config.kind + " model");
  // Every tensor must be one of the model's parameters, with its exact shape.
  for (const StTensor& t : f.tensors) {
    auto it = std::find_if(m.params().begin(), m.params().end(), [&](const ParamInfo& p) { return p.name == t.name; });
    if (it == m.params().end())
      throw DataError(path, 0, "unexpected tensor '" + t.name + "' (not a parameter of " + m.kind() + ")");
  }
  m.init(lm.info.seed);  // sets the model's noise seed; the weights are replaced below
  std::vector<float> theta(static_cast<size_t>(m.num_params()));
  for (const ParamInfo& p : m.params()) {
    const StTensor* t = f.find(p.name);
    if (!t) throw DataError(path, 0, "missing tensor '" + p.name + "' (" + std::to_string(p.rows) + " x " +
                                         std::to_string(p.cols) + ")");
    if (t->dtype != "F32") throw DataError(path, 0, "tensor '" + p.name + "' has dtype " + t->dtype + ", expected F32");
    const std::vector<int64_t> want{p.rows, p.cols};
    if (t->shape != want)
      throw DataError(path, 0, "tensor '" + p.name + "' has shape " + shape_str(t->shape) + ", expected " +
                                   shape_str(want));
    const std::vector<float> v = t->as_f32();
    for (float x : v)
      if (!std::isfinite(x)) throw DataError(path, 0, "tensor '" + p.name + "' holds a non-finite value");
    std::copy(v.begin(), v.end(), theta.begin() + p.offset);
  }
  be.upload_into(theta, m.param_buffer());
  return lm;
}

}  // namespace vae
