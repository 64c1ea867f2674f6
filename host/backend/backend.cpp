// Backend-independent pieces of the op set: activation names and the CSR upload that every
// backend shares (it only needs alloc/copy, so it is written once over the virtual interface).
#include "backend/backend.h"

#include <algorithm>
#include <cctype>
#include <vector>

#include "data/dataset.h"

namespace vae {

namespace {

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

}  // namespace

const char* act_name(Act a) {
  switch (a) {
    case Act::identity: return "identity";
    case Act::relu: return "relu";
    case Act::sigmoid: return "sigmoid";
    case Act::tanh: return "tanh";
  }
  return "unknown";
}

// Case-insensitive; "linear" and "none" are accepted as the usual spellings of identity.
Act parse_act(const std::string& s) {
  const std::string t = lowercase(s);
  if (t == "identity" || t == "linear" || t == "none") return Act::identity;
  if (t == "relu") return Act::relu;
  if (t == "sigmoid") return Act::sigmoid;
  if (t == "tanh") return Act::tanh;
  throw UsageError("unknown activation '" + s + "' (expected identity, relu, sigmoid or tanh)");
}

const char* precision_name(GemmPrecision p) {
  switch (p) {
    case GemmPrecision::exact: return "exact";
    case GemmPrecision::fp32: return "fp32";
    case GemmPrecision::tf32: return "tf32";
    case GemmPrecision::bf16: return "bf16";
  }
  return "unknown";
}

GemmPrecision parse_precision(const std::string& s) {
  const std::string t = lowercase(s);
  if (t == "exact") return GemmPrecision::exact;
  if (t == "fp32") return GemmPrecision::fp32;
  if (t == "tf32") return GemmPrecision::tf32;
  if (t == "bf16") return GemmPrecision::bf16;
  throw UsageError("unknown GEMM precision '" + s + "' (expected exact, fp32, tf32 or bf16)");
}

template <typename T>
CsrTensor<T> Backend<T>::upload_csr(const Csr& csr) {
  VAE_CHECK(csr.rows >= 0 && csr.cols >= 0, "upload_csr: negative shape");
  VAE_CHECK(static_cast<int64_t>(csr.indptr.size()) == csr.rows + 1,
            "upload_csr: indptr must have rows + 1 entries");
  VAE_CHECK(csr.indices.size() == csr.values.size(), "upload_csr: indices/values differ in length");
  VAE_CHECK(csr.indptr.back() == csr.nnz(), "upload_csr: indptr does not end at nnz");
  CsrTensor<T> out;
  out.rows = csr.rows;
  out.cols = csr.cols;
  out.nnz = csr.nnz();
  const size_t nnz = static_cast<size_t>(out.nnz);
  out.indptr = alloc_bytes(csr.indptr.size() * sizeof(int64_t));
  copy_to_backend(out.indptr.get(), csr.indptr.data(), csr.indptr.size() * sizeof(int64_t));
  out.indices = alloc_bytes(nnz * sizeof(int32_t));
  out.values = alloc_bytes(nnz * sizeof(T));
  if (nnz > 0) {
    copy_to_backend(out.indices.get(), csr.indices.data(), nnz * sizeof(int32_t));
    // Values are stored as float on the host; convert to T before the copy.
    std::vector<T> vals(csr.values.begin(), csr.values.end());
    copy_to_backend(out.values.get(), vals.data(), nnz * sizeof(T));
  }
  return out;
}

template CsrTensor<float> Backend<float>::upload_csr(const Csr& csr);
template CsrTensor<double> Backend<double>::upload_csr(const Csr& csr);

}  // namespace vae
