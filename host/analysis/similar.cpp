#include "analysis/similar.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <limits>
#include <memory>
#include <sstream>

#include "analysis/profile.h"
#include "core/error.h"
#include "core/temp_files.h"
#include "data/text_reader.h"
#include "models/baselines.h"

namespace vae {

namespace {


std::string genres_of(const Dataset& d, int32_t item) {
  if (!d.has_genres() || static_cast<size_t>(item) >= d.item_genres.size()) return "";
  std::string g;
  for (size_t k = 0; k < d.genre_names.size(); ++k)
    if (d.item_genres[item] >> k & 1u) g += (g.empty() ? "" : "|") + d.genre_names[k];
  return g;
}

std::string id_of(const Dataset& d, int32_t item) { return shown_id(d.item_ids[item]); }

std::string title_of(const Dataset& d, int32_t item) {
  return shown_title(d, item, d.has_titles() ? d.titles[item] : std::string());
}

}  // namespace

void require_item_effects(const std::string& kind) {
  const char* others = "; use vae, multvae, autorec, i-autorec, cdae, ease, svd or svdpp";
  if (kind == "popularity")
    throw UsageError(std::string("popularity ranks every user alike: no item changes another's score") + others);
}

namespace {

// Item-based AutoRec's output P[i][u] is what it predicts user u gives item i. Taking out each
// row's and each column's mean (double centring) leaves the interaction: how much more than u's
// usual and i's usual the model expects u to like i. The cosine of two items' interaction rows
// is their correlation over the users; a row that is constant has none (0 with everything).
ItemEffects item_similarities(Recommender& rec, Backend<float>& be, const ModelFileInfo& info, float rating_min,
                              float rating_max, int64_t max_values) {
  ItemEffects e;
  e.model = "i-autorec";
  e.unit = "similarity";
  e.like = rating_max;
  e.liked = info.input_threshold > 0 ? static_cast<float>(info.input_threshold) : 0.5f * (rating_min + rating_max);
  const int64_t rows = static_cast<int64_t>(info.row_map.size()), users = static_cast<int64_t>(info.column_map.size());
  if (rows * users > max_values)
    throw UsageError("i-autorec compares items through its full items x users predictions: " + std::to_string(rows) +
                     " x " + std::to_string(users) + " values, over the " + std::to_string(max_values) +
                     " this command holds; use a user-based model (autorec, multvae) for similar items at this size");
  const Recommender::ItemOutputs o = rec.item_based_outputs();
  VAE_CHECK(o.rows == rows && o.users == users, "item similarities: outputs do not match the model's rows and columns");
  // The compared rows: items with input ratings, ascending by dataset item.
  std::vector<int64_t> kept;
  for (int64_t r = 0; r < rows; ++r)
    if (!o.empty[r]) kept.push_back(r);
  std::sort(kept.begin(), kept.end(), [&](int64_t a, int64_t b) { return info.row_map[a] < info.row_map[b]; });
  const int64_t n = static_cast<int64_t>(kept.size());
  for (int64_t r : kept) e.items.push_back(info.row_map[r]);
  e.users = users;
  std::vector<double> row_mean(static_cast<size_t>(n), 0.0), col_mean(static_cast<size_t>(users), 0.0);
  double grand = 0;
  for (int64_t k = 0; k < n; ++k) {
    const float* p = o.values.data() + kept[k] * users;
    for (int64_t u = 0; u < users; ++u) row_mean[k] += p[u], col_mean[u] += p[u];
    grand += row_mean[k];
    row_mean[k] /= static_cast<double>(users);
  }
  if (n > 0) {
    for (double& c : col_mean) c /= static_cast<double>(n);
    grand /= static_cast<double>(n * users);
  }
  auto q = std::make_shared<std::vector<float>>(static_cast<size_t>(n * users));
  std::vector<double> v(static_cast<size_t>(users));
  for (int64_t k = 0; k < n; ++k) {
    const float* p = o.values.data() + kept[k] * users;
    double ss = 0;
    for (int64_t u = 0; u < users; ++u) {
      v[u] = static_cast<double>(p[u]) - row_mean[k] - col_mean[u] + grand;
      ss += v[u] * v[u];
    }
    // Below float resolution of the row's own scale the "interaction" is rounding noise.
    const double scale = std::abs(row_mean[k]) + 1.0;
    const double norm = std::sqrt(ss);
    if (norm > 1e-6 * scale * std::sqrt(static_cast<double>(users)))
      for (int64_t u = 0; u < users; ++u) (*q)[k * users + u] = static_cast<float>(v[u] / norm);
  }
  // Nothing to upload when no item has input ratings (every list is then refused).
  auto qt = n > 0 ? std::make_shared<Tensor<float>>(be.upload(*q, n, users)) : nullptr;
  std::vector<int32_t> pos(static_cast<size_t>(rec.num_items()), -1);
  for (int64_t k = 0; k < n; ++k) pos[e.items[k]] = static_cast<int32_t>(k);
  const std::vector<int32_t> items = e.items;
  const int64_t num_items = rec.num_items();
  e.similarity = [&be, q, qt, pos, items, n, users, num_items](const std::vector<int32_t>& want) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<std::vector<double>> out;
    out.reserve(want.size());
    const size_t chunk = 256;
    for (size_t w0 = 0; w0 < want.size(); w0 += chunk) {
      const size_t k = std::min(chunk, want.size() - w0);
      std::vector<float> a(k * static_cast<size_t>(users), 0.0f);
      for (size_t r = 0; r < k; ++r) {
        const int32_t i = want[w0 + r];
        VAE_CHECK(i >= 0 && i < num_items, "item similarity: item index out of range");
        if (pos[i] >= 0)
          std::copy_n(q->data() + static_cast<int64_t>(pos[i]) * users, users, a.data() + r * static_cast<size_t>(users));
      }
      std::vector<float> c;
      if (n > 0) {
        Tensor<float> at = be.upload(a, static_cast<int64_t>(k), users);
        Tensor<float> ct = be.alloc<float>(static_cast<int64_t>(k), n);
        be.gemm(false, true, 1.0f, at.cmat(), qt->cmat(), 0.0f, ct.mat());
        c = be.download(ct.cmat());
      }
      for (size_t r = 0; r < k; ++r) {
        std::vector<double> s(static_cast<size_t>(num_items), nan);
        if (pos[want[w0 + r]] >= 0)
          for (int64_t j = 0; j < n; ++j) s[items[j]] = static_cast<double>(c[r * static_cast<size_t>(n) + j]);
        out.push_back(std::move(s));
      }
    }
    return out;
  };
  return e;
}

}  // namespace

ItemEffects item_effects(Recommender& rec, Backend<float>& be, Model<float>& model, const ModelFileInfo& info,
                         float rating_min, float rating_max, int64_t max_values) {
  if (info.item_based) return item_similarities(rec, be, info, rating_min, rating_max, max_values);
  const std::string kind = model.kind();
  require_item_effects(kind);
  ItemEffects e;
  e.model = kind;
  e.like = rating_max;
  e.liked = info.input_threshold > 0 ? static_cast<float>(info.input_threshold) : 0.5f * (rating_min + rating_max);
  const bool logits = kind == "vae" || (kind == "cdae" && model.config().loss != "mse");
  if (logits) e.unit = "logit";
  else if (kind == "multvae") e.unit = "log-probability";
  else if (kind == "ease") e.unit = "score (EASE: B[i][j])";
  else e.unit = info.binary_input ? "output (its 0/1 reconstruction)" : "predicted rating";

  if (kind == "ease") {
    // Scores are X·B over 0/1 rows: a user's output row is the sum of B's rows of the items
    // they rated (at or above the input threshold) — no n × n product per user.
    auto* ease = dynamic_cast<EaseModel<float>*>(&model);
    VAE_CHECK(ease != nullptr, "item_effects: ease model of another type");
    const int64_t n = static_cast<int64_t>(info.column_map.size());
    auto b = std::make_shared<const std::vector<float>>(be.download(ease->item_item()));
    VAE_CHECK(static_cast<int64_t>(b->size()) == n * n, "item_effects: EASE's B does not match its columns");
    std::vector<int32_t> row_of(static_cast<size_t>(rec.num_items()), -1);
    for (int64_t c = 0; c < n; ++c) row_of[info.column_map[c]] = static_cast<int32_t>(c);
    const double threshold = info.input_threshold;
    const std::vector<int32_t> columns = info.column_map;
    const int64_t items = rec.num_items();
    e.outputs = [b, row_of, columns, threshold, n, items](const std::vector<FoldInRow>& users) {
      std::vector<std::vector<float>> out;
      std::vector<double> acc(static_cast<size_t>(n));
      for (const FoldInRow& row : users) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (const auto& [i, r] : row) {
          VAE_CHECK(i >= 0 && i < items, "ease outputs: item index out of range");
          if (row_of[i] < 0 || (threshold > 0 && r < threshold)) continue;
          const float* bi = b->data() + static_cast<int64_t>(row_of[i]) * n;
          for (int64_t c = 0; c < n; ++c) acc[c] += static_cast<double>(bi[c]);
        }
        std::vector<float> o(static_cast<size_t>(items), std::numeric_limits<float>::quiet_NaN());
        for (int64_t c = 0; c < n; ++c) o[columns[c]] = static_cast<float>(acc[c]);
        out.push_back(std::move(o));
      }
      return out;
    };
    e.chunk = 64;
    return e;
  }

  const bool softmax = kind == "multvae";
  e.outputs = [&rec, softmax](const std::vector<FoldInRow>& users) {
    std::vector<std::vector<float>> out = rec.fold_in_outputs(users);
    // Mult-VAE's logits are defined up to a constant per user (softmax): its log-probabilities
    // are what compares across users.
    if (softmax)
      for (std::vector<float>& row : out) {
        double mx = -std::numeric_limits<double>::infinity(), se = 0;
        for (float v : row)
          if (!std::isnan(v)) mx = std::max(mx, static_cast<double>(v));
        for (float v : row)
          if (!std::isnan(v)) se += std::exp(static_cast<double>(v) - mx);
        const double lse = mx + std::log(se);
        for (float& v : row)
          if (!std::isnan(v)) v = static_cast<float>(static_cast<double>(v) - lse);
      }
    return out;
  };
  return e;
}

ItemEffects item_effects(const SvdModel& m) {
  ItemEffects e;
  e.model = m.kind();
  e.unit = "predicted rating";
  e.like = m.rating_max();
  e.liked = 0.5f * (m.rating_min() + m.rating_max());
  e.outputs = [&m](const std::vector<FoldInRow>& users) {
    std::vector<std::vector<float>> out;
    for (const FoldInRow& row : users) {
      FoldInRow known;
      for (const auto& p : row)
        if (m.item_known(p.first)) known.push_back(p);
      const auto [bu, v] = m.fold_in(known);
      std::vector<float> s;
      m.score_with(bu, v, s);
      for (int64_t i = 0; i < m.num_items(); ++i)
        if (!m.item_known(i)) s[i] = std::numeric_limits<float>::quiet_NaN();
      out.push_back(std::move(s));
    }
    return out;
  };
  return e;
}

namespace {

// MovieLens files a title's leading article after it ("Matrix, The (1999)", "Dolce Vita, La
// (1960)"); people type it in front. The articles of the languages in its titles:
const char* const kArticles[] = {"the", "a",   "an",  "le",  "la",  "les", "l'",  "il",  "lo",  "gli", "el",
                                 "los", "las", "der", "die", "das", "det", "den", "de",  "het", "un",  "une",
                                 "una", "uno", "o",   "os",  "as",  "ein", "eine", "en",  "et"};

// A search key with its spaces as typed: trimmed, each run of them one (some MovieLens titles
// hold double spaces).
std::string spaced_key(const std::string& s) {
  std::string out;
  for (char c : text::search_key(s))
    if (c != ' ' || (!out.empty() && out.back() != ' ')) out.push_back(c);
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The ways a title can be asked for, as search keys: as filed and with its article in front, each
// with and without its parenthesised tail (the year, an original title).
std::vector<std::string> title_forms(const std::string& title) {
  const std::string key = spaced_key(title);
  const size_t paren = key.find(" (");
  const std::string main = key.substr(0, paren), tail = paren == std::string::npos ? "" : key.substr(paren);
  std::vector<std::string> forms = {key, main};
  const size_t comma = main.rfind(", ");
  if (comma != std::string::npos) {
    const std::string article = main.substr(comma + 2);
    for (const char* a : kArticles)
      if (article == a) {
        const std::string front = article + (article.back() == '\'' ? "" : " ") + main.substr(0, comma);
        forms.push_back(front + tail);
        forms.push_back(front);
        break;
      }
  }
  return forms;
}

}  // namespace

int32_t find_item_by_id_or_title(const std::string& query, const Dataset& d) {
  const int64_t by_id = d.find_item(query);
  if (by_id >= 0) return static_cast<int32_t>(by_id);
  const std::string q = spaced_key(query);
  if (!d.has_titles() || q.empty())
    throw UsageError("no item " + text::quote(query) + " in " + d.name +
                     (d.has_titles() ? "" : " (it has no titles to search: give an item id)"));
  // A title any form of which holds the query matches; one that some form equals (the whole
  // title, or it without its year) is taken over the others when it is the only such one.
  std::vector<int32_t> hits, exact;
  for (size_t i = 0; i < d.titles.size(); ++i) {
    const std::vector<std::string> forms = title_forms(d.titles[i]);
    bool hit = false, equal = false;
    for (const std::string& f : forms) {
      hit = hit || f.find(q) != std::string::npos;
      equal = equal || f == q;
    }
    if (hit) hits.push_back(static_cast<int32_t>(i));
    if (equal) exact.push_back(static_cast<int32_t>(i));
  }
  if (hits.empty()) throw UsageError("no item id or title in " + d.name + " matches " + text::quote(query));
  if (hits.size() == 1) return hits.front();
  if (exact.size() == 1) return exact.front();
  const std::vector<int32_t>& listed = exact.empty() ? hits : exact;
  std::string list;
  const size_t shown = std::min<size_t>(listed.size(), 10);
  for (size_t k = 0; k < shown; ++k)
    list += "\n  " + text::escape(d.item_ids[listed[k]], 40) + "  " + text::escape(d.titles[listed[k]], 100);
  if (listed.size() > shown) list += "\n  ... and " + std::to_string(listed.size() - shown) + " more";
  throw UsageError(std::to_string(listed.size()) + " titles in " + d.name + " match " + text::quote(query) +
                   "; give the item id of one:" + list);
}

namespace {

// What the lifts of every item are measured against: the model's items (those it scores) and,
// for each item j, the mean output after a like of each model item in turn.
struct LiftBase {
  std::vector<int32_t> items;
  std::vector<double> mean;  // per dataset item (0 off the model's items)
};

// outputs() of model items' likes, `chunk` at a time, handed to fn(first row, outputs).
template <typename Fn>
void for_item_likes(const ItemEffects& e, const std::vector<int32_t>& items, Fn fn) {
  const size_t chunk = static_cast<size_t>(std::max<int64_t>(1, e.chunk));
  for (size_t r0 = 0; r0 < items.size(); r0 += chunk) {
    std::vector<FoldInRow> users;
    for (size_t r = r0; r < std::min(items.size(), r0 + chunk); ++r) users.push_back(FoldInRow{{items[r], e.like}});
    fn(r0, e.outputs(users));
  }
}

// The model's items, ascending: item-based AutoRec's own list, else those an empty fold-in row
// scores (a heldout model's outputs are NaN for items no training user liked).
std::vector<int32_t> model_items(const ItemEffects& e, int64_t num_items) {
  if (e.by_similarity()) return e.items;
  std::vector<float> none = e.outputs({FoldInRow{}}).front();
  none.resize(static_cast<size_t>(num_items), std::numeric_limits<float>::quiet_NaN());
  std::vector<int32_t> items;
  for (size_t j = 0; j < none.size(); ++j)
    if (!std::isnan(none[j])) items.push_back(static_cast<int32_t>(j));
  return items;
}

LiftBase lift_base(const ItemEffects& e, int64_t num_items) {
  LiftBase b;
  b.items = model_items(e, num_items);
  b.mean.assign(static_cast<size_t>(num_items), 0.0);
  for_item_likes(e, b.items, [&](size_t, const std::vector<std::vector<float>>& out) {
    for (const std::vector<float>& o : out)
      for (int32_t j : b.items) b.mean[j] += static_cast<double>(o[j]);
  });
  for (int32_t j : b.items) b.mean[j] /= static_cast<double>(b.items.size());
  return b;
}

// The `top` largest value(j) over `items` but `item` (and those `listed` marks 0, when given),
// best first; ties go to the lower item.
template <typename Value>
std::vector<SimilarItem> top_items(const std::vector<int32_t>& items, int32_t item, int top, Value value,
                                   const std::vector<char>& listed) {
  std::vector<SimilarItem> all;
  all.reserve(items.size());
  for (int32_t j : items)
    if (j != item && (listed.empty() || listed[j])) {
      const double v = value(j);
      check_finite_score(v, "outputs");  // every model item has a finite effect; NaN would sort anywhere
      all.push_back({0, j, v});
    }
  const size_t k = std::min<size_t>(static_cast<size_t>(std::max(top, 0)), all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end(),
                    [](const SimilarItem& x, const SimilarItem& y) {
                      return x.effect != y.effect ? x.effect > y.effect : x.item < y.item;
                    });
  all.resize(k);
  for (size_t r = 0; r < k; ++r) all[r].rank = static_cast<int>(r) + 1;
  return all;
}

// The top lifts of `item` from its like's outputs: liked − mean, centred over the items.
std::vector<SimilarItem> top_lifts(const std::vector<float>& liked, int32_t item, const LiftBase& b, int top,
                                   const std::vector<char>& listed) {
  // Centred over the items too: a shift this one like gives every item alike (SVD's user bias,
  // the softmax's normaliser) says nothing about any one of them, so 0 is a typical pull.
  double shift = 0;
  for (int32_t j : b.items) shift += static_cast<double>(liked[j]) - b.mean[j];
  shift /= static_cast<double>(b.items.size());
  return top_items(
      b.items, item, top, [&](int32_t j) { return static_cast<double>(liked[j]) - b.mean[j] - shift; }, listed);
}

std::string not_a_model_item(const ItemEffects& e, int32_t item, const Dataset& d) {
  const char* why = e.model == "svd" || e.model == "svdpp" ? " (it has no training ratings)"
                    : e.by_similarity() ? " (it has no ratings the model takes as input)"
                                        : " (under the heldout, temporal and cutoff protocols only items some user rated "
                                          "at or above the threshold in training are kept)";
  return "item " + text::escape(d.item_ids[item], 40) + " (" + text::escape(title_of(d, item), 100) +
         ") is not one of the " + e.model + " model's items" + why;
}

}  // namespace

namespace {

std::vector<int64_t> ratings_per_item(const Dataset& d) {
  std::vector<int64_t> counts(static_cast<size_t>(d.num_items()), 0);
  for (int32_t c : d.ratings.indices) ++counts[c];
  return counts;
}

}  // namespace

std::vector<char> listable(const Dataset& d, int64_t min_ratings) {
  if (min_ratings <= 1) return {};
  const std::vector<int64_t> counts = ratings_per_item(d);
  std::vector<char> ok(counts.size());
  for (size_t j = 0; j < counts.size(); ++j) ok[j] = counts[j] >= min_ratings;
  return ok;
}

std::vector<SimilarItem> most_similar(const ItemEffects& e, int32_t item, int top, const Dataset& d,
                                      int64_t min_ratings) {
  VAE_CHECK(item >= 0 && item < d.num_items(), "most_similar: item index out of range");
  if (e.by_similarity()) {
    const std::vector<double> s = e.similarity({item}).front();
    if (std::isnan(s[item])) throw UsageError(not_a_model_item(e, item, d));
    return top_items(e.items, item, top, [&](int32_t j) { return s[j]; }, listable(d, min_ratings));
  }
  // Liking any item raises the popular ones: the baseline is the output after a like of the
  // average item (every model item in turn, averaged), so what is left is this item's own pull.
  const std::vector<float> liked = e.outputs({FoldInRow{{item, e.like}}}).front();
  if (std::isnan(liked[item])) throw UsageError(not_a_model_item(e, item, d));
  return top_lifts(liked, item, lift_base(e, d.num_items()), top, listable(d, min_ratings));
}

int64_t write_similar_csv(const ItemEffects& e, const Dataset& d, int top, const std::string& path,
                          int64_t min_ratings) {
  int64_t rows = 0;
  const std::vector<char> listed = listable(d, min_ratings);
  auto add = [&](std::string& buf, int32_t item, const std::vector<SimilarItem>& list) {
    for (const SimilarItem& s : list) {
      char v[32];
      std::snprintf(v, sizeof v, "%.6g", s.effect);
      buf += text::csv_field(d.item_ids[item]) + "," + std::to_string(s.rank) + "," + text::csv_field(d.item_ids[s.item]) +
             "," + v + "\n";
      ++rows;
    }
  };
  auto flush = [&](std::ostream& f, const std::string& buf) {
    f << buf;
    if (!f) throw DataError(path, 0, "write failed (disk full?)");
  };
  if (e.by_similarity()) {
    write_atomically(path, [&](std::ostream& f) {
      f << "item_id,rank,similar_item_id,similarity\n";
      const size_t chunk = static_cast<size_t>(std::max<int64_t>(1, e.chunk));
      for (size_t r0 = 0; r0 < e.items.size(); r0 += chunk) {
        const std::vector<int32_t> want(e.items.begin() + static_cast<std::ptrdiff_t>(r0),
                                        e.items.begin() + static_cast<std::ptrdiff_t>(std::min(e.items.size(), r0 + chunk)));
        const std::vector<std::vector<double>> sims = e.similarity(want);
        std::string buf;
        for (size_t r = 0; r < want.size(); ++r)
          add(buf, want[r], top_items(e.items, want[r], top, [&](int32_t j) { return sims[r][j]; }, listed));
        flush(f, buf);
      }
    });
    return rows;
  }
  const LiftBase b = lift_base(e, d.num_items());
  write_atomically(path, [&](std::ostream& f) {
    f << "item_id,rank,similar_item_id,lift\n";
    for_item_likes(e, b.items, [&](size_t r0, const std::vector<std::vector<float>>& out) {
      std::string buf;
      for (size_t r = 0; r < out.size(); ++r)
        add(buf, b.items[r0 + r], top_lifts(out[r], b.items[r0 + r], b, top, listed));
      flush(f, buf);
    });
  });
  return rows;
}

std::string format_similar(const ItemEffects& e, int32_t item, const std::vector<SimilarItem>& list,
                           const Dataset& d, int64_t min_ratings) {
  const std::vector<int64_t> counts = ratings_per_item(d);
  std::ostringstream os;
  const std::string g = genres_of(d, item);
  char like[32];
  std::snprintf(like, sizeof like, "%g", static_cast<double>(e.like));
  const std::string name = d.has_titles() && !d.titles[item].empty() ? id_of(d, item) + " " + title_of(d, item)
                                                                      : "item " + id_of(d, item);
  os << "Items most like " << name << (g.empty() ? "" : " [" + g + "]") << ", " << counts[item] << " ratings (" << e.model;
  if (e.by_similarity())
    os << "; similarity = the correlation, over its " << e.users
       << " users, of the ratings the model predicts for the two items, each user's and each item's mean prediction "
          "taken out):\n";
  else
    os << "; lift = how much more a new user's rating " << like << " of it alone raises each item's " << e.unit
       << " than such a rating of the average item does, centred over the items):\n";
  const char* measure = e.by_similarity() ? "similarity" : "lift";
  if (min_ratings > 1) {
    // Counted among the items the model can list (a heldout model has columns only for the items
    // its training users liked), not the whole catalogue.
    const std::vector<int32_t> listed_items = model_items(e, d.num_items());
    int64_t below = 0;
    for (int32_t j : listed_items) below += j != item && counts[j] < min_ratings;
    if (below > 0)
      os << "(" << below << " of the model's other " << listed_items.size() - 1 << " items "
         << (below == 1 ? "has" : "have") << " fewer than " << min_ratings
         << " ratings and " << (below == 1 ? "is" : "are") << " not listed: their pulls come from a handful of users; "
         << "--min-ratings 1 lists them)\n";
  }
  size_t id_w = 4;
  for (const auto& s : list) id_w = std::max(id_w, text::display_width(id_of(d, s.item)));
  os << std::right << std::setw(4) << "rank" << "  " << std::setw(static_cast<int>(id_w)) << "item" << "  "
     << std::setw(10) << measure << "  " << std::setw(7) << "ratings" << "  title\n";
  std::vector<int32_t> items;
  for (const auto& s : list) {
    char v[32];
    std::snprintf(v, sizeof v, "%.4g", s.effect);
    const std::string id = id_of(d, s.item);
    os << std::setw(4) << s.rank << "  " << std::string(id_w - text::display_width(id), ' ') << id << "  "
       << std::setw(10) << v << "  " << std::setw(7) << counts[s.item] << "  " << title_of(d, s.item) << "\n";
    items.push_back(s.item);
  }
  if (list.empty())
    os << (min_ratings > 1 ? "  (no other item has " + std::to_string(min_ratings) + " ratings or more)\n"
                           : std::string("  (the model has no other item)\n"));
  os << format_genre_counts(genre_counts(d, items));
  return os.str();
}

std::vector<int32_t> explain_recommendations(const ItemEffects& e, const std::vector<int32_t>& recommended,
                                             const FoldInRow& rated, float liked, int64_t num_items) {
  for (int32_t j : recommended) VAE_CHECK(j >= 0 && j < num_items, "explain: item index out of range");
  std::vector<int32_t> best(recommended.size(), -1);
  std::vector<double> best_pull(recommended.size(), 0.0);
  FoldInRow likes;
  for (const auto& p : rated)
    if (p.second >= liked) likes.push_back(p);
  if (recommended.empty() || likes.empty()) return best;
  if (e.by_similarity()) {
    std::vector<int32_t> liked_items;
    for (const auto& p : likes) liked_items.push_back(p.first);
    const std::vector<std::vector<double>> sims = e.similarity(liked_items);
    for (size_t r = 0; r < liked_items.size(); ++r) {
      const int32_t i = liked_items[r];
      for (size_t t = 0; t < recommended.size(); ++t) {
        const int32_t j = recommended[t];
        const double v = sims[r][j];
        if (j == i || std::isnan(v) || v <= 0) continue;
        if (best[t] < 0 || v > best_pull[t] || (v == best_pull[t] && i < best[t])) best[t] = i, best_pull[t] = v;
      }
    }
    return best;
  }
  const std::vector<float> none = e.outputs({FoldInRow{}}).front();
  const size_t chunk = static_cast<size_t>(std::max<int64_t>(1, e.chunk));
  for (size_t r0 = 0; r0 < likes.size(); r0 += chunk) {
    std::vector<FoldInRow> users;
    for (size_t r = r0; r < std::min(likes.size(), r0 + chunk); ++r) users.push_back(FoldInRow{likes[r]});
    const std::vector<std::vector<float>> o = e.outputs(users);
    for (size_t r = 0; r < users.size(); ++r) {
      const int32_t i = users[r].front().first;
      // The rise this rating gives the average item: a shift every item gets alike.
      double shift = 0;
      int64_t cols = 0;
      for (int64_t j = 0; j < num_items; ++j)
        if (!std::isnan(none[j])) shift += static_cast<double>(o[r][j]) - none[j], ++cols;
      if (cols > 0) shift /= static_cast<double>(cols);
      for (size_t t = 0; t < recommended.size(); ++t) {
        const int32_t j = recommended[t];
        if (j == i || std::isnan(none[j])) continue;
        const double v = static_cast<double>(o[r][j]) - static_cast<double>(none[j]) - shift;
        if (v > 0 && (best[t] < 0 || v > best_pull[t] || (v == best_pull[t] && i < best[t])))
          best[t] = i, best_pull[t] = v;
      }
    }
  }
  return best;
}

}  // namespace vae
