// Status and Result: Haven's error model. Every fallible function returns one
// of these; third-party errors (RocksDB, OpenSSL, zstd, POSIX) are converted
// at one boundary each. No exceptions cross a module boundary.
#ifndef HAVEN_BASE_STATUS_H_
#define HAVEN_BASE_STATUS_H_

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace haven {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // the caller's input is wrong (usage, bad path, ...)
  kNotFound,            // a named object does not exist
  kAlreadyExists,       // refusing to overwrite something
  kPermissionDenied,    // wrong passphrase, no key slot opens
  kFailedPrecondition,  // repository state does not allow the operation
  kUnavailable,         // locked by someone else; may succeed later
  kDataLoss,            // stored bytes are corrupt or missing
  kIoError,             // the operating system refused (ENOSPC, EIO, ...)
  kInternal,            // a bug
  kCancelled,           // the caller asked the job to stop; nothing was committed
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message)
      : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Returns a copy with `context` prepended ("context: message").
  Status WithContext(std::string_view context) const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
Status InvalidArgument(std::string msg);
Status NotFound(std::string msg);
Status AlreadyExists(std::string msg);
Status PermissionDenied(std::string msg);
Status FailedPrecondition(std::string msg);
Status Unavailable(std::string msg);
Status DataLoss(std::string msg);
Status IoError(std::string msg);
Status Internal(std::string msg);
Status Cancelled(std::string msg);
// IoError for errno `err` while doing `what` ("write /x/y: No space left").
Status ErrnoStatus(std::string_view what, int err);
// Untrusted text (from a manifest, a guest, an image) for an error message:
// in double quotes, at most 64 bytes, quotes and backslashes escaped and
// non-printable bytes as \xNN, so garbage cannot garble the output.
std::string QuoteUntrusted(std::string_view text);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be ok

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace haven

#define HAVEN_CONCAT_INNER(a, b) a##b
#define HAVEN_CONCAT(a, b) HAVEN_CONCAT_INNER(a, b)

#define HAVEN_RETURN_IF_ERROR(expr)            \
  do {                                         \
    ::haven::Status haven_status_ = (expr);    \
    if (!haven_status_.ok()) return haven_status_; \
  } while (0)

#define HAVEN_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

#define HAVEN_ASSIGN_OR_RETURN(lhs, expr) \
  HAVEN_ASSIGN_OR_RETURN_IMPL(HAVEN_CONCAT(haven_result_, __LINE__), lhs, expr)

#endif  // HAVEN_BASE_STATUS_H_
