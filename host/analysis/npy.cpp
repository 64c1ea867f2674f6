#include "analysis/npy.h"

#include <cctype>
#include <cstring>
#include <limits>

#include "analysis/safetensors.h"
#include "core/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy I/O assumes a little-endian host"
#endif

namespace vae {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;

int descr_size(const std::string& descr) {
  if (descr == "<f4" || descr == "<i4") return 4;
  if (descr == "<f8" || descr == "<i8") return 8;
  return 0;
}

// Product of the extents, or −1 on a negative extent or overflow.
int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0 || (s > 0 && n > std::numeric_limits<int64_t>::max() / s)) return -1;
    n *= s;
  }
  return n;
}

// A tiny parser for the one Python literal numpy writes: a dict of str keys to str, bool or a
// tuple of ints. Anything else is refused (numpy's own safe_eval accepts more, but no writer
// produces more).
class HeaderParser {
 public:
  HeaderParser(std::string_view s, const std::string& path) : s_(s), path_(path) {}

  struct Dict {
    bool has_descr = false, has_fortran = false, has_shape = false;
    std::string descr;
    bool fortran = false;
    std::vector<int64_t> shape;
  };

  Dict parse() {
    Dict d;
    skip_ws();
    expect('{');
    skip_ws();
    while (peek() != '}') {
      const std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (d.has_descr) fail("duplicate key 'descr'");
        d.has_descr = true;
        if (peek() != '\'' && peek() != '"')
          fail("descr must be a plain type string (structured dtypes are not supported)");
        d.descr = parse_string();
      } else if (key == "fortran_order") {
        if (d.has_fortran) fail("duplicate key 'fortran_order'");
        d.has_fortran = true;
        d.fortran = parse_bool();
      } else if (key == "shape") {
        if (d.has_shape) fail("duplicate key 'shape'");
        d.has_shape = true;
        d.shape = parse_tuple();
      } else {
        fail("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        skip_ws();
      } else if (peek() != '}') {
        fail("expected ',' or '}' in the header dict");
      }
    }
    ++pos_;
    skip_ws();
    if (pos_ != s_.size()) fail("trailing characters after the header dict");
    if (!d.has_descr || !d.has_fortran || !d.has_shape)
      fail("header must have the keys 'descr', 'fortran_order' and 'shape'");
    return d;
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw DataError(path_, 0, "not a valid .npy file: " + problem);
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "' in the header");
    ++pos_;
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  std::string parse_string() {
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string in the header");
    ++pos_;
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\') fail("escapes in header strings are not supported");
      out.push_back(s_[pos_++]);
    }
    if (pos_ >= s_.size()) fail("unterminated string in the header");
    ++pos_;
    return out;
  }
  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("fortran_order must be True or False");
  }
  int64_t parse_int() {
    if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("shape entries must be non-negative integers");
    int64_t v = 0;
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      const int digit = s_[pos_++] - '0';
      if (v > (std::numeric_limits<int64_t>::max() - digit) / 10) fail("shape entry too large");
      v = v * 10 + digit;
    }
    if (peek() == 'L') ++pos_;  // Python 2 longs
    return v;
  }
  // "()", "(3,)", "(3, 4)", "(3, 4,)".
  std::vector<int64_t> parse_tuple() {
    expect('(');
    skip_ws();
    std::vector<int64_t> v;
    bool trailing_comma = false;
    while (peek() != ')') {
      v.push_back(parse_int());
      skip_ws();
      trailing_comma = false;
      if (peek() == ',') {
        ++pos_;
        trailing_comma = true;
        skip_ws();
      } else if (peek() != ')') {
        fail("expected ',' or ')' in the shape tuple");
      }
    }
    ++pos_;
    // (3) is the int 3 in Python, not a tuple.
    if (v.size() == 1 && !trailing_comma) fail("shape must be a tuple, e.g. (3,)");
    return v;
  }

  std::string_view s_;
  const std::string& path_;
  size_t pos_ = 0;
};

std::string shape_repr(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

template <typename T>
NpyArray make_array(const char* descr, std::vector<int64_t> shape, const std::vector<T>& v) {
  NpyArray a;
  a.descr = descr;
  a.shape = std::move(shape);
  a.data.resize(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(a.data.data(), v.data(), a.data.size());
  return a;
}

template <typename T>
std::vector<T> typed_data(const NpyArray& a) {
  std::vector<T> v(a.data.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), a.data.data(), v.size() * sizeof(T));
  return v;
}

}  // namespace

int64_t NpyArray::numel() const { return shape_numel(shape); }

std::string encode_npy(const NpyArray& a) {
  const int es = descr_size(a.descr);
  VAE_CHECK(es > 0, "unsupported .npy dtype '" + a.descr + "'");
  const int64_t n = a.numel();
  VAE_CHECK(n >= 0 && static_cast<uint64_t>(n) * es == a.data.size(),
            ".npy data size does not match shape × item size");
  std::string header = "{'descr': '" + a.descr + "', 'fortran_order': False, 'shape': " +
                       shape_repr(a.shape) + ", }";
  // Version 1.0 (2-byte length) unless the header is too long for it, as numpy does.
  size_t prefix = kMagicLen + 2 + 2;
  int major = 1;
  if (prefix + header.size() + 1 > 65535) {
    prefix = kMagicLen + 2 + 4;
    major = 2;
  }
  const size_t total = prefix + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out(kMagic, kMagicLen);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const uint32_t hl = static_cast<uint32_t>(header.size());
  const int len_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < len_bytes; ++i) out.push_back(static_cast<char>((hl >> (8 * i)) & 0xFF));
  out += header;
  out.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  return out;
}

NpyArray decode_npy(std::string_view bytes, const std::string& path) {
  auto fail = [&](const std::string& problem) {
    return DataError(path, 0, "not a valid .npy file: " + problem);
  };
  if (bytes.size() < kMagicLen + 2 || bytes.substr(0, kMagicLen) != std::string_view(kMagic, kMagicLen))
    throw fail("missing the \\x93NUMPY magic (truncated or another format)");
  const int major = static_cast<uint8_t>(bytes[kMagicLen]);
  const int minor = static_cast<uint8_t>(bytes[kMagicLen + 1]);
  if ((major != 1 && major != 2) || minor != 0)
    throw fail("unsupported format version " + std::to_string(major) + "." + std::to_string(minor) +
               " (1.0 and 2.0 are read)");
  const size_t len_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLen + 2 + len_bytes;
  if (bytes.size() < prefix) throw fail("truncated in the header length");
  uint64_t hl = 0;
  for (size_t i = 0; i < len_bytes; ++i)
    hl |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[kMagicLen + 2 + i])) << (8 * i);
  if (hl > bytes.size() - prefix)
    throw fail("header length " + std::to_string(hl) + " runs past the end of the file (" +
               std::to_string(bytes.size()) + " bytes)");
  const std::string_view header = bytes.substr(prefix, hl);
  if (header.empty() || header.back() != '\n') throw fail("header is not terminated by a newline");
  const auto dict = HeaderParser(header, path).parse();

  NpyArray a;
  a.descr = dict.descr;
  a.shape = dict.shape;
  const int es = descr_size(a.descr);
  if (es == 0)
    throw fail("unsupported dtype '" + a.descr + "' (little-endian <f4, <f8, <i4, <i8 are read)");
  if (dict.fortran && a.shape.size() > 1)
    throw fail("fortran_order arrays are not supported; save with np.ascontiguousarray");
  const int64_t n = a.numel();
  if (n < 0 || static_cast<uint64_t>(n) > std::numeric_limits<uint64_t>::max() / es)
    throw fail("shape " + shape_repr(a.shape) + " is too large");
  const uint64_t want = static_cast<uint64_t>(n) * es;
  const uint64_t have = bytes.size() - prefix - hl;
  if (have != want)
    throw fail("data is " + std::to_string(have) + " bytes but shape " + shape_repr(a.shape) + " of " +
               a.descr + " needs " + std::to_string(want) + (have < want ? " (truncated file?)" : ""));
  const std::string_view data = bytes.substr(prefix + hl);
  a.data.assign(data.begin(), data.end());
  return a;
}

std::string npy_f32_bytes(const std::vector<float>& v, int64_t rows, int64_t cols) {
  VAE_CHECK(rows >= 0 && cols >= 0 && static_cast<uint64_t>(rows) * cols == v.size(),
            "save_npy_f32: " + std::to_string(v.size()) + " values for shape " +
                std::to_string(rows) + " x " + std::to_string(cols));
  return encode_npy(make_array("<f4", {rows, cols}, v));
}

void save_npy_f32(const std::string& path, const std::vector<float>& v, int64_t rows, int64_t cols) {
  write_binary_atomically(path, npy_f32_bytes(v, rows, cols));
}

void save_npy_i32(const std::string& path, const std::vector<int32_t>& v) {
  write_binary_atomically(path, encode_npy(make_array("<i4", {static_cast<int64_t>(v.size())}, v)));
}

NpyArray load_npy(const std::string& path) { return decode_npy(read_binary_file(path), path); }

std::vector<float> load_npy_f32(const std::string& path, int64_t* rows, int64_t* cols) {
  NpyArray a = load_npy(path);
  if (a.descr != "<f4") throw DataError(path, 0, "expected float32 (<f4) data, found " + a.descr);
  if (a.shape.size() != 2)
    throw DataError(path, 0, "expected a 2-D array, found shape " + shape_repr(a.shape));
  if (rows) *rows = a.shape[0];
  if (cols) *cols = a.shape[1];
  return typed_data<float>(a);
}

std::vector<int32_t> load_npy_i32(const std::string& path) {
  NpyArray a = load_npy(path);
  if (a.descr != "<i4") throw DataError(path, 0, "expected int32 (<i4) data, found " + a.descr);
  if (a.shape.size() != 1)
    throw DataError(path, 0, "expected a 1-D array, found shape " + shape_repr(a.shape));
  return typed_data<int32_t>(a);
}

}  // namespace vae
