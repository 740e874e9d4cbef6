#include "base/glob.h"

#include <fnmatch.h>

namespace haven {

bool MatchesGlob(const std::string& glob, const std::string& path) {
  if (glob.find('/') != std::string::npos)
    return fnmatch(glob.c_str(), path.c_str(), FNM_PATHNAME) == 0;
  const size_t slash = path.rfind('/');
  const std::string name =
      path == "/" || slash == std::string::npos ? path : path.substr(slash + 1);
  return fnmatch(glob.c_str(), name.c_str(), 0) == 0;
}

}  // namespace haven
