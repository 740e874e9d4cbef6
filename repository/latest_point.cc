#include "repository/latest_point.h"

#include <map>

#include "base/time.h"
#include "repository/catalog.h"

namespace haven::repository {
namespace {

// Every name's latest point among `points`, of `kind` when not empty, by
// name. T is Manifest or PointSummary (both have id, name, kind, time).
template <typename T>
std::vector<T> ChooseLatest(std::vector<T> points, const std::string& kind) {
  std::map<std::string, T> latest;
  for (auto& p : points) {
    if (!kind.empty() && p.kind != kind) continue;
    auto it = latest.find(p.name);
    if (it == latest.end())
      latest.emplace(p.name, std::move(p));
    else if (PointBefore(it->second.time, it->second.id, p.time, p.id))
      it->second = std::move(p);
  }
  std::vector<T> out;
  for (auto& [name, p] : latest) out.push_back(std::move(p));
  return out;
}

// The summaries of every point; an unreadable one refuses when asked to.
Result<std::vector<PointSummary>> Summaries(const Repository& repo,
                                            Unreadable unreadable) {
  std::vector<std::string> errors;
  HAVEN_ASSIGN_OR_RETURN(std::vector<PointSummary> all,
                         repo.ListSummaries(&errors));
  if (!errors.empty() && unreadable == Unreadable::kRefuse)
    return DataLoss("cannot tell which points are the latest: " +
                    errors.front() + " (run 'haven check')");
  return all;
}

}  // namespace

std::vector<Manifest> ChooseLatestPoints(std::vector<Manifest> points,
                                         const std::string& kind) {
  return ChooseLatest(std::move(points), kind);
}

Result<std::optional<Manifest>> LatestPoint(const Repository& repo,
                                            const std::string& name,
                                            const std::string& kind,
                                            Unreadable unreadable) {
  HAVEN_ASSIGN_OR_RETURN(std::vector<PointSummary> all,
                         Summaries(repo, unreadable));
  std::vector<PointSummary> named;
  for (auto& p : all)
    if (p.name == name) named.push_back(std::move(p));
  std::vector<PointSummary> latest = ChooseLatest(std::move(named), kind);
  if (latest.empty()) return std::optional<Manifest>();
  HAVEN_ASSIGN_OR_RETURN(Manifest m, repo.LoadSnapshot(latest.front().id));
  return std::optional<Manifest>(std::move(m));
}

Result<std::vector<Manifest>> LatestPoints(const Repository& repo,
                                           const std::string& kind,
                                           Unreadable unreadable) {
  HAVEN_ASSIGN_OR_RETURN(std::vector<PointSummary> all,
                         Summaries(repo, unreadable));
  std::vector<Manifest> out;
  for (const PointSummary& p : ChooseLatest(std::move(all), kind)) {
    HAVEN_ASSIGN_OR_RETURN(Manifest m, repo.LoadSnapshot(p.id));
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace haven::repository
