// /api/v1/remotes... and /api/v1/sync: the remote appliances this havend
// copies points to and from (appliance/remotes.h), a remote's points, and a
// sync job now (appliance/sync_jobs.h). Admin only: a remote's token opens
// every point there.
#include "agent/appliance_copy.h"
#include "appliance/point_access.h"
#include "appliance/remotes.h"
#include "appliance/routes.h"
#include "appliance/sync_jobs.h"
#include "base/json.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

json RemoteJson(const RemoteInfo& r) {
  return {{"name", r.name},
          {"url", r.url},
          {"fingerprint", r.fingerprint},
          {"token_set", r.token_set},
          {"created", r.created},
          {"changed", r.changed},
          {"changed_by", r.changed_by}};
}

Result<std::string> Text(const json& body, const char* key, bool required) {
  auto it = body.find(key);
  if (it == body.end()) {
    if (required) return InvalidArgument(std::string(key) + " is required");
    return std::string();
  }
  if (!it->is_string())
    return InvalidArgument(std::string(key) + " must be a string");
  return it->get<std::string>();
}

Response PutRemote(Services& s, const ApiCall& call) {
  auto body = JsonBodyObject(call.request);
  if (!body.ok()) return StatusResponse(body.status());
  for (const auto& [key, value] : body->items())
    if (key != "name" && key != "url" && key != "fingerprint" && key != "token")
      return ErrorJson(400, "unknown field " + QuoteUntrusted(key) +
                                " (the fields are name, url, fingerprint, "
                                "token)");
  RemoteUpdate u;
  for (auto [key, field] :
       {std::pair{"name", &u.name}, std::pair{"url", &u.url},
        std::pair{"fingerprint", &u.fingerprint}}) {
    auto v = Text(*body, key, true);
    if (!v.ok()) return StatusResponse(v.status());
    *field = *v;
  }
  if (body->contains("token")) {
    // Never echoed: the error names the field only.
    if (!(*body)["token"].is_string())
      return ErrorJson(400, "token must be a string");
    u.token = (*body)["token"].get<std::string>();
  }
  auto made = s.remotes->Put(u, call.caller.name);
  if (!made.ok()) return StatusResponse(made.status());
  auto info = s.remotes->Get(u.name);
  if (!info.ok()) return StatusResponse(info.status());
  return OkJson(RemoteJson(*info), *made ? 201 : 200);
}

Response ListRemotes(Services& s) {
  auto list = s.remotes->List();
  if (!list.ok()) return StatusResponse(list.status());
  json out = json::array();
  for (const RemoteInfo& r : *list) out.push_back(RemoteJson(r));
  return OkJson({{"remotes", out}});
}

Response RemotePoints(Services& s, const ApiCall& call) {
  auto conn = s.remotes->Connection(*call.Param("name"));
  if (!conn.ok()) return StatusResponse(conn.status());
  // A person waits for this answer: two tries, not a copy's six.
  auto source = agent::OpenApplianceSource(*conn, {}, 2);
  if (!source.ok()) return StatusResponse(source.status());
  std::vector<std::string> errors;
  auto points = (*source)->Points(&errors);
  // The remote's refusal is not this request's: 502 with its words.
  if (!points.ok())
    return ErrorJson(points.status().code() == Code::kNotFound ? 404 : 502,
                     points.status().message());
  nlohmann::ordered_json j;
  j["remote"] = *call.Param("name");
  j["url"] = conn->url;
  j["points"] = nlohmann::ordered_json::array();
  // Newest first, as the console lists points.
  for (auto it = points->rbegin(); it != points->rend(); ++it)
    j["points"].push_back({{"id", it->id},
                           {"name", it->name},
                           {"kind", it->kind},
                           {"time", it->time}});
  j["errors"] = errors;
  return OkOrdered(j);
}

Response Sync(Services& s, const ApiCall& call) {
  auto body = JsonBodyObject(call.request);
  if (!body.ok()) return StatusResponse(body.status());
  std::string requested;
  if (body->contains("repository")) {
    if (!(*body)["repository"].is_string())
      return ErrorJson(400, "repository must be a repository's name");
    requested = (*body)["repository"].get<std::string>();
    body->erase("repository");
  }
  auto repository = CopyRepository(*s.config, requested);
  if (!repository.ok()) return StatusResponse(repository.status());
  JobSpec spec;
  spec.kind = "sync";
  spec.repository = *repository;
  spec.params = std::move(*body);
  spec.requested_by = call.caller.name;
  auto id = s.jobs->Submit(std::move(spec));
  if (!id.ok()) return StatusResponse(id.status());
  Response r = OkJson({{"job", *id}}, 202);
  r.headers.emplace_back("location", "/api/v1/jobs/" + std::to_string(*id));
  return r;
}

json Described(const char* description) {
  return {{"description", description}};
}

json RemoteSchema(bool with_token) {
  json props = {
      {"name",
       {{"type", "string"}, {"pattern", "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}}},
      {"url",
       {{"type", "string"},
        {"description", "https://HOST[:PORT] of the remote havend"}}},
      {"fingerprint",
       {{"type", "string"},
        {"description",
         "its certificate's SHA-256 fingerprint (SHA256:AB:...), pinned"}}}};
  if (with_token)
    props["token"] = {{"type", "string"},
                      {"description",
                       "an API token of role admin on the remote: kept in a "
                       "0600 file, never shown again; required for a new "
                       "remote, kept when not given"}};
  else
    props["token_set"] = {{"type", "boolean"}};
  return {{"type", "object"}, {"properties", props}};
}

Route Make(const char* method, std::string path, std::string summary,
           json openapi, RouteHandler handler) {
  Route r;
  r.method = method;
  r.path = std::move(path);
  r.access = Access::kRole;
  r.role = Role::kAdmin;
  r.summary = std::move(summary);
  r.openapi = std::move(openapi);
  r.handler = std::move(handler);
  return r;
}

}  // namespace

std::vector<Route> RemoteRoutes(Services& s) {
  std::vector<Route> routes;
  routes.push_back(Make(
      "GET", "/api/v1/remotes",
      "the remote appliances sync jobs copy to and from (never their tokens)",
      {{"responses",
        {{"200",
          {{"description", "{remotes: [...]}"},
           {"content",
            {{"application/json",
              {{"schema",
                {{"type", "object"},
                 {"properties",
                  {{"remotes",
                    {{"type", "array"},
                     {"items", RemoteSchema(false)}}}}}}}}}}}}}}}},
      [&s](const ApiCall&) { return ListRemotes(s); }));
  routes.push_back(Make(
      "POST", "/api/v1/remotes",
      "add a remote appliance, or change one (same name)",
      {{"requestBody",
        {{"required", true},
         {"content",
          {{"application/json", {{"schema", RemoteSchema(true)}}}}}}},
       {"responses",
        {{"201", Described("added: the remote, without its token")},
         {"200", Described("changed")},
         {"400", Described("a bad field, named (never the token's value)")}}}},
      [&s](const ApiCall& c) { return PutRemote(s, c); }));
  routes.push_back(
      Make("DELETE", "/api/v1/remotes/{name}",
           "remove a remote appliance and its token (jobs stay in the history)",
           {{"responses",
             {{"200", Described("{deleted: NAME}")},
              {"404", Described("no such remote")}}}},
           [&s](const ApiCall& c) {
             Status st = s.remotes->Remove(*c.Param("name"));
             if (!st.ok()) return StatusResponse(st);
             return OkJson({{"deleted", *c.Param("name")}});
           }));
  routes.push_back(Make(
      "GET", "/api/v1/remotes/{name}/points",
      "a remote appliance's points, newest first (asked of it now)",
      {{"responses",
        {{"200", Described("{remote, url, points: [{id, name, kind, time}], "
                           "errors}")},
         {"404", Described("no such remote")},
         {"502", Described("the remote could not be reached or refused")}}}},
      [&s](const ApiCall& c) { return RemotePoints(s, c); }));
  routes.push_back(
      Make("POST", "/api/v1/sync",
           "run a sync job now: copy points between a repository here and a "
           "remote appliance, sending only the chunks the other side lacks",
           {{"requestBody",
             {{"required", true},
              {"content",
               {{"application/json",
                 {{"schema",
                   {{"type", "object"},
                    {"required", {"remote", "direction"}},
                    {"properties",
                     {{"remote", {{"type", "string"}}},
                      {"direction",
                       {{"type", "string"}, {"enum", {"pull", "push"}}}},
                      {"repository",
                       {{"type", "string"},
                        {"description", "default: the default repository"}}},
                      {"names",
                       {{"type", "array"}, {"items", {{"type", "string"}}}}},
                      {"refs",
                       {{"type", "array"},
                        {"items", {{"type", "string"}}},
                        {"description",
                         "id prefixes, \"latest\", \"NAME:latest\""}}},
                      {"keep_last", {{"type", "integer"}}},
                      {"keep_daily", {{"type", "integer"}}},
                      {"bytes_per_second", {{"type", "number"}}},
                      {"dry_run", {{"type", "boolean"}}}}}}}}}}}}},
            {"responses",
             {{"202",
               Described("{job: ID}: queued; the report is the job's result")},
              {"400", Described("a bad field, named")},
              {"404", Described("no such remote or repository")}}}},
           [&s](const ApiCall& c) { return Sync(s, c); }));
  return routes;
}

}  // namespace haven::appliance
