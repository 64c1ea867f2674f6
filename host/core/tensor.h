// Memory handles shared by the backends. A Buffer owns raw bytes on some device (host heap or
// GPU) and frees them through the deleter its backend gave it; it is move-only. Mat<T> is a
// non-owning row-major view (data pointer may be a device pointer: only backends dereference it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/error.h"

namespace vae {

// A row index standing for "no row": an evaluated user the model has no row for
// (Backend::gather_rows_add adds nothing for it; TemporalSplit::test_rows).
inline constexpr int32_t kNoRow = -1;

class Buffer {
 public:
  using Deleter = void (*)(void*);
  Buffer() = default;
  Buffer(void* ptr, size_t bytes, Deleter del) : ptr_(ptr), bytes_(bytes), del_(del) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      swap(o);
    }
    return *this;
  }
  ~Buffer() { reset(); }

  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void reset() {
    if (ptr_ && del_) del_(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    std::swap(del_, o.del_);
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  Deleter del_ = nullptr;
};

// Row-major matrix view; a vector is 1 × n or n × 1, a scalar 1 × 1.
template <typename T>
struct Mat {
  T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;

  int64_t size() const { return rows * cols; }
  bool empty() const { return size() == 0; }
  // Rows [r0, r0 + n) as a view (contiguous because row-major).
  Mat rows_slice(int64_t r0, int64_t n) const {
    VAE_CHECK(r0 >= 0 && n >= 0 && r0 + n <= rows, "row slice out of range");
    return Mat{data + r0 * cols, n, cols};
  }
  // Same memory, other shape (sizes must agree).
  Mat reshaped(int64_t r, int64_t c) const {
    VAE_CHECK(r * c == rows * cols, "reshape changes the element count");
    return Mat{data, r, c};
  }
  // Mutable view → read-only view (only for non-const T: Mat<const T> needs no conversion).
  template <typename U = T, typename = std::enable_if_t<!std::is_const_v<U>>>
  operator Mat<const U>() const {
    return Mat<const U>{data, rows, cols};
  }
};

template <typename T>
using CMat = Mat<const T>;

// An owning matrix: a Buffer plus its shape.
template <typename T>
class Tensor {
 public:
  Tensor() = default;
  Tensor(Buffer buf, int64_t rows, int64_t cols) : buf_(std::move(buf)), rows_(rows), cols_(cols) {}
  Mat<T> mat() const { return Mat<T>{static_cast<T*>(buf_.get()), rows_, cols_}; }
  CMat<T> cmat() const { return CMat<T>{static_cast<const T*>(buf_.get()), rows_, cols_}; }
  T* data() const { return static_cast<T*>(buf_.get()); }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t size() const { return rows_ * cols_; }

 private:
  Buffer buf_;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
};

// A CSR matrix as the backends see it (pointers may live on the device).
template <typename T>
struct CsrView {
  const int64_t* indptr = nullptr;  // rows + 1
  const int32_t* indices = nullptr;  // column of each stored value, ascending within a row
  const T* values = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t nnz = 0;
};

// Owning CSR on a backend.
template <typename T>
struct CsrTensor {
  Buffer indptr, indices, values;
  int64_t rows = 0, cols = 0, nnz = 0;
  CsrView<T> view() const {
    return CsrView<T>{static_cast<const int64_t*>(indptr.get()),
                      static_cast<const int32_t*>(indices.get()),
                      static_cast<const T*>(values.get()), rows, cols, nnz};
  }
};

}  // namespace vae
