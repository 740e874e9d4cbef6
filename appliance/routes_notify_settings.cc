// /api/v1/settings/notifications: the notification settings (admin), a
// PUT that takes effect at once, and a test send (notify_settings.h).
// Secrets go in, never out: an answer says only whether one is set.
#include "appliance/notify_settings.h"
#include "appliance/routes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

using json = nlohmann::json;

json ViewJson(const NotifySettingsView& v, const NotifierHolder& holder) {
  const NotifyConfig& c = v.config;
  std::shared_ptr<Notifier> active = holder.Get();
  return {{"source", v.from_api ? "api" : "havend.conf"},
          {"changed", v.changed ? json(FormatTime(*v.changed * 1000000000,
                                                  TimeStyle::kRfc3339Utc))
                                : json(nullptr)},
          {"changed_by", v.from_api ? json(v.changed_by) : json(nullptr)},
          {"webhook_url", c.webhook_url},
          {"webhook_secret", {{"set", v.webhook_secret_set}}},
          {"smtp_url", c.smtp_url},
          {"smtp_from", c.smtp_from},
          {"smtp_to", c.smtp_to},
          {"smtp_user", c.smtp_user},
          {"smtp_password", {{"set", v.smtp_password_set}}},
          {"daily_report", c.daily_report},
          {"on_success", c.on_success},
          {"active",
           {{"webhook", active != nullptr && active->has_webhook()},
            {"mail", active != nullptr && active->has_mail()}}}};
}

Response Unavailable() {
  return ErrorJson(503, "notification settings are not kept by this havend");
}

Response GetSettings(Services& s, const ApiCall&) {
  if (s.notify_settings == nullptr) return Unavailable();
  auto v = s.notify_settings->Get();
  if (!v.ok()) return StatusResponse(v.status());
  return OkJson(ViewJson(*v, s.notify_settings->holder()));
}

// `field` of `body` into `out` when present: a string (null: "").
std::optional<Response> ReadString(const json& body, const char* field,
                                   std::optional<std::string>* out) {
  if (!body.contains(field)) return std::nullopt;
  const json& v = body[field];
  if (v.is_null()) {
    *out = "";
  } else if (v.is_string()) {
    *out = v.get<std::string>();
  } else {
    return ErrorJson(400, std::string(field) + " must be a string");
  }
  return std::nullopt;
}

Response PutSettings(Services& s, const ApiCall& call) {
  if (s.notify_settings == nullptr) return Unavailable();
  json body = json::parse(call.request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return ErrorJson(400, "the request body must be a JSON object");
  NotifySettingsUpdate u;
  // A secret given as {"set": ...} (GET's shape sent back) is left alone.
  for (const char* secret : {"webhook_secret", "smtp_password"})
    if (body.contains(secret) && body[secret].is_object()) body.erase(secret);
  struct Field {
    const char* name;
    std::optional<std::string>* out;
  };
  for (Field f :
       {Field{"webhook_url", &u.webhook_url},
        Field{"webhook_secret", &u.webhook_secret},
        Field{"smtp_url", &u.smtp_url}, Field{"smtp_from", &u.smtp_from},
        Field{"smtp_user", &u.smtp_user},
        Field{"smtp_password", &u.smtp_password},
        Field{"daily_report", &u.daily_report}})
    if (auto bad = ReadString(body, f.name, f.out)) return *bad;
  if (body.contains("smtp_to")) {
    const json& to = body["smtp_to"];
    std::vector<std::string> list;
    if (to.is_string()) {
      // "a@x, b@y" as a form gives it.
      std::string text = to, item;
      for (char c : text + ",") {
        if (c == ',' || c == ' ' || c == ';') {
          if (!item.empty()) list.push_back(item);
          item.clear();
        } else {
          item += c;
        }
      }
    } else if (to.is_array()) {
      for (const json& a : to) {
        if (!a.is_string())
          return ErrorJson(400, "smtp_to is a list of e-mail addresses");
        list.push_back(a);
      }
    } else if (!to.is_null()) {
      return ErrorJson(400, "smtp_to is a list of e-mail addresses");
    }
    u.smtp_to = std::move(list);
  }
  if (body.contains("on_success")) {
    if (!body["on_success"].is_boolean())
      return ErrorJson(400, "on_success must be true or false");
    u.on_success = body["on_success"].get<bool>();
  }
  Status st = s.notify_settings->Update(u, call.caller.name);
  if (!st.ok()) return StatusResponse(st);
  auto v = s.notify_settings->Get();
  if (!v.ok()) return StatusResponse(v.status());
  return OkJson(ViewJson(*v, s.notify_settings->holder()));
}

Response TestSettings(Services& s, const ApiCall& call) {
  if (s.notify_settings == nullptr) return Unavailable();
  auto results = s.notify_settings->SendTest(call.caller.name);
  if (!results.ok()) return StatusResponse(results.status());
  json list = json::array();
  bool all = true;
  for (const NotifyTestResult& r : *results) {
    all = all && r.sent;
    list.push_back({{"channel", r.channel},
                    {"receiver", r.receiver},
                    {"sent", r.sent},
                    {"error", r.sent ? json(nullptr) : json(r.error)}});
  }
  return OkJson({{"sent", all}, {"results", list}});
}

json Answer(std::string_view description) {
  return {{"description", std::string(description)}};
}

}  // namespace

std::vector<Route> NotifySettingsRoutes(Services& s) {
  const json str = {{"type", "string"}};
  const json secret_in = {{"type", "string"}, {"writeOnly", true}};
  const json body_schema = {{"type", "object"},
                            {"properties",
                             {{"webhook_url", str},
                              {"webhook_secret", secret_in},
                              {"smtp_url", str},
                              {"smtp_from", str},
                              {"smtp_to", {{"type", "array"}, {"items", str}}},
                              {"smtp_user", str},
                              {"smtp_password", secret_in},
                              {"daily_report", str},
                              {"on_success", {{"type", "boolean"}}}}}};
  const std::string view =
      "{source: \"api\"|\"havend.conf\", changed, changed_by, webhook_url, "
      "webhook_secret: {set}, smtp_url, smtp_from, smtp_to: [..], "
      "smtp_user, smtp_password: {set}, daily_report, on_success, active: "
      "{webhook, mail}}";
  auto h = [&s](Response (*f)(Services&, const ApiCall&)) {
    return [&s, f](const ApiCall& call) { return f(s, call); };
  };
  return {
      {"GET",
       "/api/v1/settings/notifications",
       Access::kRole,
       Role::kAdmin,
       "the notification settings in effect (secrets only as set or not)",
       {{"responses", {{"200", Answer(view)}}}},
       h(GetSettings)},
      {"PUT",
       "/api/v1/settings/notifications",
       Access::kRole,
       Role::kAdmin,
       "change the notification settings; they take effect at once",
       {{"requestBody",
         {{"required", true},
          {"content", {{"application/json", {{"schema", body_schema}}}}}}},
        {"responses",
         {{"200", Answer("saved and in effect: the settings as GET shows "
                         "them. A field left out keeps its value; a "
                         "secret given as \"\" is removed")},
          {"400", Answer("a field is wrong (named in the error)")}}}},
       h(PutSettings)},
      {"POST",
       "/api/v1/settings/notifications/test",
       Access::kRole,
       Role::kAdmin,
       "send a test notification through the settings in effect",
       {{"responses",
         {{"200", Answer("{sent: all arrived, results: [{channel: "
                         "\"webhook\"|\"mail\", receiver, sent, error}]}")},
          {"409", Answer("no webhook or SMTP server is set up")}}}},
       h(TestSettings)},
  };
}

}  // namespace haven::appliance
