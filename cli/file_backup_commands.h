// `haven backup files`, `haven diff` and `haven restore files`: the
// in-guest file agent's backups (agent/file_backup.h) and their restores
// (restore/file_point.h). `haven ls` of such a point lands here too.
#ifndef HAVEN_CLI_FILE_BACKUP_COMMANDS_H_
#define HAVEN_CLI_FILE_BACKUP_COMMANDS_H_

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/file_backup.h"
#include "cli/common.h"
#include "restore/file_restore.h"

namespace haven::cli {

// Adds `files` to `backup` and `restore`, and `diff` to `app`.
void AddFilesCommands(CLI::App& app, CLI::App& backup, CLI::App& restore,
                      const Globals& g, int& rc);

// `haven ls` of a file backup's point: the directory `path` ("/" if empty).
int CmdFilesLs(const Globals& g, const repository::Repository& repo,
               const repository::Manifest& m, const std::string& path);

// Exactly one of --to DIR, --tar FILE, --zip FILE: sets opt.target and
// opt.path (InvalidArgument otherwise).
Status ChooseFileTarget(const std::string& to, const std::string& tar,
                        const std::string& zip,
                        restore::FileRestoreOptions& opt);

// A file restore's target, format, counts, bytes, seconds, `complete` and
// problems, as `restore file` and `restore files` report them with --json.
void AddRestoreJson(nlohmann::ordered_json& j,
                    const restore::FileRestoreOptions& opt,
                    const restore::FileRestoreStats& st);

// What a file restore wrote, each count apart: "13 files (89 B), 5
// directories, 0 symlinks, 1 hard link, 0 other", with "; N skipped: not
// newer" inside the files' parentheses when --overwrite if-newer kept some.
std::string RestoreCounts(const restore::FileRestoreStats& st);

// Prints each entry not restored ("not restored: PATH: why") on stderr.
void PrintProblems(const restore::FileRestoreStats& st);

// --- agents: client ---
// What `haven backup files` and `haven agent backup` print alike: warnings
// as they happen (stderr), the JSON of a file backup, its first summary
// lines, and the exit code (3 when partial, with a line on stderr).
std::function<void(const std::string&)> FileBackupWarnings(const Globals& g);
nlohmann::ordered_json FileBackupJson(const agent::FileBackupResult& r);
void PrintFileBackupSummary(const agent::FileBackupResult& r);
int FileBackupExit(const agent::FileBackupResult& r);

}  // namespace haven::cli

#endif  // HAVEN_CLI_FILE_BACKUP_COMMANDS_H_
