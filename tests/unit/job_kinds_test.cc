// The job kinds' params checks (appliance/job_kinds.h): what the API
// refuses with 400 before anything is queued, each naming the field.
#include "appliance/job_kinds.h"

#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using testing_util::StatusIs;

TEST(JobKinds, BackupParams) {
  EXPECT_TRUE(ValidateBackupParams({{"all", true}}).ok());
  EXPECT_TRUE(ValidateBackupParams({{"vms", {"a", "b"}},
                                    {"parallel", 2},
                                    {"limit_read", 12.5},
                                    {"adaptive", true}})
                  .ok());
  EXPECT_TRUE(
      ValidateBackupParams({{"all", true}, {"exclude", {"test-*"}}}).ok());
  EXPECT_THAT(ValidateBackupParams(json::object()),
              StatusIs(Code::kInvalidArgument, HasSubstr("\"all\": true")));
  EXPECT_THAT(ValidateBackupParams({{"all", true}, {"vms", {"a"}}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("not both")));
  EXPECT_THAT(ValidateBackupParams({{"all", true}, {"parallel", 0}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("parallel")));
  EXPECT_THAT(ValidateBackupParams({{"all", true}, {"parallel", "2"}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("parallel")));
  EXPECT_THAT(ValidateBackupParams({{"all", "yes"}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("all")));
  EXPECT_THAT(ValidateBackupParams({{"vms", {1}}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("vms")));
  EXPECT_THAT(ValidateBackupParams({{"vms", {""}}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("vms")));
  EXPECT_THAT(ValidateBackupParams({{"all", true}, {"parralel", 2}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("parralel")));
}

TEST(JobKinds, ForgetParams) {
  EXPECT_TRUE(ValidateForgetParams({{"keep_daily", 7}}).ok());
  EXPECT_TRUE(
      ValidateForgetParams({{"keep_within", "1y6m"}, {"dry_run", true}}).ok());
  EXPECT_THAT(ValidateForgetParams(json::object()),
              StatusIs(Code::kInvalidArgument, HasSubstr("at least one rule")));
  EXPECT_THAT(ValidateForgetParams({{"keep_daily", -1}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("keep_daily")));
  EXPECT_THAT(ValidateForgetParams({{"keep_within", "7x"}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("keep_within")));
  EXPECT_THAT(ValidateForgetParams({{"keep_last", 1}, {"name", 3}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("name")));
}

TEST(JobKinds, GcAndCheckParams) {
  EXPECT_TRUE(ValidateGcParams(json::object()).ok());
  EXPECT_TRUE(ValidateGcParams({{"repack_below", 50}, {"dry_run", true}}).ok());
  EXPECT_THAT(ValidateGcParams({{"max_unused", 101}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("max_unused")));
  EXPECT_TRUE(ValidateCheckParams({{"read_data_percent", 12.5}}).ok());
  EXPECT_THAT(ValidateCheckParams({{"read_data_percent", 150}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("read_data_percent")));
  EXPECT_THAT(ValidateCheckParams({{"read_data", 10}}),
              StatusIs(Code::kInvalidArgument, HasSubstr("read_data")));
}

}  // namespace
}  // namespace haven::appliance
