// The web console's files (appliance/console/: HTML, CSS and JavaScript
// modules, no build step), served by havend next to its API. The console
// talks to havend over /api/v1 only, like any other client.
//
// Every GET or HEAD whose path is not under /api/ and is not /metrics is a
// file of the console directory: "/" is index.html, "/js/app.js" is
// DIR/js/app.js. Only regular files with a known extension are served
// (.html .js .css .svg .png .ico .json .txt); a path segment that starts
// with '.', a symbolic link anywhere under DIR, or a file over 8 MiB is 404.
// The files are public (they hold no data); the data they show comes from
// the API, which checks every caller. Responses carry a Content-Security-
// Policy that lets the pages load only havend's own scripts, styles and
// images and connect only to havend.
#ifndef HAVEN_APPLIANCE_CONSOLE_FILES_H_
#define HAVEN_APPLIANCE_CONSOLE_FILES_H_

#include <string>

#include "appliance/http_message.h"

namespace haven::appliance {

// Where the Debian package installs the console.
inline constexpr char kDefaultConsoleDir[] = "/usr/share/haven/console";

inline constexpr char kConsoleContentSecurityPolicy[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
    "manifest-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'";

// Serves the console from `dir` and passes everything under /api/ and
// /metrics to `api`. When `dir` has no index.html, "/" answers 404 with a
// page that names the directory and the ConsoleDirectory= setting.
Handler MakeConsoleHandler(std::string dir, Handler api);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_CONSOLE_FILES_H_
