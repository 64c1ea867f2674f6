#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "data/dataset.h"

namespace vae {

Csr Csr::from_triplets(int64_t rows, int64_t cols, std::vector<int32_t> r, std::vector<int32_t> c,
                       std::vector<float> v) {
  VAE_CHECK(r.size() == c.size() && c.size() == v.size(), "triplet arrays differ in length");
  Csr m;
  m.rows = rows;
  m.cols = cols;
  m.indptr.assign(static_cast<size_t>(rows) + 1, 0);
  for (int32_t ri : r) {
    VAE_CHECK(ri >= 0 && ri < rows, "triplet row out of range");
    ++m.indptr[static_cast<size_t>(ri) + 1];
  }
  for (int64_t i = 0; i < rows; ++i) m.indptr[i + 1] += m.indptr[i];
  m.indices.resize(r.size());
  m.values.resize(r.size());
  std::vector<int64_t> next(m.indptr.begin(), m.indptr.end() - 1);
  for (size_t k = 0; k < r.size(); ++k) {
    VAE_CHECK(c[k] >= 0 && c[k] < cols, "triplet column out of range");
    const int64_t pos = next[r[k]]++;
    m.indices[pos] = c[k];
    m.values[pos] = v[k];
  }
  // Sort each row by column (stable pairs; rows are short so a small sort per row is fine).
  std::vector<std::pair<int32_t, float>> tmp;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t b = m.indptr[i], e = m.indptr[i + 1];
    if (std::is_sorted(m.indices.begin() + b, m.indices.begin() + e)) continue;
    tmp.clear();
    for (int64_t k = b; k < e; ++k) tmp.emplace_back(m.indices[k], m.values[k]);
    std::sort(tmp.begin(), tmp.end(), [](auto& a, auto& b2) { return a.first < b2.first; });
    for (int64_t k = b; k < e; ++k) {
      m.indices[k] = tmp[k - b].first;
      m.values[k] = tmp[k - b].second;
    }
  }
  return m;
}

Csr Csr::transpose() const {
  Csr t;
  t.rows = cols;
  t.cols = rows;
  t.indptr.assign(static_cast<size_t>(cols) + 1, 0);
  for (int32_t c : indices) ++t.indptr[static_cast<size_t>(c) + 1];
  for (int64_t i = 0; i < cols; ++i) t.indptr[i + 1] += t.indptr[i];
  t.indices.resize(indices.size());
  t.values.resize(values.size());
  std::vector<int64_t> next(t.indptr.begin(), t.indptr.end() - 1);
  // Rows visited in order, so each transposed row comes out sorted.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = indptr[r]; k < indptr[r + 1]; ++k) {
      const int64_t pos = next[indices[k]]++;
      t.indices[pos] = static_cast<int32_t>(r);
      t.values[pos] = values[k];
    }
  }
  return t;
}

Csr Csr::select_rows(const std::vector<int32_t>& sel) const {
  Csr s;
  s.rows = static_cast<int64_t>(sel.size());
  s.cols = cols;
  s.indptr.assign(sel.size() + 1, 0);
  for (size_t i = 0; i < sel.size(); ++i) {
    VAE_CHECK(sel[i] >= 0 && sel[i] < rows, "select_rows: row out of range");
    s.indptr[i + 1] = s.indptr[i] + row_nnz(sel[i]);
  }
  s.indices.reserve(s.indptr.back());
  s.values.reserve(s.indptr.back());
  for (int32_t r : sel) {
    s.indices.insert(s.indices.end(), indices.begin() + indptr[r], indices.begin() + indptr[r + 1]);
    s.values.insert(s.values.end(), values.begin() + indptr[r], values.begin() + indptr[r + 1]);
  }
  return s;
}

void Csr::validate() const {
  VAE_CHECK(rows >= 0 && cols >= 0, "CSR: negative shape");
  VAE_CHECK(static_cast<int64_t>(indptr.size()) == rows + 1, "CSR: indptr must have rows + 1 entries");
  VAE_CHECK(indptr.front() == 0, "CSR: indptr[0] must be 0");
  VAE_CHECK(indices.size() == values.size(), "CSR: indices and values differ in length");
  VAE_CHECK(indptr.back() == static_cast<int64_t>(indices.size()), "CSR: indptr[rows] != nnz");
  for (int64_t r = 0; r < rows; ++r) {
    VAE_CHECK(indptr[r] <= indptr[r + 1], "CSR: indptr not monotone at row " + std::to_string(r));
    for (int64_t k = indptr[r]; k < indptr[r + 1]; ++k) {
      VAE_CHECK(indices[k] >= 0 && indices[k] < cols, "CSR: column out of range in row " + std::to_string(r));
      VAE_CHECK(k == indptr[r] || indices[k - 1] < indices[k],
                "CSR: columns not strictly ascending in row " + std::to_string(r));
    }
  }
}

int64_t Dataset::find_user(const std::string& id) const {
  auto it = std::find(user_ids.begin(), user_ids.end(), id);
  return it == user_ids.end() ? -1 : static_cast<int64_t>(it - user_ids.begin());
}

int64_t Dataset::find_item(const std::string& id) const {
  auto it = std::find(item_ids.begin(), item_ids.end(), id);
  return it == item_ids.end() ? -1 : static_cast<int64_t>(it - item_ids.begin());
}

namespace {
uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

std::string Dataset::fingerprint() const {
  uint64_t h = 1469598103934665603ull;
  h = fnv1a(h, &ratings.rows, sizeof ratings.rows);
  h = fnv1a(h, &ratings.cols, sizeof ratings.cols);
  h = fnv1a(h, ratings.indptr.data(), ratings.indptr.size() * sizeof(int64_t));
  h = fnv1a(h, ratings.indices.data(), ratings.indices.size() * sizeof(int32_t));
  h = fnv1a(h, ratings.values.data(), ratings.values.size() * sizeof(float));
  for (const auto& s : user_ids) h = fnv1a(h, s.data(), s.size() + 1);
  for (const auto& s : item_ids) h = fnv1a(h, s.data(), s.size() + 1);
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace vae
