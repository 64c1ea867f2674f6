// The memory a training run needs on its backend, worked out from the model's shapes, the
// batch size and the data before anything is allocated, so a run that cannot fit is refused
// up front with advice instead of failing half-way with an allocation error.
//
// How it grows (4-byte floats; I = model inputs (items), H = first hidden width, B = batch,
// U = training rows, nnz = stored ratings):
//  - parameters + Adam: five copies (weights, gradients, best-epoch copy, Adam m and v) of
//    ≈ 2·I·H weights (the first and the last layer; CDAE adds its U × H user table):
//    ≈ 40·I·H bytes. Mult-VAE on ml-20m (I = 20 108, H = 600): 468 MiB.
//  - batch buffers: a handful of dense B × I matrices — the loss target, the output logits and
//    their gradient, the evaluation scores and truth, and with a dense first layer the
//    (transformed) input — ≈ 4·k·B·I bytes, k = 6 (Mult-VAE dense) or 5 (sparse).
//  - dataset: 8 bytes per stored rating (column + value) and 8 per row, for the training
//    matrix and the evaluation fold-in / target matrices.
// Everything but the dataset grows linearly in I. A Mult-VAE with H = 600, B = 500 needs per
// item ≈ 24 kB of parameters and Adam state (5 × 1 201 floats) plus 10 kB (sparse) or 12 kB
// (dense) of batch buffers: ml-20m (I = 20 108, 10 M ratings) plans 0.7 GiB, under 1 % of a
// 141 GB H200, and ≈ 4 million items would fit. Before that the GPU top-k's exclusion bitmap
// (one bit per item in ≤ 227 KiB of shared memory) caps evaluation at ≈ 1.8 million items.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "models/model.h"

namespace vae {

struct MemoryPlan {
  int64_t parameters = 0;    // weights, gradients and the best-epoch copy
  int64_t adam = 0;          // Adam's first and second moments
  int64_t batch_dense = 0;   // per-batch buffers (model and evaluation), dense first layer
  int64_t batch_sparse = 0;  // the same with the sparse first layer (CSR batch input)
  int64_t dataset = 0;       // CSR matrices on the backend, batch order and evaluation row ids
  bool sparse = false;       // which of the two batch figures this run uses
  bool fixed_width = false;  // the notebook VAE: its layer widths are fixed (--latent sizes it)
  int64_t latent = 0;        // the resolved latent size of a VAE (0: the model has none)
  int64_t batch_rows = 0;    // the batch size it was planned for
  int64_t batch() const { return sparse ? batch_sparse : batch_dense; }
  int64_t total() const { return parameters + adam + batch() + dataset; }
};

// An autoencoder's parameter count and work-buffer bytes (its constructor's shapes and
// defaults: cfg.num_inputs, and for CDAE cfg.num_rows, must be set), without building it.
int64_t planned_param_count(const ModelConfig& cfg);
int64_t planned_model_buffer_bytes(const ModelConfig& cfg, int64_t batch, bool sparse);
// Bytes of a CSR matrix on a backend (int64 indptr, int32 columns, float values).
int64_t csr_device_bytes(const Csr& m);

// The whole run: model (parameters, Adam, work buffers), the evaluator's per-batch buffers
// (scores and truth B × I, top-k indices and values B × kmax, metrics), and dataset_bytes
// (csr_device_bytes of every matrix the run uploads plus its index vectors).
MemoryPlan plan_memory(const ModelConfig& cfg, int64_t batch, bool sparse, int kmax, int num_ks,
                       int64_t dataset_bytes);

// "memory plan: weights+gradients+best copy X MiB, Adam state Y MiB, batch buffers Z MiB (dense input A / sparse
// input B), dataset CSR W MiB, total T MiB of D MiB free on <device>"; without a fixed pool
// (have_free false, the CPU) the tail reads "total T MiB (host memory, <device>)".
std::string format_memory_plan(const MemoryPlan& p, const std::string& device, bool have_free,
                               size_t free_bytes);

// Headroom left free for what the plan does not count (cuBLAS workspace, allocator rounding).
int64_t memory_plan_reserve(const MemoryPlan& p);

// Throws UsageError naming what to reduce when total + reserve exceeds free_bytes.
void check_memory_plan(const MemoryPlan& p, const std::string& device, size_t free_bytes);

// Host memory a run may still take (Linux: MemAvailable of /proc/meminfo); 0 when unknown.
int64_t host_available_bytes();
// This process's resident memory now (Linux: VmRSS of /proc/self/status); 0 when unknown.
int64_t process_resident_bytes();

// EASE's closed form grows with items², not items: XᵀX and its inverse in double on the host
// (8·I² each; without LAPACK the Cholesky factor takes 8·I² more) and B as floats (4·I²) before
// it goes to the backend, where B (4·I²) and a batch's scores, truth and work rows (3·B·I floats)
// stay. 10 000 items: 1.9 GiB on the host at its peak.
struct EasePlan {
  int64_t items = 0;
  int64_t host = 0;     // the solve's peak, host memory
  int64_t backend = 0;  // B and the batch buffers, on the backend
};
EasePlan plan_ease(int64_t items, int64_t batch, int64_t dataset_bytes);
// "memory plan (EASE): ..." for the run's log.
std::string format_ease_plan(const EasePlan& p, const std::string& device);
// Throws UsageError when the solve cannot fit: host_free the host's available memory (0 =
// unknown: no check), backend_free the backend's free memory (0 = it is the host).
void check_ease_plan(const EasePlan& p, const std::string& device, int64_t host_free, int64_t backend_free);

}  // namespace vae
