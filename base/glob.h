// The glob rule of Haven's patterns (file backup --exclude, `restore files`
// patterns, `backup vm --exclude`).
#ifndef HAVEN_BASE_GLOB_H_
#define HAVEN_BASE_GLOB_H_

#include <string>

namespace haven {

// A glob without '/' matches the last component of `path` (a file's name,
// a VM's name); one with '/' matches the whole absolute path, '*' not
// crossing '/' (fnmatch FNM_PATHNAME). '*', '?' and '[...]' as in sh.
bool MatchesGlob(const std::string& glob, const std::string& path);

}  // namespace haven

#endif  // HAVEN_BASE_GLOB_H_
