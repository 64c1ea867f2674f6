// What a training step's ops were asked to do, as words: each op's name and its fixed
// arguments (pointers, shapes, scalars; not the step's live ones). A backend that replays a
// step graph compares a step's signature with the captured one's (Backend::begin_step); the
// CUDA backend and the CPU tests' imitation of it record through this one definition.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backend/backend.h"

namespace vae {

class StepSignature {
 public:
  template <typename... A>
  void add_op(const char* op, const A&... fixed) {
    words_.push_back(reinterpret_cast<uintptr_t>(op));  // one string literal per op name
    (add(fixed), ...);
  }
  void clear() { words_.clear(); }
  bool operator==(const StepSignature& o) const { return words_ == o.words_; }
  bool operator!=(const StepSignature& o) const { return !(*this == o); }

 private:
  template <typename V>
  void add(const V& v) {
    if constexpr (std::is_pointer_v<V>) {
      words_.push_back(reinterpret_cast<uintptr_t>(v));
    } else {
      static_assert(std::is_arithmetic_v<V> || std::is_enum_v<V>, "StepSignature: no overload for this argument");
      static_assert(sizeof(V) <= sizeof(uint64_t), "StepSignature: scalar wider than a word");
      uint64_t w = 0;
      std::memcpy(&w, &v, sizeof(V));
      words_.push_back(w);
    }
  }
  template <typename V>
  void add(const Mat<V>& m) {
    add(m.data), add(m.rows), add(m.cols);
  }
  template <typename V>
  void add(const CsrView<V>& c) {
    add(c.indptr), add(c.indices), add(c.values), add(c.rows), add(c.cols), add(c.nnz);
  }
  template <typename T>
  void add(const CsrBatch<T>& x) {  // stream is live
    add(x.csr), add(x.rows), add(x.norms), add(x.dropout), add(x.seed);
  }
  void add(const AdamConfig& a) {  // the step is live
    add(a.lr), add(a.beta1), add(a.beta2), add(a.eps), add(a.weight_decay), add(a.decoupled);
  }
  void add(const std::vector<int>& v) {
    add(v.size());
    for (int x : v) add(x);
  }

  std::vector<uint64_t> words_;
};

}  // namespace vae
