// A small model trained on the CPU for the analysis tests (recommend, similar): two epochs, the
// VAEs with an 8-wide latent space, the run's model-file description beside it.
#pragma once
#include <memory>
#include <sstream>
#include <string>

#include "analysis/model_file.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "train/trainer.h"

namespace vae::test {

// A synthetic data set of the given shape (planted taste groups, titles, genres).
inline Dataset synthetic_data(int64_t users, int64_t items, int64_t ratings, int groups, uint64_t seed) {
  SyntheticSpec s;
  s.users = users;
  s.items = items;
  s.ratings = ratings;
  s.groups = groups;
  s.seed = seed;
  return make_synthetic(s);
}

struct Trained {
  std::unique_ptr<Backend<float>> be;
  TrainResult r;
  ModelFileInfo info;
};

// The small run on a given backend: `epochs` epochs, the VAEs 8 latent units, and heldout users
// kept from `min_positives` positives up (0: the split's default).
inline TrainResult run_small(Backend<float>& be, const Dataset& d, const std::string& kind, const std::string& protocol,
                             int hidden = 0, int epochs = 2, int min_positives = 0) {
  TrainOptions o;
  o.model.kind = kind;
  o.protocol = protocol;
  o.epochs = epochs;
  o.quiet = true;
  o.model.hidden = hidden;
  if (kind == "vae" || kind == "multvae") o.model.latent = 8;
  if (min_positives > 0) o.heldout.min_positives = min_positives;
  std::ostringstream log;
  return run_experiment(be, d, o, log);
}

inline Trained train_small(const Dataset& d, const std::string& kind, const std::string& protocol, int hidden = 0) {
  Trained t;
  t.be = make_cpu_backend<float>();
  t.r = run_small(*t.be, d, kind, protocol, hidden);
  t.info = model_file_info(t.r, d);
  return t;
}

}  // namespace vae::test
