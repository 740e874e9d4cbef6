#include "repository/config.h"

#include <nlohmann/json.hpp>

#include "repository/json_fields.h"

namespace haven::repository {

std::string Config::ToJson() const {
  nlohmann::ordered_json j;
  j["format"] = "haven-repository";
  j["version"] = kFormatVersion;
  j["id"] = id;
  j["chunk_size"] = chunk_size;
  j["pack_size"] = pack_size;
  j["compression"] = "zstd";
  j["compression_level"] = compression_level;
  j["created"] = created;
  if (object_lock_seconds > 0)
    j["object_lock"] = {{"mode", object_lock_mode},
                        {"seconds", object_lock_seconds}};
  return DumpJson(j, 2) + "\n";
}

Status Config::Validate() const {
  if (id.size() != 32 ||
      id.find_first_not_of("0123456789abcdef") != std::string::npos)
    return DataLoss("config: repository id must be 32 hex digits");
  if (chunk_size < kMinChunkSize || chunk_size > kMaxChunkSize ||
      (chunk_size & (chunk_size - 1)) != 0)
    return InvalidArgument("chunk size " + std::to_string(chunk_size) +
                           " must be a power of two between 4 KiB and 8 MiB");
  if (pack_size < (1u << 20) || pack_size > (1u << 30))
    return InvalidArgument("pack size must be between 1 MiB and 1 GiB");
  if (compression_level < -7 || compression_level > 19)
    return InvalidArgument("zstd level must be between -7 and 19");
  if (object_lock_seconds < 0 || object_lock_seconds > 100ll * 366 * 86400)
    return InvalidArgument("object lock must be between 0 and 100 years");
  if (object_lock_seconds > 0 && object_lock_mode != "GOVERNANCE" &&
      object_lock_mode != "COMPLIANCE")
    return InvalidArgument("object lock mode must be governance or compliance");
  return OkStatus();
}

Result<Config> Config::FromJson(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return DataLoss("config: not a JSON object");
  Config c;
  try {
    if (j.at("format").get<std::string>() != "haven-repository")
      return DataLoss("config: not a Haven repository");
    auto malformed = [](const char* field) {
      return DataLoss(std::string("config: missing or malformed field '") +
                      field + "' (an integer in range is required)");
    };
    int64_t version = 0;
    if (!GetInt(j, "version", version)) return malformed("version");
    if (version != kFormatVersion)
      return FailedPrecondition("config: repository format version " +
                                std::to_string(version) +
                                " is not supported (this haven reads version " +
                                std::to_string(kFormatVersion) + ")");
    if (j.at("compression").get<std::string>() != "zstd")
      return DataLoss("config: unknown compression");
    c.id = j.at("id").get<std::string>();
    int64_t chunk_size = 0;
    if (!GetInt(j, "chunk_size", chunk_size)) return malformed("chunk_size");
    if (chunk_size < 0 || chunk_size > kMaxChunkSize)
      return InvalidArgument("config: chunk size " +
                             std::to_string(chunk_size) +
                             " must be a power of two between 4 KiB and 8 MiB");
    c.chunk_size = static_cast<uint32_t>(chunk_size);
    if (!GetInt(j, "pack_size", c.pack_size)) return malformed("pack_size");
    if (!GetInt(j, "compression_level", c.compression_level))
      return malformed("compression_level");
    c.created = j.value("created", "");
    if (j.contains("object_lock")) {
      const auto& ol = j.at("object_lock");
      if (!ol.is_object() || !GetInt(ol, "seconds", c.object_lock_seconds) ||
          !ol.contains("mode") || !ol.at("mode").is_string())
        return DataLoss("config: malformed field 'object_lock'");
      c.object_lock_mode = ol.at("mode").get<std::string>();
    }
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(std::string("config: missing or malformed field (") +
                    e.what() + ")");
  }
  Status s = c.Validate();
  if (!s.ok()) return s.WithContext("config");
  return c;
}

}  // namespace haven::repository
