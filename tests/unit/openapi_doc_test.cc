// docs/openapi.json is the API as havend serves it: the document made from
// the route table (appliance/routes.h). When a route changes, regenerate it
// with `build/havend openapi > docs/openapi.json`; this test fails until
// then. It also checks what every route must declare.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "appliance/routes.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

std::string SourceDir() {
  const char* dir = std::getenv("HAVEN_SOURCE_DIR");
  return dir ? dir : ".";
}

TEST(OpenApiDoc, DocsCopyMatchesTheRouteTable) {
  std::ifstream in(SourceDir() + "/docs/openapi.json");
  ASSERT_TRUE(in.good()) << "docs/openapi.json is missing";
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json docs = nlohmann::json::parse(text.str());
  nlohmann::json made = ApiDocument(docs["info"]["version"].get<std::string>());
  EXPECT_EQ(docs, made) << "docs/openapi.json is stale: run `build/havend "
                           "openapi > docs/openapi.json`";
}

TEST(OpenApiDoc, EveryRouteSaysWhoMayCallItAndWhatItDoes) {
  nlohmann::json doc = ApiDocument("test");
  int operations = 0;
  for (auto& [path, methods] : doc["paths"].items()) {
    for (auto& [method, op] : methods.items()) {
      ++operations;
      EXPECT_FALSE(op.value("summary", "").empty()) << method << " " << path;
      bool is_public = op.contains("security") && op["security"].empty();
      if (!is_public) {
        EXPECT_TRUE(op.contains("x-haven-role")) << method << " " << path;
      }
    }
  }
  // Health, login, this document and (--- agents: registry ---) an
  // agent's enrollment, which carries its one-time token in the body, are
  // the only public routes.
  int public_ops = 0;
  for (auto& [path, methods] : doc["paths"].items())
    for (auto& [method, op] : methods.items())
      if (op.contains("security") && op["security"].empty()) ++public_ops;
  EXPECT_EQ(public_ops, 4);
  EXPECT_GE(operations, 40);
}

}  // namespace
}  // namespace haven::appliance
