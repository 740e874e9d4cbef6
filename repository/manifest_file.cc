#include "repository/manifest_file.h"

#include <zstd.h>

#include <optional>


namespace haven::repository {
namespace {

std::string SnapshotAad(const std::string& id) {
  return "haven-snapshot:" + id;
}

}  // namespace

Result<Bytes> SealManifest(const Key& data_key, const Manifest& m) {
  std::string json = m.ToJson();
  Compressor c(3);
  Bytes plain{1};  // codec: zstd
  HAVEN_RETURN_IF_ERROR(c.Compress(AsBytes(json), plain));
  Bytes sealed;
  HAVEN_RETURN_IF_ERROR(
      Seal(data_key, AsBytes(SnapshotAad(m.id)), plain, sealed));
  // Put the decompressed size up front so a reader can bound its buffer.
  Bytes file;
  PutU32(file, static_cast<uint32_t>(json.size()));
  file.insert(file.end(), sealed.begin(), sealed.end());
  return file;
}

Result<Manifest> OpenManifest(const Key& data_key, const std::string& id,
                              ByteSpan file, const std::string& what,
                              Decompressor* decompressor) {
  if (file.size() < 4) return DataLoss(what + ": manifest is truncated");
  uint32_t json_len = GetU32(file.data());
  Bytes plain;
  HAVEN_RETURN_IF_ERROR(Unseal(data_key, AsBytes(SnapshotAad(id)),
                               file.subspan(4), plain, what));
  if (plain.empty() || plain[0] != 1) return DataLoss(what + ": unknown codec");
  // The length prefix is not authenticated; the zstd frame header is. Only
  // allocate what the authenticated frame says, and only if both agree.
  unsigned long long frame =
      ZSTD_getFrameContentSize(plain.data() + 1, plain.size() - 1);
  if (frame != json_len || json_len > kMaxManifestFile * 4)
    return DataLoss(what + ": manifest length does not match its contents");
  Bytes json(json_len);
  std::optional<Decompressor> own;
  Decompressor& d = decompressor ? *decompressor : own.emplace();
  HAVEN_RETURN_IF_ERROR(
      d.Decompress(ByteSpan(plain.data() + 1, plain.size() - 1), json_len,
                   json.data(), what));
  HAVEN_ASSIGN_OR_RETURN(
      Manifest m,
      Manifest::FromJson(
          std::string_view(reinterpret_cast<char*>(json.data()), json.size()),
          what));
  if (m.id != id) return DataLoss(what + ": manifest names another id");
  return m;
}

}  // namespace haven::repository
