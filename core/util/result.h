// Result<T>: a value or an error message naming what failed and where.
// Recoverable failures (bad file, bad request, out of KV) travel as Result; programming errors assert.
#pragma once
#include <string>
#include <utility>
#include <variant>
#include <cassert>

namespace pagoda {

struct Error {
  std::string message;
};

inline Error make_error(std::string msg) { return Error{std::move(msg)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error err) : v_(std::move(err)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const std::string& error() const { assert(!ok()); return std::get<1>(v_).message; }
  Error take_error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error err) : err_(std::move(err.message)), failed_(true) {}
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& error() const { return err_; }
  Error take_error() const { return Error{err_}; }

 private:
  std::string err_;
  bool failed_ = false;
};

using Status = Result<void>;

}  // namespace pagoda

// Propagate an error from an expression returning Result/Status.
#define PAGODA_TRY(expr)                                     \
  do {                                                       \
    auto pagoda_try_r_ = (expr);                             \
    if (!pagoda_try_r_.ok()) return pagoda_try_r_.take_error(); \
  } while (0)
