// Key slots: the repository's master secret wrapped by passphrase-derived
// keys, one file per slot under keys/, so passphrases can be added and
// removed without touching data.
//
// keys/<slot id> (JSON):
//   {"version": 1, "slot": "<16 hex>", "created": "...",
//    "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<hex>"},
//    "wrapped": "<hex of sealed master secret>"}
// The sealed secret is the master secret (32 bytes), or, in a repository
// made with `haven init --copy-params-from`, the master secret followed by
// the source's chunk-id and tree-id keys (96 bytes), so the same data has
// the same chunk ids in both (repository/copy.h). It is sealed with
// AES-256-GCM under scrypt(passphrase, salt); associated data is
// "haven-key-slot:<repository id>:<slot id>".
#ifndef HAVEN_REPOSITORY_KEY_SLOTS_H_
#define HAVEN_REPOSITORY_KEY_SLOTS_H_

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "repository/backend.h"
#include "repository/crypto.h"

namespace haven::repository {

// What a key slot wraps.
struct RepositorySecret {
  Key master{};
  // Set when the chunk-id keys are not derived from `master` but shared
  // with the repository this one was made to receive copies from.
  bool shared_ids = false;
  Key chunk_id_key{}, tree_id_key{};

  // The chunk-id and tree-id keys in use.
  Key ChunkIdKey() const;
  Key TreeIdKey() const;
  bool operator==(const RepositorySecret&) const = default;
};

struct KeySlotInfo {
  std::string slot;
  std::string created;
  std::string kdf;  // "scrypt N=32768 r=8 p=1"
};

// Slots are the objects under `prefix` ("keys/" in a repository) of a
// backend. Safe to share between threads (the backend is).
class KeySlots {
 public:
  // `backend` must outlive this object.
  KeySlots(Backend* backend, std::string prefix, std::string repo_id)
      : backend_(backend),
        prefix_(std::move(prefix)),
        repo_id_(std::move(repo_id)) {}
  // Slots as files in a local directory (tests, tools).
  KeySlots(std::string keys_dir, std::string repo_id);

  // Writes a new slot wrapping `secret` under `passphrase`; returns its id.
  Result<std::string> Add(const RepositorySecret& secret,
                          std::string_view passphrase,
                          const ScryptParams& params = {});
  // Tries every slot; PermissionDenied if none opens with `passphrase`.
  // On success `*slot` names the slot that opened.
  Result<RepositorySecret> Unlock(std::string_view passphrase,
                                  std::string* slot) const;
  Result<std::vector<KeySlotInfo>> List() const;
  // Removes a slot; refuses to remove the last one.
  Status Remove(std::string_view slot);

 private:
  std::unique_ptr<Backend> owned_;  // set by the directory constructor
  Backend* backend_;
  std::string prefix_;
  std::string repo_id_;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_KEY_SLOTS_H_
