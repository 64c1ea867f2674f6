// .npy and safetensors writers/readers: round trips, strict refusal of damaged files, and
// interchange with numpy in both directions when a python with numpy is found ($VAE_PYTHON,
// python3 on PATH, /usr/bin/python3).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "analysis/npy.h"
#include "analysis/safetensors.h"
#include "core/error.h"

namespace vae {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = fs::path(::testing::TempDir()) /
            ("vae_npy_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

// The first interpreter that imports numpy; empty when none does.
const std::string& numpy_python() {
  static const std::string found = [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("VAE_PYTHON"); env && *env) candidates.emplace_back(env);
    candidates.emplace_back("python3");
    candidates.emplace_back("/usr/bin/python3");
    for (const std::string& py : candidates)
      if (std::system(("'" + py + "' -c 'import numpy' >/dev/null 2>&1").c_str()) == 0) return py;
    return std::string();
  }();
  return found;
}

bool have_numpy() { return !numpy_python().empty(); }

int run_python(const std::string& script_path, const std::string& arg) {
  const std::string cmd = "'" + numpy_python() + "' '" + script_path + "' '" + arg + "'";
  return std::system(cmd.c_str());
}

std::vector<float> ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.25f * static_cast<float>(i) - 1.5f;
  return v;
}

template <typename T>
NpyArray npy_of(const char* descr, std::vector<int64_t> shape, const std::vector<T>& v) {
  NpyArray a;
  a.descr = descr;
  a.shape = std::move(shape);
  a.data.resize(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(a.data.data(), v.data(), a.data.size());  // memcpy(nullptr, …, 0) is UB
  return a;
}

// A header as numpy writes it, with a chosen version and padding (for decode tests).
std::string handmade_npy(const std::string& dict, int major, const std::string& data, size_t align = 64) {
  std::string h = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  h.append((align - (prefix + h.size() + 1) % align) % align, ' ');
  h += '\n';
  std::string out = std::string("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back(0);
  const uint32_t n = static_cast<uint32_t>(h.size());
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out.push_back(static_cast<char>(n >> (8 * i) & 0xFF));
  return out + h + data;
}

TEST(Npy, EncodeLayoutAndRoundTrip) {
  const std::vector<float> v = ramp(12);
  const std::string bytes = encode_npy(npy_of("<f4", {3, 4}, v));
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 6), std::string("\x93NUMPY", 6));
  EXPECT_EQ(bytes[6], 1);
  EXPECT_EQ(bytes[7], 0);
  const size_t hl = static_cast<uint8_t>(bytes[8]) | static_cast<uint8_t>(bytes[9]) << 8;
  EXPECT_EQ((10 + hl) % 64, 0u) << "data must start 64-byte aligned";
  EXPECT_EQ(bytes[10 + hl - 1], '\n');
  EXPECT_NE(bytes.find("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"), std::string::npos);
  EXPECT_EQ(bytes.size(), 10 + hl + 12 * sizeof(float));

  const NpyArray back = decode_npy(bytes);
  EXPECT_EQ(back.descr, "<f4");
  EXPECT_EQ(back.shape, (std::vector<int64_t>{3, 4}));
  ASSERT_EQ(back.data.size(), 48u);
  std::vector<float> got(12);
  std::memcpy(got.data(), back.data.data(), 48);
  EXPECT_EQ(got, v);
}

TEST(Npy, OneDimScalarAndEmptyShapes) {
  const std::vector<int32_t> v{7, -3, 2147483647, 0};
  const std::string one = encode_npy(npy_of("<i4", {4}, v));
  EXPECT_NE(one.find("'shape': (4,), }"), std::string::npos);  // a 1-tuple needs its comma
  EXPECT_EQ(decode_npy(one).shape, (std::vector<int64_t>{4}));

  const std::vector<double> s{3.5};
  const NpyArray scalar = decode_npy(encode_npy(npy_of("<f8", {}, s)));
  EXPECT_TRUE(scalar.shape.empty());
  EXPECT_EQ(scalar.numel(), 1);
  ASSERT_EQ(scalar.data.size(), 8u);

  const NpyArray empty = decode_npy(encode_npy(npy_of("<i8", {0, 5}, std::vector<int64_t>{})));
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(empty.shape, (std::vector<int64_t>{0, 5}));
}

TEST(Npy, EncodeRejectsInconsistentArrays) {
  EXPECT_THROW(encode_npy(npy_of("<f4", {3, 4}, ramp(11))), VaeError);
  EXPECT_THROW(encode_npy(npy_of("<f2", {2}, std::vector<uint16_t>{1, 2})), VaeError);
}

TEST(Npy, DecodesVersion2AndOtherHeaderSpellings) {
  const std::vector<double> v{1.0, -2.0, 0.5, 4.0, 8.0, 16.0};
  std::string data(reinterpret_cast<const char*>(v.data()), v.size() * 8);
  // Version 2.0 (4-byte header length), old 16-byte alignment, double quotes, no trailing comma.
  const NpyArray a =
      decode_npy(handmade_npy("{\"descr\": \"<f8\", \"shape\": (2, 3), \"fortran_order\": False}", 2, data, 16));
  EXPECT_EQ(a.descr, "<f8");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data.size(), 48u);
  // fortran_order True is the same bytes for 1-D.
  const NpyArray b = decode_npy(handmade_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (6,), }", 1, data));
  EXPECT_EQ(b.shape, (std::vector<int64_t>{6}));
}

TEST(Npy, RefusesCorruptFiles) {
  const std::string good = encode_npy(npy_of("<f4", {2, 2}, ramp(4)));
  const std::string data(16, '\0');
  struct Case {
    const char* what;
    std::string bytes;
  };
  std::vector<Case> cases = {
      {"empty", ""},
      {"bad magic", "\x93NUMPX" + good.substr(6)},
      {"version 3.0", good.substr(0, 6) + std::string("\x03\x00", 2) + good.substr(8)},
      {"truncated data", good.substr(0, good.size() - 1)},
      {"trailing byte", good + "x"},
      {"truncated header", good.substr(0, 40)},
      {"header length past end", good.substr(0, 8) + std::string("\xff\xff", 2) + good.substr(10)},
      {"big-endian", handmade_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }", 1, data)},
      {"structured", handmade_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", 1, data)},
      {"fortran 2-D", handmade_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 1, data)},
      {"missing key", handmade_npy("{'descr': '<f4', 'shape': (2, 2), }", 1, data)},
      {"extra key", handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'x': 1}", 1, data)},
      {"duplicate key", handmade_npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", 1, data)},
      {"shape not a tuple", handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4), }", 1, data)},
      {"negative shape", handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", 1, data)},
      {"bad bool", handmade_npy("{'descr': '<f4', 'fortran_order': false, 'shape': (4,), }", 1, data)},
      {"garbage after dict", handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), } x", 1, data)},
      {"huge shape", handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", 1, data)},
  };
  // No newline at the end of the header.
  std::string no_nl = good;
  no_nl[no_nl.size() - 17] = ' ';
  cases.push_back({"header without newline", no_nl});
  for (const auto& c : cases) {
    try {
      decode_npy(c.bytes, "bad.npy");
      ADD_FAILURE() << c.what << ": accepted";
    } catch (const DataError& e) {
      EXPECT_EQ(e.file(), "bad.npy") << c.what;
      EXPECT_EQ(e.line(), 0) << c.what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.what << ": wrong exception type: " << e.what();
    }
  }
  // Every strict prefix of a good file is refused.
  for (size_t len = 0; len < good.size(); ++len)
    EXPECT_THROW(decode_npy(good.substr(0, len)), DataError) << "prefix " << len;
}

TEST(Npy, SaveLoadFilesAtomically) {
  TempDir dir("files");
  const std::string f32 = dir.file("mu.npy"), i32 = dir.file("labels.npy");
  const std::vector<float> v = ramp(15);
  save_npy_f32(f32, v, 5, 3);
  save_npy_i32(i32, {4, 0, -7});
  int64_t rows = 0, cols = 0;
  EXPECT_EQ(load_npy_f32(f32, &rows, &cols), v);
  EXPECT_EQ(rows, 5);
  EXPECT_EQ(cols, 3);
  EXPECT_EQ(load_npy_i32(i32), (std::vector<int32_t>{4, 0, -7}));
  // Overwrite in place; no temporary left behind.
  save_npy_f32(f32, {1.0f, 2.0f}, 1, 2);
  EXPECT_EQ(load_npy_f32(f32, &rows, &cols), (std::vector<float>{1.0f, 2.0f}));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2);
  // Typed loads check dtype and rank.
  EXPECT_THROW(load_npy_i32(f32), DataError);
  EXPECT_THROW(load_npy_f32(i32, &rows, &cols), DataError);
  EXPECT_THROW(load_npy(dir.file("missing.npy")), DataError);
  EXPECT_THROW(save_npy_f32(dir.file("x.npy"), v, 4, 4), VaeError);
  EXPECT_THROW(save_npy_f32(dir.file("no/such/dir/x.npy"), v, 5, 3), DataError);
}

TEST(Npy, NumpyReadsOursAndWeReadNumpys) {
  if (!have_numpy()) GTEST_SKIP() << "no python with numpy ($VAE_PYTHON, python3, /usr/bin/python3)";
  TempDir dir("numpy");
  std::vector<float> v(6 * 7);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) / 7.0f - 2.0f;
  save_npy_f32(dir.file("ours_f32.npy"), v, 6, 7);
  save_npy_i32(dir.file("ours_i32.npy"), {5, -1, 123456789});
  const std::string script = dir.file("check.py");
  write_file(script, R"PY(
import sys, numpy as np
d = sys.argv[1]
a = np.load(d + '/ours_f32.npy')
assert a.dtype == np.float32 and a.shape == (6, 7), (a.dtype, a.shape)
want = (np.arange(42, dtype=np.float32) / np.float32(7) - np.float32(2)).reshape(6, 7)
assert np.array_equal(a, want), a
b = np.load(d + '/ours_i32.npy')
assert b.dtype == np.int32 and b.tolist() == [5, -1, 123456789], b
np.save(d + '/np_f64.npy', np.array([[1.5, -2.25, 3.0], [0.0, 1e300, -7.0]]))
np.save(d + '/np_i64.npy', np.arange(5, dtype=np.int64) * 3)
np.save(d + '/np_f32.npy', np.asfortranarray(np.arange(6, dtype=np.float32)))
with open(d + '/np_v2.npy', 'wb') as f:
    np.lib.format.write_array(f, np.array([7, 8, 9], dtype=np.int32), version=(2, 0))
)PY");
  ASSERT_EQ(run_python(script, dir.path().string()), 0) << "numpy refused our files";

  const NpyArray f64 = load_npy(dir.file("np_f64.npy"));
  EXPECT_EQ(f64.descr, "<f8");
  EXPECT_EQ(f64.shape, (std::vector<int64_t>{2, 3}));
  std::vector<double> dv(6);
  std::memcpy(dv.data(), f64.data.data(), 48);
  EXPECT_EQ(dv, (std::vector<double>{1.5, -2.25, 3.0, 0.0, 1e300, -7.0}));
  const NpyArray i64 = load_npy(dir.file("np_i64.npy"));
  EXPECT_EQ(i64.descr, "<i8");
  std::vector<int64_t> iv(5);
  std::memcpy(iv.data(), i64.data.data(), 40);
  EXPECT_EQ(iv, (std::vector<int64_t>{0, 3, 6, 9, 12}));
  const NpyArray f32 = load_npy(dir.file("np_f32.npy"));
  EXPECT_EQ(f32.shape, (std::vector<int64_t>{6}));
  EXPECT_EQ(load_npy_i32(dir.file("np_v2.npy")), (std::vector<int32_t>{7, 8, 9}));
}

// ---- safetensors --------------------------------------------------------------------------

std::vector<StTensor> sample_tensors() {
  return {st_tensor_f32("mu", {2, 3}, {1.f, 2.f, 3.f, 4.f, 5.f, -6.5f}),
          st_tensor_i32("labels", {3}, {2, 0, 1}),
          st_tensor_f64("scale", {}, {0.125})};
}

TEST(Safetensors, RoundTripWithMetadata) {
  const std::string bytes = encode_safetensors(sample_tensors(), {{"model", "vae"}, {"epochs", "20"}});
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u) << "tensor data must start 8-byte aligned";
  EXPECT_EQ(bytes.size(), 8 + n + 24 + 12 + 8);

  const StFile f = decode_safetensors(bytes);
  EXPECT_EQ(f.metadata.at("model"), "vae");
  EXPECT_EQ(f.metadata.at("epochs"), "20");
  ASSERT_EQ(f.tensors.size(), 3u);
  EXPECT_EQ(f.tensors[0].name, "mu");  // data-offset order
  ASSERT_NE(f.find("mu"), nullptr);
  EXPECT_EQ(f.find("mu")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.find("mu")->as_f32(), (std::vector<float>{1.f, 2.f, 3.f, 4.f, 5.f, -6.5f}));
  EXPECT_EQ(f.find("labels")->as_i32(), (std::vector<int32_t>{2, 0, 1}));
  EXPECT_EQ(f.find("scale")->as_f64(), (std::vector<double>{0.125}));
  EXPECT_TRUE(f.find("scale")->shape.empty());
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_THROW(f.find("mu")->as_i32(), VaeError);

  TempDir dir("st");
  const std::string path = dir.file("latent.safetensors");
  save_safetensors(path, sample_tensors());
  const StFile g = load_safetensors(path);
  EXPECT_TRUE(g.metadata.empty());
  EXPECT_EQ(g.find("labels")->as_i32(), (std::vector<int32_t>{2, 0, 1}));
  EXPECT_THROW(load_safetensors(dir.path().string()), DataError);  // a directory
}

TEST(Safetensors, EncodeRejectsBadTensors) {
  auto t = sample_tensors();
  EXPECT_THROW(encode_safetensors({t[0], t[0]}), VaeError);  // duplicate
  StTensor bad = t[0];
  bad.shape = {4, 3};
  EXPECT_THROW(encode_safetensors({bad}), VaeError);
  bad = t[0];
  bad.dtype = "BF16";
  EXPECT_THROW(encode_safetensors({bad}), VaeError);
  bad = t[0];
  bad.name = "__metadata__";
  EXPECT_THROW(encode_safetensors({bad}), VaeError);
  EXPECT_THROW(st_tensor_f32("x", {2, 2}, {1.f, 2.f, 3.f}), VaeError);
}

// A file with a hand-written header over `data`.
std::string st_file(const std::string& header, const std::string& data) {
  std::string out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i) & 0xFF));
  return out + header + data;
}

TEST(Safetensors, RefusesCorruptFiles) {
  const std::string good = encode_safetensors(sample_tensors(), {{"k", "v"}});
  for (size_t len = 0; len < good.size(); ++len)
    EXPECT_THROW(decode_safetensors(good.substr(0, len), "t.st"), DataError) << "prefix " << len;
  EXPECT_THROW(decode_safetensors(good + "x"), DataError);  // trailing byte

  const std::string d8(8, '\0');
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"not json", st_file("{\"a\": [}", d8)},
      {"not an object", st_file("[1, 2]  ", d8)},
      {"unknown dtype", st_file(R"({"a":{"dtype":"Q8","shape":[8],"data_offsets":[0,8]}})", d8)},
      {"shape mismatch", st_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8)},
      {"overlap", st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8)},
      {"gap", st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8)},
      {"uncovered tail", st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", d8)},
      {"past end", st_file(R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})", d8)},
      {"negative shape", st_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8)},
      {"duplicate name", st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", d8)},
      {"metadata not strings", st_file(R"({"__metadata__":{"x":1},"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", d8)},
      {"missing offsets", st_file(R"({"a":{"dtype":"F64","shape":[1]}})", d8)},
      {"huge header", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}"},
  };
  for (const auto& [what, bytes] : cases) {
    try {
      decode_safetensors(bytes, "t.st");
      ADD_FAILURE() << what << ": accepted";
    } catch (const DataError& e) {
      EXPECT_EQ(e.file(), "t.st") << what;
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": wrong exception type: " << e.what();
    }
  }
  // A well-formed hand-written file with a zero-size tensor is accepted.
  const StFile f = decode_safetensors(st_file(
      R"({"e":{"dtype":"I32","shape":[0,3],"data_offsets":[0,0]},"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", d8));
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.find("e")->numel(), 0);
}

TEST(Safetensors, NumpyParsesOurFile) {
  if (!have_numpy()) GTEST_SKIP() << "no python with numpy ($VAE_PYTHON, python3, /usr/bin/python3)";
  TempDir dir("st_numpy");
  save_safetensors(dir.file("x.safetensors"), sample_tensors(), {{"note", "hi"}});
  const std::string script = dir.file("check.py");
  // The safetensors package may be absent: parse the container by its spec.
  write_file(script, R"PY(
import sys, json, struct, numpy as np
raw = open(sys.argv[1] + '/x.safetensors', 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n])
assert h['__metadata__'] == {'note': 'hi'}, h
data = raw[8 + n:]
dt = {'F32': '<f4', 'F64': '<f8', 'I32': '<i4'}
def get(name):
    e = h[name]
    b, en = e['data_offsets']
    return np.frombuffer(data[b:en], dtype=dt[e['dtype']]).reshape(e['shape'])
assert np.array_equal(get('mu'), np.array([[1, 2, 3], [4, 5, -6.5]], dtype=np.float32))
assert get('labels').tolist() == [2, 0, 1]
assert get('scale').shape == () and float(get('scale')) == 0.125
)PY");
  EXPECT_EQ(run_python(script, dir.path().string()), 0);
}

}  // namespace
}  // namespace vae
