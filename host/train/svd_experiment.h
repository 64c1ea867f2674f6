// SVD / SVD++ runs in the ratings protocol: one split (random 90/10 or an ml-100k fold) or
// k-fold cross-validation reporting mean ± std like Surprise's benchmark table.
#pragma once
#include <iosfwd>

#include "train/trainer.h"

namespace vae {

bool is_svd_kind(const std::string& kind);

// opt.model: hidden = factors (0 = default), lambda = reg (< 0 = 0.02); opt.adam.lr = SGD
// learning rate (0 = default); opt.folds ≥ 2 runs k-fold cross-validation.
TrainResult run_svd_experiment(const Dataset& d, TrainOptions opt, std::ostream& log);

}  // namespace vae
