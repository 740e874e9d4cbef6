// Progress of a long job, reported to a callback from the job's thread.
#ifndef HAVEN_AGENT_PROGRESS_H_
#define HAVEN_AGENT_PROGRESS_H_

#include <cstdint>
#include <functional>

namespace haven::agent {

struct Progress {
  uint64_t done_bytes = 0;  // logical bytes processed (holes included)
  uint64_t total_bytes = 0;
  uint64_t new_bytes = 0;  // bytes added to the repository so far
  double elapsed_seconds = 0;
  bool final = false;
};

using ProgressFn = std::function<void(const Progress&)>;

}  // namespace haven::agent

#endif  // HAVEN_AGENT_PROGRESS_H_
