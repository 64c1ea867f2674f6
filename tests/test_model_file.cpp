// model.safetensors: save/load round trips give identical predictions for every autoencoder, and
// every kind of damage (truncation, flipped bytes, wrong shapes, missing/extra tensors, unknown
// kinds, another dataset) is refused with a DataError naming the file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "analysis/model_file.h"
#include "analysis/safetensors.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "train/trainer.h"
#include "trained_model.h"

namespace {

namespace fs = std::filesystem;
using namespace vae;
using ::testing::HasSubstr;

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / ("vae_mf_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

const Dataset& small_data() {
  static const Dataset d = [] {
    SyntheticSpec s;
    s.users = 120;
    s.items = 150;
    s.ratings = 3000;
    s.groups = 3;
    s.seed = 2;
    return make_synthetic(s);
  }();
  return d;
}

// One epoch; heldout users from 2 positives up, so the small set keeps some.
TrainResult train(Backend<float>& be, const Dataset& d, const std::string& kind, const std::string& protocol,
                  int hidden = 0) {
  return test::run_small(be, d, kind, protocol, hidden, 1, 2);
}

// Scores of the first n rows of the input the model was trained on (users, or items for
// item-based AutoRec), CDAE with its user vectors.
std::vector<float> predictions(Backend<float>& be, Model<float>& m, const ModelFileInfo& info, const Dataset& d,
                               int64_t n) {
  Csr in = info.item_based ? d.ratings.transpose() : d.ratings;
  // Restrict to the model's columns in model order (identity maps except heldout).
  std::vector<int32_t> col_of(static_cast<size_t>(in.cols), -1);
  for (size_t c = 0; c < info.column_map.size(); ++c) col_of[info.column_map[c]] = static_cast<int32_t>(c);
  std::vector<int32_t> r, c;
  std::vector<float> v;
  for (int64_t u = 0; u < n; ++u)
    for (int64_t p = in.indptr[u]; p < in.indptr[u + 1]; ++p)
      if (col_of[in.indices[p]] >= 0) {
        r.push_back(static_cast<int32_t>(u));
        c.push_back(col_of[in.indices[p]]);
        v.push_back(info.binary_input ? 1.0f : in.values[p]);
      }
  Csr x = Csr::from_triplets(n, static_cast<int64_t>(info.column_map.size()), r, c, v);
  CsrTensor<float> xd = be.upload_csr(x);
  std::vector<int32_t> rows(static_cast<size_t>(n));
  std::iota(rows.begin(), rows.end(), 0);
  Tensor<int32_t> rd = be.upload<int32_t>(rows, n, 1);
  Batch<float> b;
  b.input = xd.view();
  b.rows = rd.cmat();
  if (m.kind() == "cdae") b.users = rd.cmat();
  b.n = n;
  Tensor<float> out = be.alloc<float>(n, m.num_outputs());
  m.predict(b, out.mat());
  return be.download(out.cmat());
}

struct KindCase {
  const char* kind;
  const char* protocol;
  int hidden;
};

class ModelFileRoundTrip : public ::testing::TestWithParam<KindCase> {};

TEST_P(ModelFileRoundTrip, LoadedModelPredictsIdentically) {
  const KindCase kc = GetParam();
  const Dataset& d = small_data();
  auto be = make_cpu_backend<float>();
  TrainResult r = train(*be, d, kc.kind, kc.protocol, kc.hidden);
  const fs::path dir = temp_dir(std::string("rt_") + kc.kind);
  ASSERT_TRUE(write_model_file(dir.string(), *be, r, d));
  const std::string path = (dir / kModelFileName).string();
  ASSERT_TRUE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  LoadedModel lm = load_model_file(path, *be, d);
  ASSERT_TRUE(lm.model);
  EXPECT_EQ(lm.model->kind(), kc.kind);
  EXPECT_EQ(lm.info.protocol, kc.protocol);
  EXPECT_EQ(lm.info.column_map, r.column_map);
  if (std::string(kc.kind) == "cdae" || std::string(kc.kind) == "i-autorec") {
    EXPECT_EQ(lm.info.row_map, r.row_map);
  }
  EXPECT_EQ(lm.info.fingerprint, d.fingerprint());
  EXPECT_EQ(lm.model->num_params(), r.model_ptr->num_params());
  const ModelFileInfo info = model_file_info(r, d);
  EXPECT_EQ(lm.info.binary_input, info.binary_input);
  const int64_t n = 10;
  EXPECT_EQ(predictions(*be, *lm.model, lm.info, d, n), predictions(*be, *r.model_ptr, info, d, n));

  // The file is plain safetensors: F32 tensors named as the model's parameters.
  const StFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), r.model_ptr->params().size());
  for (const ParamInfo& p : r.model_ptr->params()) {
    const StTensor* t = f.find(p.name);
    ASSERT_NE(t, nullptr) << p.name;
    EXPECT_EQ(t->dtype, "F32");
    EXPECT_EQ(t->shape, (std::vector<int64_t>{p.rows, p.cols}));
  }
  const nlohmann::json cfg = nlohmann::json::parse(f.metadata.at("config"));
  EXPECT_EQ(cfg.at("kind"), kc.kind);
  EXPECT_EQ(f.metadata.at("dataset_fingerprint"), d.fingerprint());
}

INSTANTIATE_TEST_SUITE_P(Kinds, ModelFileRoundTrip,
                         ::testing::Values(KindCase{"vae", "seed", 0}, KindCase{"multvae", "heldout", 32},
                                           KindCase{"autorec", "ratings", 16}, KindCase{"i-autorec", "ratings", 16},
                                           KindCase{"cdae", "seed", 16}),
                         [](const auto& info) {
                           std::string s = info.param.kind;
                           s.erase(std::remove(s.begin(), s.end(), '-'), s.end());
                           return s;
                         });

// A small AutoRec file shared by the refusal tests.
class ModelFileRefusal : public ::testing::Test {
 protected:
  void SetUp() override {
    be_ = make_cpu_backend<float>();
    TrainResult r = train(*be_, small_data(), "autorec", "ratings", 4);
    dir_ = temp_dir("refuse");
    ASSERT_TRUE(write_model_file(dir_.string(), *be_, r, small_data()));
    path_ = (dir_ / kModelFileName).string();
    std::ifstream f(path_, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(f), {});
    reference_ = predictions(*be_, *r.model_ptr, model_file_info(r, small_data()), small_data(), 5);
  }
  std::string write_variant(const std::string& name, const std::string& bytes) {
    const std::string p = (dir_ / name).string();
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << bytes;
    return p;
  }
  // Re-encodes the file after edit(), with a valid checksum, so the check under test is reached.
  std::string edited(const std::string& name, const std::function<void(StFile&)>& edit) {
    StFile f = load_safetensors(path_);
    edit(f);
    f.metadata.erase("checksum");
    f.metadata["checksum"] = model_file_checksum(f.metadata, f.tensors);
    const std::string p = (dir_ / name).string();
    save_safetensors(p, f.tensors, f.metadata);
    return p;
  }
  void expect_refused(const std::string& path, const std::string& what, const Dataset& d = small_data()) {
    try {
      load_model_file(path, *be_, d);
      ADD_FAILURE() << "accepted " << path << " (expected: " << what << ")";
    } catch (const DataError& e) {
      EXPECT_EQ(e.file(), path);
      EXPECT_THAT(e.what(), HasSubstr(path));
      EXPECT_THAT(e.what(), HasSubstr(what));
    }
  }
  uint64_t header_len() const {
    uint64_t n = 0;
    std::memcpy(&n, bytes_.data(), 8);
    return n;
  }

  std::unique_ptr<Backend<float>> be_;
  fs::path dir_;
  std::string path_, bytes_;
  std::vector<float> reference_;
};

TEST_F(ModelFileRefusal, TruncatedFiles) {
  for (size_t len : {size_t{0}, size_t{4}, size_t{8}, size_t{100}, bytes_.size() / 2, bytes_.size() - 1})
    expect_refused(write_variant("trunc" + std::to_string(len), bytes_.substr(0, len)), "");
  expect_refused((dir_ / "no_such_file").string(), "cannot");
}

TEST_F(ModelFileRefusal, FlippedBytes) {
  // A byte of a tensor name in the header.
  const size_t name_at = bytes_.find("decoder.weight");
  ASSERT_NE(name_at, std::string::npos);
  std::string b = bytes_;
  b[name_at + 3] ^= 0x01;
  expect_refused(write_variant("flip_name", b), "");
  // A byte of the config in the metadata: the JSON still parses, the checksum catches it.
  const size_t hid = bytes_.find("hidden");
  ASSERT_NE(hid, std::string::npos);
  b = bytes_;
  b[hid + 1] ^= 0x20;
  expect_refused(write_variant("flip_meta", b), "");
  // A data byte: only the checksum can tell.
  b = bytes_;
  b[b.size() - 3] ^= 0x10;
  expect_refused(write_variant("flip_data", b), "checksum");
  // Every single-bit flip of the header is refused or harmless (identical predictions).
  const size_t end = 8 + header_len();
  int refused = 0, harmless = 0;
  for (size_t i = 0; i < end; ++i) {
    std::string v = bytes_;
    v[i] ^= 0x01;
    const std::string p = write_variant("sweep", v);
    try {
      LoadedModel lm = load_model_file(p, *be_, small_data());
      EXPECT_EQ(predictions(*be_, *lm.model, lm.info, small_data(), 5), reference_) << "byte " << i;
      ++harmless;
    } catch (const DataError& e) {
      EXPECT_EQ(e.file(), p);
      ++refused;
    }
  }
  EXPECT_GT(refused, static_cast<int>(end) * 9 / 10) << harmless << " harmless flips";
}

TEST_F(ModelFileRefusal, WrongShapesMissingAndExtraTensors) {
  expect_refused(edited("shape.st",
                        [](StFile& f) {
                          for (auto& t : f.tensors)
                            if (t.name == "encoder.weight") t.shape = {t.shape[1], t.shape[0]};
                        }),
                 "shape");
  expect_refused(edited("missing.st",
                        [](StFile& f) {
                          f.tensors.erase(std::remove_if(f.tensors.begin(), f.tensors.end(),
                                                         [](const StTensor& t) { return t.name == "decoder.bias"; }),
                                          f.tensors.end());
                        }),
                 "missing tensor 'decoder.bias'");
  expect_refused(edited("extra.st", [](StFile& f) { f.tensors.push_back(st_tensor_f32("extra.weight", {1, 2}, {1, 2})); }),
                 "unexpected tensor 'extra.weight'");
  expect_refused(edited("dtype.st",
                        [](StFile& f) {
                          for (auto& t : f.tensors)
                            if (t.name == "decoder.bias") t = st_tensor_f64(t.name, t.shape, std::vector<double>(t.numel(), 0.0));
                        }),
                 "F32");
  expect_refused(edited("nan.st",
                        [](StFile& f) {
                          for (auto& t : f.tensors)
                            if (t.name == "decoder.bias") {
                              std::vector<float> v = t.as_f32();
                              v[0] = std::nanf("");
                              t = st_tensor_f32(t.name, t.shape, v);
                            }
                        }),
                 "non-finite");
}

TEST_F(ModelFileRefusal, UnknownKindsConfigsAndFormats) {
  auto with_kind = [](const std::string& kind) {
    return [kind](StFile& f) {
      nlohmann::json c = nlohmann::json::parse(f.metadata.at("config"));
      c["kind"] = kind;
      f.metadata["config"] = c.dump();
    };
  };
  expect_refused(edited("kind.st", with_kind("transformer")), "unknown model kind 'transformer'");
  expect_refused(edited("ease.st", with_kind("ease")), "no trained parameters");
  expect_refused(edited("cfg.st", [](StFile& f) { f.metadata["config"] = "{\"kind\": \"autorec\"}"; }), "malformed metadata");
  expect_refused(edited("loss.st",
                        [](StFile& f) {
                          nlohmann::json c = nlohmann::json::parse(f.metadata.at("config"));
                          c["loss"] = "hinge";
                          f.metadata["config"] = c.dump();
                        }),
                 "loss 'hinge' is not one a run writes");
  // Every value the metadata can hold is one a run writes, refused by the file's name otherwise.
  auto config_with = [](const std::string& key, const nlohmann::json& v) {
    return [key, v](StFile& f) {
      nlohmann::json c = nlohmann::json::parse(f.metadata.at("config"));
      c[key] = v;
      f.metadata["config"] = c.dump();
    };
  };
  expect_refused(edited("act.st", config_with("act_hidden", "bogus")), "act_hidden 'bogus' is not one a run writes");
  expect_refused(edited("rows.st", config_with("num_rows", -1)), "negative num_inputs or num_rows");
  expect_refused(edited("drop.st", config_with("dropout", 5.0)), "out of range");
  expect_refused(edited("proto.st", [](StFile& f) { f.metadata["protocol"] = "zzz"; }),
                 "unknown protocol 'zzz' in the metadata (seed, heldout, temporal, cutoff or ratings)");
  // The timed protocols' splits cannot be redrawn without their parameters.
  expect_refused(edited("temporal.st", [](StFile& f) { f.metadata["protocol"] = "temporal"; }),
                 "a temporal-protocol model without its split's leave_last in the metadata");
  expect_refused(edited("cutoff.st", [](StFile& f) { f.metadata["protocol"] = "cutoff"; }),
                 "a cutoff-protocol model without its split's val_from < test_from in the metadata");
  expect_refused(edited("cutoff_order.st",
                        [](StFile& f) {
                          f.metadata["protocol"] = "cutoff";
                          f.metadata["split"] =
                              R"({"test_fraction":0,"ratings_split":"random","val_from":900000000,"test_from":800000000})";
                        }),
                 "a cutoff-protocol model without its split's val_from < test_from in the metadata");
  expect_refused(edited("split.st",
                        [](StFile& f) {
                          nlohmann::json j = nlohmann::json::parse(f.metadata.at("split"));
                          j["ratings_split"] = "zzz";
                          f.metadata["split"] = j.dump();
                        }),
                 "unknown ratings_split 'zzz'");
  expect_refused(edited("version.st", [](StFile& f) { f.metadata["format_version"] = "99"; }), "version 99");
  expect_refused(edited("cols.st", [](StFile& f) { f.metadata["columns"] = "[\"1\", \"2\"]"; }), "columns");
  // A safetensors file from elsewhere (no vae_gpu metadata).
  const std::string other = (dir_ / "other.safetensors").string();
  save_safetensors(other, {st_tensor_f32("w", {2}, {1, 2})});
  expect_refused(other, "not a vae_gpu model file");
}

// Malformed numbers in the metadata used to say only "malformed metadata: stoll" (or stoi /
// stoull); the message names the entry and the text, which must be a whole plain integer.
TEST_F(ModelFileRefusal, MalformedMetadataNumbersNameTheEntryAndText) {
  auto with = [](const std::string& key, const std::string& value) {
    return [key, value](StFile& f) { f.metadata[key] = value; };
  };
  expect_refused(edited("bs1.st", with("batch_size", "abc")), "metadata 'batch_size' is 'abc', not an integer");
  expect_refused(edited("bs2.st", with("batch_size", "12abc")), "metadata 'batch_size' is '12abc', not an integer");
  expect_refused(edited("bs3.st", with("batch_size", "0")), "metadata 'batch_size' is '0', expected an integer from 1");
  expect_refused(edited("bs4.st", with("batch_size", "99999999999999999999")), "metadata 'batch_size'");
  expect_refused(edited("seed1.st", with("seed", "-1")), "metadata 'seed' is '-1', not a non-negative integer");
  expect_refused(edited("seed2.st", with("seed", "99999999999999999999")), "metadata 'seed' is '99999999999999999999'");
  expect_refused(edited("seed3.st", with("seed", "")), "metadata 'seed' is '', not a non-negative integer");
  expect_refused(edited("ep1.st", with("best_epoch", "1e3")), "metadata 'best_epoch' is '1e3', not an integer");
  expect_refused(edited("ep2.st", with("best_epoch", "4294967296")), "metadata 'best_epoch' is '4294967296'");
  expect_refused(edited("ep3.st", with("best_epoch", std::string("7\0", 2))), "metadata 'best_epoch' is '7\\x00'");
  // JSON entries name themselves too.
  expect_refused(edited("in1.st", with("input", "{\"binary\": true}")), "malformed metadata 'input'");
  expect_refused(edited("in2.st", with("input", "not json")), "malformed metadata 'input' ('not json')");
  // A well-formed number still loads (leading zeros are harmless).
  const std::string ok = edited("ok.st", with("batch_size", "0064"));
  EXPECT_EQ(load_model_file(ok, *be_, small_data()).info.batch_size, 64);
}

// Found by fuzzing edited files (checksum recomputed): a batch_size near 2^63 overflowed the
// buffer size computation (batch x width), a deeply nested 'columns' entry overflowed the stack
// while the error message printed it, and an empty or infinite rating range loaded and then
// failed evaluation with an internal clipping check.
TEST_F(ModelFileRefusal, HugeBatchDeepIdsAndEmptyRatingRangesAreRefused) {
  auto with = [](const std::string& key, const std::string& value) {
    return [key, value](StFile& f) { f.metadata[key] = value; };
  };
  expect_refused(edited("bs_huge.st", with("batch_size", "9223372036854775807")),
                 "metadata 'batch_size' is '9223372036854775807', expected an integer from 1 to 16777216");
  expect_refused(edited("deep.st",
                        [](StFile& f) {
                          nlohmann::json cols = nlohmann::json::parse(f.metadata.at("columns"));
                          const std::string last = cols.back();
                          cols.erase(cols.size() - 1);
                          std::string s = cols.dump();
                          s.pop_back();  // the closing ']'
                          s += "," + std::string(100000, '[') + "\"" + last + "\"" + std::string(100000, ']') + "]";
                          f.metadata["columns"] = s;
                        }),
                 "is a JSON array, not an id string");
  auto range = [](double lo, double hi) {
    return [lo, hi](StFile& f) {
      nlohmann::json c = nlohmann::json::parse(f.metadata.at("config"));
      c["rating_min"] = lo;
      c["rating_max"] = hi;
      f.metadata["config"] = c.dump();
    };
  };
  expect_refused(edited("range1.st", range(4, 2)), "malformed metadata 'config'");
  expect_refused(edited("range2.st", range(1, 1e300)), "not a finite range with rating_min <= rating_max");
  // A one-value scale (every rating the same) is a range still.
  EXPECT_NO_THROW(load_model_file(edited("range3.st", range(5, 5)), *be_, small_data()));
  // A width beyond int used to wrap to a negative one, which the models read as their default.
  auto config = [](const char* key, int64_t v) {
    return [key, v](StFile& f) {
      nlohmann::json c = nlohmann::json::parse(f.metadata.at("config"));
      c[key] = v;
      f.metadata["config"] = c.dump();
    };
  };
  expect_refused(edited("hidden.st", config("hidden", int64_t{1} << 31)), "hidden 2147483648 is outside 0 .. 2^20");
  expect_refused(edited("latent.st", config("latent", -3)), "latent -3 is outside 0 .. 2^20");
}

// Each model column stands for one dataset item: an id listed twice (after an edit with a
// recomputed checksum) used to load and score the wrong items.
TEST_F(ModelFileRefusal, DuplicateColumnIdsAreRefused) {
  auto dup = [](int from, int to) {
    return [from, to](StFile& f) {
      nlohmann::json cols = nlohmann::json::parse(f.metadata.at("columns"));
      cols[to] = cols[from];
      f.metadata["columns"] = cols.dump();
    };
  };
  const std::string first = nlohmann::json::parse(load_safetensors(path_).metadata.at("columns"))[0];
  expect_refused(edited("dup1.st", dup(0, 1)),
                 "item id '" + first + "' is listed twice in metadata 'columns' (entries 1 and 2)");
  expect_refused(edited("dup2.st", dup(0, 7)), "(entries 1 and 8)");
  // A non-string entry is named as such.
  expect_refused(edited("num.st",
                        [](StFile& f) {
                          nlohmann::json cols = nlohmann::json::parse(f.metadata.at("columns"));
                          cols[2] = 17;
                          f.metadata["columns"] = cols.dump();
                        }),
                 "metadata 'columns' entry 3 is 17, not an id string");
  // Swapping two columns is a consistent relabelling and still loads.
  const std::string swapped = edited("swap.st", [](StFile& f) {
    nlohmann::json cols = nlohmann::json::parse(f.metadata.at("columns"));
    std::swap(cols[0], cols[1]);
    f.metadata["columns"] = cols.dump();
  });
  EXPECT_NO_THROW(load_model_file(swapped, *be_, small_data()));
}

// CDAE keeps per-user rows: a user listed twice in 'rows' is refused the same way.
TEST(ModelFileRows, DuplicateRowIdsAreRefused) {
  auto be = make_cpu_backend<float>();
  TrainResult r = train(*be, small_data(), "cdae", "seed", 8);
  const fs::path dir = temp_dir("duprows");
  ASSERT_TRUE(write_model_file(dir.string(), *be, r, small_data()));
  const std::string path = (dir / kModelFileName).string();
  StFile f = load_safetensors(path);
  nlohmann::json rows = nlohmann::json::parse(f.metadata.at("rows"));
  ASSERT_GE(rows.size(), 4u);
  rows[3] = rows[1];
  f.metadata["rows"] = rows.dump();
  f.metadata.erase("checksum");
  f.metadata["checksum"] = model_file_checksum(f.metadata, f.tensors);
  const std::string edited = (dir / "dup_rows.st").string();
  save_safetensors(edited, f.tensors, f.metadata);
  try {
    load_model_file(edited, *be, small_data());
    ADD_FAILURE() << "a model file with a user listed twice in 'rows' loaded";
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), HasSubstr("is listed twice in metadata 'rows' (entries 2 and 4)"));
    EXPECT_THAT(e.what(), HasSubstr(edited));
  }
}

TEST_F(ModelFileRefusal, OtherDatasetNamesTheTrainingData) {
  SyntheticSpec s;
  s.users = 120;
  s.items = 150;
  s.ratings = 3000;
  s.groups = 3;
  s.seed = 3;  // same shape, other ratings
  const Dataset other = make_synthetic(s);
  expect_refused(path_, "trained on dataset '" + small_data().name + "'", other);
  try {
    load_model_file(path_, *be_, other);
  } catch (const DataError& e) {
    EXPECT_THAT(e.what(), HasSubstr(small_data().fingerprint()));
    EXPECT_THAT(e.what(), HasSubstr(other.fingerprint()));
  }
}

TEST_F(ModelFileRefusal, PopularityAndEaseWriteNoFile) {
  for (const char* kind : {"popularity", "ease"}) {
    TrainResult r = train(*be_, small_data(), kind, "seed");
    const fs::path dir = temp_dir(std::string("nofile_") + kind);
    EXPECT_FALSE(write_model_file(dir.string(), *be_, r, small_data()));
    EXPECT_FALSE(fs::exists(dir / kModelFileName));
    EXPECT_THROW(save_model_file((dir / "x.st").string(), *be_, *r.model_ptr, model_file_info(r, small_data()),
                                 small_data()),
                 UsageError);
  }
}

}  // namespace
