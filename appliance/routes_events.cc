#include "appliance/routes_events.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include "base/json.h"

namespace haven::appliance {
namespace {

constexpr auto kKeepAlive = std::chrono::seconds(15);
constexpr size_t kMaxBacklog = 1000;  // events a slow client may lag behind

// What one stream has received and not yet written.
struct Backlog {
  std::mutex mu;
  std::condition_variable ready;
  std::deque<JobService::Event> events;
  size_t dropped = 0;
  bool ended = false;
};

// Holds one of the streams' slots until the response is destroyed.
class Slot {
 public:
  explicit Slot(std::shared_ptr<std::atomic<int>> open)
      : open_(std::move(open)) {}
  ~Slot() { open_->fetch_sub(1); }
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

 private:
  std::shared_ptr<std::atomic<int>> open_;
};

std::string Frame(const JobService::Event& e) {
  return "event: " + e.type + "\ndata: " + DumpJson(e.data) + "\n\n";
}

Status Stream(JobService& jobs, int64_t only_job, const BodyWriter& write) {
  auto backlog = std::make_shared<Backlog>();
  auto subscription =
      jobs.Subscribe([backlog, only_job](const JobService::Event& e) {
        std::lock_guard lock(backlog->mu);
        if (e.type == "end") {
          backlog->ended = true;
        } else if (only_job && e.job_id != only_job) {
          return;
        } else if (backlog->events.size() >= kMaxBacklog) {
          ++backlog->dropped;
          return;
        } else {
          backlog->events.push_back(e);
        }
        backlog->ready.notify_one();
      });
  HAVEN_RETURN_IF_ERROR(write(": havend job events\nretry: 5000\n\n"));
  for (;;) {
    std::deque<JobService::Event> events;
    size_t dropped = 0;
    bool ended = false;
    {
      std::unique_lock lock(backlog->mu);
      backlog->ready.wait_for(lock, kKeepAlive, [&] {
        return !backlog->events.empty() || backlog->ended;
      });
      events.swap(backlog->events);
      std::swap(dropped, backlog->dropped);
      ended = backlog->ended;
    }
    std::string text;
    for (const auto& e : events) text += Frame(e);
    if (dropped)
      text += "event: dropped\ndata: {\"dropped\":" + std::to_string(dropped) +
              "}\n\n";
    if (text.empty() && !ended) text = ": keep-alive\n\n";
    if (!text.empty()) HAVEN_RETURN_IF_ERROR(write(text));
    if (ended) return OkStatus();
  }
}

}  // namespace

Route EventsRoute(Services& s, int max_streams) {
  auto open = std::make_shared<std::atomic<int>>(0);
  return {
      "GET",
      "/api/v1/events",
      Access::kRole,
      Role::kAuditor,
      "live job events as Server-Sent Events: progress (phase, item, bytes, "
      "rate, ETA, item counts) and every state change",
      {{"parameters",
        {{{"name", "job"},
          {"in", "query"},
          {"schema", {{"type", "integer"}}},
          {"description", "only this job's events"}}}},
       {"responses",
        {{"200",
          {{"description",
            "text/event-stream: event: state | progress | dropped; a "
            "keep-alive comment every 15 s"}}},
         {"503",
          {{"description", "too many event streams are open (at most " +
                               std::to_string(max_streams) + ")"}}}}}},
      [&s, open, max_streams](const ApiCall& call) {
        int64_t only_job = 0;
        if (const std::string* j = call.Query("job")) {
          char* end = nullptr;
          only_job = std::strtoll(j->c_str(), &end, 10);
          if (j->empty() || *end != '\0' || only_job <= 0)
            return ErrorJson(400, "job must be a job id");
        }
        if (open->fetch_add(1) >= max_streams) {
          open->fetch_sub(1);
          Response r =
              ErrorJson(503, "too many event streams are open (at most " +
                                 std::to_string(max_streams) +
                                 "); close one, or poll GET /api/v1/jobs");
          r.headers.emplace_back("retry-after", "10");
          return r;
        }
        auto slot = std::make_shared<Slot>(open);
        Response r;
        r.status = 200;
        r.headers.emplace_back("content-type", "text/event-stream");
        r.chunked = true;
        JobService* jobs = s.jobs;
        r.stream = [jobs, only_job, slot](const BodyWriter& write) {
          return Stream(*jobs, only_job, write);
        };
        return r;
      }};
}

}  // namespace haven::appliance
