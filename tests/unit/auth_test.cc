// Accounts, tokens, sessions, CSRF, the login limiter and the audit log
// (appliance/credentials.h, auth.h, login_limiter.h, audit.h) over a real
// SQLite state database and a clock the test moves.
#include "appliance/auth.h"

#include <set>

#include "appliance/audit.h"
#include "appliance/credentials.h"
#include "appliance/login_limiter.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kPassword[] = "correct horse battery";

// Cheap scrypt for the tests that are not about its cost.
PasswordHashParams Fast() {
  PasswordHashParams p;
  p.log_n = 10;
  p.p = 1;
  return p;
}

TEST(CredentialsTest, PasswordHashVerifiesAndRefuses) {
  auto hash = HashPassword(kPassword);  // the default cost, once
  ASSERT_THAT(hash, IsOk());
  EXPECT_THAT(*hash, StartsWith("$scrypt$ln=16,r=8,p=2$"));
  EXPECT_EQ(hash->find(kPassword), std::string::npos);
  EXPECT_EQ(VerifyPassword(kPassword, *hash).value(), true);
  EXPECT_EQ(VerifyPassword("correct horse batterz", *hash).value(), false);
  EXPECT_EQ(VerifyPassword("", *hash).value(), false);
}

TEST(CredentialsTest, SaltMakesEveryHashDifferent) {
  auto a = HashPassword(kPassword, Fast()), b = HashPassword(kPassword, Fast());
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(VerifyPassword(kPassword, *a).value());
  EXPECT_TRUE(VerifyPassword(kPassword, *b).value());
}

TEST(CredentialsTest, PasswordLengthIsChecked) {
  EXPECT_THAT(HashPassword("short", Fast()),
              StatusIs(Code::kInvalidArgument, HasSubstr("too short")));
  EXPECT_THAT(HashPassword(std::string(2000, 'x'), Fast()),
              StatusIs(Code::kInvalidArgument, HasSubstr("longer than")));
  // Twelve characters, more bytes: counted as characters.
  EXPECT_THAT(HashPassword("ääääääääääää", Fast()), IsOk());
}

TEST(CredentialsTest, MalformedStoredHashIsDataLoss) {
  std::string good = HashPassword(kPassword, Fast()).value();
  for (std::string bad :
       {std::string(""), std::string("plain"), "$pbkdf2" + good.substr(7),
        std::string("$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$") +
            std::string(43, 'A'),
        std::string("$scrypt$ln=10,r=8$c2FsdHNhbHQ$") + std::string(43, 'A'),
        good + "$", good.substr(0, good.size() - 2)}) {
    EXPECT_THAT(VerifyPassword(kPassword, bad),
                StatusIs(Code::kDataLoss, HasSubstr("not one havend wrote")))
        << bad;
  }
}

TEST(CredentialsTest, TokensAreRandomWithAPrefix) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string t = NewApiToken();
    EXPECT_THAT(t, StartsWith("haven_"));
    EXPECT_EQ(t.size(), 6u + 43u);  // 256 bits in base64url
    EXPECT_EQ(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                  "qrstuvwxyz0123456789-_",
                                  6),
              std::string::npos);
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), 100u);
  std::string password = NewRandomPassword();
  EXPECT_EQ(password.size(), 24u);
  EXPECT_NE(password, NewRandomPassword());
  EXPECT_THAT(HashPassword(password, Fast()), IsOk());
  EXPECT_EQ(Base64Url("\xfb\xff"), "-_8");
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = StateDb::Open(dir_.Sub("havend.db")).value();
    AuthOptions o;
    o.password_hash = Fast();
    o.session_idle_seconds = 600;
    o.session_absolute_seconds = 3600;
    o.now = [this] { return now_; };
    auth_ = AuthService::Open(*db_, o).value();
    authenticate_ = auth_->MakeAuthenticator([this](const Caller& c,
                                                    const Request&, int status,
                                                    const std::string& why) {
      refusals_.push_back(c.name + " " + std::to_string(status) + " " + why);
    });
  }

  Request Get(const std::string& header = "", const std::string& value = "") {
    Request r;
    r.method = "GET";
    r.path = "/api/v1/me";
    r.peer = "192.0.2.7:40000";
    if (!header.empty()) r.headers.emplace_back(header, value);
    return r;
  }
  Request Bearer(const std::string& token) {
    return Get("authorization", "Bearer " + token);
  }
  Request WithCookie(const std::string& session_id) {
    return Get("cookie", "theme=dark; haven_session=" + session_id);
  }
  // The caller, or the HTTP status of the refusal.
  std::variant<Caller, int> Check(const Request& r, bool state_changing) {
    auto who = authenticate_(r, state_changing, nullptr);
    if (auto* resp = std::get_if<Response>(&who)) return resp->status;
    return std::get<Caller>(who);
  }
  int StatusOf(const Request& r, bool state_changing = false) {
    auto v = Check(r, state_changing);
    return std::holds_alternative<int>(v) ? std::get<int>(v) : 200;
  }
  Caller CallerOf(const Request& r, bool state_changing = false) {
    auto v = Check(r, state_changing);
    EXPECT_TRUE(std::holds_alternative<Caller>(v))
        << "refused " << std::get<int>(v);
    return std::holds_alternative<Caller>(v) ? std::get<Caller>(v) : Caller{};
  }
  LoginResult LoginAs(const std::string& password,
                      const std::string& peer = "192.0.2.7:40000") {
    auto r = auth_->Login(kAdminUser, password, peer);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : LoginResult{};
  }

  TempDir dir_;
  int64_t now_ = 1'800'000'000;
  std::unique_ptr<StateDb> db_;
  std::unique_ptr<AuthService> auth_;
  Authenticator authenticate_;
  std::vector<std::string> refusals_;
};

TEST_F(AuthTest, TokenRolesAndNames) {
  for (Role role : {Role::kAuditor, Role::kOperator, Role::kAdmin}) {
    std::string name = "t-" + std::string(RoleName(role));
    auto token = auth_->CreateToken(name, role, 0, "test");
    ASSERT_THAT(token, IsOk());
    Caller c = CallerOf(Bearer(token->secret), true);  // no CSRF needed
    EXPECT_EQ(c.role, role);
    EXPECT_EQ(c.name, "token:" + name);
    EXPECT_FALSE(c.session);
  }
  EXPECT_EQ(StatusOf(Get()), 401);
  EXPECT_EQ(StatusOf(Bearer("haven_" + std::string(43, 'A'))), 401);
  EXPECT_EQ(StatusOf(Bearer("not-ours")), 401);
  EXPECT_EQ(StatusOf(Get("authorization", "Basic YWRtaW46eA==")), 401);
  EXPECT_THAT(auth_->CreateToken("t-admin", Role::kAdmin, 0, "test"),
              StatusIs(Code::kAlreadyExists, HasSubstr("t-admin")));
  EXPECT_THAT(auth_->CreateToken("bad name", Role::kAdmin, 0, "test"),
              StatusIs(Code::kInvalidArgument, HasSubstr("token names")));
  EXPECT_THAT(auth_->CreateToken("x", Role::kAdmin, 4000, "test"),
              StatusIs(Code::kInvalidArgument, HasSubstr("expires_days")));
}

TEST_F(AuthTest, OnlyTheTokensHashIsStored) {
  auto token = auth_->CreateToken("ci", Role::kOperator, 0, "test").value();
  auto rows = db_->Query("SELECT * FROM auth_tokens").value();
  ASSERT_EQ(rows.size(), 1u);
  bool hash_found = false;
  for (size_t i = 0; i < rows[0].columns.size(); ++i) {
    EXPECT_EQ(rows[0].Text(i).find(token.secret.substr(6)), std::string::npos);
    hash_found |= rows[0].Text(i) == Sha256Hex(token.secret);
  }
  EXPECT_TRUE(hash_found);
}

TEST_F(AuthTest, TokenExpires) {
  auto token = auth_->CreateToken("week", Role::kAuditor, 7, "test").value();
  ASSERT_TRUE(token.info.expires.has_value());
  EXPECT_EQ(*token.info.expires, now_ + 7 * 86400);
  now_ += 7 * 86400 - 1;
  EXPECT_EQ(StatusOf(Bearer(token.secret)), 200);
  now_ += 1;
  EXPECT_EQ(StatusOf(Bearer(token.secret)), 401);
  // An expired token's name may be used again.
  EXPECT_THAT(auth_->CreateToken("week", Role::kAuditor, 7, "test"), IsOk());
}

TEST_F(AuthTest, RevokedTokenIsRefusedAtOnce) {
  auto token = auth_->CreateToken("ci", Role::kAdmin, 0, "test").value();
  EXPECT_EQ(StatusOf(Bearer(token.secret)), 200);
  ASSERT_THAT(auth_->RevokeToken(token.info.id), IsOk());
  EXPECT_EQ(StatusOf(Bearer(token.secret)), 401);
  EXPECT_THAT(auth_->RevokeToken(token.info.id), IsOk());  // twice is fine
  EXPECT_THAT(auth_->RevokeToken(999),
              StatusIs(Code::kNotFound, HasSubstr("999")));
  auto list = auth_->ListTokens().value();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].revoked, now_);
  EXPECT_EQ(list[0].last_used, now_);
  // Revoked: its name is free again.
  EXPECT_THAT(auth_->CreateToken("ci", Role::kAdmin, 0, "test"), IsOk());
}

TEST_F(AuthTest, SessionNeedsCsrfTokenToChangeState) {
  ASSERT_THAT(auth_->SetPassword(kAdminUser, kPassword, Role::kAdmin), IsOk());
  LoginResult login = LoginAs(kPassword);
  ASSERT_EQ(login.outcome, LoginResult::Outcome::kOk);
  EXPECT_GE(login.session_id.size(), 43u);  // >= 256 bits
  EXPECT_EQ(login.session.csrf_token, CsrfTokenFor(login.session_id));
  EXPECT_NE(login.session.csrf_token, Sha256Hex(login.session_id));

  Caller c = CallerOf(WithCookie(login.session_id));  // GET: no CSRF needed
  EXPECT_EQ(c.name, "admin");
  EXPECT_EQ(c.role, Role::kAdmin);
  EXPECT_TRUE(c.session);

  Request post = WithCookie(login.session_id);
  post.method = "POST";
  EXPECT_EQ(StatusOf(post, true), 403);
  // A wrong token: the right one with its first digit changed (a fixed
  // "0" would be the right one for one session in 16).
  const std::string& right = login.session.csrf_token;
  post.headers.emplace_back("x-csrf-token",
                            (right[0] == '0' ? "1" : "0") + right.substr(1));
  EXPECT_EQ(StatusOf(post, true), 403);
  ASSERT_EQ(refusals_.size(), 2u);
  EXPECT_EQ(refusals_[0], "admin 403 no X-CSRF-Token header");
  EXPECT_EQ(refusals_[1], "admin 403 wrong X-CSRF-Token header");
  post.headers.back().second = login.session.csrf_token;
  EXPECT_EQ(StatusOf(post, true), 200);

  // Stored hashed, and only the hash.
  auto row = db_->QueryOne("SELECT hash FROM auth_sessions").value();
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->Text(0), Sha256Hex(login.session_id));
  EXPECT_EQ(StatusOf(WithCookie(row->Text(0))), 401);
}

TEST_F(AuthTest, SessionIdleAndAbsoluteExpiry) {
  ASSERT_THAT(auth_->SetPassword(kAdminUser, kPassword, Role::kAdmin), IsOk());
  std::string idle = LoginAs(kPassword).session_id;
  now_ += 601;  // idle limit 600 s
  EXPECT_EQ(StatusOf(WithCookie(idle)), 401);

  std::string busy = LoginAs(kPassword).session_id;
  int64_t started = now_;
  while (now_ + 300 <= started + 3600) {  // used every 5 minutes
    now_ += 300;
    EXPECT_EQ(StatusOf(WithCookie(busy)), 200) << now_ - started;
  }
  now_ = started + 3601;  // absolute limit 1 h
  EXPECT_EQ(StatusOf(WithCookie(busy)), 401);
}

TEST_F(AuthTest, LogoutAndPasswordChangeEndSessions) {
  ASSERT_THAT(auth_->SetPassword(kAdminUser, kPassword, Role::kAdmin), IsOk());
  std::string a = LoginAs(kPassword).session_id;
  std::string b = LoginAs(kPassword).session_id;
  ASSERT_THAT(auth_->Logout(a), IsOk());
  EXPECT_EQ(StatusOf(WithCookie(a)), 401);
  EXPECT_EQ(StatusOf(WithCookie(b)), 200);
  ASSERT_THAT(
      auth_->SetPassword(kAdminUser, "another long password", Role::kAdmin),
      IsOk());
  EXPECT_EQ(StatusOf(WithCookie(b)), 401);
  EXPECT_EQ(LoginAs(kPassword).outcome, LoginResult::Outcome::kRefused);
  EXPECT_EQ(LoginAs("another long password").outcome,
            LoginResult::Outcome::kOk);
}

TEST_F(AuthTest, FailedLoginsAreRateLimited) {
  ASSERT_THAT(auth_->SetPassword(kAdminUser, kPassword, Role::kAdmin), IsOk());
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(LoginAs("wrong password!").outcome,
              LoginResult::Outcome::kRefused);
  // The right password is not even checked while the address must wait.
  LoginResult limited = LoginAs(kPassword);
  EXPECT_EQ(limited.outcome, LoginResult::Outcome::kLimited);
  EXPECT_EQ(limited.retry_after, 1);
  now_ += 1;
  EXPECT_EQ(LoginAs("wrong password!").outcome, LoginResult::Outcome::kRefused);
  EXPECT_EQ(LoginAs(kPassword).retry_after, 2);  // doubled
  // Another address is not held up by this one's failures...
  EXPECT_EQ(LoginAs(kPassword, "198.51.100.1:1").outcome,
            LoginResult::Outcome::kOk);
  // ...and a success clears the count.
  now_ += 2;
  EXPECT_EQ(LoginAs(kPassword).outcome, LoginResult::Outcome::kOk);
  EXPECT_EQ(LoginAs("wrong password!").outcome, LoginResult::Outcome::kRefused);
  EXPECT_EQ(LoginAs(kPassword).outcome, LoginResult::Outcome::kOk);
  // An unknown user costs a hash and is refused like a wrong password.
  auto unknown = auth_->Login("nobody", kPassword, "192.0.2.7:1");
  ASSERT_THAT(unknown, IsOk());
  EXPECT_EQ(unknown->outcome, LoginResult::Outcome::kRefused);
}

TEST(LoginLimiterTest, BackoffPerAddressAndPerUser) {
  LoginLimiter limiter;
  int64_t t = 1000;
  for (int i = 0; i < 4; ++i) limiter.Failed("a", "admin", t);
  EXPECT_EQ(limiter.RetryAfter("a", "admin", t), 0);
  limiter.Failed("a", "admin", t);
  EXPECT_EQ(limiter.RetryAfter("a", "admin", t), 1);
  for (int i = 0; i < 20; ++i) limiter.Failed("a", "admin", t);
  EXPECT_EQ(limiter.RetryAfter("a", "admin", t), 300);  // capped
  EXPECT_EQ(limiter.RetryAfter("a", "admin", t + 299), 1);
  EXPECT_EQ(limiter.RetryAfter("a", "admin", t + 300), 0);
  // The user is held up from any address (25 failures > 10) ...
  EXPECT_EQ(limiter.RetryAfter("b", "admin", t), 300);
  // ... another user from another address is not.
  EXPECT_EQ(limiter.RetryAfter("b", "operator", t), 0);
  limiter.Succeeded("a", "admin");
  EXPECT_EQ(limiter.RetryAfter("a", "admin", t), 0);
  // Old failures are forgotten after an hour without one.
  for (int i = 0; i < 5; ++i) limiter.Failed("c", "x", t);
  limiter.Failed("d", "y", t + 3601);
  EXPECT_EQ(limiter.RetryAfter("c", "x", t + 3601), 0);

  EXPECT_EQ(PeerAddress("127.0.0.1:5123"), "127.0.0.1");
  EXPECT_EQ(PeerAddress("[::1]:5123"), "[::1]");
}

TEST(AuditLogTest, FilterByTimeAndPage) {
  TempDir dir;
  auto db = StateDb::Open(dir.Sub("havend.db")).value();
  int64_t now = 5000;
  auto log = AuditLog::Open(*db, [&now] { return now; }).value();
  for (int i = 0; i < 10; ++i, now += 10)
    ASSERT_THAT(log->Record({0, 0, "admin", "127.0.0.1:1", "POST",
                             "/api/v1/x/" + std::to_string(i), 200, "x"}),
                IsOk());
  AuditQuery q;
  q.since = 5020;
  q.until = 5060;
  auto in_range = log->List(q).value();
  ASSERT_EQ(in_range.size(), 4u);
  EXPECT_EQ(in_range.front().path, "/api/v1/x/5");  // newest first
  EXPECT_EQ(in_range.back().path, "/api/v1/x/2");

  AuditQuery page;
  page.limit = 3;
  auto first = log->List(page).value();
  ASSERT_EQ(first.size(), 3u);
  page.before_id = first.back().id;
  auto second = log->List(page).value();
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(second.front().id, first.back().id - 1);
  page.limit = 0;
  EXPECT_THAT(log->List(page),
              StatusIs(Code::kInvalidArgument, HasSubstr("limit")));
  EXPECT_EQ(AuditEntryJson(first.front()).at("time"), "1970-01-01T01:24:50Z");
}

// A download form (POST .../archive from a plain HTML form) carries the
// session's CSRF token in its body: the dispatcher hands the field
// csrf_token to the authenticator only for a route with csrf_from_form.
TEST_F(AuthTest, FormCsrfTokenOnlyForRoutesThatTakeIt) {
  ASSERT_THAT(auth_->SetPassword(kAdminUser, kPassword, Role::kAdmin), IsOk());
  LoginResult login = LoginAs(kPassword);
  ASSERT_EQ(login.outcome, LoginResult::Outcome::kOk);
  const std::string& token = login.session.csrf_token;
  ApiOptions options;
  options.authenticate = authenticate_;
  std::vector<std::string> seen;  // the form fields each handler got
  auto record = [&seen](const ApiCall& c) {
    std::string fields = c.form ? "form:" : "no form";
    if (c.form)
      for (const auto& [k, v] : *c.form) fields += " " + k + "=" + v;
    seen.push_back(fields);
    return OkJson({{"ok", true}});
  };
  Route archive{"POST",         "/api/v1/archive", Access::kRole,
                Role::kAuditor, "a file",          {},
                record};
  archive.csrf_from_form = true;
  std::vector<Route> routes = {
      archive,
      {"POST",
       "/api/v1/things",
       Access::kRole,
       Role::kOperator,
       "make",
       {},
       record},
  };
  Handler handler = MakeApiHandler(routes, options).value();
  auto form = [&](const std::string& path, const std::string& body) {
    Request r = WithCookie(login.session_id);
    r.method = "POST";
    r.path = path;
    r.headers.emplace_back("content-type",
                           "application/x-www-form-urlencoded; charset=UTF-8");
    r.body = body;
    return r;
  };
  const std::string wrong = (token[0] == '0' ? "1" : "0") + token.substr(1);

  // Right token: the handler runs and gets the other fields, not the token.
  Response ok = handler(
      form("/api/v1/archive", "request=%7B%22a%22%3A1%7D&csrf_token=" + token));
  EXPECT_EQ(ok.status, 200);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], "form: request={\"a\":1}");

  // Wrong, empty or missing token: 403 in words, and the refusal is heard.
  Response bad =
      handler(form("/api/v1/archive", "request=x&csrf_token=" + wrong));
  EXPECT_EQ(bad.status, 403);
  EXPECT_THAT(bad.body, HasSubstr("wrong csrf_token form field"));
  // The browser shows it in place of the console: a sentence, not JSON.
  EXPECT_THAT(bad.body, HasSubstr("could not answer this download (HTTP 403"));
  EXPECT_THAT(bad.headers, Contains(std::pair<std::string, std::string>(
                               "content-type", "text/plain; charset=utf-8")));
  EXPECT_EQ(handler(form("/api/v1/archive", "request=x&csrf_token=")).status,
            403);
  Response none = handler(form("/api/v1/archive", "request=x"));
  EXPECT_EQ(none.status, 403);
  EXPECT_THAT(none.body, HasSubstr("no X-CSRF-Token header"));
  EXPECT_EQ(seen.size(), 1u);
  ASSERT_EQ(refusals_.size(), 3u);
  EXPECT_EQ(refusals_[0], "admin 403 wrong csrf_token form field");
  EXPECT_EQ(refusals_[2], "admin 403 no X-CSRF-Token header");

  // The token in the query string is not a form field: refused.
  Request in_url = form("/api/v1/archive", "request=x");
  in_url.query = "csrf_token=" + token;
  EXPECT_EQ(handler(in_url).status, 403);

  // A header, when sent, is what counts: a wrong one is not saved by a
  // right field.
  Request both = form("/api/v1/archive", "request=x&csrf_token=" + token);
  both.headers.emplace_back("x-csrf-token", wrong);
  EXPECT_EQ(handler(both).status, 403);

  // The right token in the body of another content type is no form field.
  Request json = form("/api/v1/archive", "csrf_token=" + token);
  json.headers[1].second = "application/json";
  EXPECT_EQ(handler(json).status, 403);

  // Another route ignores the field: the right token in a form is refused.
  Response other = handler(form("/api/v1/things", "csrf_token=" + token));
  EXPECT_EQ(other.status, 403);
  EXPECT_THAT(other.body, HasSubstr("{\"error\":"));
  EXPECT_THAT(other.body, HasSubstr("no X-CSRF-Token header"));
  EXPECT_EQ(seen.size(), 1u);

  // The route still takes the header, with no form.
  Request header = WithCookie(login.session_id);
  header.method = "POST";
  header.path = "/api/v1/archive";
  header.headers.emplace_back("x-csrf-token", token);
  EXPECT_EQ(handler(header).status, 200);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], "no form");

  // A form with a bad escape has no field to read the token from.
  EXPECT_EQ(handler(form("/api/v1/archive", "request=%zz&csrf_token=" + token))
                .status,
            403);

  // Bearer tokens need no CSRF token, form or not.
  auto bearer = auth_->CreateToken("ci", Role::kAuditor, 0, "t").value();
  Request tok = form("/api/v1/archive", "request=y");
  tok.headers = {{"authorization", "Bearer " + bearer.secret},
                 {"content-type", "application/x-www-form-urlencoded"}};
  EXPECT_EQ(handler(tok).status, 200);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2], "form: request=y");
  tok.body = "request=%zz";
  Response escape = handler(tok);
  EXPECT_EQ(escape.status, 400);
  EXPECT_THAT(escape.body, HasSubstr("form body"));
}

// The dispatcher with this authenticator and audit sink: state-changing
// requests are written down with their status, reads are not.
TEST_F(AuthTest, ApiHandlerAuditsStateChangingRequests) {
  auto audit = AuditLog::Open(*db_, [this] { return now_; }).value();
  ApiOptions options;
  options.authenticate = authenticate_;
  options.audit = audit->Sink();
  auto ok = [](const ApiCall&) { return OkJson({{"ok", true}}); };
  std::vector<Route> routes = {
      {"GET", "/api/v1/things", Access::kRole, Role::kAuditor, "list", {}, ok},
      {"POST",
       "/api/v1/things",
       Access::kRole,
       Role::kOperator,
       "make things",
       {},
       ok},
  };
  Handler handler = MakeApiHandler(routes, options).value();
  auto auditor = auth_->CreateToken("a", Role::kAuditor, 0, "t").value();
  auto operator_ = auth_->CreateToken("o", Role::kOperator, 0, "t").value();
  Request r = Bearer(operator_.secret);
  r.path = "/api/v1/things";
  EXPECT_EQ(handler(r).status, 200);
  r.method = "POST";
  EXPECT_EQ(handler(r).status, 200);
  r.headers = {{"authorization", "Bearer " + auditor.secret}};
  EXPECT_EQ(handler(r).status, 403);
  r.headers.clear();
  EXPECT_EQ(handler(r).status, 401);
  auto rows = audit->List({}).value();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].who, "token:a");
  EXPECT_EQ(rows[0].status, 403);
  EXPECT_EQ(rows[1].who, "token:o");
  EXPECT_EQ(rows[1].status, 200);
  EXPECT_EQ(rows[1].method, "POST");
  EXPECT_EQ(rows[1].path, "/api/v1/things");
  EXPECT_EQ(rows[1].detail, "make things");
  EXPECT_EQ(rows[1].peer, "192.0.2.7:40000");
}

}  // namespace
}  // namespace haven::appliance
