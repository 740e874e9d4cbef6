// Routes of enrolled agents (docs/agents.md): the admin's side (make an
// enrollment token, list agents, revoke one) and the agent's first two
// calls (trade a token for a credential, say hello). The rest of the
// agent's protocol (chunks, points, jobs) lives in its own route files.
//
// Tokens and credentials travel only in bodies: the audit hook records the
// route's summary, never a body, so neither reaches the audit log.
#include <chrono>
#include <memory>

#include "appliance/agents.h"
#include "appliance/audit.h"
#include "appliance/certificate.h"
#include "appliance/https_server.h"
#include "appliance/login_limiter.h"
#include "appliance/routes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

using json = nlohmann::json;

std::string Iso(int64_t seconds) {
  return FormatTime(seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The request body as a JSON object ("" counts as {}), or the 400.
std::variant<json, Response> BodyObject(const Request& r, bool empty_ok) {
  if (empty_ok && r.body.find_first_not_of(" \t\r\n") == std::string::npos)
    return json::object();
  json body = json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return ErrorJson(400, "the request body must be a JSON object");
  return body;
}

// Reads the optional string field `name` into `out`; the 400 when it is
// there but not a string.
std::optional<Response> OptionalString(const json& body, const char* name,
                                       std::string* out) {
  if (!body.contains(name) || body[name].is_null()) return std::nullopt;
  if (!body[name].is_string())
    return ErrorJson(400, std::string("\"") + name + "\" must be a string");
  *out = body[name].get<std::string>();
  return std::nullopt;
}

// Where agents reach this appliance, as well as the request shows it: the
// Host header the admin's browser or client used, when it is a plain host
// name or address (it goes into a shell command); else this machine's
// name and the configured port.
std::string ApplianceUrl(const Services& s, const Request& r) {
  if (const std::string* host = r.Header("host");
      host && !host->empty() && host->size() <= 261 &&
      host->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
                              "tuvwxyz0123456789.-:[]") == std::string::npos)
    return "https://" + *host;
  uint16_t port = kDefaultPort;
  if (s.config && !s.config->listen.empty())
    if (auto l = ParseListenAddress(s.config->listen); l.ok()) port = l->port;
  return "https://" + LocalHostName() + ":" + std::to_string(port);
}

json AgentJson(const AgentInfo& a) {
  return {{"id", a.id},
          {"name", a.name},
          {"kind", a.kind},
          {"hostname", a.hostname},
          {"version", a.version},
          {"repository", a.repository},
          {"enrolled", Iso(a.enrolled)},
          {"last_contact", a.last_contact ? json(Iso(a.last_contact)) : json()},
          {"revoked", a.revoked ? json(Iso(*a.revoked)) : json()},
          {"address", a.address}};
}

Response CreateEnrollment(Services& s, const ApiCall& call) {
  auto parsed = BodyObject(call.request, true);
  if (auto* r = std::get_if<Response>(&parsed)) return *r;
  const json& body = std::get<json>(parsed);
  EnrollmentRequest req;
  std::string repository;
  for (auto [field, out] :
       {std::pair{"name", &req.name}, std::pair{"kind", &req.kind},
        std::pair{"repository", &repository}})
    if (auto bad = OptionalString(body, field, out)) return *bad;
  if (body.contains("expires_minutes") && !body["expires_minutes"].is_null()) {
    if (!body["expires_minutes"].is_number_integer())
      return ErrorJson(400, "\"expires_minutes\" must be a whole number");
    int64_t m = body["expires_minutes"].get<int64_t>();
    if (m < 1 || m > 10080)
      return ErrorJson(400, "expires_minutes is 1 to 10080 (a week), not " +
                                std::to_string(m));
    req.expires_minutes = static_cast<int>(m);
  }
  auto repo = AgentRepository(s.repositories->config(), repository);
  if (!repo.ok()) return StatusResponse(repo.status());
  req.repository = *repo;
  req.created_by = call.caller.name;
  auto made = s.agents->CreateEnrollment(req);
  if (!made.ok()) return StatusResponse(made.status());
  std::string url = ApplianceUrl(s, call.request);
  std::string command = EnrollCommand(url, *made, s.fingerprint);
  return OkJson({{"token", made->token},
                 {"expires", Iso(made->expires)},
                 {"fingerprint", s.fingerprint},
                 {"url", url},
                 {"name", made->name},
                 {"kind", made->kind},
                 {"repository", made->repository},
                 {"command", command}},
                201);
}

Response ListAgents(Services& s, const ApiCall&) {
  auto agents = s.agents->List();
  if (!agents.ok()) return StatusResponse(agents.status());
  json list = json::array();
  for (const AgentInfo& a : *agents) list.push_back(AgentJson(a));
  return OkJson({{"agents", list}});
}

Response RevokeAgent(Services& s, const ApiCall& call) {
  const std::string& id = *call.Param("id");
  if (Status st = s.agents->Revoke(id); !st.ok()) return StatusResponse(st);
  auto agent = s.agents->Get(id);
  if (!agent.ok()) return StatusResponse(agent.status());
  if (!*agent || !(*agent)->revoked)
    return ErrorJson(500, "agent " + id + " is not marked revoked");
  return OkJson({{"id", id},
                 {"name", (*agent)->name},
                 {"revoked", Iso(*(*agent)->revoked)}});
}

// POST /agent/enroll is public, so the dispatcher's audit hook does not
// see it: it is recorded here.
void AuditEnroll(Services& s, const Request& r, const std::string& who,
                 int status, const std::string& detail) {
  if (s.audit == nullptr) return;
  (void)s.audit->Record({0, 0, who, r.peer, r.method, r.path, status, detail});
}

Response Enroll(Services& s, LoginLimiter& limiter, const ApiCall& call) {
  const Request& r = call.request;
  std::string address = PeerAddress(r.peer);
  // The limiter's "user" is the address too: only the address counts, so
  // nobody can slow down everyone else's enrollment.
  std::string key = "agent-enroll@" + address;
  if (int64_t wait = limiter.RetryAfter(address, key, Now()); wait > 0) {
    Response out =
        ErrorJson(429, "too many failed enrollments from " + address +
                           "; try again in " + std::to_string(wait) + " s");
    out.headers.emplace_back("retry-after", std::to_string(wait));
    return out;
  }
  auto parsed = BodyObject(r, false);
  if (auto* bad = std::get_if<Response>(&parsed)) return *bad;
  const json& body = std::get<json>(parsed);
  std::string token, name, kind, hostname, version;
  if (!body.contains("token") || !body["token"].is_string())
    return ErrorJson(400, "the body needs a \"token\" string");
  token = body["token"].get<std::string>();
  for (auto [field, out] :
       {std::pair{"name", &name}, std::pair{"kind", &kind},
        std::pair{"hostname", &hostname}, std::pair{"version", &version}})
    if (auto bad = OptionalString(body, field, out)) return *bad;
  auto answer = s.agents->Enroll(token, name, kind, hostname, version, address);
  if (!answer.ok()) {
    const Status& st = answer.status();
    if (st.code() == Code::kPermissionDenied) {
      limiter.Failed(address, key, Now());
      AuditEnroll(s, r, "agent-enrollment", 401, "refused: " + st.message());
      Response out = ErrorJson(401, st.message());
      return out;
    }
    AuditEnroll(s, r, "agent-enrollment", StatusResponse(st).status,
                "refused: " + st.message());
    return StatusResponse(st);
  }
  limiter.Succeeded(address, key);
  const AgentInfo& a = answer->agent;
  AuditEnroll(s, r, "agent:" + a.name, 201,
              "enrolled agent " + a.id + " (" + a.kind + ", host " +
                  QuoteUntrusted(a.hostname) + ")");
  return OkJson({{"agent_id", a.id},
                 {"name", a.name},
                 {"kind", a.kind},
                 {"credential", answer->credential},
                 {"repository", a.repository}},
                201);
}

Response Hello(Services& s, const ApiCall& call) {
  auto parsed = BodyObject(call.request, true);
  if (auto* r = std::get_if<Response>(&parsed)) return *r;
  const json& body = std::get<json>(parsed);
  std::string hostname, version;
  for (auto [field, out] :
       {std::pair{"hostname", &hostname}, std::pair{"version", &version}})
    if (auto bad = OptionalString(body, field, out)) return *bad;
  const std::string& id = call.caller.agent_id;
  if (Status st = s.agents->Touch(id, hostname, version,
                                  PeerAddress(call.request.peer));
      !st.ok())
    return StatusResponse(st);
  auto agent = s.agents->Get(id);
  if (!agent.ok()) return StatusResponse(agent.status());
  if (!*agent) return ErrorJson(404, "no agent with id " + id);
  return OkJson({{"agent_id", id},
                 {"name", (*agent)->name},
                 {"kind", (*agent)->kind},
                 {"repository", (*agent)->repository},
                 {"server_version", s.version}});
}

json JsonBody(const json& schema, bool required) {
  return {{"required", required},
          {"content", {{"application/json", {{"schema", schema}}}}}};
}

json Answer(std::string_view description) {
  return {{"description", std::string(description)}};
}

}  // namespace

std::vector<Route> AgentAdminRoutes(Services& s) {
  const json str = {{"type", "string"}};
  const json kind = {{"type", "string"}, {"enum", {"guest", "host"}}};
  auto h = [&s](Response (*f)(Services&, const ApiCall&)) {
    return [&s, f](const ApiCall& call) { return f(s, call); };
  };
  // Failed enrollments per address, in memory (a restart forgets them).
  auto limiter = std::make_shared<LoginLimiter>();
  return {
      {"POST",
       "/api/v1/agents/enrollments",
       Access::kRole,
       Role::kAdmin,
       "make a one-time enrollment token for a new agent (shown only in "
       "this answer)",
       {{"requestBody", JsonBody({{"type", "object"},
                                  {"properties",
                                   {{"name", str},
                                    {"kind", kind},
                                    {"repository", str},
                                    {"expires_minutes",
                                     {{"type", "integer"},
                                      {"minimum", 1},
                                      {"maximum", 10080},
                                      {"default", 60}}}}}},
                                 false)},
        {"responses",
         {{"201", Answer("{token, expires, fingerprint, url, name, kind, "
                         "repository, command}: the token works once, "
                         "until expires; command is what to run on the "
                         "agent")},
          {"400", Answer("bad name, kind, expires_minutes or an unknown "
                         "repository (named)")},
          {"409", Answer("no repository is configured")}}}},
       h(CreateEnrollment)},
      {"GET",
       "/api/v1/agents",
       Access::kRole,
       Role::kAuditor,
       "list enrolled agents, revoked ones last",
       {{"responses",
         {{"200", Answer("{agents: [{id, name, kind, hostname, version, "
                         "repository, enrolled, last_contact, revoked, "
                         "address}]}: times RFC 3339 or null")}}}},
       h(ListAgents)},
      {"POST",
       "/api/v1/agents/{id}/revoke",
       Access::kRole,
       Role::kAdmin,
       "revoke an agent: its credential stops working at once; its points "
       "stay",
       {{"responses",
         {{"200", Answer("{id, name, revoked}; revoking twice keeps the "
                         "first time")},
          {"404", Answer("no such agent")}}}},
       h(RevokeAgent)},
      {"POST",
       "/api/v1/agent/enroll",
       Access::kPublic,
       Role::kNone,
       "trade a one-time enrollment token for the agent's own credential "
       "(rate-limited per address)",
       {{"requestBody",
         JsonBody({{"type", "object"},
                   {"required", {"token"}},
                   {"properties",
                    {{"token", {{"type", "string"}, {"writeOnly", true}}},
                     {"name", str},
                     {"kind", kind},
                     {"hostname", str},
                     {"version", str}}}},
                  true)},
        {"responses",
         {{"201", Answer("{agent_id, name, kind, credential, repository}: "
                         "the credential is shown only here")},
          {"400", Answer("bad name, kind, hostname or version")},
          {"401", Answer("unknown, expired or used token (the sentence says "
                         "which)")},
          {"409", Answer("an agent not revoked has that name")},
          {"429", Answer("too many failed enrollments from this address: "
                         "Retry-After seconds")}}}},
       [&s, limiter](const ApiCall& call) {
         return Enroll(s, *limiter, call);
       }},
      {"POST",
       "/api/v1/agent/hello",
       Access::kRole,
       Role::kAgent,
       "an agent says who it is now; records its last contact",
       {{"requestBody",
         JsonBody({{"type", "object"},
                   {"properties", {{"hostname", str}, {"version", str}}}},
                  false)},
        {"responses",
         {{"200", Answer("{agent_id, name, kind, repository, "
                         "server_version}")}}}},
       h(Hello)},
  };
}

}  // namespace haven::appliance
