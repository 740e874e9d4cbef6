// The outcome of one item of a job (a VM, a disk, a file tree, a recovery
// point): every job result reports one per item, next to the item's Status,
// so a front end can count, colour and store them without parsing messages.
#ifndef HAVEN_BASE_OUTCOME_H_
#define HAVEN_BASE_OUTCOME_H_

#include <optional>
#include <string_view>

#include "base/status.h"

namespace haven {

enum class Outcome {
  kOk,         // done as asked
  kPartial,    // done, but some of it could not be captured or restored
  kFailed,     // not done; the item's Status says why, nothing was committed
  kCancelled,  // not done because the job was cancelled before or during it
  kSkipped,    // not attempted on purpose (excluded, nothing to do)
};

// "ok", "partial", "failed", "cancelled", "skipped": the JSON spelling.
std::string_view OutcomeName(Outcome outcome);
// The inverse of OutcomeName; nullopt for any other text.
std::optional<Outcome> ParseOutcome(std::string_view name);

// kOk for an OK status, kCancelled for Code::kCancelled, else kFailed.
Outcome OutcomeOf(const Status& status);

}  // namespace haven

#endif  // HAVEN_BASE_OUTCOME_H_
