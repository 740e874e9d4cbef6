#include "repository/latest_point.h"

#include <map>

#include "base/time.h"
#include "repository/catalog.h"

namespace haven::repository {
namespace {

Result<std::vector<Manifest>> ListAll(const Repository& repo,
                                      Unreadable unreadable) {
  std::vector<std::string> errors;
  HAVEN_ASSIGN_OR_RETURN(std::vector<Manifest> all,
                         repo.ListSnapshots(&errors));
  if (!errors.empty() && unreadable == Unreadable::kRefuse)
    return DataLoss("cannot tell which points are the latest: " +
                    errors.front() + " (run 'haven check')");
  return all;
}

}  // namespace

std::vector<Manifest> ChooseLatestPoints(std::vector<Manifest> points,
                                         const std::string& kind) {
  std::map<std::string, Manifest> latest;
  for (auto& m : points) {
    if (!kind.empty() && m.kind != kind) continue;
    auto it = latest.find(m.name);
    if (it == latest.end())
      latest.emplace(m.name, std::move(m));
    else if (PointBefore(it->second.time, it->second.id, m.time, m.id))
      it->second = std::move(m);
  }
  std::vector<Manifest> out;
  for (auto& [name, m] : latest) out.push_back(std::move(m));
  return out;
}

Result<std::optional<Manifest>> LatestPoint(const Repository& repo,
                                            const std::string& name,
                                            const std::string& kind,
                                            Unreadable unreadable) {
  HAVEN_ASSIGN_OR_RETURN(std::vector<Manifest> all, ListAll(repo, unreadable));
  std::vector<Manifest> named;
  for (auto& m : all)
    if (m.name == name) named.push_back(std::move(m));
  std::vector<Manifest> latest = ChooseLatestPoints(std::move(named), kind);
  if (latest.empty()) return std::optional<Manifest>();
  return std::optional<Manifest>(std::move(latest.front()));
}

Result<std::vector<Manifest>> LatestPoints(const Repository& repo,
                                           const std::string& kind,
                                           Unreadable unreadable) {
  HAVEN_ASSIGN_OR_RETURN(std::vector<Manifest> all, ListAll(repo, unreadable));
  return ChooseLatestPoints(std::move(all), kind);
}

}  // namespace haven::repository
