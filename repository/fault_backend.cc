#include "repository/fault_backend.h"

namespace haven::repository {

namespace {

Status NoSpace(const std::string& op, const std::string& name) {
  return IoError(op + " " + name +
                 ": No space left on device (injected fault)");
}

}  // namespace

// Reads stop working once the backend has crashed, like every other call.
class FaultReader : public ObjectReader {
 public:
  FaultReader(const FaultBackend* owner, std::string name,
              std::unique_ptr<ObjectReader> inner)
      : owner_(owner), name_(std::move(name)), inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  Status ReadAt(uint64_t offset, size_t len, uint8_t* out,
                const std::string& what) override {
    HAVEN_RETURN_IF_ERROR(owner_->Alive("read", name_));
    return inner_->ReadAt(offset, len, out, what);
  }

 private:
  const FaultBackend* owner_;
  std::string name_;
  std::unique_ptr<ObjectReader> inner_;
};

// Counts its Commit as the write; a fault there discards the object.
class FaultWriter : public ObjectWriter {
 public:
  FaultWriter(FaultBackend* owner, std::string name,
              std::unique_ptr<ObjectWriter> inner)
      : owner_(owner), name_(std::move(name)), inner_(std::move(inner)) {}
  Status Append(ByteSpan data) override {
    HAVEN_RETURN_IF_ERROR(owner_->Alive("write", name_));
    return inner_->Append(data);
  }
  uint64_t size() const override { return inner_->size(); }
  Status Commit() override {
    HAVEN_ASSIGN_OR_RETURN(auto verdict, owner_->NextWrite("write", name_));
    if (verdict == FaultBackend::Verdict::kNoSpace) {
      inner_.reset();  // discarded, as a real ENOSPC would leave it
      return NoSpace("write", name_);
    }
    if (verdict == FaultBackend::Verdict::kTear) {
      uint64_t had = inner_->size();
      inner_.reset();  // everything appended, never committed
      owner_->Crash();
      return IoError("write " + name_ + ": torn after " + std::to_string(had) +
                     " bytes, before it was committed (injected crash)");
    }
    HAVEN_RETURN_IF_ERROR(inner_->Commit());
    owner_->Done();
    return OkStatus();
  }

 private:
  FaultBackend* owner_;
  std::string name_;
  std::unique_ptr<ObjectWriter> inner_;
};

void FaultBackend::FailWrite(int n, Fault fault) {
  std::lock_guard<std::mutex> l(mu_);
  fail_at_ = n;
  fault_ = fault;
}

void FaultBackend::CrashAfter(int n) {
  std::lock_guard<std::mutex> l(mu_);
  crash_after_ = n;
  if (succeeded_ >= n) crashed_ = true;
}

int FaultBackend::writes() const {
  std::lock_guard<std::mutex> l(mu_);
  return writes_;
}

bool FaultBackend::crashed() const {
  std::lock_guard<std::mutex> l(mu_);
  return crashed_;
}

Status FaultBackend::Alive(const std::string& op,
                           const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  if (!crashed_) return OkStatus();
  return IoError(op + " " + name + ": the storage stopped after " +
                 std::to_string(succeeded_) + " writes (injected crash)");
}

Result<FaultBackend::Verdict> FaultBackend::NextWrite(const std::string& op,
                                                      const std::string& name) {
  HAVEN_RETURN_IF_ERROR(Alive(op, name));
  std::lock_guard<std::mutex> l(mu_);
  ++writes_;
  if (writes_ != fail_at_) return Verdict::kGo;
  return fault_ == Fault::kNoSpace ? Verdict::kNoSpace : Verdict::kTear;
}

void FaultBackend::Done() {
  std::lock_guard<std::mutex> l(mu_);
  ++succeeded_;
  if (crash_after_ >= 0 && succeeded_ >= crash_after_) crashed_ = true;
}

void FaultBackend::Crash() {
  std::lock_guard<std::mutex> l(mu_);
  crashed_ = true;
}

std::string FaultBackend::Describe() const {
  return "fault injection over " + inner_->Describe();
}

Result<std::vector<ObjectInfo>> FaultBackend::List(
    const std::string& prefix) const {
  HAVEN_RETURN_IF_ERROR(Alive("list", prefix));
  return inner_->List(prefix);
}

Result<uint64_t> FaultBackend::Stat(const std::string& name) const {
  HAVEN_RETURN_IF_ERROR(Alive("stat", name));
  return inner_->Stat(name);
}

Result<ObjectInfo> FaultBackend::Info(const std::string& name) const {
  HAVEN_RETURN_IF_ERROR(Alive("stat", name));
  return inner_->Info(name);
}

Result<std::unique_ptr<ObjectReader>> FaultBackend::OpenReader(
    const std::string& name) const {
  HAVEN_RETURN_IF_ERROR(Alive("read", name));
  HAVEN_ASSIGN_OR_RETURN(auto reader, inner_->OpenReader(name));
  return std::unique_ptr<ObjectReader>(
      new FaultReader(this, name, std::move(reader)));
}

Status FaultBackend::WriteAtomic(const std::string& name, ByteSpan data,
                                 WriteMode mode) {
  HAVEN_ASSIGN_OR_RETURN(Verdict verdict, NextWrite("write", name));
  if (verdict == Verdict::kNoSpace) return NoSpace("write", name);
  if (verdict == Verdict::kTear) {
    // Half the bytes reach the storage, then the machine stops.
    HAVEN_ASSIGN_OR_RETURN(auto partial, inner_->NewObjectWriter(name));
    size_t half = data.size() / 2;
    (void)partial->Append(ByteSpan(data.data(), half));
    partial.reset();
    Crash();
    return IoError("write " + name + ": torn after " + std::to_string(half) +
                   " of " + std::to_string(data.size()) +
                   " bytes (injected crash)");
  }
  HAVEN_RETURN_IF_ERROR(inner_->WriteAtomic(name, data, mode));
  Done();
  return OkStatus();
}

Result<std::unique_ptr<ObjectWriter>> FaultBackend::NewObjectWriter(
    const std::string& name) {
  HAVEN_RETURN_IF_ERROR(Alive("write", name));
  HAVEN_ASSIGN_OR_RETURN(auto writer, inner_->NewObjectWriter(name));
  return std::unique_ptr<ObjectWriter>(
      new FaultWriter(this, name, std::move(writer)));
}

Status FaultBackend::Delete(const std::string& name) {
  HAVEN_ASSIGN_OR_RETURN(Verdict verdict, NextWrite("delete", name));
  if (verdict == Verdict::kNoSpace) return NoSpace("delete", name);
  if (verdict == Verdict::kTear) {  // a delete cannot be torn: it just stops
    Crash();
    return IoError("delete " + name + ": the storage stopped (injected crash)");
  }
  HAVEN_RETURN_IF_ERROR(inner_->Delete(name));
  Done();
  return OkStatus();
}

}  // namespace haven::repository
