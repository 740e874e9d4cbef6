#include "restore/instant_restore.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/file.h"
#include "base/process.h"
#include "base/time.h"
#include "snapshot/domain_xml.h"

extern char** environ;

namespace haven::restore {
namespace {

namespace fs = std::filesystem;

bool PlainName(const std::string& s) {
  if (s.empty() || s.size() > 64 || s[0] == '.') return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

std::string ServerProgram(const InstantSource& source) {
  if (!source.server.empty()) return source.server;
  if (const char* e = std::getenv("HAVEN_NBD"); e && *e) return e;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / "haven-nbd";
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  return "/usr/lib/haven/haven-nbd";
}

// "+UID:+GID" (libvirt's DAC label) -> numbers; -1 when absent.
void ParseLabel(const std::string& label, int* uid, int* gid) {
  *uid = *gid = -1;
  if (std::sscanf(label.c_str(), "+%d:+%d", uid, gid) != 2) *uid = *gid = -1;
}

// The pid in the folder's pid file if that process is haven-nbd serving
// this folder's socket; 0 otherwise.
pid_t ServerPid(const std::string& dir) {
  auto text = ReadFile(dir + "/nbd.pid", 64);
  if (!text.ok()) return 0;
  pid_t pid = std::atoi(std::string(text->begin(), text->end()).c_str());
  if (pid <= 1) return 0;
  // /proc files have no size: read to the end. The arguments, NUL
  // separated: argv[0] is haven-nbd and --socket is exactly this one.
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline",
                   std::ios::binary);
  std::string c((std::istreambuf_iterator<char>(in)),
                std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  for (size_t at = 0; at < c.size();) {
    size_t end = c.find('\0', at);
    if (end == std::string::npos) end = c.size();
    argv.push_back(c.substr(at, end - at));
    at = end + 1;
  }
  if (argv.empty() || fs::path(argv[0]).filename() != "haven-nbd") return 0;
  for (size_t i = 1; i + 1 < argv.size(); ++i)
    if (argv[i] == "--socket" && argv[i + 1] == dir + "/nbd.sock") return pid;
  return 0;
}

// Alive and not a zombie (a container's init may not reap it).
bool Running(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() &&
         stat[close + 2] != 'Z' && stat[close + 2] != 'X';
}

nlohmann::json StateJson(const VmPlan& plan, const InstantSource& source) {
  nlohmann::json j;
  j["version"] = 1;
  j["name"] = plan.name;
  j["point"] = plan.snapshot.id;
  j["repository"] = source.repository;
  j["socket"] = plan.instant_dir + "/nbd.sock";
  j["disks"] = nlohmann::json::array();
  for (const auto& d : plan.disks)
    j["disks"].push_back({{"target", d.target},
                          {"overlay", d.overlay},
                          {"path", d.path},
                          {"format", d.format},
                          {"size", d.size}});
  return j;
}

// Starts haven-nbd detached (its own session, reparented to init), hands it
// the passphrase on stdin and waits for its "ready" line.
Status StartServer(const std::string& program, const VmPlan& plan,
                   const InstantSource& source, const std::string& owner) {
  const std::string& dir = plan.instant_dir;
  std::vector<std::string> args = {program,
                                   "--repository",
                                   source.repository,
                                   "--point",
                                   plan.snapshot.id,
                                   "--socket",
                                   dir + "/nbd.sock",
                                   "--pidfile",
                                   dir + "/nbd.pid",
                                   "--stats",
                                   dir + "/stats.json",
                                   "--cache-mb",
                                   std::to_string(source.cache_mb)};
  if (!owner.empty()) {
    args.push_back("--socket-owner");
    args.push_back(owner);
  }
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  if (::pipe2(out, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(in[0]);
    ::close(in[1]);
    return ErrnoStatus("pipe", e);
  }
  const std::string log = dir + "/nbd.log";
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // The environment, without the passphrase variables: the server gets it
  // on stdin only, and lives long.
  std::vector<std::string> env_keep;
  for (char** e = environ; e && *e; ++e)
    if (std::strncmp(*e, "HAVEN_PASSWORD", 14) != 0) env_keep.push_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_keep) envp.push_back(e.data());
  envp.push_back(nullptr);
  const long max_fd = ::sysconf(_SC_OPEN_MAX);
  pid_t child = ::fork();
  if (child < 0) {
    int e = errno;
    for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
    return ErrnoStatus("fork", e);
  }
  if (child == 0) {
    // Double fork: the server is not this process's child.
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    int logfd =
        ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    if (logfd >= 0) ::dup2(logfd, 2);
    if (::close_range(3, ~0U, 0) != 0)
      for (long fd = 3; fd < (max_fd > 0 ? max_fd : 65536); ++fd)
        ::close(static_cast<int>(fd));
    ::umask(077);
    ::execve(argv[0], argv.data(), envp.data());
    const char msg[] = "error: cannot run the NBD server program\n";
    ssize_t n = ::write(1, msg, sizeof msg - 1);
    (void)n;
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  int status = 0;
  ::waitpid(child, &status, 0);
  {
    // A server that died before reading must not take this process down
    // with SIGPIPE: blocked here, and a pending one taken back.
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    const std::string& p = source.passphrase;
    size_t done = 0;
    while (done < p.size()) {
      ssize_t n = ::write(in[1], p.data() + done, p.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(in[1]);
    timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  }
  std::string line;
  const double deadline = MonotonicSeconds() + 120;
  while (line.find('\n') == std::string::npos) {
    double left = deadline - MonotonicSeconds();
    if (left <= 0) break;
    pollfd p{out[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left * 1000));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buf[1024];
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r'))
    line.pop_back();
  if (line == "ready") return OkStatus();
  if (line.rfind("error: ", 0) == 0)
    return FailedPrecondition("the NBD server for point " + plan.snapshot.id +
                              " did not start: " + line.substr(7));
  return Unavailable(
      "the NBD server " + program + " did not report ready within 120 s" +
      (line.empty() ? "" : " (it said: " + line + ")") + "; see " + log);
}

}  // namespace

Status PlanInstant(VmPlan& plan) {
  plan.instant_dir = plan.dir + "/" + kInstantDirPrefix + plan.name;
  const std::string socket = plan.instant_dir + "/nbd.sock";
  struct stat st;
  if (::lstat(plan.instant_dir.c_str(), &st) == 0)
    plan.conflicts.push_back(
        "an instant restore of " + plan.name + " is in place (" +
        plan.instant_dir +
        "): finish it ('haven restore vm --instant --finish " + plan.name +
        "') or discard it ('--instant --discard')");
  // Root makes files in there: a folder others can write would let them
  // swap what root then chowns, appends to or removes.
  if (::stat(plan.dir.c_str(), &st) == 0 &&
      (st.st_uid != 0 || (st.st_mode & 022) != 0))
    plan.conflicts.push_back(
        "the storage folder " + plan.dir +
        " is not root's alone (owner or group/other may write); instant "
        "recovery keeps its server's files there: choose a folder only root "
        "writes (--storage-dir)");
  if (socket.size() >= 108)
    plan.conflicts.push_back("the instant server's socket path " + socket +
                             " is longer than a unix socket allows; choose "
                             "a shorter --storage-dir");
  if (plan.state != "restore")
    plan.conflicts.push_back("a domain named " + plan.name +
                             " was restored from this point already; an "
                             "instant restore needs a new name (--name) or "
                             "--replace");
  snapshot::DomainRewrite rw;
  for (auto& d : plan.disks) {
    if (!PlainName(d.target)) {
      plan.conflicts.push_back("disk target '" + d.target +
                               "' cannot name an NBD export");
      continue;
    }
    d.overlay = plan.instant_dir + "/" + d.target + ".qcow2";
    rw.disks.push_back({d.target, d.overlay, "qcow2", socket, d.target});
  }
  if (plan.xml.empty()) return OkStatus();
  HAVEN_ASSIGN_OR_RETURN(auto rewritten,
                         snapshot::RewriteDomainXml(plan.xml, rw));
  plan.instant_xml = rewritten.xml;
  return OkStatus();
}

Status StartInstantExport(const VmPlan& plan, const InstantSource& source,
                          const std::string& qemu_label,
                          const std::function<void(const std::string&)>& log) {
  const std::string& dir = plan.instant_dir;
  if (::mkdir(dir.c_str(), 0711) != 0)
    return ErrnoStatus("creating " + dir, errno);
  ::chmod(dir.c_str(), 0711);  // whatever the umask: QEMU's user enters it
  auto fail = [&](Status why) {
    StopInstantExport(dir);
    return why;
  };
  int uid, gid;
  ParseLabel(qemu_label, &uid, &gid);
  const std::string owner =
      uid >= 0 ? "0:" + std::to_string(gid) : std::string();
  const std::string program = ServerProgram(source);
  if (log)
    log("serving the disks of point " + plan.snapshot.id + " with " + program);
  Status s = StartServer(program, plan, source, owner);
  if (!s.ok()) return fail(s);
  const std::string socket = dir + "/nbd.sock";
  for (const auto& d : plan.disks) {
    if (log) log("disk " + d.target + ": overlay " + d.overlay);
    auto r =
        RunProcess({"qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                    "-u", "-b", "nbd+unix:///" + d.target + "?socket=" + socket,
                    d.overlay, std::to_string(d.size)},
                   {}, 60, true);
    if (!r.ok()) return fail(r.status());
    if (!r->exited || r->exit_code != 0)
      return fail(Unavailable("qemu-img create " + d.overlay +
                              " failed: " + r->output));
    // The guest's writes: for root (libvirt gives QEMU's user the file).
    if (::chmod(d.overlay.c_str(), 0600) != 0)
      return fail(ErrnoStatus("chmod " + d.overlay, errno));
  }
  const std::string state = StateJson(plan, source).dump(2) + "\n";
  s = WriteFileAtomic(dir + "/state.json", AsBytes(state), 0600);
  if (!s.ok()) return fail(s);
  return OkStatus();
}

void StopInstantExport(const std::string& dir) {
  if (pid_t pid = ServerPid(dir); pid > 0) {
    ::kill(pid, SIGTERM);
    for (int i = 0; i < 50 && Running(pid); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (Running(pid)) ::kill(pid, SIGKILL);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

Result<InstantState> LoadInstantState(const std::string& dir) {
  HAVEN_ASSIGN_OR_RETURN(Bytes raw, ReadFile(dir + "/state.json", 1 << 20));
  auto j = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
  const std::string what = dir + "/state.json";
  if (j.is_discarded() || !j.is_object() || j.value("version", 0) != 1)
    return DataLoss(what + " is not an instant restore's state");
  InstantState s;
  s.dir = dir;
  try {
    s.name = j.at("name").get<std::string>();
    s.point = j.at("point").get<std::string>();
    s.repository = j.at("repository").get<std::string>();
    s.socket = j.at("socket").get<std::string>();
    for (const auto& d : j.at("disks"))
      s.disks.push_back(
          {d.at("target").get<std::string>(),
           d.at("overlay").get<std::string>(), d.at("path").get<std::string>(),
           d.at("format").get<std::string>(), d.at("size").get<uint64_t>()});
  } catch (const std::exception& e) {
    return DataLoss(what + " is malformed: " + e.what());
  }
  for (const auto& d : s.disks)
    if (!PlainName(d.target) || d.overlay != dir + "/" + d.target + ".qcow2" ||
        d.path.empty() || d.path[0] != '/' ||
        (d.format != "raw" && d.format != "qcow2"))
      return DataLoss(what + " names an implausible disk");
  return s;
}

Result<std::string> InstantDirOf(const snapshot::Vm& vm) {
  HAVEN_ASSIGN_OR_RETURN(std::string xml, vm.Xml(false));
  HAVEN_ASSIGN_OR_RETURN(auto info, snapshot::ParseDomainXml(xml));
  for (const auto& d : info.disks) {
    fs::path p(d.path);
    std::string parent = p.parent_path().filename().string();
    if (parent.rfind(kInstantDirPrefix, 0) == 0 &&
        ::access((p.parent_path() / "state.json").c_str(), R_OK) == 0)
      return p.parent_path().string();
  }
  return NotFound(vm.name() +
                  " does not run from a recovery point (none of "
                  "its disks is an instant restore's overlay)");
}

Result<InstantFinishResult> FinishInstant(const snapshot::LibvirtHost& host,
                                          const std::string& name,
                                          const InstantFinishOptions& options) {
  auto log = [&](const std::string& line) {
    if (options.log) options.log(line);
  };
  const double start = MonotonicSeconds();
  HAVEN_ASSIGN_OR_RETURN(auto vm, host.Lookup(name));
  auto dir = InstantDirOf(*vm);
  if (!dir.ok()) return FailedPrecondition(dir.status().message());
  HAVEN_ASSIGN_OR_RETURN(InstantState state, LoadInstantState(*dir));
  if (state.name != name)
    return FailedPrecondition(*dir + " is the instant restore of " +
                              state.name + ", not of " + name +
                              "; nothing was changed");
  HAVEN_ASSIGN_OR_RETURN(bool active, vm->Active());
  if (!active)
    return FailedPrecondition(
        name +
        " is not running: the copy onto local storage runs while the "
        "VM does; start it ('virsh start " +
        name + "') and finish again, or discard it");
  InstantFinishResult result;
  for (const InstantDisk& d : state.disks) {
    if (options.cancel.cancelled()) return Cancelled("finish cancelled");
    HAVEN_ASSIGN_OR_RETURN(std::string xml, vm->Xml(false));
    HAVEN_ASSIGN_OR_RETURN(auto info, snapshot::ParseDomainXml(xml));
    std::string current;
    for (const auto& dd : info.disks)
      if (dd.target == d.target) current = dd.path;
    if (current == d.path) {
      log("disk " + d.target + " runs from " + d.path + " already");
      continue;
    }
    if (current != d.overlay)
      return FailedPrecondition("disk " + d.target + " of " + name +
                                " runs from " + current + ", not from " +
                                d.overlay + "; nothing was changed");
    const double disk_start = MonotonicSeconds();
    HAVEN_ASSIGN_OR_RETURN(auto job, vm->BlockJobInfo(d.target));
    bool copy_started_here = false;
    if (!job.active) {
      struct stat st;
      if (::lstat(d.path.c_str(), &st) == 0)
        return FailedPrecondition(
            d.path + " exists; the disk " + d.target +
            " would be copied there. Move it away and finish again");
      log("copying disk " + d.target + " to " + d.path + " (" + d.format +
          ") while " + name + " runs");
      HAVEN_RETURN_IF_ERROR(vm->StartBlockCopy(d.target, d.path, d.format));
      copy_started_here = true;
    } else {
      log("disk " + d.target + ": the copy of an earlier finish is running");
    }
    ProgressFn progress;
    if (options.progress) progress = options.progress(name + " " + d.target);
    int pivot_tries = 0;
    for (;;) {
      if (options.cancel.cancelled()) {
        (void)vm->AbortBlockJob(d.target);
        if (copy_started_here) ::unlink(d.path.c_str());  // only our own copy
        return Cancelled("finish cancelled; " + name +
                         " still runs from the point");
      }
      HAVEN_ASSIGN_OR_RETURN(job, vm->BlockJobInfo(d.target));
      if (!job.active)
        return Unavailable("the copy of disk " + d.target + " of " + name +
                           " ended before it could be switched over; " + name +
                           " still runs from the point (see the "
                           "server's log " +
                           state.dir + "/nbd.log)");
      if (progress)
        progress(ByteProgress(job.cur, job.end, 0,
                              MonotonicSeconds() - disk_start, false));
      if (job.end > 0 && job.cur == job.end) {
        Status s = vm->PivotBlockCopy(d.target);
        if (s.ok()) break;
        if (++pivot_tries > 100) return s;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (progress)
      progress(ByteProgress(job.end, job.end, 0,
                            MonotonicSeconds() - disk_start, true));
    // QEMU wrote the copy; it is made durable before the overlay goes.
    {
      int fd = ::open(d.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return ErrnoStatus("opening " + d.path, errno);
      Status s = FsyncFd(fd, d.path);
      ::close(fd);
      HAVEN_RETURN_IF_ERROR(s);
      HAVEN_RETURN_IF_ERROR(FsyncDir(fs::path(d.path).parent_path().string()));
    }
    result.disks.push_back(
        {d.target, d.path, job.end, MonotonicSeconds() - disk_start});
    log("disk " + d.target + " now runs from " + d.path);
  }
  // The definition must name the final files too (libvirt 9 updates it with
  // the pivot; an older one may not).
  HAVEN_ASSIGN_OR_RETURN(std::string inactive, vm->Xml(true));
  HAVEN_ASSIGN_OR_RETURN(auto info, snapshot::ParseDomainXml(inactive));
  snapshot::DomainRewrite rw;
  for (const InstantDisk& d : state.disks)
    for (const auto& dd : info.disks)
      if (dd.target == d.target && dd.path != d.path)
        rw.disks.push_back({d.target, d.path, d.format});
  if (!rw.disks.empty()) {
    log("updating the definition of " + name + " to its local disks");
    HAVEN_ASSIGN_OR_RETURN(auto rewritten,
                           snapshot::RewriteDomainXml(inactive, rw));
    HAVEN_RETURN_IF_ERROR(host.DefineDomain(rewritten.xml).status());
  }
  // Nothing the VM runs on may still be in the instant folder.
  HAVEN_ASSIGN_OR_RETURN(std::string live, vm->Xml(false));
  if (live.find(state.dir + "/") != std::string::npos)
    return FailedPrecondition(
        name + " still names " + state.dir +
        " (a disk not switched over); the folder and its server are kept");
  log("stopping the NBD server and removing " + state.dir);
  StopInstantExport(state.dir);
  result.seconds = MonotonicSeconds() - start;
  return result;
}

Status DiscardInstant(const snapshot::LibvirtHost& host,
                      const std::string& name,
                      const std::function<void(const std::string&)>& log) {
  HAVEN_ASSIGN_OR_RETURN(auto vm, host.Lookup(name));
  auto dir = InstantDirOf(*vm);
  if (!dir.ok()) return FailedPrecondition(dir.status().message());
  if (log) log("stopping and undefining " + name);
  HAVEN_RETURN_IF_ERROR(host.RemoveDomain(name));
  if (log) log("stopping the NBD server and removing " + *dir);
  StopInstantExport(*dir);
  return OkStatus();
}

}  // namespace haven::restore
