// Trained-model files: model.safetensors holds every parameter tensor of an autoencoder (F32,
// rows × cols, named as Model::params()) and, in __metadata__, all that is needed to rebuild it
// and to map its rows and columns back to the dataset:
//   format "vae_gpu-model", format_version "1", model, config (ModelConfig as JSON), protocol,
//   dataset, dataset_source, dataset_fingerprint (Dataset::fingerprint()), columns (JSON array of
//   original ids; column_kind "item", or "user" for item-based AutoRec), rows / row_kind for
//   models with per-row state or per-row input (CDAE: training users; i-autorec: items),
//   input (JSON {"binary", "threshold"}: how a rating row becomes model input), batch_size,
//   seed, best_epoch, and checksum (FNV-1a over the other metadata and every tensor's name,
//   dtype, shape and bytes), so a flipped byte anywhere in the file is refused.
// SVD / SVD++ (model "svd" / "svdpp") use the same container, checksum and metadata (config with
// num_inputs = items, num_rows = users, hidden = factors, lambda = reg; columns = item ids, rows
// = user ids; batch_size 1; input {binary false, threshold 0}) plus "svd" (JSON: factors, epochs,
// lr, reg, init_std, schedule, blocks, device) and "ratings_split" ("random" 90/10 from seed, or
// the ml-100k fold), with F64 tensors global_mean [1], user_bias [users], item_bias [items],
// user_factors [users, f], item_factors [items, f], SVD++'s implicit_factors [items, f], and I32
// user_rating_counts [users], item_rating_counts [items] (who is known to the model) and SVD++'s
// implicit_items [training ratings] (each user's N(u), model column indices, user by user).
// Popularity and EASE have no trained parameters (EASE's item-item matrix is a closed-form fit
// that takes seconds): no file is written for them; `recommend --model ease` refits instead.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "analysis/safetensors.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "models/model.h"
#include "models/svd.h"

namespace vae {

struct TrainResult;

// What the model's rows and columns mean, and how its input rows are built.
struct ModelFileInfo {
  ModelConfig config;
  std::string protocol, dataset, dataset_source, fingerprint;
  std::vector<int32_t> column_map;  // model column → dataset item index (item_based: user index)
  std::vector<int32_t> row_map;     // training row → dataset user index (item_based: item index);
                                    // empty when the model keeps no per-row state
  bool item_based = false;          // i-autorec
  bool binary_input = false;        // input rows are 0/1
  double input_threshold = 0;       // ratings below this are no input (0 = every rating)
  int64_t batch_size = 64;
  uint64_t seed = 1;
  int best_epoch = 0;
  // The split trained on: the ratings protocol's (every SVD file; autoencoder files from
  // 2026-12-06 on) and the seed protocol's test fraction (0 = not recorded: older files).
  std::string ratings_split;
  double test_fraction = 0;
  int leave_last = 0;  // temporal protocol: latest positives held out per user
  int64_t val_from = 0, test_from = 0;  // cutoff protocol: the cuts, seconds since 1970
  // SVD / SVD++ only: the SGD settings.
  SvdOptions svd;
};

struct LoadedModel {
  ModelFileInfo info;
  std::unique_ptr<Model<float>> model;  // lives on the backend passed to load_model_file
};

inline constexpr const char* kModelFileName = "model.safetensors";

// The info of a finished training run (TrainResult's maps, the model's resolved config).
ModelFileInfo model_file_info(const TrainResult& r, const Dataset& d);

// True when the model kind has parameters a file can hold (not popularity / EASE).
bool model_kind_saveable(const std::string& kind);

// Writes model.safetensors atomically (temp + rename). Throws UsageError for popularity/EASE,
// DataError on I/O failure.
void save_model_file(const std::string& path, Backend<float>& be, const Model<float>& model,
                     const ModelFileInfo& info, const Dataset& d);
// dir/model.safetensors of a training run; returns false (writes nothing) for models without
// parameters.
bool write_model_file(const std::string& dir, Backend<float>& be, const TrainResult& r,
                      const Dataset& d);

// The checksum stored in metadata["checksum"]: FNV-1a over the other metadata entries (key order)
// and every tensor's name, dtype, shape and bytes (name order). Exposed for tests and tools that
// edit a file on purpose.
std::string model_file_checksum(const std::map<std::string, std::string>& metadata,
                                const std::vector<StTensor>& tensors);

// Reads the metadata only (no model is built). DataError(path, 0, problem) on any inconsistency.
ModelFileInfo read_model_file_info(const std::string& path, const Dataset& d);

// Rebuilds the model with make_model (max_batch = max(batch_size in the file, max_batch)) and
// uploads the weights. Refuses with DataError(path, 0, problem): unreadable, truncated or corrupt
// files (checksum), missing / extra / mis-shaped / non-F32 tensors, unknown kinds or configs,
// and a dataset other than the one the model was trained on (says which one that was).
LoadedModel load_model_file(const std::string& path, Backend<float>& be, const Dataset& d,
                            int64_t max_batch = 0);

// ---- SVD / SVD++ ------------------------------------------------------------------------

struct LoadedSvd {
  ModelFileInfo info;
  std::unique_ptr<SvdModel> model;  // in the dataset's user and item order
};

// The info of a trained SVD model (ratings_split: "random" or the ml-100k fold it used).
ModelFileInfo svd_model_file_info(const SvdModel& m, const Dataset& d, const std::string& ratings_split,
                                  uint64_t seed);
// Writes model.safetensors for an SVD / SVD++ model atomically; DataError on I/O failure.
void save_svd_model_file(const std::string& path, const SvdModel& m, const ModelFileInfo& info, const Dataset& d);
// Refuses (DataError(path, 0, problem)) everything load_model_file refuses, an autoencoder file,
// and tensors that are missing, extra, mis-typed, mis-shaped or non-finite.
LoadedSvd load_svd_model_file(const std::string& path, const Dataset& d);

// An entry of a model file's metadata ("model", "dataset_source", …), read from the header
// alone; "" when the file is not a readable safetensors file or has no such string entry (the
// full loaders then say what is wrong).
std::string peek_model_metadata(const std::string& path, const std::string& key);
std::string peek_model_kind(const std::string& path);  // the "model" entry

}  // namespace vae
