#include "base/status.h"

#include <cstring>

namespace haven {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kNotFound: return "not found";
    case Code::kAlreadyExists: return "already exists";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kFailedPrecondition: return "failed precondition";
    case Code::kUnavailable: return "unavailable";
    case Code::kDataLoss: return "data loss";
    case Code::kIoError: return "I/O error";
    case Code::kInternal: return "internal error";
    case Code::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return message_;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_);
}

Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
Status PermissionDenied(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
Status FailedPrecondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
Status DataLoss(std::string m) { return {Code::kDataLoss, std::move(m)}; }
Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
Status Cancelled(std::string m) { return {Code::kCancelled, std::move(m)}; }

Status ErrnoStatus(std::string_view what, int err) {
  return IoError(std::string(what) + ": " + std::strerror(err));
}

}  // namespace haven
