#include "agent/appliance_copy.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <utility>

#include "agent/copy_wire.h"
#include "base/json.h"
#include "repository/config.h"
#include "repository/manifest.h"

namespace haven::agent {
namespace {

using nlohmann::json;
using repository::ChunkId;
using repository::ChunkIdHash;
using repository::ChunkType;
using repository::CopyChunk;
using repository::CopyParams;
using repository::Manifest;
using repository::PointSummary;

constexpr size_t kMaxTokenBytes = 512;
constexpr size_t kMaxFieldBytes = 1024;  // a point's name, kind, time

const char* TypeName(ChunkType type) {
  return type == ChunkType::kTree ? "tree" : "data";
}

// A token goes into an Authorization header: printable ASCII, no space.
Status CheckToken(std::string_view token, std::string_view where) {
  if (token.empty() || token.size() > kMaxTokenBytes)
    return InvalidArgument(std::string(where) + " holds no API token (or one " +
                           "longer than " + std::to_string(kMaxTokenBytes) +
                           " bytes)");
  for (char c : token)
    if (c <= 0x20 || c >= 0x7f)
      return InvalidArgument(std::string(where) +
                             " is not an API token: it holds a space or a "
                             "control character");
  return OkStatus();
}

// The first line of `path` (at most 4 KiB read), without its newline.
Result<std::string> FirstLine(const std::string& path, std::string_view var) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return InvalidArgument(std::string(var) + ": cannot read " +
                           QuoteUntrusted(path));
  std::string text(4096, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  text = text.substr(0, text.find('\n'));
  if (!text.empty() && text.back() == '\r') text.pop_back();
  return text;
}

// The remote's text (a name, an error) made safe to show: printable, short.
std::string Shown(std::string_view text, size_t max = 256) {
  std::string out;
  for (char c : text.substr(0, max))
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  if (text.size() > max) out += "...";
  return out;
}

Result<json> JsonObject(const HttpReply& reply, std::string_view what,
                        const std::string& remote) {
  // Nesting first: copying a value recurses once per level.
  json j = JsonNestingWithin(reply.body)
               ? json::parse(reply.body, nullptr, false)
               : json(json::value_t::discarded);
  if (j.is_discarded() || !j.is_object())
    return DataLoss(remote + " answered " + std::string(what) +
                    " with something that is not a JSON object");
  return j;
}

Result<std::string> StringField(const json& j, const char* key,
                                std::string_view what,
                                const std::string& remote,
                                size_t max = kMaxFieldBytes) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string() ||
      it->get_ref<const std::string&>().size() > max)
    return DataLoss(remote + "'s answer to " + std::string(what) +
                    " has no valid \"" + key + "\"");
  return it->get<std::string>();
}

bool IsLowerHex(std::string_view s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c)) && (c < 'a' || c > 'f'))
      return false;
  return true;
}

Result<std::unique_ptr<ApplianceCopyRemote>> Connect(
    const RemoteAppliance& remote, const CancelToken& cancel, int attempts) {
  HAVEN_RETURN_IF_ERROR(CheckToken(remote.token, "the remote's token"));
  HAVEN_ASSIGN_OR_RETURN(
      auto client,
      ApplianceClient::Create(remote.url, remote.fingerprint, remote.token));
  return std::make_unique<ApplianceCopyRemote>(std::move(client), cancel,
                                               attempts);
}

}  // namespace

// ---------------------------------------------------------------- setup

Result<RemoteAppliance> RemoteFromEnvironment(std::string url,
                                              std::string_view which) {
  if (which != "FROM" && which != "TO")
    return InvalidArgument("a remote side is FROM or TO");
  const std::string prefix = "HAVEN_" + std::string(which) + "_";
  RemoteAppliance r;
  r.url = std::move(url);
  const std::string fp_var = prefix + "FINGERPRINT";
  const char* fp = std::getenv(fp_var.c_str());
  if (fp == nullptr || *fp == '\0')
    return InvalidArgument(
        "set " + fp_var + " to the certificate fingerprint of the appliance " +
        "at " + QuoteUntrusted(r.url) +
        " (havend prints it at start: \"certificate SHA-256 fingerprint\")");
  auto normal = NormalizeFingerprint(fp);
  if (!normal.ok())
    return InvalidArgument(fp_var + ": " + normal.status().message());
  r.fingerprint = *normal;
  const std::string token_var = prefix + "TOKEN";
  const std::string file_var = prefix + "TOKEN_FILE";
  const char* token = std::getenv(token_var.c_str());
  const char* file = std::getenv(file_var.c_str());
  const bool has_token = token != nullptr && *token != '\0';
  const bool has_file = file != nullptr && *file != '\0';
  if (has_token && has_file)
    return InvalidArgument("set " + token_var + " or " + file_var +
                           ", not both");
  if (!has_token && !has_file)
    return InvalidArgument("set " + token_var + " (or " + file_var +
                           ") to an admin API token of the appliance at " +
                           QuoteUntrusted(r.url));
  if (has_token) {
    r.token = token;
    HAVEN_RETURN_IF_ERROR(CheckToken(r.token, token_var));
  } else {
    HAVEN_ASSIGN_OR_RETURN(r.token, FirstLine(file, file_var));
    HAVEN_RETURN_IF_ERROR(
        CheckToken(r.token, "the file " + file_var + " names"));
  }
  return r;
}

Result<std::unique_ptr<repository::CopySource>> OpenApplianceSource(
    const RemoteAppliance& remote, const CancelToken& cancel, int attempts) {
  HAVEN_ASSIGN_OR_RETURN(auto r, Connect(remote, cancel, attempts));
  return std::unique_ptr<repository::CopySource>(
      std::make_unique<ApplianceCopySource>(std::move(r)));
}

Result<std::unique_ptr<repository::CopyTarget>> OpenApplianceTarget(
    const RemoteAppliance& remote, const CancelToken& cancel, int attempts) {
  HAVEN_ASSIGN_OR_RETURN(auto r, Connect(remote, cancel, attempts));
  return std::unique_ptr<repository::CopyTarget>(
      std::make_unique<ApplianceCopyTarget>(std::move(r)));
}

// ---------------------------------------------------------------- both sides

ApplianceCopyRemote::ApplianceCopyRemote(
    std::unique_ptr<ApplianceClient> client, CancelToken cancel, int attempts)
    : client_(std::move(client)) {
  retry_.attempts = std::max(1, attempts);
  retry_.first_delay = 1;
  retry_.max_delay = 20;
  retry_.cancel = std::move(cancel);
}

std::string ApplianceCopyRemote::Describe() const {
  return "appliance " + client_->url();
}

Result<HttpReply> ApplianceCopyRemote::Get(std::string_view path,
                                           double timeout) {
  return client_->Get(path, timeout, retry_);
}

Result<HttpReply> ApplianceCopyRemote::Post(std::string_view path,
                                            std::string_view type,
                                            std::string_view body,
                                            double timeout) {
  return client_->Post(path, type, body, timeout, retry_);
}

Result<CopyParams> ApplianceCopyRemote::Params() {
  const std::string what = "GET /api/v1/copy/info";
  HAVEN_ASSIGN_OR_RETURN(HttpReply reply, Get("/api/v1/copy/info"));
  if (reply.status != 200) return ReplyStatus(reply, Describe() + ": " + what);
  HAVEN_ASSIGN_OR_RETURN(json j, JsonObject(reply, what, Describe()));
  CopyParams p;
  HAVEN_ASSIGN_OR_RETURN(p.repository_id,
                         StringField(j, "repository_id", what, Describe(), 64));
  HAVEN_ASSIGN_OR_RETURN(p.id_check,
                         StringField(j, "id_check", what, Describe(), 64));
  if (!IsLowerHex(p.id_check, 64))
    return DataLoss(Describe() + "'s id_check is not 64 hex digits");
  auto cs = j.find("chunk_size");
  if (cs == j.end() || !cs->is_number_unsigned() ||
      cs->get<uint64_t>() < repository::kMinChunkSize ||
      cs->get<uint64_t>() > repository::kMaxChunkSize)
    return DataLoss(Describe() + "'s chunk_size is not a chunk size");
  p.chunk_size = cs->get<uint32_t>();
  return p;
}

Result<std::vector<PointSummary>> ApplianceCopyRemote::Points(
    std::vector<std::string>* errors) {
  const std::string what = "GET /api/v1/copy/points";
  HAVEN_ASSIGN_OR_RETURN(HttpReply reply, Get("/api/v1/copy/points", 300));
  if (reply.status != 200) return ReplyStatus(reply, Describe() + ": " + what);
  HAVEN_ASSIGN_OR_RETURN(json j, JsonObject(reply, what, Describe()));
  auto points = j.find("points");
  if (points == j.end() || !points->is_array())
    return DataLoss(Describe() + "'s answer to " + what +
                    " has no points list");
  std::vector<PointSummary> out;
  std::unordered_set<std::string> seen;
  for (const json& p : *points) {
    if (!p.is_object())
      return DataLoss(Describe() + "'s points list holds a non-object");
    PointSummary s;
    HAVEN_ASSIGN_OR_RETURN(s.id, StringField(p, "id", what, Describe(), 64));
    if (!repository::IsSnapshotId(s.id))
      return DataLoss(Describe() + " lists a point whose id " +
                      QuoteUntrusted(s.id) + " is not a point id");
    if (!seen.insert(s.id).second)
      return DataLoss(Describe() + " lists point " + s.id + " twice");
    HAVEN_ASSIGN_OR_RETURN(s.name, StringField(p, "name", what, Describe()));
    HAVEN_ASSIGN_OR_RETURN(s.kind, StringField(p, "kind", what, Describe()));
    HAVEN_ASSIGN_OR_RETURN(s.time, StringField(p, "time", what, Describe()));
    out.push_back(std::move(s));
  }
  if (errors != nullptr) {
    auto e = j.find("errors");
    if (e != j.end() && e->is_array())
      for (const json& line : *e)
        if (line.is_string() && errors->size() < 10000)
          errors->push_back(Describe() + ": " + Shown(line.get<std::string>()));
  }
  return out;
}

// ---------------------------------------------------------------- source

Status ApplianceCopyRemote::PostIds(
    const char* path, const char* key, const char* entry, ChunkType type,
    const std::vector<ChunkId>& ids,
    const std::function<bool(const json&)>& take) {
  const std::string what = std::string("POST ") + path;
  for (size_t start = 0; start < ids.size(); start += kMaxCopyHasIds) {
    const size_t end = std::min(ids.size(), start + kMaxCopyHasIds);
    json body;
    body["type"] = TypeName(type);
    body["ids"] = json::array();
    for (size_t i = start; i < end; ++i) body["ids"].push_back(ids[i].Hex());
    HAVEN_ASSIGN_OR_RETURN(HttpReply reply,
                           Post(path, "application/json", body.dump()));
    if (reply.status != 200)
      return ReplyStatus(reply, Describe() + ": " + what);
    HAVEN_ASSIGN_OR_RETURN(json j, JsonObject(reply, what, Describe()));
    auto list = j.find(key);
    if (list == j.end() || !list->is_array() || list->size() != end - start)
      return DataLoss(Describe() + " answered " + std::to_string(end - start) +
                      " chunk ids with a \"" + key +
                      "\" list of another length");
    for (const json& v : *list)
      if (!take(v))
        return DataLoss(Describe() + "'s \"" + key +
                        "\" list holds something not " + entry);
  }
  return OkStatus();
}

Result<Manifest> ApplianceCopySource::LoadPoint(const std::string& id) {
  if (!repository::IsSnapshotId(id))
    return InvalidArgument(QuoteUntrusted(id) + " is not a point id");
  const std::string what = "GET /api/v1/copy/points/" + id;
  HAVEN_ASSIGN_OR_RETURN(HttpReply reply,
                         remote_->Get("/api/v1/copy/points/" + id));
  if (reply.status != 200) return ReplyStatus(reply, Describe() + ": " + what);
  if (!JsonNestingWithin(reply.body))
    return DataLoss(Describe() + " answered the manifest of point " + id +
                    " with JSON nested too deep");
  HAVEN_ASSIGN_OR_RETURN(
      Manifest m, Manifest::FromJson(reply.body, "the manifest of point " + id +
                                                     " from " + Describe()));
  if (m.id != id)
    return DataLoss(Describe() + " answered the manifest of point " + id +
                    " with one of point " + QuoteUntrusted(m.id));
  return m;
}

Status ApplianceCopySource::ReadChunks(ChunkType type,
                                       const std::vector<ChunkId>& ids,
                                       std::vector<CopyChunk>& out) {
  out.clear();
  out.reserve(ids.size());
  size_t next = 0;
  while (next < ids.size()) {
    // A request names each id once: a repeated id starts the next one.
    std::vector<ChunkId> batch;
    std::unordered_set<ChunkId, ChunkIdHash> in_batch;
    for (size_t i = next; i < ids.size() && batch.size() < kMaxCopyReadIds;
         ++i) {
      if (!in_batch.insert(ids[i]).second) break;
      batch.push_back(ids[i]);
    }
    json body;
    body["type"] = TypeName(type);
    body["ids"] = json::array();
    for (const ChunkId& id : batch) body["ids"].push_back(id.Hex());
    HAVEN_ASSIGN_OR_RETURN(HttpReply reply,
                           remote_->Post("/api/v1/copy/chunks/read",
                                         "application/json", body.dump()));
    if (reply.status != 200)
      return ReplyStatus(reply, Describe() + ": POST /api/v1/copy/chunks/read");
    if (reply.content_type.rfind("application/octet-stream", 0) != 0)
      return DataLoss(Describe() +
                      " answered a chunks read with content type " +
                      QuoteUntrusted(reply.content_type));
    auto got = ParseReadAnswer(reply.body, batch);
    if (!got.ok()) return DataLoss(Describe() + ": " + got.status().message());
    next += got->size();
    for (CopyChunk& c : *got) out.push_back(std::move(c));
  }
  return OkStatus();
}

Status ApplianceCopySource::ChunkSizes(ChunkType type,
                                       const std::vector<ChunkId>& ids,
                                       std::vector<int64_t>& sizes) {
  sizes.clear();
  sizes.reserve(ids.size());
  return remote_->PostIds("/api/v1/copy/chunks/sizes", "sizes", "a chunk size",
                          type, ids, [&](const json& n) {
                            if (!n.is_number_integer() ||
                                n.get<int64_t>() < -1 ||
                                n.get<int64_t>() > kMaxCopyChunkBytes)
                              return false;
                            sizes.push_back(n.get<int64_t>());
                            return true;
                          });
}

// ---------------------------------------------------------------- target

Result<std::vector<std::string>> ApplianceCopyTarget::PointIds() {
  HAVEN_ASSIGN_OR_RETURN(auto points, remote_->Points(nullptr));
  std::vector<std::string> ids;
  ids.reserve(points.size());
  for (PointSummary& p : points) ids.push_back(std::move(p.id));
  return ids;
}

Result<std::vector<bool>> ApplianceCopyTarget::HasChunks(
    ChunkType type, const std::vector<ChunkId>& ids) {
  std::vector<bool> out;
  out.reserve(ids.size());
  HAVEN_RETURN_IF_ERROR(remote_->PostIds("/api/v1/copy/chunks/has", "have",
                                         "true or false", type, ids,
                                         [&](const json& b) {
                                           if (!b.is_boolean()) return false;
                                           out.push_back(b.get<bool>());
                                           return true;
                                         }));
  return out;
}

Status ApplianceCopyTarget::PutChunks(ChunkType type,
                                      const std::vector<CopyChunk>& chunks) {
  const std::string what = "POST /api/v1/copy/chunks/put";
  std::string body;
  size_t frames = 0;
  auto send = [&]() -> Status {
    if (frames == 0) return OkStatus();
    HAVEN_ASSIGN_OR_RETURN(HttpReply reply,
                           remote_->Post("/api/v1/copy/chunks/put",
                                         "application/octet-stream", body));
    if (reply.status != 200)
      return ReplyStatus(reply, Describe() + ": " + what);
    HAVEN_ASSIGN_OR_RETURN(json j, JsonObject(reply, what, Describe()));
    auto stored = j.find("stored");
    if (stored == j.end() || !stored->is_number_unsigned() ||
        stored->get<uint64_t>() != frames)
      return DataLoss(Describe() + " did not say it stored the " +
                      std::to_string(frames) + " chunks sent");
    body.clear();
    frames = 0;
    return OkStatus();
  };
  for (const CopyChunk& c : chunks) {
    if (!c.status.ok())
      return InvalidArgument("chunk " + c.id.Hex() +
                             " is damaged and cannot be sent");
    if (c.raw.size() > kMaxCopyChunkBytes)
      return InvalidArgument("chunk " + c.id.Hex() + " has " +
                             std::to_string(c.raw.size()) +
                             " bytes, more than a copy sends");
    if (body.size() + PutFrameSize(c.raw.size()) > kCopyBatchBytes)
      HAVEN_RETURN_IF_ERROR(send());
    AppendPutFrame(body, type, c);
    ++frames;
  }
  return send();
}

Status ApplianceCopyTarget::CommitPoint(const Manifest& m) {
  const std::string what = "POST /api/v1/copy/points (point " + m.id + ")";
  HAVEN_ASSIGN_OR_RETURN(
      HttpReply reply, remote_->Post("/api/v1/copy/points", "application/json",
                                     m.ToJson(), 300));
  if (reply.status == 201 || reply.status == 200) {
    HAVEN_ASSIGN_OR_RETURN(json j, JsonObject(reply, what, Describe()));
    auto id = j.find("id");
    if (id == j.end() || !id->is_string() || id->get<std::string>() != m.id)
      return DataLoss(Describe() + " answered the commit of point " + m.id +
                      " naming another point");
    if (reply.status == 200) {
      auto present = j.find("present");
      if (present == j.end() || !present->is_boolean() || !present->get<bool>())
        return DataLoss(Describe() + " answered the commit of point " + m.id +
                        " with neither created nor present");
      return AlreadyExists("point " + m.id + " is already at " + Describe());
    }
    return OkStatus();
  }
  if (reply.status == 409)
    return FailedPrecondition(Describe() + " refused point " + m.id + ": " +
                              reply.ErrorText());
  return ReplyStatus(reply, Describe() + ": " + what);
}

}  // namespace haven::agent
