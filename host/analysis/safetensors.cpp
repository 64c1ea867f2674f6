#include "analysis/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/temp_files.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors/npy I/O assumes a little-endian host"
#endif

namespace vae {
namespace {

// Same bound as the reference implementation: a header this large is corruption, not data.
constexpr uint64_t kMaxHeader = 100u * 1000u * 1000u;

template <typename T>
std::vector<T> typed_copy(const StTensor& t, const char* want) {
  VAE_CHECK(t.dtype == want, "tensor " + t.name + " has dtype " + t.dtype + ", not " + want);
  std::vector<T> v(t.data.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), t.data.data(), v.size() * sizeof(T));
  return v;
}

template <typename T>
StTensor make_tensor(std::string name, std::vector<int64_t> shape, const std::vector<T>& v,
                     const char* dtype) {
  StTensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data.resize(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(t.data.data(), v.data(), t.data.size());
  VAE_CHECK(t.numel() == static_cast<int64_t>(v.size()),
            "tensor " + t.name + ": shape does not match the number of values");
  return t;
}

// Element count of a shape, or −1 on overflow / negative extent.
int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0 || (s > 0 && n > std::numeric_limits<int64_t>::max() / s)) return -1;
    n *= s;
  }
  return n;
}

}  // namespace

int st_dtype_size(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F64" || dtype == "I64") return 8;
  return 0;
}

int64_t StTensor::numel() const { return shape_numel(shape); }
std::vector<float> StTensor::as_f32() const { return typed_copy<float>(*this, "F32"); }
std::vector<double> StTensor::as_f64() const { return typed_copy<double>(*this, "F64"); }
std::vector<int32_t> StTensor::as_i32() const { return typed_copy<int32_t>(*this, "I32"); }

const StTensor* StFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

StTensor st_tensor_f32(std::string name, std::vector<int64_t> shape, const std::vector<float>& v) {
  return make_tensor(std::move(name), std::move(shape), v, "F32");
}
StTensor st_tensor_f64(std::string name, std::vector<int64_t> shape, const std::vector<double>& v) {
  return make_tensor(std::move(name), std::move(shape), v, "F64");
}
StTensor st_tensor_i32(std::string name, std::vector<int64_t> shape,
                       const std::vector<int32_t>& v) {
  return make_tensor(std::move(name), std::move(shape), v, "I32");
}

std::string encode_safetensors(const std::vector<StTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header["__metadata__"] = m;
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    VAE_CHECK(!t.name.empty() && t.name != "__metadata__", "bad tensor name '" + t.name + "'");
    VAE_CHECK(names.insert(t.name).second, "duplicate tensor name " + t.name);
    const int es = st_dtype_size(t.dtype);
    VAE_CHECK(es > 0, "tensor " + t.name + ": unsupported dtype " + t.dtype);
    const int64_t n = t.numel();
    VAE_CHECK(n >= 0 && static_cast<uint64_t>(n) * es == t.data.size(),
              "tensor " + t.name + ": data size does not match shape × dtype size");
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  std::string out;
  out.reserve(8 + h.size() + offset);
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  out += h;
  for (const auto& t : tensors) out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
  return out;
}

void save_safetensors(const std::string& path, const std::vector<StTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_binary_atomically(path, encode_safetensors(tensors, metadata));
}

namespace {
// The little-endian u64 header length that opens a safetensors file (bytes holds at least 8).
uint64_t header_length(std::string_view bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  return n;
}
}  // namespace

StFile decode_safetensors(std::string_view bytes, const std::string& path) {
  auto fail = [&](const std::string& problem) -> DataError {
    return DataError(path, 0, "not a valid safetensors file: " + problem);
  };
  if (bytes.size() < 8)
    throw fail("truncated (" + std::to_string(bytes.size()) + " bytes, the header length alone is 8)");
  const uint64_t n = header_length(bytes);
  if (n > kMaxHeader) throw fail("header length " + std::to_string(n) + " is implausibly large");
  if (n > bytes.size() - 8)
    throw fail("header length " + std::to_string(n) + " runs past the end of the file (" +
               std::to_string(bytes.size()) + " bytes)");
  const std::string_view htext = bytes.substr(8, n);
  if (htext.empty() || htext[0] != '{') throw fail("header does not start with '{'");

  // nlohmann keeps the last of duplicate keys silently; a duplicate tensor name is corruption.
  std::string duplicate;
  std::set<std::string> top_keys;
  const nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t ev,
                                                   nlohmann::json& parsed) {
    if (ev == nlohmann::json::parse_event_t::key && depth == 1 &&
        !top_keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(htext.begin(), htext.end(), cb);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  if (!duplicate.empty()) throw fail("duplicate key '" + duplicate + "' in the header");

  const uint64_t data_size = bytes.size() - 8 - n;
  const std::string_view data = bytes.substr(8 + n);
  StFile file;
  struct Range {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw fail("__metadata__ value of '" + m.key() + "' is not a string");
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "': ";
    if (!v.is_object()) throw fail(where + "entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw fail(where + "missing dtype");
    if (!v.contains("shape") || !v["shape"].is_array()) throw fail(where + "missing shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      throw fail(where + "data_offsets must be [begin, end]");
    StTensor t;
    t.name = name;
    t.dtype = v["dtype"].get<std::string>();
    const int es = st_dtype_size(t.dtype);
    if (es == 0) throw fail(where + "unknown or unsupported dtype '" + t.dtype + "'");
    for (const auto& s : v["shape"]) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0)
        throw fail(where + "shape entries must be non-negative integers");
      t.shape.push_back(s.get<int64_t>());
    }
    uint64_t off[2];
    for (int k = 0; k < 2; ++k) {
      const auto& o = v["data_offsets"][k];
      if (!o.is_number_integer() || o.get<int64_t>() < 0)
        throw fail(where + "data_offsets must be non-negative integers");
      off[k] = o.get<uint64_t>();
    }
    if (off[0] > off[1]) throw fail(where + "data_offsets begin > end");
    if (off[1] > data_size)
      throw fail(where + "data_offsets end " + std::to_string(off[1]) + " beyond the data (" +
                 std::to_string(data_size) + " bytes; truncated file?)");
    const int64_t numel = t.numel();
    if (numel < 0 || static_cast<uint64_t>(numel) > (off[1] - off[0]) / es ||
        static_cast<uint64_t>(numel) * es != off[1] - off[0])
      throw fail(where + "shape × dtype size does not match the byte range " +
                 std::to_string(off[0]) + ".." + std::to_string(off[1]));
    ranges.push_back({off[0], off[1], file.tensors.size()});
    file.tensors.push_back(std::move(t));
  }
  // The byte ranges must tile the data exactly: no overlap, no gap, nothing after the last.
  std::stable_sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const auto& r : ranges) {
    const std::string& name = file.tensors[r.tensor].name;
    if (r.begin < pos) throw fail("tensor '" + name + "' overlaps the previous tensor");
    if (r.begin > pos) throw fail("gap in the data before tensor '" + name + "'");
    pos = r.end;
  }
  if (pos != data_size)
    throw fail(std::to_string(data_size - pos) + (data_size - pos == 1 ? " byte after the last tensor is" : " bytes after the last tensor are") + " not covered");

  std::vector<StTensor> ordered;
  ordered.reserve(ranges.size());
  for (const auto& r : ranges) {
    StTensor t = std::move(file.tensors[r.tensor]);
    t.data.assign(data.begin() + r.begin, data.begin() + r.end);
    ordered.push_back(std::move(t));
  }
  file.tensors = std::move(ordered);
  return file;
}

bool is_stream_file(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  return !ec && std::filesystem::exists(st) && !std::filesystem::is_regular_file(st) &&
         !std::filesystem::is_directory(st);
}

const std::string& stream_file_bytes(const std::string& path) {
  // A pipe can be read only once, and a model file is read twice (its metadata first, to find
  // the data it was trained on, then whole): its bytes are kept for the process's later reads.
  static std::map<std::string, std::string> kept;
  if (auto it = kept.find(path); it != kept.end()) return it->second;
  // An endless stream (--model-file /dev/zero) would fill memory: its first 8 bytes, a header
  // length no model file has, end the read there.
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path, 0, "cannot open for reading");
  std::string bytes(8, '\0');
  f.read(bytes.data(), 8);
  bytes.resize(static_cast<size_t>(f.gcount()));
  if (bytes.size() == 8 && header_length(bytes) > 0 && header_length(bytes) <= kMaxHeader) {
    std::ostringstream rest;
    rest << f.rdbuf();
    if (f.bad()) throw DataError(path, 0, "read failed");
    bytes += rest.str();
  }
  return kept.emplace(path, std::move(bytes)).first->second;
}

StFile load_safetensors(const std::string& path) {
  if (is_stream_file(path)) return decode_safetensors(stream_file_bytes(path), path);
  const std::string bytes = read_binary_file(path);
  return decode_safetensors(bytes, path);
}

std::string read_binary_file(const std::string& path) {
  std::error_code ec;
  // ifstream happily "opens" a directory and then reads nothing.
  if (std::filesystem::is_directory(path, ec)) throw DataError(path, 0, "is a directory, not a file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path, 0, "cannot open for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw DataError(path, 0, "read failed");
  return ss.str();
}

void write_binary_atomically(const std::string& path, std::string_view bytes) {
  const std::string tmp = own_temp_path(path);  // never shared with another writer of the file
  const TempFileGuard guard(tmp);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw DataError(path, 0, "cannot create " + tmp + ": " + std::strerror(errno));
  size_t done = 0;
  int err = 0;
  while (done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    done += static_cast<size_t>(w);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    throw DataError(path, 0, std::string("write failed (") + std::strerror(err) + "); old file kept");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    throw DataError(path, 0, "cannot rename " + tmp + ": " + std::strerror(err));
  }
}

}  // namespace vae
