// The safetensors container (https://github.com/huggingface/safetensors): 8-byte little-endian
// header length N, N bytes of JSON header (padded with spaces to a multiple of 8), then the raw
// little-endian tensor bytes, laid out in offset order without gaps. Used to export latent μ,
// centres and embeddings so that Python (numpy / torch / safetensors) can read them directly.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace vae {

struct StTensor {
  std::string name;
  std::string dtype;            // "F32", "F64", "I32" or "I64"
  std::vector<int64_t> shape;   // {} = scalar (one element)
  std::vector<uint8_t> data;    // little-endian, row-major

  int64_t numel() const;
  // Typed copies of the data; throw VaeError when the dtype differs.
  std::vector<float> as_f32() const;
  std::vector<double> as_f64() const;
  std::vector<int32_t> as_i32() const;
};

struct StFile {
  std::map<std::string, std::string> metadata;
  std::vector<StTensor> tensors;  // in data-offset order
  // The tensor called name, or nullptr.
  const StTensor* find(const std::string& name) const;
};

// Bytes per element of a safetensors dtype, or 0 when the dtype is not supported here.
int st_dtype_size(const std::string& dtype);

StTensor st_tensor_f32(std::string name, std::vector<int64_t> shape, const std::vector<float>& v);
StTensor st_tensor_f64(std::string name, std::vector<int64_t> shape, const std::vector<double>& v);
StTensor st_tensor_i32(std::string name, std::vector<int64_t> shape, const std::vector<int32_t>& v);

// The complete file contents (header + data). Throws VaeError on a malformed tensor (unknown
// dtype, data size ≠ shape × dtype size, empty or duplicate name, name "__metadata__").
std::string encode_safetensors(const std::vector<StTensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {});
// Writes atomically: a temporary file in the same directory, then rename, so a failure leaves
// any previous file untouched. Throws DataError(path, 0, …) on I/O failure.
void save_safetensors(const std::string& path, const std::vector<StTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Parses file contents; every inconsistency (truncation, header beyond the file, invalid JSON,
// unknown dtype, offsets out of range / overlapping / leaving gaps or trailing bytes, shape ×
// dtype size ≠ byte range) throws DataError(path, 0, problem).
StFile decode_safetensors(std::string_view bytes, const std::string& path = "<memory>");
StFile load_safetensors(const std::string& path);
// A path that is neither a regular file nor a folder (a pipe, a device), and its bytes, read
// once and kept for the process's later reads of the same path.
bool is_stream_file(const std::string& path);
const std::string& stream_file_bytes(const std::string& path);

// Shared by the analysis writers: bytes to path via temp file + fsync + rename.
void write_binary_atomically(const std::string& path, std::string_view bytes);
// Whole file into memory; DataError when it cannot be read.
std::string read_binary_file(const std::string& path);

}  // namespace vae
