// What a schedule may say: every bad field is refused with a message that
// names it; a change keeps the fields it does not give.
#include "appliance/schedule_spec.h"

#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using nlohmann::json;
using ::testing::HasSubstr;

bool Known(std::string_view name) { return name == "main"; }

json Backup() {
  return {{"name", "nightly"},
          {"calendar", "Mon..Fri 02:00"},
          {"kind", "backup"},
          {"repository", "main"},
          {"params", {{"all", true}, {"exclude", {"test-*"}}}}};
}

Status Parse(json body) {
  return ParseScheduleSpec(body, nullptr, Known).status();
}

TEST(ScheduleSpecTest, AcceptsEachKindWithDefaults) {
  auto b = ParseScheduleSpec(Backup(), nullptr, Known);
  ASSERT_THAT(b.status(), IsOk());
  EXPECT_EQ(b->name, "nightly");
  EXPECT_TRUE(b->persistent);
  EXPECT_TRUE(b->enabled);
  EXPECT_EQ(b->random_delay_seconds, 0);
  EXPECT_TRUE(b->retention.is_null());
  json forget = {{"name", "thin"},
                 {"calendar", "weekly"},
                 {"kind", "forget"},
                 {"repository", "main"},
                 {"params", {{"keep_daily", 7}, {"keep_within", "1y6m"}}}};
  EXPECT_THAT(Parse(forget), IsOk());
  json check = {{"name", "check-10"},
                {"calendar", "Sun 04:00"},
                {"kind", "check"},
                {"repository", "main"},
                {"params", {{"read_data_percent", 10}}}};
  EXPECT_THAT(Parse(check), IsOk());
  EXPECT_THAT(Parse({{"name", "gc"},
                     {"calendar", "monthly"},
                     {"kind", "gc"},
                     {"repository", "main"}}),
              IsOk());
  json vms = Backup();
  vms["params"] = {{"vms", {"web1", "db1"}}, {"parallel", 4}};
  vms["retention"] = {{"keep_last", 3}};
  vms["random_delay_seconds"] = 900;
  vms["persistent"] = false;
  EXPECT_THAT(Parse(vms), IsOk());
}

TEST(ScheduleSpecTest, RefusesBadFieldsNamingThem) {
  struct Case {
    const char* field;
    json value;
    const char* message;
  };
  const Case cases[] = {
      {"calendar", "*-*-* 25:00",
       "calendar: calendar event \"*-*-* 25:00\": hour 25 is out of range"},
      {"calendar", 7, "calendar: must be a string"},
      {"kind", "restore-vm",
       "kind: \"restore-vm\" is not a job kind a schedule runs"},
      {"repository", "elsewhere",
       "repository: no repository named \"elsewhere\" is configured"},
      {"name", "../x", "name: \"../x\" may hold only letters"},
      {"name", "", "name: must be 1 to 64 characters"},
      {"random_delay_seconds", 86401,
       "random_delay_seconds: must be an integer from 0 to 86400"},
      {"random_delay_seconds", -1, "random_delay_seconds: must be an integer"},
      {"persistent", "yes", "persistent: must be true or false"},
      {"retention", json{{"keep_daily", 0}},
       "retention: a retention policy needs at least one rule"},
      {"retention", json{{"keep_dayly", 3}},
       "retention: unknown field \"keep_dayly\""},
      {"params", json{{"all", true}, {"vms", {"a"}}},
       "params: give either \"all\": true or \"vms\""},
      {"params", json::object(),
       "params: give either \"all\": true or \"vms\""},
      {"params", json{{"vms", json::array()}},
       "params.vms: must name at least one VM"},
      {"params", json{{"vms", {"a", 3}}}, "params.vms[1]: must be a string"},
      {"params", json{{"vms", {"a\nb"}}},
       "params.vms[0]: \"a\\x0ab\" holds a control character"},
      {"params", json{{"all", false}}, "params.all: must be true"},
      {"params", json{{"all", true}, {"parallel", 99}},
       "params.parallel: must be an integer from 1 to 32"},
      {"params", json{{"all", true}, {"speed", 1}},
       "params: unknown field \"speed\""},
      {"params", json::array(), "params: must be a JSON object"},
  };
  for (const Case& c : cases) {
    json body = Backup();
    body[c.field] = c.value;
    EXPECT_THAT(Parse(body),
                StatusIs(Code::kInvalidArgument, HasSubstr(c.message)))
        << c.field << " = " << c.value.dump();
  }
  json body = Backup();
  body["when"] = "daily";
  EXPECT_THAT(Parse(body), StatusIs(Code::kInvalidArgument,
                                    HasSubstr("body: unknown field \"when\"")));
  for (const char* field : {"name", "calendar", "kind", "repository"}) {
    json missing = Backup();
    missing.erase(field);
    EXPECT_THAT(Parse(missing),
                StatusIs(Code::kInvalidArgument,
                         HasSubstr(std::string(field) + ": is required")));
  }
  json forget = {{"name", "f"},
                 {"calendar", "daily"},
                 {"kind", "forget"},
                 {"repository", "main"},
                 {"params", {{"keep_within", "5x"}}}};
  EXPECT_THAT(Parse(forget),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("params.keep_within: bad duration \"5x\"")));
  forget["params"] = {{"keep_last", 2}};
  forget["retention"] = {{"keep_last", 2}};
  EXPECT_THAT(Parse(forget),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("retention: only a backup schedule")));
  json check = {{"name", "c"},
                {"calendar", "daily"},
                {"kind", "check"},
                {"repository", "main"},
                {"params", {{"read_data_percent", 101}}}};
  EXPECT_THAT(
      Parse(check),
      StatusIs(
          Code::kInvalidArgument,
          HasSubstr(
              "params.read_data_percent: must be a number from 0 to 100")));
  json gc = {{"name", "g"},
             {"calendar", "daily"},
             {"kind", "gc"},
             {"repository", "main"},
             {"params", {{"all", true}}}};
  EXPECT_THAT(
      Parse(gc),
      StatusIs(
          Code::kInvalidArgument,
          HasSubstr("params: unknown field \"all\" (known: repack_below")));
  EXPECT_THAT(
      ParseScheduleSpec(json::array(), nullptr, Known).status(),
      StatusIs(Code::kInvalidArgument, HasSubstr("must be a JSON object")));
}

TEST(ScheduleSpecTest, ChangeKeepsWhatItDoesNotGive) {
  auto base = ParseScheduleSpec(Backup(), nullptr, Known);
  ASSERT_THAT(base.status(), IsOk());
  auto changed = ParseScheduleSpec({{"calendar", "03:30"}, {"enabled", false}},
                                   &*base, Known);
  ASSERT_THAT(changed.status(), IsOk());
  EXPECT_EQ(changed->calendar, "03:30");
  EXPECT_FALSE(changed->enabled);
  EXPECT_EQ(changed->name, "nightly");
  EXPECT_EQ(changed->params, base->params);
  // Changing the kind alone leaves the backup's params, which gc refuses.
  EXPECT_THAT(
      ParseScheduleSpec({{"kind", "gc"}}, &*base, Known).status(),
      StatusIs(Code::kInvalidArgument, HasSubstr("params: unknown field")));
  EXPECT_THAT(ParseScheduleSpec({{"kind", "gc"}, {"params", json::object()}},
                                &*base, Known)
                  .status(),
              IsOk());
  // A retention policy is removed with null.
  base->retention = {{"keep_last", 3}};
  auto cleared = ParseScheduleSpec({{"retention", nullptr}}, &*base, Known);
  ASSERT_THAT(cleared.status(), IsOk());
  EXPECT_TRUE(cleared->retention.is_null());
}

TEST(ScheduleSpecTest, ParamsOfTheJobKinds) {
  auto with = [](const char* kind, json params) {
    return Parse({{"name", "s"},
                  {"calendar", "daily"},
                  {"kind", kind},
                  {"repository", "main"},
                  {"params", params}});
  };
  EXPECT_THAT(with("gc", {{"max_unused", 150}}),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("params.max_unused: must be a number from 0 "
                                 "to 100")));
  EXPECT_THAT(with("gc", {{"repack_below", 10}, {"dry_run", false}}), IsOk());
  EXPECT_THAT(with("forget", {{"keep_last", 2}, {"name", "web1"}}), IsOk());
  EXPECT_THAT(with("forget", {{"name", "web1"}}),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("params: a retention policy needs at least "
                                 "one rule")));
  EXPECT_THAT(with("backup", {{"all", true}, {"limit_read", "50M"}}),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("params.limit_read: must be a number from 0 "
                                 "to 1e+06")));
  EXPECT_THAT(with("backup", {{"all", true}, {"full", 1}}),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("params.full: must be true or false")));
  EXPECT_THAT(
      with("backup", {{"all", true}, {"full", true}, {"limit_read", 50}}),
      IsOk());
}

}  // namespace
}  // namespace haven::appliance
