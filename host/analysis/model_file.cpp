#include "analysis/model_file.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <numeric>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "analysis/safetensors.h"
#include "core/error.h"
#include "data/text_reader.h"
#include "train/trainer.h"

namespace vae {

namespace {

constexpr const char* kFormat = "vae_gpu-model";
constexpr const char* kFormatVersion = "1";

bool is_known_kind(const std::string& k) {
  return k == "vae" || k == "autorec" || k == "i-autorec" || k == "multvae" || k == "cdae" || is_svd_kind(k);
}
// Models whose rows carry state (CDAE's and SVD's user vectors) or are the input (item-based AutoRec).
bool has_row_state(const std::string& k) { return k == "cdae" || k == "i-autorec" || is_svd_kind(k); }

nlohmann::json svd_options_to_json(const SvdOptions& o) {
  return nlohmann::json{{"factors", o.factors},   {"epochs", o.epochs},
                        {"lr", o.lr},             {"reg", o.reg},
                        {"init_std", o.init_std}, {"schedule", svd_schedule_name(o.schedule)},
                        {"blocks", o.blocks},     {"device", o.cuda ? "cuda" : "cpu"}};
}

SvdOptions svd_options_from_json(const nlohmann::json& j, const std::string& kind) {
  SvdOptions o;
  o.plus_plus = kind == "svdpp";
  o.factors = j.at("factors").get<int>();
  o.epochs = j.at("epochs").get<int>();
  o.lr = j.at("lr").get<double>();
  o.reg = j.at("reg").get<double>();
  o.init_std = j.at("init_std").get<double>();
  const std::string sched = j.at("schedule").get<std::string>();
  if (sched != "serial" && sched != "blocked") throw std::invalid_argument("unknown schedule '" + sched + "'");
  o.schedule = sched == "serial" ? SvdSchedule::serial : SvdSchedule::blocked;
  o.blocks = j.at("blocks").get<int>();
  o.cuda = j.at("device").get<std::string>() == "cuda";
  return o;
}

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
                        // < 0 (the model's default) only in a config no model resolved (SVD's): off
                        {"beta", c.beta},         {"anneal_steps", std::max<int64_t>(c.anneal_steps, 0)},
                        {"rating_min", c.rating_min}, {"rating_max", c.rating_max}};
}

ModelConfig config_from_json(const nlohmann::json& j) {
  ModelConfig c;
  c.kind = j.at("kind").get<std::string>();
  c.num_inputs = j.at("num_inputs").get<int64_t>();
  c.num_rows = j.at("num_rows").get<int64_t>();
  // As wide as --hidden / --latent may ask (get<int> of 2^31 would wrap to a negative width,
  // which the models read as "the default").
  const auto width = [&j](const char* key) {
    const int64_t v = j.at(key).get<int64_t>();
    if (v < 0 || v > (int64_t{1} << 20))
      throw std::invalid_argument(std::string(key) + " " + std::to_string(v) + " is outside 0 .. 2^20");
    return static_cast<int>(v);
  };
  c.hidden = width("hidden");
  c.latent = width("latent");
  if (c.num_inputs < 0 || c.num_rows < 0) throw std::invalid_argument("negative num_inputs or num_rows");
  // The values a training run can have written ("" = the model's own choice); anything else is
  // a hand-edited file whose model would be built wrongly or refused later without its name.
  const auto one_of = [&j](const char* key, std::initializer_list<const char*> allowed) {
    const std::string v = j.at(key).get<std::string>();
    for (const char* a : allowed)
      if (v == a) return v;
    throw std::invalid_argument(std::string(key) + " '" + v + "' is not one a run writes");
  };
  c.act_hidden = one_of("act_hidden", {"", "sigmoid", "identity", "relu", "tanh"});
  c.act_out = one_of("act_out", {"", "sigmoid", "identity"});
  c.loss = one_of("loss", {"", "masked", "dense", "bce", "mse"});
  c.lambda = j.at("lambda").get<double>();
  c.dropout = j.at("dropout").get<double>();
  c.beta = j.at("beta").get<double>();
  c.anneal_steps = j.at("anneal_steps").get<int64_t>();
  // Negative is "the model's default", as the command line's unset options.
  if (!std::isfinite(c.lambda) || !std::isfinite(c.beta) || !(c.dropout < 1.0) || c.anneal_steps < 0)
    throw std::invalid_argument("lambda, beta, dropout or anneal_steps out of range");
  // Read as double: get<float> of 1e300 is an undefined conversion. Evaluation clips predictions
  // to [rating_min, rating_max], so an empty or infinite range is refused here, not there.
  const double lo = j.at("rating_min").get<double>(), hi = j.at("rating_max").get<double>();
  constexpr double kFloatMax = std::numeric_limits<float>::max();
  if (!(std::fabs(lo) <= kFloatMax && std::fabs(hi) <= kFloatMax && lo <= hi))
    throw std::invalid_argument("rating range " + std::to_string(lo) + " to " + std::to_string(hi) +
                                " is not a finite range with rating_min <= rating_max");
  c.rating_min = static_cast<float>(lo);
  c.rating_max = static_cast<float>(hi);
  return c;
}

// --fold's values ("" where the protocol has no ratings split).
void check_ratings_split(const std::string& path, const std::string& split) {
  if (split.empty() || split == "random" || is_ml100k_fold(split)) return;
  throw DataError(path, 0, "unknown ratings_split '" + text::escape(split, 60) + "' in the metadata (random, 1..5, a or b)");
}

std::string ids_json(const std::vector<int32_t>& map, const std::vector<std::string>& ids) {
  nlohmann::json a = nlohmann::json::array();
  for (int32_t i : map) a.push_back(ids.at(static_cast<size_t>(i)));
  return a.dump();
}

// Metadata text for error messages: control bytes escaped, long text cut.
std::string shown(const std::string& s) { return text::escape(s, 60); }

// A whole-number metadata entry (batch_size, seed, best_epoch): plain decimal digits, an optional
// '-' where negatives are allowed, in [lo, hi]. DataError naming the entry and its text otherwise
// (std::stoll & co. would accept "12abc" and say only "stoll").
int64_t meta_int(const std::string& path, const std::string& key, const std::string& text, int64_t lo,
                 int64_t hi) {
  const size_t digits_at = !text.empty() && text[0] == '-' ? 1 : 0;
  const bool well_formed = text.size() > digits_at && text.size() <= 19 + digits_at &&
                           text.find_first_not_of("0123456789", digits_at) == std::string::npos;
  long long v = 0;
  if (well_formed) {
    errno = 0;
    char* end = nullptr;
    v = std::strtoll(text.c_str(), &end, 10);
    if (errno == ERANGE || *end != '\0' || v < lo || v > hi)
      throw DataError(path, 0, "metadata '" + key + "' is '" + shown(text) + "', expected an integer from " +
                                   std::to_string(lo) + " to " + std::to_string(hi));
    return v;
  }
  throw DataError(path, 0, "metadata '" + key + "' is '" + shown(text) + "', not an integer");
}

uint64_t meta_uint64(const std::string& path, const std::string& key, const std::string& text) {
  if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos)
    throw DataError(path, 0, "metadata '" + key + "' is '" + shown(text) + "', not a non-negative integer");
  errno = 0;
  const unsigned long long v = std::strtoull(text.c_str(), nullptr, 10);
  if (errno == ERANGE)
    throw DataError(path, 0, "metadata '" + key + "' is '" + shown(text) + "', larger than 2^64 - 1");
  return v;
}

// Original ids → dataset indices; DataError naming the first id the dataset lacks, or an id
// listed twice (each model column / row stands for one distinct dataset item or user: a repeated
// id would make two columns answer for one item and leave another without its weights).
std::vector<int32_t> ids_to_indices(const std::string& path, const std::string& json_text,
                                    const std::vector<std::string>& ids, const char* what,
                                    const char* key) {
  nlohmann::json a;
  try {
    a = nlohmann::json::parse(json_text);
  } catch (const std::exception& e) {
    throw DataError(path, 0, std::string("malformed metadata '") + key + "' ('" + shown(json_text) + "'): " + e.what());
  }
  if (!a.is_array()) throw DataError(path, 0, std::string("metadata '") + key + "' is not a JSON array");
  std::unordered_map<std::string, int32_t> index;
  index.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) index.emplace(ids[i], static_cast<int32_t>(i));
  std::vector<int32_t> out;
  out.reserve(a.size());
  std::vector<int64_t> position(ids.size(), -1);  // dataset index → entry of the list
  for (const auto& e : a) {
    // A nested array or object is named by its type: dump() recurses once per level, and a
    // deeply nested entry would overflow the stack.
    if (!e.is_string())
      throw DataError(path, 0, std::string("metadata '") + key + "' entry " + std::to_string(out.size() + 1) +
                                   " is " + (e.is_structured() ? std::string("a JSON ") + e.type_name() : shown(e.dump())) +
                                   ", not an id string");
    const std::string id = e.get<std::string>();
    auto it = index.find(id);
    if (it == index.end())
      throw DataError(path, 0, std::string(what) + " id '" + shown(id) + "' of the model is not in the dataset");
    int64_t& first = position[static_cast<size_t>(it->second)];
    if (first >= 0)
      throw DataError(path, 0, std::string(what) + " id '" + shown(id) + "' is listed twice in metadata '" + key +
                                   "' (entries " + std::to_string(first + 1) + " and " +
                                   std::to_string(out.size() + 1) + ")");
    first = static_cast<int64_t>(out.size());
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
  // JSON entries: a parse or type error names the entry it came from.
  auto json_entry = [&](const std::string& key, const auto& use) {
    const std::string& text = meta_at(f, path, key);
    try {
      use(nlohmann::json::parse(text));
    } catch (const DataError&) {
      throw;
    } catch (const std::exception& e) {
      throw DataError(path, 0, "malformed metadata '" + key + "' ('" + shown(text) + "'): " + e.what());
    }
  };
  json_entry("config", [&](const nlohmann::json& j) { info.config = config_from_json(j); });
  info.protocol = meta_at(f, path, "protocol");
  if (info.protocol != "seed" && !is_foldin_protocol(info.protocol) && info.protocol != "ratings")
    throw DataError(path, 0, "unknown protocol '" + shown(info.protocol) +
                                 "' in the metadata (seed, heldout, temporal, cutoff or ratings)");
  info.dataset = meta_at(f, path, "dataset");
  info.dataset_source = meta_at(f, path, "dataset_source");
  info.fingerprint = meta_at(f, path, "dataset_fingerprint");
  json_entry("input", [&](const nlohmann::json& j) {
    info.binary_input = j.at("binary").get<bool>();
    info.input_threshold = j.at("threshold").get<double>();
  });
  // --batch-size's own bound: the model's buffers are batch x width, which a larger one overflows.
  info.batch_size = meta_int(path, "batch_size", meta_at(f, path, "batch_size"), 1, int64_t{1} << 24);
  info.seed = meta_uint64(path, "seed", meta_at(f, path, "seed"));
  info.best_epoch = static_cast<int>(meta_int(path, "best_epoch", meta_at(f, path, "best_epoch"), 0, INT32_MAX));
  if (is_svd_kind(info.config.kind)) {
    json_entry("svd", [&](const nlohmann::json& j) { info.svd = svd_options_from_json(j, info.config.kind); });
    info.ratings_split = meta_at(f, path, "ratings_split");
    check_ratings_split(path, info.ratings_split);
  } else if (f.metadata.count("split")) {  // absent from files written before 2026-12-06
    json_entry("split", [&](const nlohmann::json& j) {
      info.test_fraction = j.at("test_fraction").get<double>();
      info.ratings_split = j.at("ratings_split").get<std::string>();
      if (!(info.test_fraction >= 0 && info.test_fraction < 1)) throw std::invalid_argument("test_fraction out of range");
      if (j.contains("leave_last")) info.leave_last = j.at("leave_last").get<int>();
      if (info.leave_last < 0 || info.leave_last > 1000000) throw std::invalid_argument("leave_last out of range");
      if (j.contains("val_from")) info.val_from = j.at("val_from").get<int64_t>();
      if (j.contains("test_from")) info.test_from = j.at("test_from").get<int64_t>();
    });
    check_ratings_split(path, info.ratings_split);
  }
  if (info.protocol == "temporal" && info.leave_last < 1)
    throw DataError(path, 0, "a temporal-protocol model without its split's leave_last in the metadata");
  if (info.protocol == "cutoff" && !(info.val_from < info.test_from))
    throw DataError(path, 0, "a cutoff-protocol model without its split's val_from < test_from in the metadata");
  const std::string& kind = info.config.kind;
  if (kind == "popularity" || kind == "ease")
    throw DataError(path, 0, kind + " has no trained parameters to load: use --model " + kind + " instead of --model-file");
  if (!is_known_kind(kind)) throw DataError(path, 0, "unknown model kind '" + kind + "'");
  if (info.fingerprint != d.fingerprint() && info.dataset_source == d.source)
    throw DataError(path, 0, "the data at " + d.source + " has changed since the model was trained on it (fingerprint " +
                                 info.fingerprint + " then, " + d.fingerprint() +
                                 " now): retrain, or pass the data as it was with --data");
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
    info.column_map = ids_to_indices(path, meta_at(f, path, "columns"), info.item_based ? d.user_ids : d.item_ids,
                                     info.item_based ? "user" : "item", "columns");
    if (has_row_state(kind))
      info.row_map = ids_to_indices(path, meta_at(f, path, "rows"), info.item_based ? d.item_ids : d.user_ids,
                                    info.item_based ? "item" : "user", "rows");
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
  return info;
}

}  // namespace

std::string model_file_checksum(const std::map<std::string, std::string>& metadata,
                                const std::vector<StTensor>& tensors) {
  std::vector<const StTensor*> ts;
  for (const auto& t : tensors) ts.push_back(&t);
  return content_checksum(metadata, ts);
}

// The data set's source as a model file records it: an absolute path (the file may be read from
// another directory), a synthetic spec as it is.
static std::string source_for_file(const std::string& source) {
  if (source.empty() || is_synthetic_spec(source)) return source;
  std::error_code ec;
  const std::filesystem::path abs = std::filesystem::absolute(source, ec);
  return ec ? source : abs.lexically_normal().string();
}

ModelFileInfo model_file_info(const TrainResult& r, const Dataset& d) {
  VAE_CHECK(r.model_ptr != nullptr, "model_file_info: the run kept no model");
  ModelFileInfo i;
  i.config = r.model_ptr->config();
  if (i.config.kind.empty()) i.config.kind = r.model;
  i.protocol = r.protocol;
  i.dataset = d.name;
  i.dataset_source = source_for_file(d.source);
  i.fingerprint = d.fingerprint();
  i.column_map = r.column_map;
  if (has_row_state(r.model)) i.row_map = r.row_map;
  i.item_based = r.item_based;
  i.binary_input = r.binary_input;
  i.input_threshold = r.input_threshold;
  i.batch_size = r.batch_size > 0 ? r.batch_size : 64;
  i.seed = r.seed;
  i.best_epoch = r.best_epoch;
  i.test_fraction = r.test_fraction;
  i.ratings_split = r.ratings_split;
  i.leave_last = r.leave_last;
  i.val_from = r.val_from;
  i.test_from = r.test_from;
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
  nlohmann::json split{{"test_fraction", info.test_fraction}, {"ratings_split", info.ratings_split}};
  if (info.leave_last > 0) split["leave_last"] = info.leave_last;
  if (info.protocol == "cutoff") {
    split["val_from"] = info.val_from;
    split["test_from"] = info.test_from;
  }
  meta["split"] = split.dump();
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
  if (is_svd_kind(lm.info.config.kind))
    throw DataError(path, 0, "holds an " + lm.info.config.kind + " model, not an autoencoder (load_svd_model_file)");
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

// ---- SVD / SVD++ ------------------------------------------------------------------------

ModelFileInfo svd_model_file_info(const SvdModel& m, const Dataset& d, const std::string& ratings_split,
                                  uint64_t seed) {
  VAE_CHECK(m.num_users() == d.num_users() && m.num_items() == d.num_items(),
            "svd_model_file_info: the model's shape differs from the dataset");
  ModelFileInfo i;
  i.config.kind = m.kind();
  i.config.num_inputs = m.num_items();
  i.config.num_rows = m.num_users();
  i.config.hidden = static_cast<int>(m.factors());
  i.config.lambda = m.options().reg;
  i.config.rating_min = m.rating_min();
  i.config.rating_max = m.rating_max();
  i.protocol = "ratings";
  i.dataset = d.name;
  i.dataset_source = source_for_file(d.source);
  i.fingerprint = d.fingerprint();
  i.column_map.resize(static_cast<size_t>(d.num_items()));
  std::iota(i.column_map.begin(), i.column_map.end(), 0);
  i.row_map.resize(static_cast<size_t>(d.num_users()));
  std::iota(i.row_map.begin(), i.row_map.end(), 0);
  i.batch_size = 1;  // SGD: one rating per update
  i.seed = seed;
  i.best_epoch = m.options().epochs;
  i.ratings_split = ratings_split;
  i.svd = m.options();
  return i;
}

void save_svd_model_file(const std::string& path, const SvdModel& m, const ModelFileInfo& info, const Dataset& d) {
  VAE_CHECK(info.column_map.size() == static_cast<size_t>(m.num_items()) &&
                info.row_map.size() == static_cast<size_t>(m.num_users()),
            "save_svd_model_file: id maps do not match the model");
  const SvdState st = m.state();
  const int64_t U = m.num_users(), I = m.num_items(), F = m.factors();
  std::vector<StTensor> tensors;
  tensors.push_back(st_tensor_f64("global_mean", {1}, {st.mu}));
  tensors.push_back(st_tensor_f64("user_bias", {U}, st.bu));
  tensors.push_back(st_tensor_f64("item_bias", {I}, st.bi));
  tensors.push_back(st_tensor_f64("user_factors", {U, F}, st.pu));
  tensors.push_back(st_tensor_f64("item_factors", {I, F}, st.qi));
  tensors.push_back(st_tensor_i32("user_rating_counts", {U}, st.user_counts));
  tensors.push_back(st_tensor_i32("item_rating_counts", {I}, st.item_counts));
  if (m.options().plus_plus) {
    tensors.push_back(st_tensor_f64("implicit_factors", {I, F}, st.yj));
    tensors.push_back(st_tensor_i32("implicit_items", {static_cast<int64_t>(st.implicit_items.size())},
                                    st.implicit_items));
  }
  ModelConfig cfg = info.config;
  cfg.kind = m.kind();
  std::map<std::string, std::string> meta;
  meta["format"] = kFormat;
  meta["format_version"] = kFormatVersion;
  meta["model"] = m.kind();
  meta["config"] = config_to_json(cfg).dump();
  meta["svd"] = svd_options_to_json(m.options()).dump();
  meta["ratings_split"] = info.ratings_split;
  meta["protocol"] = "ratings";
  meta["dataset"] = info.dataset;
  meta["dataset_source"] = info.dataset_source;
  meta["dataset_fingerprint"] = info.fingerprint;
  meta["input"] = nlohmann::json{{"binary", false}, {"threshold", 0.0}}.dump();
  meta["batch_size"] = "1";
  meta["seed"] = std::to_string(info.seed);
  meta["best_epoch"] = std::to_string(m.options().epochs);
  meta["column_kind"] = "item";
  meta["columns"] = ids_json(info.column_map, d.item_ids);
  meta["row_kind"] = "user";
  meta["rows"] = ids_json(info.row_map, d.user_ids);
  std::vector<const StTensor*> ts;
  for (const auto& t : tensors) ts.push_back(&t);
  meta["checksum"] = content_checksum(meta, ts);
  save_safetensors(path, tensors, meta);
}

LoadedSvd load_svd_model_file(const std::string& path, const Dataset& d) {
  const StFile f = load_safetensors(path);
  LoadedSvd ls;
  ls.info = parse_info(f, path, d);
  ModelFileInfo& info = ls.info;
  const std::string& kind = info.config.kind;
  if (!is_svd_kind(kind))
    throw DataError(path, 0, "holds a " + kind + " model, not svd / svdpp");
  const bool pp = kind == "svdpp";
  const int64_t U = d.num_users(), I = d.num_items(), F = info.svd.factors;
  if (F < 1 || F != info.config.hidden) throw DataError(path, 0, "the factor count in 'svd' and 'config' disagree");
  // The epochs also drive a new user's fold-in: more than --epochs accepts would run for hours.
  if (info.svd.epochs < 1 || info.svd.epochs > 100000 || !(info.svd.lr > 0) || !std::isfinite(info.svd.lr) ||
      !(info.svd.reg >= 0) || !std::isfinite(info.svd.reg))
    throw DataError(path, 0, "implausible SGD settings in the 'svd' metadata (epochs " + std::to_string(info.svd.epochs) +
                                 ", lr " + std::to_string(info.svd.lr) + ", reg " + std::to_string(info.svd.reg) +
                                 "; --epochs takes 1 to 100000)");
  if (static_cast<int64_t>(info.column_map.size()) != I || static_cast<int64_t>(info.row_map.size()) != U)
    throw DataError(path, 0, "the model covers " + std::to_string(info.row_map.size()) + " users x " +
                                 std::to_string(info.column_map.size()) + " items, the dataset " + std::to_string(U) +
                                 " x " + std::to_string(I));
  // Each dataset user and item exactly once (duplicated ids in the file would break that).
  std::vector<int32_t> row_of(static_cast<size_t>(U), -1), col_of(static_cast<size_t>(I), -1);
  for (size_t r = 0; r < info.row_map.size(); ++r) {
    if (row_of[info.row_map[r]] >= 0) throw DataError(path, 0, "user id listed twice in 'rows'");
    row_of[info.row_map[r]] = static_cast<int32_t>(r);
  }
  for (size_t c = 0; c < info.column_map.size(); ++c) {
    if (col_of[info.column_map[c]] >= 0) throw DataError(path, 0, "item id listed twice in 'columns'");
    col_of[info.column_map[c]] = static_cast<int32_t>(c);
  }
  struct Want {
    const char* name;
    const char* dtype;
    std::vector<int64_t> shape;
  };
  std::vector<Want> want = {{"global_mean", "F64", {1}},       {"user_bias", "F64", {U}},
                            {"item_bias", "F64", {I}},         {"user_factors", "F64", {U, F}},
                            {"item_factors", "F64", {I, F}},   {"user_rating_counts", "I32", {U}},
                            {"item_rating_counts", "I32", {I}}};
  if (pp) want.push_back({"implicit_factors", "F64", {I, F}});
  for (const StTensor& t : f.tensors) {
    const bool known = std::any_of(want.begin(), want.end(), [&](const Want& w) { return t.name == w.name; }) ||
                       (pp && t.name == "implicit_items");
    if (!known) throw DataError(path, 0, "unexpected tensor '" + t.name + "' (not a parameter of " + kind + ")");
  }
  auto get = [&](const Want& w) -> const StTensor& {
    const StTensor* t = f.find(w.name);
    if (!t) throw DataError(path, 0, std::string("missing tensor '") + w.name + "' " + shape_str(w.shape));
    if (t->dtype != w.dtype)
      throw DataError(path, 0, "tensor '" + t->name + "' has dtype " + t->dtype + ", expected " + w.dtype);
    if (t->shape != w.shape)
      throw DataError(path, 0, "tensor '" + t->name + "' has shape " + shape_str(t->shape) + ", expected " +
                                   shape_str(w.shape));
    return *t;
  };
  auto f64 = [&](size_t k) {
    std::vector<double> v = get(want[k]).as_f64();
    for (double x : v)
      if (!std::isfinite(x)) throw DataError(path, 0, std::string("tensor '") + want[k].name + "' holds a non-finite value");
    return v;
  };
  auto i32 = [&](size_t k) {
    std::vector<int32_t> v = get(want[k]).as_i32();
    for (int32_t x : v)
      if (x < 0) throw DataError(path, 0, std::string("tensor '") + want[k].name + "' holds a negative count");
    return v;
  };
  const std::vector<double> mu = f64(0), bu = f64(1), bi = f64(2), pu = f64(3), qi = f64(4);
  const std::vector<int32_t> ucount = i32(5), icount = i32(6);
  std::vector<double> yj;
  if (pp) yj = f64(7);
  // Model rows / columns → dataset order (the identity for a file written from this dataset).
  SvdState st;
  st.options = info.svd;
  st.options.plus_plus = pp;
  st.rating_min = info.config.rating_min;
  st.rating_max = info.config.rating_max;
  st.mu = mu[0];
  st.bu.resize(static_cast<size_t>(U));
  st.bi.resize(static_cast<size_t>(I));
  st.pu.resize(static_cast<size_t>(U * F));
  st.qi.resize(static_cast<size_t>(I * F));
  st.user_counts.resize(static_cast<size_t>(U));
  st.item_counts.resize(static_cast<size_t>(I));
  if (pp) st.yj.resize(static_cast<size_t>(I * F));
  for (int64_t u = 0; u < U; ++u) {
    const int64_t r = row_of[u];
    st.bu[u] = bu[r];
    st.user_counts[u] = ucount[r];
    std::copy(pu.begin() + r * F, pu.begin() + (r + 1) * F, st.pu.begin() + u * F);
  }
  for (int64_t i = 0; i < I; ++i) {
    const int64_t c = col_of[i];
    st.bi[i] = bi[c];
    st.item_counts[i] = icount[c];
    std::copy(qi.begin() + c * F, qi.begin() + (c + 1) * F, st.qi.begin() + i * F);
    if (pp) std::copy(yj.begin() + c * F, yj.begin() + (c + 1) * F, st.yj.begin() + i * F);
  }
  if (pp) {
    int64_t total = 0;
    std::vector<int64_t> start(static_cast<size_t>(U + 1), 0);  // by model row
    for (int64_t r = 0; r < U; ++r) start[r + 1] = start[r] + ucount[r];
    total = start[U];
    const std::vector<int32_t> items = get({"implicit_items", "I32", {total}}).as_i32();
    for (int32_t c : items)
      if (c < 0 || c >= I) throw DataError(path, 0, "tensor 'implicit_items' holds an item index out of range");
    st.implicit_items.reserve(static_cast<size_t>(total));
    for (int64_t u = 0; u < U; ++u) {
      const int64_t r = row_of[u];
      std::vector<int32_t> mine;
      for (int64_t k = start[r]; k < start[r + 1]; ++k) mine.push_back(info.column_map[items[k]]);
      std::sort(mine.begin(), mine.end());
      st.implicit_items.insert(st.implicit_items.end(), mine.begin(), mine.end());
    }
  } else if (f.find("implicit_items")) {
    throw DataError(path, 0, "unexpected tensor 'implicit_items' (not a parameter of svd)");
  }
  try {
    ls.model = std::make_unique<SvdModel>(std::move(st));
  } catch (const std::exception& e) {
    throw DataError(path, 0, std::string("inconsistent SVD parameters: ") + e.what());
  }
  // The identity maps describe the model now that it is in dataset order.
  std::iota(info.column_map.begin(), info.column_map.end(), 0);
  std::iota(info.row_map.begin(), info.row_map.end(), 0);
  return ls;
}

std::string peek_model_metadata(const std::string& path, const std::string& key) {
  if (is_stream_file(path)) {  // read whole, once: the load that follows reads the same bytes
    try {
      return load_safetensors(path).metadata.at(key);
    } catch (const std::exception&) {
      return "";
    }
  }
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) return "";
  std::string value;
  unsigned char len_bytes[8];
  if (std::fread(len_bytes, 1, 8, fp) == 8) {
    uint64_t n = 0;
    for (int b = 7; b >= 0; --b) n = (n << 8) | len_bytes[b];
    if (n > 0 && n < (uint64_t{1} << 30)) {
      std::string header(static_cast<size_t>(n), '\0');
      if (std::fread(header.data(), 1, header.size(), fp) == header.size()) {
        try {
          const nlohmann::json j = nlohmann::json::parse(header);
          value = j.at("__metadata__").at(key).get<std::string>();
        } catch (const std::exception&) {
          value.clear();
        }
      }
    }
  }
  std::fclose(fp);
  return value;
}

std::string peek_model_kind(const std::string& path) { return peek_model_metadata(path, "model"); }

}  // namespace vae
