// A host agent runs only restore plans it made itself
// (agent/agent_vm_tasks.h): an appliance cannot hand it a plan of its own.
#include "agent/agent_vm_tasks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/unit/test_util.h"

namespace haven::agent {
namespace {

using ::testing::HasSubstr;
using testing_util::TempDir;

TEST(AgentPlansTest, OnlyAPlanThisAgentMadeRuns) {
  TempDir dir;
  nlohmann::json plan = {
      {"vms", {{{"name", "web1"}, {"disks", {{{"path", "/srv/a.qcow2"}}}}}}}};
  EXPECT_EQ(CheckPlanIsOurs(dir.path(), plan).code(), Code::kPermissionDenied);
  ASSERT_TRUE(RememberPlan(dir.path(), plan).ok());
  EXPECT_TRUE(CheckPlanIsOurs(dir.path(), plan).ok());
  // The same plan with one path changed is not ours.
  nlohmann::json other = plan;
  other["vms"][0]["disks"][0]["path"] = "/etc/shadow";
  Status s = CheckPlanIsOurs(dir.path(), other);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("did not make"));
  // Remembered privately.
  struct stat st;
  ASSERT_EQ(stat((dir.path() + "/plans").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

}  // namespace
}  // namespace haven::agent
