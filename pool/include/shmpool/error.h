// error.h: every failure in shmpool is an Error value: {category, type,
// message, context}. Expected<T> carries either a T or an Error; expected
// failures (timeouts, dead workers, bad input) never throw across the API.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace shmpool {

enum class Category {
  timeout_error,   // checkout_timeout, operation_timeout, startup_timeout
  worker_error,    // worker_crashed, startup_failed, worker_unavailable
  protocol_error,  // corrupt_frame, invalid_response, unexpected_response
  handler_error,   // handler_exception, unknown_command
  resource_error,  // pool_not_available, shm_exhausted, payload_too_large, ...
  config_error,    // invalid_config, invalid_name, invalid_session_id, ...
  cancelled,       // cancelled: the caller cancelled the call (Call::cancel, Stream::cancel)
};

std::string_view category_name(Category c);

struct Error {
  Category category = Category::worker_error;
  std::string type;                            // machine-readable, e.g. "checkout_timeout"
  std::string message;                         // human-readable
  std::map<std::string, std::string> context;  // pool_name, session_id, slot, worker_pid, ...

  // "timeout_error/checkout_timeout: No workers available {pool_name=p, ...}"
  std::string to_string() const;
  Error&& with(std::string key, std::string value) && {
    context[std::move(key)] = std::move(value);
    return std::move(*this);
  }
  Error& with(std::string key, std::string value) & {
    context[std::move(key)] = std::move(value);
    return *this;
  }
};

Error make_error(Category c, std::string type, std::string message);

// A T or an Error. value() on an error aborts with the error printed:
// check ok() first.
template <class T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}
  Expected(Error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & {
    check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check();
    return std::get<0>(v_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  void check() const;
  std::variant<T, Error> v_;
};

// Expected<void>.
class Status {
 public:
  Status() = default;
  Status(Error error) : e_(std::move(error)) {}
  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *e_; }

 private:
  std::optional<Error> e_;
};

[[noreturn]] void abort_with_error(const Error& e);

template <class T>
void Expected<T>::check() const {
  if (!ok()) abort_with_error(std::get<1>(v_));
}

}  // namespace shmpool
