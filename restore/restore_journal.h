// The journal of one VM restore: <storage dir>/.haven-restore-<name>.json.
// Written before the restore creates anything and rewritten after each step,
// it lets a re-run of the same restore (same point, same name) recognise the
// work an interrupted run did — files, networks, the defined domain — and
// finish it without redoing what is complete or touching anything else.
//
//   {"version": 2, "snapshot": ID, "name": NAME, "uuid": UUID,
//    "files": [every path the restore may create, final and staging],
//    "disks": [{"path", "format", "staged"}],   staged: PATH.haven-restore
//                                               is complete and synced
//    "networks": [names the restore creates],   written before creating
//    "placed": bool}                            every file moved into place
//
// A journal is untrusted input like any file: only one for the same point
// counts, and every path in it must also be in the plan to be used.
#ifndef HAVEN_RESTORE_RESTORE_JOURNAL_H_
#define HAVEN_RESTORE_RESTORE_JOURNAL_H_

#include <set>
#include <string>
#include <vector>

#include "base/status.h"

namespace haven::restore {

struct RestoreJournal {
  std::string snapshot, name, uuid;
  std::set<std::string> files;
  struct Disk {
    std::string path, format;
    bool staged = false;
  };
  std::vector<Disk> disks;
  std::set<std::string> networks;
  bool placed = false;

  // The entry for `path` in `format`, or nullptr.
  const Disk* FindDisk(const std::string& path,
                       const std::string& format) const;
};

// The journal at `path` if it is one for `snapshot_id`; std::nullopt-like
// empty journal (snapshot "") when there is none, it is for another point,
// or it cannot be read (a damaged journal gives no file to anybody).
RestoreJournal LoadRestoreJournal(const std::string& path,
                                  const std::string& snapshot_id);

// Writes the journal atomically (0600, synced).
Status SaveRestoreJournal(const std::string& path,
                          const RestoreJournal& journal);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_RESTORE_JOURNAL_H_
