// NumPy .npy files (format version 1.0; 2.0 is also read): "\x93NUMPY", version, a
// little-endian header length, a Python-dict header padded with spaces and '\n' so that the data
// starts at a multiple of 64 bytes, then the C-order little-endian data. numpy.load reads what
// save_npy_f32 / save_npy_i32 write; np.save output is read back here.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vae {

struct NpyArray {
  std::string descr;            // "<f4", "<f8", "<i4" or "<i8"
  std::vector<int64_t> shape;   // () = scalar
  std::vector<uint8_t> data;    // C order, little-endian

  int64_t numel() const;
};

// The complete file contents. Throws VaeError when data size ≠ shape × item size or descr is
// unsupported.
std::string encode_npy(const NpyArray& a);
// Validates everything (magic, version, header length, dict syntax and keys, fortran_order,
// supported descr, data size exactly shape × item size); throws DataError(path, 0, problem).
NpyArray decode_npy(std::string_view bytes, const std::string& path = "<memory>");

// Atomic writes (temp file + rename); DataError on I/O failure.
void save_npy_f32(const std::string& path, const std::vector<float>& v, int64_t rows, int64_t cols);
// The file contents save_npy_f32 writes (for writers that stage files and rename them together).
std::string npy_f32_bytes(const std::vector<float>& v, int64_t rows, int64_t cols);
void save_npy_i32(const std::string& path, const std::vector<int32_t>& v);
NpyArray load_npy(const std::string& path);
// Typed loads: DataError when the file's dtype or rank differs.
std::vector<float> load_npy_f32(const std::string& path, int64_t* rows, int64_t* cols);
std::vector<int32_t> load_npy_i32(const std::string& path);

}  // namespace vae
