#include "base/outcome.h"

namespace haven {

namespace {
constexpr std::pair<Outcome, std::string_view> kNames[] = {
    {Outcome::kOk, "ok"},
    {Outcome::kPartial, "partial"},
    {Outcome::kFailed, "failed"},
    {Outcome::kCancelled, "cancelled"},
    {Outcome::kSkipped, "skipped"},
};
}  // namespace

std::string_view OutcomeName(Outcome outcome) {
  for (const auto& [o, name] : kNames)
    if (o == outcome) return name;
  return "failed";
}

std::optional<Outcome> ParseOutcome(std::string_view name) {
  for (const auto& [o, n] : kNames)
    if (n == name) return o;
  return std::nullopt;
}

Outcome OutcomeOf(const Status& status) {
  if (status.ok()) return Outcome::kOk;
  return status.code() == Code::kCancelled ? Outcome::kCancelled
                                           : Outcome::kFailed;
}

}  // namespace haven
