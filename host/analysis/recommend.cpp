#include "analysis/recommend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include "analysis/profile.h"
#include "core/error.h"
#include "core/philox.h"
#include "core/temp_files.h"
#include "data/text_reader.h"

namespace vae {

namespace {

std::vector<int32_t> inverse_map(const std::vector<int32_t>& map, int64_t n) {
  std::vector<int32_t> inv(static_cast<size_t>(n), -1);
  for (size_t i = 0; i < map.size(); ++i) inv[static_cast<size_t>(map[i])] = static_cast<int32_t>(i);
  return inv;
}

// Rows of `src` (indexed through row_of) re-indexed to model columns (col_of, −1 = not a
// column); `input` applies the model's input rule (threshold, 0/1), otherwise values are kept.
Csr remap_rows(const Csr& src, const std::vector<int32_t>& rows, const std::vector<int32_t>& col_of,
               int64_t cols, const ModelFileInfo& info, bool input) {
  Csr out;
  out.rows = static_cast<int64_t>(rows.size());
  out.cols = cols;
  out.indptr.assign(1, 0);
  std::vector<std::pair<int32_t, float>> row;
  for (int32_t r : rows) {
    row.clear();
    for (int64_t p = src.indptr[r]; p < src.indptr[r + 1]; ++p) {
      const int32_t c = col_of[static_cast<size_t>(src.indices[p])];
      if (c < 0) continue;
      float v = src.values[p];
      if (input) {
        if (info.input_threshold > 0 && v < info.input_threshold) continue;
        if (info.binary_input) v = 1.0f;
      }
      row.emplace_back(c, v);
    }
    std::sort(row.begin(), row.end());
    for (const auto& cv : row) {
      out.indices.push_back(cv.first);
      out.values.push_back(cv.second);
    }
    out.indptr.push_back(static_cast<int64_t>(out.indices.size()));
  }
  return out;
}

std::vector<int32_t> iota32(int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// Dataset users × model columns: each user's input row (user-based models).
Csr user_input_rows(const ModelFileInfo& info, const Dataset& d) {
  VAE_CHECK(!info.item_based, "user_input_rows: item-based model");
  return remap_rows(d.ratings, iota32(d.num_users()), inverse_map(info.column_map, d.num_items()),
                    static_cast<int64_t>(info.column_map.size()), info, true);
}

bool sigmoid_scores(const Model<float>& m) {
  // The notebooks rank sigmoid(output) of the VAE; CDAE's BCE logits are probabilities the same way.
  return m.kind() == "vae" || (m.kind() == "cdae" && m.config().loss == "bce");
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const auto b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

std::string fmt_score(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", static_cast<double>(v));
  return buf;
}

UsageError no_such_user(const Dataset& d, const std::string& user_id) {
  return UsageError("no user " + text::quote(user_id) + " in " + d.name + " (user ids run from " +
                    (d.user_ids.empty() ? std::string("-") : d.user_ids.front()) + " to " +
                    (d.user_ids.empty() ? std::string("-") : d.user_ids.back()) + ")");
}

// The grid every rating of the data lies on: 1 (whole stars), 0.5 (half stars), 0 (none).
double rating_step(const Dataset& d) {
  for (double step : {1.0, 0.5}) {
    bool on = true;
    for (float v : d.ratings.values) {
      const double q = static_cast<double>(v) / step;
      if (q != std::round(q)) {
        on = false;
        break;
      }
    }
    if (on) return step;
  }
  return 0;
}

}  // namespace

bool model_has_latent(const std::string& kind) { return kind == "vae" || kind == "multvae"; }

void check_finite_score(double v, const char* what) {
  if (!std::isfinite(v))
    throw VaeError(std::string("the model's ") + what +
                   " are not finite (nan or inf): its weights overflow float arithmetic "
                   "(a damaged model file, or a diverged fit); retrain it, with a lower --lr");
}

namespace {

// One given rating before it is checked: item id and rating as written, and where it was
// written ("path:line: " in a file, "" in an inline list), for the warnings.
struct GivenRating {
  std::string id, rating, where;
};

// The inline list "50:5,181:4".
std::vector<GivenRating> given_in_list(const std::string& spec, std::vector<std::string>& warnings) {
  std::vector<GivenRating> out;
  std::stringstream ss(spec);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    tok = trim(tok);
    if (tok.empty()) continue;
    const auto colon = tok.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == tok.size()) {
      warnings.push_back("malformed pair " + text::quote(tok) + " (expected item_id:rating)");
      continue;
    }
    out.push_back({trim(tok.substr(0, colon)), trim(tok.substr(colon + 1)), ""});
  }
  return out;
}

// A ratings file: CSV lines item_id,rating, or item_id:rating lines. A first line whose rating
// field is not a number is a header; one that names an item and a rating column (movieId,
// rating, ...) picks them, so a user's rows cut from a ratings.csv read as they are.
std::vector<GivenRating> given_in_file(const std::string& path, std::vector<std::string>& warnings) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path, 0, "cannot read the --ratings file");
  std::vector<GivenRating> out;
  std::vector<std::string_view> fields;
  std::vector<std::string> storage;
  size_t item_col = 0, rating_col = 1;
  std::string line;
  for (int64_t no = 1; std::getline(f, line); ++no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line).empty()) continue;
    const std::string where = path + ":" + std::to_string(no) + ": ";
    const auto colon = line.rfind(':');
    if (line.find(',') == std::string::npos && colon != std::string::npos) {
      out.push_back({trim(line.substr(0, colon)), trim(line.substr(colon + 1)), where});
      continue;
    }
    const std::string err = text::split_csv(line, &fields, &storage);
    if (!err.empty()) {
      warnings.push_back(where + err);
      continue;
    }
    if (no == 1) {
      int item = -1, rating = -1;
      for (size_t k = 0; k < fields.size(); ++k) {
        const int role = csv_header_role(fields[k]);
        if (role == kItemCol && item < 0) item = static_cast<int>(k);
        if (role == kRatingCol && rating < 0) rating = static_cast<int>(k);
      }
      if (item >= 0 && rating >= 0) {
        item_col = static_cast<size_t>(item);
        rating_col = static_cast<size_t>(rating);
        continue;
      }
      double v = 0;
      if (fields.size() >= 2 && text::parse_double(trim(std::string(fields[1])), &v) != text::NumParse::kOk) {
        // Said, so that a file whose one line is a bad pair ("50,nan") is not a silent cold start.
        warnings.push_back(where + "read as a header: its rating field " + text::quote(trim(std::string(fields[1]))) +
                           " is not a number, and it names no item and rating columns");
        continue;
      }
    }
    if (fields.size() <= std::max(item_col, rating_col)) {
      warnings.push_back(where + "expected item_id,rating" +
                         (item_col == 0 && rating_col == 1 ? std::string() : " in the header's columns"));
      continue;
    }
    out.push_back({trim(std::string(fields[item_col])), trim(std::string(fields[rating_col])), where});
  }
  if (f.bad()) throw DataError(path, 0, "read error");
  return out;
}

}  // namespace

FoldinRatings parse_foldin_ratings(const std::string& spec, const Dataset& d) {
  FoldinRatings f;
  std::unordered_map<std::string, int32_t> index;
  index.reserve(d.item_ids.size());
  for (size_t i = 0; i < d.item_ids.size(); ++i) index.emplace(d.item_ids[i], static_cast<int32_t>(i));
  const std::vector<GivenRating> given =
      spec.rfind('@', 0) == 0 ? given_in_file(spec.substr(1), f.warnings) : given_in_list(spec, f.warnings);
  std::vector<int32_t> seen;
  double step = -1;  // found on first use
  for (const GivenRating& g : given) {
    const std::string& id = g.id;
    const std::string& rs = g.rating;
    double r = 0;
    // A plain decimal, as in the rating files (stod would also take hex such as 0x1p2).
    if (text::parse_double(rs, &r) != text::NumParse::kOk) {
      f.warnings.push_back(g.where + "malformed rating " + text::quote(rs) + " for item " + text::escape(id, 60));
      continue;
    }
    auto it = index.find(id);
    if (it == index.end()) {
      // "1:5:3" or "1:5;2:4" split at their last colon: a malformed list, not an odd item id.
      if (id.find_first_of(":;") != std::string::npos)
        f.warnings.push_back(g.where + "malformed pair " + text::quote(id + ":" + rs) +
                             " (expected item_id:rating, pairs separated by commas)");
      else
        f.warnings.push_back(g.where + "unknown item id " + text::escape(id, 60) + " (not in " + d.name + ")");
      continue;
    }
    if (r < d.rating_min || r > d.rating_max) {
      std::ostringstream w;
      w << g.where << "rating " << rs << " for item " << id << " is outside the scale " << d.rating_min << "-" << d.rating_max;
      f.warnings.push_back(w.str());
      continue;
    }
    if (std::find(seen.begin(), seen.end(), it->second) != seen.end()) {
      f.warnings.push_back(g.where + "item " + id + " given twice; the first rating is kept");
      continue;
    }
    // The data's own step (whole stars, or ml-latest's halves): a rating between steps is kept
    // as given, and said, since the model never saw such a value.
    if (step < 0) step = rating_step(d);
    if (step > 0 && std::fabs(r / step - std::round(r / step)) > 1e-9) {
      std::ostringstream w;
      w << g.where << "rating " << rs << " for item " << id << " is between the data's steps of " << step << "; used as given";
      f.warnings.push_back(w.str());
    }
    seen.push_back(it->second);
    f.ratings.emplace_back(it->second, static_cast<float>(r));
  }
  // A file of many bad lines (a whole ratings file with its user column) would bury the list.
  constexpr size_t kShown = 20;
  if (f.warnings.size() > kShown) {
    const size_t more = f.warnings.size() - kShown;
    f.warnings.resize(kShown);
    f.warnings.push_back("... and " + std::to_string(more) + " more such problem" + (more == 1 ? "" : "s"));
  }
  // Some pairs unusable: warnings beside the list. None usable although some were given: the
  // request cannot be what was meant (an empty --ratings "" is the cold-start query instead).
  if (f.ratings.empty() && !f.warnings.empty()) {
    std::string msg = "--ratings: no usable item_id:rating pair";
    for (const std::string& w : f.warnings) msg += "; " + w;
    throw UsageError(msg);
  }
  std::sort(f.ratings.begin(), f.ratings.end());
  return f;
}

// ---- Recommender -----------------------------------------------------------------------

struct Recommender::Impl {
  enum class Mode { popular, model, model_user_rows, item_based };

  Backend<float>& be;
  Model<float>& m;
  ModelFileInfo info;
  const Dataset& d;
  int64_t batch = 0;
  int64_t score_cols = 0;
  std::vector<int32_t> score_item;     // score column → dataset item index
  std::vector<int32_t> col_of_item;    // dataset item → score column or −1
  std::vector<int32_t> train_row;      // CDAE: dataset user → training row or −1
  std::vector<int32_t> user_col;       // item-based: dataset user → model column or −1
  std::vector<int64_t> usable;         // per dataset user: non-zero input entries
  std::vector<int64_t> item_inputs;    // item-based: per input row (model item), its input entries
  CsrTensor<float> input, exclude;     // input rows (user-based: per user; item-based: per item)
  Tensor<float> scores, pop, pred, acc;
  Tensor<int32_t> rows, users, all_rows;
  bool sigmoid = false;

  Impl(Backend<float>& b, Model<float>& model, const ModelFileInfo& i, const Dataset& ds)
      : be(b), m(model), info(i), d(ds) {
    batch = m.max_batch();
    const int64_t ncols = static_cast<int64_t>(info.column_map.size());
    score_item = info.item_based ? info.row_map : info.column_map;
    score_cols = static_cast<int64_t>(score_item.size());
    col_of_item = inverse_map(score_item, d.num_items());
    const std::vector<int32_t> all_users = iota32(d.num_users());
    exclude = be.upload_csr(remap_rows(d.ratings, all_users, col_of_item, score_cols, info, false));
    if (!info.item_based) {
      VAE_CHECK(m.num_outputs() == ncols, "recommender: model outputs do not match its columns");
      Csr in = user_input_rows(info, d);
      usable.resize(static_cast<size_t>(d.num_users()));
      for (int64_t u = 0; u < d.num_users(); ++u) usable[u] = in.row_nnz(u);
      input = be.upload_csr(in);
      if (m.kind() == "cdae" && !info.row_map.empty()) {
        train_row.assign(static_cast<size_t>(d.num_users()), -1);
        for (size_t r = 0; r < info.row_map.size(); ++r) train_row[info.row_map[r]] = static_cast<int32_t>(r);
      }
    } else {
      // Items × users input; a user is usable when they are a model column with input ratings.
      const Csr t = d.ratings.transpose();
      user_col = inverse_map(info.column_map, d.num_users());
      Csr in = remap_rows(t, info.row_map, user_col, ncols, info, true);
      std::vector<int64_t> per_col(static_cast<size_t>(ncols), 0);
      for (int32_t c : in.indices) ++per_col[c];
      usable.assign(static_cast<size_t>(d.num_users()), 0);
      for (int64_t u = 0; u < d.num_users(); ++u)
        if (user_col[u] >= 0) usable[u] = per_col[user_col[u]];
      for (int64_t r = 0; r < in.rows; ++r) item_inputs.push_back(in.row_nnz(r));
      input = be.upload_csr(in);
      all_rows = be.upload<int32_t>(iota32(in.rows), in.rows, 1);
      pred = be.alloc<float>(batch, m.num_outputs());
      acc = be.alloc<float>(in.rows, batch);
    }
    // Popularity (ratings per item in the dataset) for users without usable ratings.
    std::vector<float> counts(static_cast<size_t>(score_cols), 0.0f);
    for (int32_t it : d.ratings.indices)
      if (col_of_item[it] >= 0) counts[col_of_item[it]] += 1.0f;
    pop = be.upload(counts, 1, score_cols);
    scores = be.alloc<float>(batch, score_cols);
    rows = be.alloc<int32_t>(batch, 1);
    users = be.alloc<int32_t>(batch, 1);
    sigmoid = sigmoid_scores(m);
  }

  // Scores of n rows into scores[0, n): `in_rows` index rows of `in` (item-based: model user
  // columns); user_rows are CDAE training rows (empty = none).
  void score(int64_t n, Mode mode, CsrView<float> in, const std::vector<int32_t>& in_rows,
             const std::vector<int32_t>& user_rows, bool raw = false) {
    Mat<float> s = scores.mat().rows_slice(0, n);
    if (mode == Mode::popular) {
      for (int64_t r = 0; r < n; ++r)
        be.copy_within(s.data + r * score_cols, pop.data(), static_cast<size_t>(score_cols) * sizeof(float));
      return;
    }
    if (mode == Mode::item_based) {
      score_item_based(n, in_rows, s);
      return;
    }
    be.upload_into(in_rows, rows.mat().rows_slice(0, n));
    Batch<float> b;
    b.input = in;
    b.rows = rows.cmat().rows_slice(0, n);
    if (mode == Mode::model_user_rows) {
      be.upload_into(user_rows, users.mat().rows_slice(0, n));
      b.users = users.cmat().rows_slice(0, n);
    }
    b.n = n;
    m.predict(b, s);
    if (sigmoid && !raw) be.bias_act(s, CMat<float>{}, Act::sigmoid, s);
  }

  // Item-based AutoRec: P = predict(item rows) is items × users; the batch's users are the
  // columns picked by a one-hot GEMM, then transposed (I · Accᵀ) into n × items.
  void score_item_based(int64_t n, const std::vector<int32_t>& cols, Mat<float> s) {
    const int64_t U = m.num_outputs(), items = input.rows;
    Csr onehot;
    onehot.rows = n;
    onehot.cols = U;
    onehot.indptr.assign(1, 0);
    for (int32_t c : cols) {
      onehot.indices.push_back(c);
      onehot.values.push_back(1.0f);
      onehot.indptr.push_back(static_cast<int64_t>(onehot.indices.size()));
    }
    CsrTensor<float> oh = be.upload_csr(onehot);
    Tensor<int32_t> oh_rows = be.upload<int32_t>(iota32(n), n, 1);
    Tensor<float> sel = be.alloc<float>(n, U);
    be.csr_rows_to_dense(oh.view(), oh_rows.cmat(), sel.mat());
    Mat<float> a{acc.data(), items, n};
    for (int64_t r0 = 0; r0 < items; r0 += batch) {
      const int64_t k = std::min(batch, items - r0);
      Batch<float> b;
      b.input = input.view();
      b.rows = all_rows.cmat().rows_slice(r0, k);
      b.n = k;
      Mat<float> p = pred.mat().rows_slice(0, k);
      m.predict(b, p);
      be.gemm(false, true, 1.0f, p, sel.cmat(), 0.0f, a.rows_slice(r0, k));
    }
    std::vector<float> eye(static_cast<size_t>(n * n), 0.0f);
    for (int64_t i = 0; i < n; ++i) eye[i * n + i] = 1.0f;
    Tensor<float> e = be.upload(eye, n, n);
    be.gemm(false, true, 1.0f, e.cmat(), a, 0.0f, s);
  }

  // Top-k of the scored rows, the rows' rated items excluded unless include_rated.
  void topk(int64_t n, int k, CsrView<float> ex, const std::vector<int32_t>& ex_rows, bool include_rated,
            std::vector<int32_t>& idx_out, std::vector<float>& val_out) {
    Tensor<int32_t> idx = be.alloc<int32_t>(n, k);
    Tensor<float> val = be.alloc<float>(n, k);
    Tensor<int32_t> er;
    CsrView<float> exv{};
    CMat<int32_t> erm{};
    if (!include_rated) {
      er = be.upload<int32_t>(ex_rows, n, 1);
      exv = ex;
      erm = er.cmat();
    }
    be.topk(scores.cmat().rows_slice(0, n), exv, erm, k, idx.mat(), val.mat());
    idx_out = be.download(idx.cmat());
    val_out = be.download(val.cmat());
  }

  void fill_items(RecommendResult& r, const int32_t* idx, const float* val, int k) const {
    for (int j = 0; j < k; ++j) {
      if (idx[j] < 0) break;  // fewer candidates than k
      check_finite_score(val[j], "scores");
      Recommendation rec;
      rec.rank = static_cast<int>(r.items.size()) + 1;
      rec.item = score_item[static_cast<size_t>(idx[j])];
      rec.item_id = d.item_ids[rec.item];
      if (d.has_titles()) rec.title = d.titles[rec.item];
      rec.score = val[j];
      r.items.push_back(std::move(rec));
    }
  }

  Mode mode_of(int32_t u) const {
    if (usable[u] == 0) return Mode::popular;
    if (info.item_based) return Mode::item_based;
    if (!train_row.empty() && train_row[u] >= 0) return Mode::model_user_rows;
    return Mode::model;
  }

  int k_of(const RecommendOptions& o) const {
    if (o.top < 1) throw UsageError("--top must be at least 1");
    return static_cast<int>(std::min<int64_t>(o.top, score_cols));
  }

  std::vector<RecommendResult> for_users(const std::vector<int32_t>& us, const RecommendOptions& o) {
    const int k = k_of(o);
    std::vector<RecommendResult> out(us.size());
    size_t i = 0;
    while (i < us.size()) {
      // A batch of consecutive users that are scored the same way.
      const Mode mode = mode_of(us[i]);
      size_t j = i;
      std::vector<int32_t> in_rows, user_rows, ex_rows;
      while (j < us.size() && static_cast<int64_t>(j - i) < batch && mode_of(us[j]) == mode) {
        const int32_t u = us[j];
        ex_rows.push_back(u);
        in_rows.push_back(info.item_based ? (user_col[u] < 0 ? 0 : user_col[u]) : u);
        if (mode == Mode::model_user_rows) user_rows.push_back(train_row[u]);
        ++j;
      }
      const int64_t n = static_cast<int64_t>(j - i);
      score(n, mode, input.view(), in_rows, user_rows);
      std::vector<int32_t> idx;
      std::vector<float> val;
      topk(n, k, exclude.view(), ex_rows, o.include_rated, idx, val);
      for (int64_t r = 0; r < n; ++r) {
        RecommendResult& res = out[i + r];
        res.user_id = d.user_ids[us[i + r]];
        res.input_ratings = usable[us[i + r]];
        res.popularity_fallback = mode == Mode::popular;
        fill_items(res, idx.data() + r * k, val.data() + r * k, k);
      }
      i = j;
    }
    return out;
  }
};

Recommender::Recommender(Backend<float>& be, Model<float>& model, const ModelFileInfo& info, const Dataset& d)
    : impl_(new Impl(be, model, info, d)) {}
Recommender::~Recommender() { delete impl_; }

std::vector<RecommendResult> Recommender::for_users(const std::vector<int32_t>& users, const RecommendOptions& o) {
  for (int32_t u : users) VAE_CHECK(u >= 0 && u < impl_->d.num_users(), "for_users: user index out of range");
  return impl_->for_users(users, o);
}

RecommendResult Recommender::for_user(const std::string& user_id, const RecommendOptions& o) {
  const Dataset& d = impl_->d;
  const int64_t u = d.find_user(user_id);
  if (u < 0) throw no_such_user(d, user_id);
  RecommendResult r = impl_->for_users({static_cast<int32_t>(u)}, o).front();
  const int64_t rated = d.ratings.row_nnz(u);
  if (r.popularity_fallback) {
    std::string why = rated == 0 ? "has no ratings"
                      : impl_->info.item_based && impl_->user_col[u] < 0
                          ? "is not one of the model's users"
                          : "has no ratings the model takes as input";
    if (impl_->info.input_threshold > 0 && rated > 0)
      why += " (it was trained on ratings >= " + fmt_score(static_cast<float>(impl_->info.input_threshold)) + ")";
    r.notes.push_back("user " + user_id + " " + why + ": showing the most popular items instead");
  } else if (impl_->m.kind() == "cdae" && impl_->train_row[u] < 0) {
    r.notes.push_back("user " + user_id + " was not a training user: scored without a learned user vector");
  }
  return r;
}

RecommendResult Recommender::for_ratings(const std::string& spec, const RecommendOptions& o) {
  Impl& p = *impl_;
  if (p.info.item_based)
    throw UsageError("item-based AutoRec takes users as its input columns, so it cannot fold in a new "
                     "user's ratings: use --user, or a user-based model");
  const int k = p.k_of(o);
  FoldinRatings f = parse_foldin_ratings(spec, p.d);
  RecommendResult r;
  r.warnings = f.warnings;
  // One-row input and exclusion matrices over the model's columns.
  Csr in, ex;
  in.rows = ex.rows = 1;
  in.cols = ex.cols = p.score_cols;
  int64_t below = 0;
  for (const auto& [item, rating] : f.ratings) {
    const int32_t c = p.col_of_item[item];
    if (c < 0) {
      r.warnings.push_back("item " + p.d.item_ids[item] + " is not one of the model's items (too few ratings in training); ignored");
      continue;
    }
    ex.indices.push_back(c);
    ex.values.push_back(rating);
    if (p.info.input_threshold > 0 && rating < p.info.input_threshold) {
      ++below;
      continue;
    }
    in.indices.push_back(c);
    in.values.push_back(p.info.binary_input ? 1.0f : rating);
  }
  // Columns can come out of order when the model's columns are a permutation of items.
  auto sort_row = [](Csr& m) {
    std::vector<std::pair<int32_t, float>> v;
    for (size_t i = 0; i < m.indices.size(); ++i) v.emplace_back(m.indices[i], m.values[i]);
    std::sort(v.begin(), v.end());
    for (size_t i = 0; i < v.size(); ++i) m.indices[i] = v[i].first, m.values[i] = v[i].second;
    m.indptr = {0, static_cast<int64_t>(v.size())};
  };
  sort_row(in);
  sort_row(ex);
  if (below > 0)
    r.notes.push_back(std::to_string(below) + " rating(s) below " + fmt_score(static_cast<float>(p.info.input_threshold)) +
                      " not used as input (the model was trained on ratings >= that); still excluded");
  r.input_ratings = in.nnz();
  CsrTensor<float> in_dev = p.be.upload_csr(in), ex_dev = p.be.upload_csr(ex);
  Impl::Mode mode = in.nnz() == 0 ? Impl::Mode::popular : Impl::Mode::model;
  r.popularity_fallback = mode == Impl::Mode::popular;
  if (r.popularity_fallback)
    r.notes.push_back("no usable ratings given: showing the most popular items instead");
  else if (p.m.kind() == "cdae")
    r.notes.push_back("a folded-in user has no learned CDAE user vector; scored without one");
  p.score(1, mode, in_dev.view(), {0}, {});
  std::vector<int32_t> idx;
  std::vector<float> val;
  p.topk(1, k, ex_dev.view(), {0}, o.include_rated, idx, val);
  p.fill_items(r, idx.data(), val.data(), k);
  return r;
}

int64_t Recommender::num_items() const { return impl_->d.num_items(); }

Recommender::ItemOutputs Recommender::item_based_outputs() {
  Impl& p = *impl_;
  if (!p.info.item_based) throw UsageError("item_based_outputs: the model is user-based");
  ItemOutputs o;
  o.rows = p.input.rows;
  o.users = p.m.num_outputs();
  o.values.reserve(static_cast<size_t>(o.rows * o.users));
  for (int64_t r = 0; r < o.rows; ++r) o.empty.push_back(p.item_inputs[r] == 0);
  for (int64_t r0 = 0; r0 < o.rows; r0 += p.batch) {
    const int64_t k = std::min(p.batch, o.rows - r0);
    Batch<float> b;
    b.input = p.input.view();
    b.rows = p.all_rows.cmat().rows_slice(r0, k);
    b.n = k;
    Mat<float> out = p.pred.mat().rows_slice(0, k);
    p.m.predict(b, out);
    const std::vector<float> h = p.be.download(out);
    o.values.insert(o.values.end(), h.begin(), h.end());
  }
  return o;
}

std::vector<std::vector<float>> Recommender::fold_in_outputs(const std::vector<FoldInRow>& users) {
  Impl& p = *impl_;
  if (p.info.item_based)
    throw UsageError("item-based AutoRec takes users as its input columns, so it cannot score a new user");
  const int64_t items = p.d.num_items();
  std::vector<std::vector<float>> out;
  out.reserve(users.size());
  for (size_t i0 = 0; i0 < users.size(); i0 += static_cast<size_t>(p.batch)) {
    const size_t n = std::min(users.size() - i0, static_cast<size_t>(p.batch));
    Csr in;
    in.rows = static_cast<int64_t>(n);
    in.cols = p.score_cols;
    in.indptr.assign(1, 0);
    std::vector<std::pair<int32_t, float>> row;
    for (size_t r = 0; r < n; ++r) {
      row.clear();
      for (const auto& [item, rating] : users[i0 + r]) {
        VAE_CHECK(item >= 0 && item < items, "fold_in_outputs: item index out of range");
        const int32_t c = p.col_of_item[item];
        if (c < 0 || (p.info.input_threshold > 0 && rating < p.info.input_threshold)) continue;
        row.emplace_back(c, p.info.binary_input ? 1.0f : rating);
      }
      std::sort(row.begin(), row.end());
      for (const auto& [c, v] : row) in.indices.push_back(c), in.values.push_back(v);
      in.indptr.push_back(static_cast<int64_t>(in.indices.size()));
    }
    CsrTensor<float> in_dev = p.be.upload_csr(in);
    std::vector<int32_t> rows(n);
    std::iota(rows.begin(), rows.end(), 0);
    p.score(static_cast<int64_t>(n), Impl::Mode::model, in_dev.view(), rows, {}, true);
    const std::vector<float> s = p.be.download(p.scores.cmat().rows_slice(0, static_cast<int64_t>(n)));
    for (size_t r = 0; r < n; ++r) {
      std::vector<float> o(static_cast<size_t>(items), std::numeric_limits<float>::quiet_NaN());
      for (int64_t c = 0; c < p.score_cols; ++c) o[p.score_item[c]] = s[r * p.score_cols + c];
      out.push_back(std::move(o));
    }
  }
  return out;
}

namespace {

// CSV "user_id,rank,item_id,score" for every dataset user via for_users on slices of users,
// streamed to path.tmp and renamed at the end.
template <typename ForUsers>
Recommender::AllUsersSummary write_recs_csv(const std::string& path, const Dataset& d, int64_t slice,
                                            const ForUsers& for_users) {
  Recommender::AllUsersSummary s;
  write_atomically(path, [&](std::ostream& f) {
    f << "user_id,rank,item_id,score\n";
    // Slices of users keep host memory at slice × top results, whatever the number of users.
    for (int64_t u0 = 0; u0 < d.num_users(); u0 += slice) {
      const int64_t n = std::min(slice, d.num_users() - u0);
      std::vector<int32_t> us(static_cast<size_t>(n));
      std::iota(us.begin(), us.end(), static_cast<int32_t>(u0));
      const std::vector<RecommendResult> rs = for_users(us);
      std::string buf;
      for (const RecommendResult& r : rs) {
        ++s.users;
        if (r.popularity_fallback && ++s.popularity_fallbacks <= Recommender::AllUsersSummary::kNamedFallbacks)
          s.fallback_users.push_back(r.user_id);
        // Ids are quoted where they hold a comma or a quote, as the generic CSV reader accepts them.
        const std::string user = text::csv_field(r.user_id) + ",";
        for (const Recommendation& rec : r.items) {
          buf += user + std::to_string(rec.rank) + "," + text::csv_field(rec.item_id) + "," + fmt_score(rec.score) + "\n";
          ++s.rows;
        }
      }
      f << buf;
      if (!f) throw DataError(path, 0, "write failed (disk full?)");
    }
  });
  return s;
}

}  // namespace

Recommender::AllUsersSummary Recommender::write_all_users_csv(const std::string& path, const RecommendOptions& o) {
  Impl& p = *impl_;
  return write_recs_csv(path, p.d, std::max<int64_t>(p.batch, 4096),
                        [&](const std::vector<int32_t>& us) { return p.for_users(us, o); });
}

// ---- SVD / SVD++ -----------------------------------------------------------------------

SvdRecommender::SvdRecommender(const SvdModel& model, const Dataset& d) : m_(model), d_(d) {
  VAE_CHECK(model.num_users() == d.num_users() && model.num_items() == d.num_items(),
            "SvdRecommender: the model's shape differs from the dataset");
}

RecommendResult SvdRecommender::top_of(const std::vector<float>& scores, const std::vector<int32_t>& exclude,
                                       int k) const {
  std::vector<char> skip(scores.size(), 0);
  for (int32_t i : exclude) skip[static_cast<size_t>(i)] = 1;
  std::vector<int32_t> cand;
  cand.reserve(scores.size());
  for (size_t i = 0; i < scores.size(); ++i)
    if (!skip[i]) {
      check_finite_score(scores[i], "scores");  // before the sort: NaN breaks its ordering
      cand.push_back(static_cast<int32_t>(i));
    }
  const size_t n = std::min(cand.size(), static_cast<size_t>(k));
  std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(n), cand.end(), [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  RecommendResult r;
  for (size_t j = 0; j < n; ++j) {
    Recommendation rec;
    rec.rank = static_cast<int>(j) + 1;
    rec.item = cand[j];
    rec.item_id = d_.item_ids[rec.item];
    if (d_.has_titles()) rec.title = d_.titles[rec.item];
    rec.score = scores[rec.item];
    r.items.push_back(std::move(rec));
  }
  return r;
}

std::vector<RecommendResult> SvdRecommender::for_users(const std::vector<int32_t>& users,
                                                       const RecommendOptions& o) const {
  if (o.top < 1) throw UsageError("--top must be at least 1");
  const int k = static_cast<int>(std::min<int64_t>(o.top, d_.num_items()));
  std::vector<RecommendResult> out;
  out.reserve(users.size());
  std::vector<float> scores;
  std::vector<int32_t> rated;
  for (int32_t u : users) {
    VAE_CHECK(u >= 0 && u < d_.num_users(), "SvdRecommender: user index out of range");
    m_.score_items(u, scores);
    rated.clear();
    if (!o.include_rated)
      rated.assign(d_.ratings.indices.begin() + d_.ratings.indptr[u], d_.ratings.indices.begin() + d_.ratings.indptr[u + 1]);
    RecommendResult r = top_of(scores, rated, k);
    r.user_id = d_.user_ids[u];
    r.input_ratings = m_.user_ratings(u);
    r.popularity_fallback = !m_.user_known(u);
    out.push_back(std::move(r));
  }
  return out;
}

RecommendResult SvdRecommender::for_user(const std::string& user_id, const RecommendOptions& o) const {
  const int64_t u = d_.find_user(user_id);
  if (u < 0) throw no_such_user(d_, user_id);
  RecommendResult r = for_users({static_cast<int32_t>(u)}, o).front();
  if (r.popularity_fallback)
    r.notes.push_back("user " + user_id + " has no training ratings: ranked by mu + b_i (Surprise's estimate for an unknown user)");
  return r;
}

RecommendResult SvdRecommender::for_ratings(const std::string& spec, const RecommendOptions& o) const {
  if (o.top < 1) throw UsageError("--top must be at least 1");
  const int k = static_cast<int>(std::min<int64_t>(o.top, d_.num_items()));
  FoldinRatings f = parse_foldin_ratings(spec, d_);
  std::vector<std::string> warnings = f.warnings;
  std::vector<std::pair<int32_t, float>> known;
  std::vector<int32_t> given;
  for (const auto& [item, rating] : f.ratings) {
    given.push_back(item);
    if (m_.item_known(item)) known.emplace_back(item, rating);
    else warnings.push_back("item " + d_.item_ids[item] + " has no training ratings in the model; ignored");
  }
  const auto [bu, v] = m_.fold_in(known);
  std::vector<float> scores;
  m_.score_with(bu, v, scores);
  RecommendResult r = top_of(scores, o.include_rated ? std::vector<int32_t>{} : given, k);
  r.warnings = std::move(warnings);
  r.input_ratings = static_cast<int64_t>(known.size());
  if (known.empty()) {
    r.popularity_fallback = true;
    r.notes.push_back("no usable ratings given: ranked by mu + b_i (Surprise's estimate for an unknown user)");
  } else {
    r.notes.push_back("folded in " + std::to_string(known.size()) + " rating(s): b_u and p_u from " +
                      std::to_string(m_.options().epochs) + " SGD passes over them with the item parameters fixed");
  }
  return r;
}

Recommender::AllUsersSummary SvdRecommender::write_all_users_csv(const std::string& path,
                                                                 const RecommendOptions& o) const {
  return write_recs_csv(path, d_, 4096, [&](const std::vector<int32_t>& us) { return for_users(us, o); });
}

Embeddings svd_user_embeddings(const SvdModel& m, const Dataset& d) {
  VAE_CHECK(m.num_users() == d.num_users(), "svd_user_embeddings: the model's users differ from the dataset");
  Embeddings e;
  e.users = iota32(d.num_users());
  e.dim = m.factors();
  e.z.assign(static_cast<size_t>(d.num_users() * e.dim), 0.0f);
  for (int64_t u = 0; u < d.num_users(); ++u) {
    if (!m.user_known(u)) {
      ++e.empty_inputs;
      continue;
    }
    const std::vector<double> v = m.user_vector(u);
    for (int64_t f = 0; f < e.dim; ++f) e.z[u * e.dim + f] = static_cast<float>(v[f]);
  }
  return e;
}

std::string format_recommendation_notes(const RecommendResult& r) {
  std::string s;
  for (const std::string& w : r.warnings) s += "warning: " + w + "\n";
  for (const std::string& n : r.notes) s += "note: " + n + "\n";
  return s;
}

std::string format_recommendations(const RecommendResult& r, const Dataset& d, const std::string& heading,
                                   bool with_notes) {
  std::ostringstream os;
  if (with_notes) os << format_recommendation_notes(r);
  os << heading << "\n";
  // Ids and titles come from data files: control bytes are shown escaped, widths in columns.
  auto id_of = [](const std::string& id) { return shown_id(id); };
  auto title = [&](int32_t item, const std::string& t) { return shown_title(d, item, t); };
  size_t id_w = 4, title_w = 5;
  bool explained = false;
  for (const auto& rec : r.items) {
    id_w = std::max(id_w, text::display_width(id_of(rec.item_id)));
    title_w = std::max(title_w, text::display_width(title(rec.item, rec.title)));
    explained = explained || rec.because >= 0;
  }
  os << std::right << std::setw(4) << "rank" << "  " << std::setw(static_cast<int>(id_w)) << "item" << "  "
     << std::setw(10) << "score" << "  title";
  if (explained) os << std::string(title_w - 5, ' ') << "  because you liked";
  os << "\n";
  std::vector<int32_t> items;
  for (const auto& rec : r.items) {
    const std::string id = id_of(rec.item_id), t = title(rec.item, rec.title);
    os << std::setw(4) << rec.rank << "  " << std::string(id_w - text::display_width(id), ' ') << id << "  "
       << std::setw(10) << fmt_score(rec.score) << "  " << t;
    if (explained) {
      os << std::string(title_w - text::display_width(t), ' ') << "  ";
      if (rec.because >= 0)
        os << title(rec.because, d.has_titles() ? d.titles[rec.because] : std::string()) << " ("
           << fmt_score(rec.because_rating) << ")";
      else
        os << "-";
    }
    os << "\n";
    items.push_back(rec.item);
  }
  if (r.items.empty()) os << "  (no items left to recommend)\n";
  os << format_genre_counts(genre_counts(d, items));
  return os.str();
}

// ---- latent codes ----------------------------------------------------------------------

Embeddings encode_users(Backend<float>& be, Model<float>& m, const ModelFileInfo& info, const Dataset& d,
                        bool sample, bool want_logvar, std::vector<int32_t> users) {
  if (!model_has_latent(m.kind()) || m.latent_dim() <= 0)
    throw UsageError(m.kind() + " has no latent space: embeddings and clusters need a VAE-type model (vae, multvae) "
                     "or an SVD model's user vectors (svd, svdpp)");
  Embeddings e;
  if (users.empty()) users = iota32(d.num_users());
  e.users = users;
  const int64_t L = m.latent_dim(), B = m.max_batch(), n = static_cast<int64_t>(users.size());
  e.dim = L;
  const Csr in = user_input_rows(info, d);
  for (int32_t u : users) {
    VAE_CHECK(u >= 0 && u < d.num_users(), "encode_users: user index out of range");
    if (in.row_nnz(u) == 0) ++e.empty_inputs;
  }
  CsrTensor<float> in_dev = be.upload_csr(in);
  Tensor<int32_t> rows = be.alloc<int32_t>(B, 1);
  Tensor<float> ml = be.alloc<float>(B, 2 * L), eps = be.alloc<float>(B, L), z = be.alloc<float>(B, L);
  e.z.resize(static_cast<size_t>(n * L));
  if (want_logvar) e.logvar.resize(static_cast<size_t>(n * L));
  for (int64_t r0 = 0; r0 < n; r0 += B) {
    const int64_t k = std::min(B, n - r0);
    std::vector<int32_t> rr(users.begin() + r0, users.begin() + r0 + k);
    be.upload_into(rr, rows.mat().rows_slice(0, k));
    Batch<float> b;
    b.input = in_dev.view();
    b.rows = rows.cmat().rows_slice(0, k);
    b.n = k;
    Mat<float> mlk = ml.mat().rows_slice(0, k);
    m.encode(b, mlk);
    const std::vector<float> h = be.download(CMat<float>(mlk));
    if (sample) {
      // Fresh noise per batch from a stream of its own, apart from the training steps' streams.
      const uint64_t stream = rng_stream(RngStream::eps, (uint64_t{1} << 40) + static_cast<uint64_t>(r0));
      Mat<float> zk = z.mat().rows_slice(0, k);
      be.reparameterize(mlk, info.seed, stream, eps.mat().rows_slice(0, k), zk);
      const std::vector<float> zh = be.download(CMat<float>(zk));
      std::copy(zh.begin(), zh.end(), e.z.begin() + r0 * L);
    }
    for (int64_t i = 0; i < k; ++i) {
      if (!sample) std::copy(h.begin() + i * 2 * L, h.begin() + i * 2 * L + L, e.z.begin() + (r0 + i) * L);
      if (want_logvar)
        std::copy(h.begin() + i * 2 * L + L, h.begin() + (i + 1) * 2 * L, e.logvar.begin() + (r0 + i) * L);
    }
  }
  return e;
}

}  // namespace vae
