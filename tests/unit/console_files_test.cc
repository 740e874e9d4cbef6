// The console's files as havend serves them (appliance/console_files.cc):
// what is served, with which type and policy, what is refused (links,
// hidden files, unknown types, anything outside the folder), and that the
// API and /metrics still reach the API handler.
#include "appliance/console_files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace haven::appliance {
namespace {

namespace fs = std::filesystem;

class ConsoleFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("console_files_test." + std::to_string(getpid()));
    fs::remove_all(root_);
    dir_ = root_ / "console";
    fs::create_directories(dir_ / "js" / "pages");
    Write(dir_ / "index.html", "<!doctype html><title>Haven</title>");
    Write(dir_ / "js" / "app.js", "export const a = 1;");
    Write(dir_ / ".hidden.js", "secret");
    Write(dir_ / "notes.md", "not a console file type");
    Write(root_ / "outside.js", "outside");
    fs::create_symlink(root_ / "outside.js", dir_ / "js" / "link.js");
    fs::create_directory_symlink(root_, dir_ / "up");
    handler_ = MakeConsoleHandler(dir_.string(), [this](const Request& r) {
      api_paths_.push_back(r.path);
      return Response::Json(200, "{\"api\":true}");
    });
  }
  void TearDown() override { fs::remove_all(root_); }

  static void Write(const fs::path& p, const std::string& text) {
    std::ofstream(p) << text;
  }
  Response Get(const std::string& path, const std::string& method = "GET") {
    Request r;
    r.method = method;
    r.path = path;
    r.target = path;
    return handler_(r);
  }
  static std::string HeaderOf(const Response& r, std::string_view name) {
    for (const auto& [n, v] : r.headers)
      if (n == name) return v;
    return "";
  }

  fs::path root_, dir_;
  Handler handler_;
  std::vector<std::string> api_paths_;
};

TEST_F(ConsoleFilesTest, RootIsIndexHtmlWithTheConsolePolicy) {
  Response r = Get("/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "<!doctype html><title>Haven</title>");
  EXPECT_EQ(HeaderOf(r, "Content-Type"), "text/html; charset=utf-8");
  std::string csp = HeaderOf(r, "Content-Security-Policy");
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
}

TEST_F(ConsoleFilesTest, ServesModulesAsJavaScript) {
  Response r = Get("/js/app.js");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "export const a = 1;");
  EXPECT_EQ(HeaderOf(r, "Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(Get("/js/app.js", "HEAD").status, 200);
}

TEST_F(ConsoleFilesTest, RefusesWhatIsNotAConsoleFile) {
  EXPECT_EQ(Get("/.hidden.js").status, 404);
  EXPECT_EQ(Get("/notes.md").status, 404);
  EXPECT_EQ(Get("/js/link.js").status, 404) << "a link leads out";
  EXPECT_EQ(Get("/up/outside.js").status, 404) << "a linked folder";
  EXPECT_EQ(Get("/js/missing.js").status, 404);
  EXPECT_EQ(Get("/js").status, 404);
  EXPECT_EQ(Get("/js//app.js").status, 404);
  for (const Response& r : {Get("/js/link.js"), Get("/up/outside.js")})
    EXPECT_EQ(r.body.find("outside"), std::string::npos);
}

TEST_F(ConsoleFilesTest, OnlyGetAndHead) {
  Response r = Get("/index.html", "POST");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(HeaderOf(r, "Allow"), "GET, HEAD");
}

TEST_F(ConsoleFilesTest, ApiAndMetricsGoToTheApi) {
  EXPECT_EQ(Get("/api/v1/me").body, "{\"api\":true}");
  EXPECT_EQ(Get("/api/v1/login", "POST").body, "{\"api\":true}");
  EXPECT_EQ(Get("/metrics").body, "{\"api\":true}");
  EXPECT_EQ(Get("/api").body, "{\"api\":true}");
  EXPECT_EQ(api_paths_.size(), 4u);
}

TEST_F(ConsoleFilesTest, MissingFolderIsNamedOnTheFirstPage) {
  Handler h = MakeConsoleHandler((root_ / "nowhere").string(),
                                 [](const Request&) { return Response{}; });
  Request r;
  r.method = "GET";
  r.path = "/";
  Response resp = h(r);
  EXPECT_EQ(resp.status, 404);
  EXPECT_NE(resp.body.find((root_ / "nowhere").string()), std::string::npos);
  EXPECT_NE(resp.body.find("ConsoleDirectory="), std::string::npos);
}

}  // namespace
}  // namespace haven::appliance
