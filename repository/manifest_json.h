// A recovery point's manifest as JSON: what `haven snapshots|show --json`
// and `backup image --json` print and what havend's GET
// /api/v1/points/{repo}/{id} answers, from one function so the two front
// ends cannot drift. Strings are the manifest's (untrusted bytes: DumpJson
// replaces invalid UTF-8).
#ifndef HAVEN_REPOSITORY_MANIFEST_JSON_H_
#define HAVEN_REPOSITORY_MANIFEST_JSON_H_

#include <nlohmann/json.hpp>

#include "repository/manifest.h"

namespace haven::repository {

// id, name, kind, time, hostname, consistency (+ reason), parent,
// agent_id (only for an agent's point), agent_key (only for a point an
// agent encrypted with its own key),
// repaired_from/time, the stats, vm_uuid/checkpoint, files' paths/entries/
// partial, disks (name, source, capture, size, chunk_size, chunks,
// lost_bytes), config files (name, size), notes.
nlohmann::ordered_json ManifestJson(const Manifest& m);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_MANIFEST_JSON_H_
