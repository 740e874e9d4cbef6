// A Backend wrapper that fails on purpose, for tests: the disk fills up, a
// write is torn by a crash, the machine stops after N writes. It replaces
// fault switches inside library code: the code under test runs unchanged
// over a backend that misbehaves.
//
// Writes are counted from 1 in the order they happen: WriteAtomic, a
// streaming object's Commit and Delete each count one. Thread-safe.
#ifndef HAVEN_REPOSITORY_FAULT_BACKEND_H_
#define HAVEN_REPOSITORY_FAULT_BACKEND_H_

#include <memory>
#include <mutex>
#include <string>

#include "repository/backend.h"

namespace haven::repository {

class FaultBackend : public Backend {
 public:
  enum class Fault {
    // The write fails with IoError "No space left on device"; nothing of it
    // becomes visible and later operations work (space may be freed).
    kNoSpace,
    // The first half of the object is written, then the write fails as if
    // the machine had stopped: the object is not visible, and every later
    // operation fails as after kCrash.
    kTear,
  };

  explicit FaultBackend(std::unique_ptr<Backend> inner)
      : inner_(std::move(inner)) {}

  // Write number `n` (counting from the first write ever seen) fails with
  // `fault`.
  void FailWrite(int n, Fault fault);
  // After `n` writes have succeeded, every operation (reads too) fails with
  // IoError, as if the machine had stopped.
  void CrashAfter(int n);
  // Writes attempted so far.
  int writes() const;
  bool crashed() const;

  std::string Describe() const override;
  Result<std::vector<ObjectInfo>> List(
      const std::string& prefix) const override;
  Result<uint64_t> Stat(const std::string& name) const override;
  Result<ObjectInfo> Info(const std::string& name) const override;
  Result<std::unique_ptr<ObjectReader>> OpenReader(
      const std::string& name) const override;
  Status WriteAtomic(const std::string& name, ByteSpan data,
                     WriteMode mode) override;
  Result<std::unique_ptr<ObjectWriter>> NewObjectWriter(
      const std::string& name) override;
  Status Delete(const std::string& name) override;

 private:
  friend class FaultReader;
  friend class FaultWriter;
  enum class Verdict { kGo, kNoSpace, kTear };
  // Fails once crashed.
  Status Alive(const std::string& op, const std::string& name) const;
  // Counts one write and says what should happen to it.
  Result<Verdict> NextWrite(const std::string& op, const std::string& name);
  // Records that a write went through (for CrashAfter).
  void Done();
  void Crash();

  std::unique_ptr<Backend> inner_;
  mutable std::mutex mu_;
  int writes_ = 0, succeeded_ = 0;
  int fail_at_ = -1;
  Fault fault_ = Fault::kNoSpace;
  int crash_after_ = -1;
  bool crashed_ = false;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_FAULT_BACKEND_H_
