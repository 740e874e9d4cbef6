#include "repository/key_slots.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/time.h"
#include "repository/json_fields.h"
#include "repository/local_backend.h"

namespace haven::repository {
namespace {

constexpr size_t kMaxSlotFile = 64 * 1024;

std::string Aad(const std::string& repo_id, const std::string& slot) {
  return "haven-key-slot:" + repo_id + ":" + slot;
}

bool IsSlotName(const std::string& s) {
  return s.size() == 16 &&
         s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

struct ParsedSlot {
  std::string slot, created;
  ScryptParams params;
  Bytes salt, wrapped;
};

Result<ParsedSlot> ParseSlot(const Backend& backend, const std::string& key,
                             const std::string& name) {
  HAVEN_ASSIGN_OR_RETURN(Bytes raw, backend.Read(key, kMaxSlotFile));
  auto j = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return DataLoss("key slot " + name + ": not a JSON object");
  ParsedSlot p;
  try {
    int version = 0;
    if (!GetInt(j, "version", version) || version != 1)
      return DataLoss("key slot " + name + ": unknown version");
    p.slot = j.at("slot").get<std::string>();
    p.created = j.value("created", "");
    const auto& kdf = j.at("kdf");
    if (kdf.at("name").get<std::string>() != "scrypt")
      return DataLoss("key slot " + name + ": unknown KDF");
    if (!GetInt(kdf, "n", p.params.n) || !GetInt(kdf, "r", p.params.r) ||
        !GetInt(kdf, "p", p.params.p))
      return DataLoss("key slot " + name +
                      ": scrypt parameters missing or out of range");
    auto salt = HexDecode(kdf.at("salt").get<std::string>());
    auto wrapped = HexDecode(j.at("wrapped").get<std::string>());
    if (!salt || !wrapped || salt->size() < 16 ||
        (wrapped->size() != kKeySize + kSealOverhead &&
         wrapped->size() != 3 * kKeySize + kSealOverhead))
      return DataLoss("key slot " + name + ": malformed salt or wrapped key");
    p.salt = *salt;
    p.wrapped = *wrapped;
  } catch (const nlohmann::json::exception& e) {
    return DataLoss("key slot " + name + ": malformed (" + e.what() + ")");
  }
  if (p.slot != name)
    return DataLoss("key slot " + name + ": names another slot");
  return p;
}

}  // namespace

KeySlots::KeySlots(std::string keys_dir, std::string repo_id)
    : owned_(std::make_unique<LocalBackend>(std::move(keys_dir))),
      backend_(owned_.get()),
      repo_id_(std::move(repo_id)) {}

Key RepositorySecret::ChunkIdKey() const {
  return shared_ids ? chunk_id_key : DeriveKey(master, "haven/v1/chunk-id");
}

Key RepositorySecret::TreeIdKey() const {
  return shared_ids ? tree_id_key : DeriveKey(master, "haven/v1/tree-id");
}

Result<std::string> KeySlots::Add(const RepositorySecret& secret,
                                  std::string_view passphrase,
                                  const ScryptParams& params) {
  if (passphrase.empty()) return InvalidArgument("the passphrase is empty");
  uint8_t id_raw[8];
  RandomBytes(id_raw, sizeof id_raw);
  std::string slot = HexEncode(ByteSpan(id_raw, sizeof id_raw));
  Bytes salt(32);
  RandomBytes(salt.data(), salt.size());
  HAVEN_ASSIGN_OR_RETURN(Key wrap, Scrypt(passphrase, salt, params));
  Bytes plain(secret.master.begin(), secret.master.end());
  if (secret.shared_ids) {
    plain.insert(plain.end(), secret.chunk_id_key.begin(),
                 secret.chunk_id_key.end());
    plain.insert(plain.end(), secret.tree_id_key.begin(),
                 secret.tree_id_key.end());
  }
  Bytes sealed;
  HAVEN_RETURN_IF_ERROR(
      Seal(wrap, AsBytes(Aad(repo_id_, slot)), plain, sealed));
  nlohmann::ordered_json j;
  j["version"] = 1;
  j["slot"] = slot;
  j["created"] = NowIso8601();
  j["kdf"] = {{"name", "scrypt"},
              {"n", params.n},
              {"r", params.r},
              {"p", params.p},
              {"salt", HexEncode(salt)}};
  j["wrapped"] = HexEncode(sealed);
  std::string text = DumpJson(j, 2) + "\n";
  HAVEN_RETURN_IF_ERROR(
      backend_->WriteAtomic(prefix_ + slot, AsBytes(text), WriteMode::kCreate));
  return slot;
}

Result<RepositorySecret> KeySlots::Unlock(std::string_view passphrase,
                                          std::string* slot) const {
  HAVEN_ASSIGN_OR_RETURN(auto slots, List());
  if (slots.empty())
    return DataLoss("the repository has no key slots (keys/ is empty)");
  std::vector<std::string> damaged;
  for (const auto& info : slots) {
    auto parsed = ParseSlot(*backend_, prefix_ + info.slot, info.slot);
    if (!parsed.ok()) {
      damaged.push_back(parsed.status().message());
      continue;
    }
    auto wrap = Scrypt(passphrase, parsed->salt, parsed->params);
    if (!wrap.ok()) {
      damaged.push_back("key slot " + info.slot + ": " +
                        wrap.status().message());
      continue;
    }
    Bytes plain;
    if (Unseal(*wrap, AsBytes(Aad(repo_id_, info.slot)), parsed->wrapped, plain,
               "key slot " + info.slot)
            .ok() &&
        (plain.size() == kKeySize || plain.size() == 3 * kKeySize)) {
      RepositorySecret secret;
      std::copy_n(plain.begin(), kKeySize, secret.master.begin());
      if (plain.size() == 3 * kKeySize) {
        secret.shared_ids = true;
        std::copy_n(plain.begin() + kKeySize, kKeySize,
                    secret.chunk_id_key.begin());
        std::copy_n(plain.begin() + 2 * kKeySize, kKeySize,
                    secret.tree_id_key.begin());
      }
      if (slot) *slot = info.slot;
      return secret;
    }
  }
  std::string msg =
      "wrong passphrase: no key slot of this repository opens with it";
  for (const auto& d : damaged) msg += "; " + d;
  return PermissionDenied(msg);
}

Result<std::vector<KeySlotInfo>> KeySlots::List() const {
  std::vector<KeySlotInfo> out;
  HAVEN_ASSIGN_OR_RETURN(auto objects, backend_->List(prefix_));
  for (const auto& o : objects) {
    std::string name = o.name.substr(prefix_.size());
    if (!IsSlotName(name)) continue;  // foreign files
    KeySlotInfo info;
    info.slot = name;
    auto parsed = ParseSlot(*backend_, o.name, name);
    if (parsed.ok()) {
      info.created = parsed->created;
      info.kdf = "scrypt N=" + std::to_string(parsed->params.n) +
                 " r=" + std::to_string(parsed->params.r) +
                 " p=" + std::to_string(parsed->params.p);
    } else {
      info.kdf = "damaged: " + parsed.status().message();
    }
    out.push_back(info);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.slot < b.slot; });
  return out;
}

Status KeySlots::Remove(std::string_view slot) {
  HAVEN_ASSIGN_OR_RETURN(auto slots, List());
  auto it = std::find_if(slots.begin(), slots.end(),
                         [&](const auto& s) { return s.slot == slot; });
  if (it == slots.end()) return NotFound("no key slot " + std::string(slot));
  size_t readable = 0;
  for (const auto& s : slots)
    if (s.slot != slot && s.kdf.rfind("damaged", 0) != 0) ++readable;
  if (readable == 0)
    return FailedPrecondition(
        "refusing to remove the last key slot that opens the repository: the "
        "repository would become unreadable");
  return backend_->Delete(prefix_ + std::string(slot));
}

}  // namespace haven::repository
