// Restore plans kept between "plan" and "run": the table restore_plans in
// havend's state database. A plan is stored as the core's round-trip JSON
// (restore/restore_plan_json.h) beside the view the API showed, so the job
// that runs it executes exactly what the caller reviewed.
//
//   restore_plans(id TEXT PRIMARY KEY   -- 32 hex digits, random
//                 kind TEXT              -- vm | host | files
//                 repository TEXT        -- a configured repository's name
//                 request TEXT           -- the options the run needs (JSON)
//                 plan TEXT              -- what runs (JSON)
//                 view TEXT              -- what the API shows (JSON)
//                 conflicts INTEGER      -- > 0: the plan cannot run
//                 created_by TEXT, created_at TEXT (ISO 8601 UTC),
//                 expires_at INTEGER     -- Unix seconds
//                 job_id INTEGER)        -- NULL: not run; 0: being
//                                        -- submitted; > 0: the job
//
// A plan runs once: a second run would restore a second copy of what the
// first made, so it is refused naming the job that ran it. Expired plans
// are refused (the host has had time to change: plan again) and removed
// when later plans are stored.
#ifndef HAVEN_APPLIANCE_RESTORE_PLANS_H_
#define HAVEN_APPLIANCE_RESTORE_PLANS_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "appliance/state_db.h"
#include "base/status.h"

namespace haven::appliance {

inline constexpr int64_t kRestorePlanLifetimeSeconds = 3600;

struct StoredPlan {
  std::string id, kind, repository;
  nlohmann::json request, plan, view;
  int64_t conflicts = 0;
  std::string created_by, created_at;
  int64_t expires_at = 0;
  int64_t job_id = -1;  // -1: not run; 0: being submitted
};

class RestorePlanStore {
 public:
  // Creates the table when missing.
  static Result<RestorePlanStore> Open(StateDb& db);

  // Stores a plan for kRestorePlanLifetimeSeconds from `now` (Unix
  // seconds; 0: the clock); fills id, created_at and expires_at.
  Status Put(StoredPlan& plan, int64_t now = 0);
  // NotFound for an unknown id (or one removed after it expired).
  Result<StoredPlan> Get(const std::string& id);
  // Claims an unexpired, never-run plan for a run: NotFound (unknown),
  // FailedPrecondition naming why (expired, already run or being run).
  Result<StoredPlan> Claim(const std::string& id, int64_t now = 0);
  // After Claim: the job that runs it, or (job_id < 0) the claim released
  // because the job could not be submitted.
  Status SetJob(const std::string& id, int64_t job_id);

 private:
  explicit RestorePlanStore(StateDb& db) : db_(&db) {}
  StateDb* db_;
};

// "2026-12-07T05:00:00Z" for Unix seconds.
std::string IsoUtc(int64_t unix_seconds);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_RESTORE_PLANS_H_
