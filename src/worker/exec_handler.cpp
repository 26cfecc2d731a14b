// SPDX-License-Identifier: Apache-2.0
// The exec handler: one child process per job, started with posix_spawnp (own process group, fds
// 3+ closed, signal mask and the usual signal dispositions reset). The body is fed to its stdin
// while stdout and stderr are read, all through one poll() loop on non-blocking pipes, so a big
// body and a big output cannot deadlock. Every path ends with the process group killed and the
// child reaped; every fd is owned by an RAII object.
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wordexp.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "scale0/error.hpp"
#include "scale0/exec.hpp"

extern char** environ;

namespace scale0 {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds term_grace{200};  // SIGTERM, then SIGKILL this much later
constexpr std::size_t read_chunk = 64 * 1024;

std::string errno_text(int e) {
  return std::generic_category().message(e);
}

// ---- fds ----

class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int f) noexcept : fd_(f) {}
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);  // never retried: on Linux the fd is gone even on EINTR
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// An O_CLOEXEC pipe whose ends are numbered 3 or above, so the child's dup2 onto 0-2 never lands
// on one of them (possible when the worker runs with stdin, stdout or stderr closed). Returns 0 or
// an errno value.
int make_pipe(unique_fd& read_end, unique_fd& write_end) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return errno;
  read_end = unique_fd(p[0]);
  write_end = unique_fd(p[1]);
  for (unique_fd* end : {&read_end, &write_end}) {
    if (end->get() >= 3) continue;
    const int moved = ::fcntl(end->get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return errno;
    *end = unique_fd(moved);
  }
  return 0;
}

int set_nonblocking(const unique_fd& f) {
  const int flags = ::fcntl(f.get(), F_GETFL);
  if (flags < 0 || ::fcntl(f.get(), F_SETFL, flags | O_NONBLOCK) < 0) return errno;
  return 0;
}

// ---- the child process ----

// Owns a spawned child (the leader of its own process group). Whatever happens, the destructor
// leaves no process of the group running and no zombie.
class child_process {
 public:
  explicit child_process(pid_t pid) noexcept : pid_(pid) {}
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() {
    if (!reaped_) finish();
  }

  // True once the leader has exited (it is not reaped yet, so its pid, and the group id, stay
  // reserved and killing the group stays safe).
  bool exited() noexcept {
    if (reaped_) return true;
    for (;;) {
      siginfo_t info{};
      if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0)
        return info.si_pid != 0;
      if (errno == EINTR) continue;
      // ECHILD: someone reaped it behind our back (SIGCHLD set to SIG_IGN): it is gone.
      reaped_ = true;
      status_known_ = false;
      return true;
    }
  }

  // Waits for the leader to exit, at most until `until`.
  bool wait_exit(clock::time_point until) {
    auto pause = std::chrono::microseconds(100);
    for (;;) {
      if (exited()) return true;
      const auto now = clock::now();
      if (now >= until) return false;
      std::this_thread::sleep_for(std::min<clock::duration>(
          pause, std::chrono::ceil<std::chrono::microseconds>(until - now)));
      pause = std::min(pause * 2, std::chrono::microseconds(10000));
    }
  }

  // SIGTERM to the group; SIGKILL to what is left after the grace period; reap.
  void terminate() {
    if (reaped_) return;
    ::kill(-pid_, SIGTERM);
    wait_exit(clock::now() + term_grace);
    finish();
  }

  // Kills whatever is left of the group (background processes the command left behind) and reaps
  // the leader, blocking until it is gone.
  void finish() noexcept {
    if (reaped_) return;
    ::kill(-pid_, SIGKILL);
    for (;;) {
      int st = 0;
      const pid_t r = ::waitpid(pid_, &st, 0);
      if (r == pid_) {
        status_ = st;
        break;
      }
      if (r < 0 && errno == EINTR) continue;
      status_known_ = false;  // ECHILD
      break;
    }
    reaped_ = true;
  }

  bool status_known() const noexcept { return status_known_; }
  int status() const noexcept { return status_; }

 private:
  pid_t pid_;
  bool reaped_ = false;
  bool status_known_ = true;
  int status_ = 0;
};

// Blocks SIGPIPE on this thread for the life of a run, so a write to a command that closed its
// stdin fails with EPIPE instead of killing the worker; a SIGPIPE raised meanwhile is consumed.
// The process's signal dispositions are never changed.
class sigpipe_blocker {
 public:
  sigpipe_blocker() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  sigpipe_blocker(const sigpipe_blocker&) = delete;
  sigpipe_blocker& operator=(const sigpipe_blocker&) = delete;
  ~sigpipe_blocker() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{0, 0};
        while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

// posix_spawn attributes and file actions, destroyed on every path.
struct spawn_setup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  bool attr_ok = false;
  bool actions_ok = false;
  spawn_setup() = default;
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
  ~spawn_setup() {
    if (actions_ok) posix_spawn_file_actions_destroy(&actions);
    if (attr_ok) posix_spawnattr_destroy(&attr);
  }

  // Returns 0 or an errno value.
  int init(int in, int out, int err) {
    int rc = posix_spawnattr_init(&attr);
    if (rc != 0) return rc;
    attr_ok = true;
    rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    actions_ok = true;

    // Own process group (so a timeout can kill everything the command started); an empty signal
    // mask; default dispositions for the signals a worker might ignore (ignored signals survive
    // exec, and a command with SIGPIPE ignored misbehaves in pipelines).
    sigset_t mask;
    sigemptyset(&mask);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int s : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD,
                  SIGTSTP, SIGTTIN, SIGTTOU})
      sigaddset(&defaults, s);
    if ((rc = posix_spawnattr_setflags(
             &attr, static_cast<short>(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                       POSIX_SPAWN_SETSIGDEF))) != 0 ||
        (rc = posix_spawnattr_setpgroup(&attr, 0)) != 0 ||
        (rc = posix_spawnattr_setsigmask(&attr, &mask)) != 0 ||
        (rc = posix_spawnattr_setsigdefault(&attr, &defaults)) != 0)
      return rc;

    if ((rc = posix_spawn_file_actions_adddup2(&actions, in, STDIN_FILENO)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&actions, out, STDOUT_FILENO)) != 0 ||
        (rc = posix_spawn_file_actions_adddup2(&actions, err, STDERR_FILENO)) != 0 ||
        (rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3)) != 0)
      return rc;
    return 0;
  }
};

// ---- the command ----

struct command_line {
  std::vector<std::string> words;
  std::vector<char*> argv;  // points into words; null-terminated
};

std::string wordexp_problem(int rc) {
  switch (rc) {
    case WRDE_BADCHAR:
      return "the command contains a shell operator (one of | & ; < > ( ) { } or a newline): "
             "quote it, or run the command through /bin/sh (--shell)";
    case WRDE_CMDSUB:
      return "command substitution ($(...) or `...`) needs /bin/sh (--shell)";
    case WRDE_SYNTAX:
      return "cannot parse the command (unbalanced quotes?)";
    case WRDE_NOSPACE:
      return "cannot parse the command (out of memory)";
    default:
      return "cannot parse the command (wordexp error " + std::to_string(rc) + ")";
  }
}

std::vector<std::string> split_words(const std::string& command) {
  static std::mutex mu;  // wordexp(3) is not thread-safe
  std::lock_guard lock(mu);
  wordexp_t w{};
  const int rc = ::wordexp(command.c_str(), &w, WRDE_NOCMD);
  if (rc != 0) {
    if (rc == WRDE_NOSPACE) ::wordfree(&w);
    throw error(status::bad_request, wordexp_problem(rc));
  }
  struct freer {
    wordexp_t& w;
    ~freer() { ::wordfree(&w); }
  } guard{w};
  return std::vector<std::string>(w.we_wordv, w.we_wordv + w.we_wordc);
}

struct exec_state {
  command_line cmd;
  milliseconds timeout;
  std::size_t max_output;
  std::size_t max_stderr;
};

std::shared_ptr<const exec_state> prepare(exec_options o) {
  const bool blank = o.command.find_first_not_of(" \t\r\n") == std::string::npos;
  if (blank) throw error(status::bad_request, "the command is empty");
  if (o.command.find('\0') != std::string::npos)
    throw error(status::bad_request, "the command contains a NUL byte");
  if (o.timeout.count() < 1)
    throw error(status::bad_request, "the command timeout must be at least 1 ms");

  auto s = std::make_shared<exec_state>();
  if (o.shell) {
    s->cmd.words = {"/bin/sh", "-c", o.command};
  } else {
    s->cmd.words = split_words(o.command);
    if (s->cmd.words.empty() || s->cmd.words.front().empty())
      throw error(status::bad_request, "the command expands to nothing");
  }
  for (auto& w : s->cmd.words) s->cmd.argv.push_back(w.data());
  s->cmd.argv.push_back(nullptr);
  s->timeout = o.timeout;
  s->max_output = o.max_output_bytes;
  s->max_stderr = o.max_stderr_bytes;
  return s;
}

std::string trim_right(std::string s) {
  while (!s.empty() &&
         (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
    s.pop_back();
  return s;
}

// ---- one run: spawn, feed stdin and collect output, wait (or kill), the answer ----

// Our ends of the command's stdin, stdout and stderr (non-blocking).
struct child_pipes {
  unique_fd in;
  unique_fd out;
  unique_fd err;
};

// Creates the pipes and spawns the command on them (its ends are closed on return). A failure to
// answer with, or nothing and `pid` set.
std::optional<job_result> spawn(const command_line& cmd, child_pipes& ours, pid_t& pid) {
  const std::string& program = cmd.words.front();
  unique_fd in_r, out_w, err_w;
  int e = make_pipe(in_r, ours.in);
  if (e == 0) e = make_pipe(ours.out, out_w);
  if (e == 0) e = make_pipe(ours.err, err_w);
  if (e == 0) e = set_nonblocking(ours.in);
  if (e == 0) e = set_nonblocking(ours.out);
  if (e == 0) e = set_nonblocking(ours.err);
  if (e != 0)
    return job_result::failure(status::worker_failed, "cannot create pipes: " + errno_text(e));
  {
    spawn_setup setup;
    e = setup.init(in_r.get(), out_w.get(), err_w.get());
    if (e == 0)
      e = ::posix_spawnp(&pid, program.c_str(), &setup.actions, &setup.attr, cmd.argv.data(),
                         environ);
  }
  if (e != 0)
    return job_result::failure(status::worker_failed,
                               "cannot run '" + program + "': " + errno_text(e));
  return std::nullopt;
}

// stdin: the body frames, in order, without concatenating them first. Closed (EOF for the
// command) after the last byte, or as soon as the command stops reading.
class stdin_feeder {
 public:
  stdin_feeder(const std::vector<zmq::message_t>& body, unique_fd& in) : body_(body), in_(in) {
    skip_written();
    if (frame_ == body_.size()) in_.reset();
  }

  // The pipe is writable: writes until it is full or the body is written.
  void on_writable() {
    for (;;) {
      const auto& f = body_[frame_];
      const ssize_t w =
          ::write(in_.get(), static_cast<const char*>(f.data()) + offset_, f.size() - offset_);
      if (w > 0) {
        offset_ += static_cast<std::size_t>(w);
        skip_written();
        if (frame_ == body_.size()) {
          in_.reset();  // EOF for the command
          break;
        }
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) break;
      in_.reset();  // EPIPE: the command does not read (all of) its stdin; not an error
      break;
    }
  }

 private:
  void skip_written() {
    while (frame_ < body_.size() && offset_ >= body_[frame_].size()) {
      ++frame_;
      offset_ = 0;
    }
  }

  const std::vector<zmq::message_t>& body_;
  unique_fd& in_;
  std::size_t frame_ = 0;
  std::size_t offset_ = 0;
};

// What the command wrote: stdout up to its limit (over it, the run fails), the start of stderr.
class output_collector {
 public:
  output_collector(std::size_t max_output, std::size_t max_stderr)
      : max_output_(max_output), max_stderr_(max_stderr) {}

  // stdout is readable. True once the output is over the limit.
  bool read_stdout(unique_fd& fd) {
    const std::size_t room = max_output_ - std::min(max_output_, out.size());
    // Never more than one byte past the limit: that byte proves the output too large.
    const std::size_t want = room < read_chunk ? room + 1 : read_chunk;
    const ssize_t got = ::read(fd.get(), buf_, want);
    if (got > 0) {
      out.append(buf_, static_cast<std::size_t>(got));
      return out.size() > max_output_;
    }
    if (got == 0 || (errno != EINTR && errno != EAGAIN)) fd.reset();
    return false;
  }

  // stderr is readable.
  void read_stderr(unique_fd& fd) {
    const ssize_t got = ::read(fd.get(), buf_, read_chunk);
    if (got > 0) {
      const std::size_t room = max_stderr_ - std::min(max_stderr_, err.size());
      const auto n_got = static_cast<std::size_t>(got);
      err.append(buf_, std::min(room, n_got));
      if (n_got > room) err_truncated = true;  // keep reading (and dropping) so it never blocks
    } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
      fd.reset();
    }
  }

  std::string out;
  std::string err;
  bool err_truncated = false;

 private:
  std::size_t max_output_;
  std::size_t max_stderr_;
  char buf_[read_chunk];
};

enum class ending { eof, timed_out, too_large, poll_failed };

// Feeds stdin and collects stdout and stderr through one poll() until all three are closed (eof),
// the deadline passes or the output is too large. `poll_error`: the errno of a poll_failed.
ending feed_and_collect(child_pipes& p, stdin_feeder& feed, output_collector& o,
                        clock::time_point deadline, int& poll_error) {
  while (p.in || p.out || p.err) {
    const auto now = clock::now();
    if (now >= deadline) return ending::timed_out;
    pollfd fds[3];
    nfds_t n = 0;
    int i_in = -1, i_out = -1, i_err = -1;
    if (p.in) {
      i_in = static_cast<int>(n);
      fds[n++] = {p.in.get(), POLLOUT, 0};
    }
    if (p.out) {
      i_out = static_cast<int>(n);
      fds[n++] = {p.out.get(), POLLIN, 0};
    }
    if (p.err) {
      i_err = static_cast<int>(n);
      fds[n++] = {p.err.get(), POLLIN, 0};
    }
    const auto wait = std::chrono::ceil<milliseconds>(deadline - now).count();
    const int r = ::poll(fds, n, static_cast<int>(std::min<std::int64_t>(wait, INT_MAX)));
    if (r < 0) {
      if (errno == EINTR) continue;
      poll_error = errno;
      return ending::poll_failed;
    }
    if (r == 0) continue;  // the deadline check above ends the loop
    if (i_in >= 0 && fds[i_in].revents != 0) feed.on_writable();
    if (i_out >= 0 && fds[i_out].revents != 0 && o.read_stdout(p.out)) return ending::too_large;
    if (i_err >= 0 && fds[i_err].revents != 0) o.read_stderr(p.err);
  }
  return ending::eof;
}

// After the exchange: waits for the command to exit (until the deadline), or kills its group
// when it ran out of time or wrote too much (the failure to answer with). Either way the child
// is reaped.
std::optional<job_result> wait_or_kill(child_process& child, ending how, clock::time_point deadline,
                                       milliseconds limit, std::size_t max_output) {
  if (how == ending::eof && !child.wait_exit(deadline)) how = ending::timed_out;
  switch (how) {
    case ending::timed_out:
      child.terminate();
      return job_result::failure(
          status::deadline, "command timed out after " + std::to_string(limit.count()) + " ms");
    case ending::too_large:
      child.terminate();
      return job_result::failure(status::too_large,
                                 "output larger than " + std::to_string(max_output) + " bytes");
    case ending::eof:
    case ending::poll_failed:
      break;
  }
  child.finish();
  return std::nullopt;
}

// The answer of a command that exited: its stdout on exit status 0, else a failure with its
// stderr (or how it ended).
job_result outcome(const child_process& child, output_collector& o) {
  if (!child.status_known())
    return job_result::failure(status::worker_failed,
                               "lost the command's exit status (is SIGCHLD ignored?)");
  const int st = child.status();
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    job_result r;
    r.body.emplace_back(o.out.data(), o.out.size());
    return r;
  }
  std::string message = trim_right(std::move(o.err));
  if (!message.empty() && o.err_truncated) message += " ...";
  if (message.empty()) {
    if (WIFEXITED(st))
      message = "exit status " + std::to_string(WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
      message = "killed by signal " + std::to_string(WTERMSIG(st));
    else
      message = "command failed";
  }
  return job_result::failure(status::worker_failed, std::move(message));
}

job_result run(const exec_state& s, job& j) {
  const milliseconds limit = j.time_left.count() > 0 ? std::min(s.timeout, j.time_left) : s.timeout;
  const auto deadline = clock::now() + limit;

  child_pipes pipes;
  pid_t pid = -1;
  if (auto failed = spawn(s.cmd, pipes, pid)) return std::move(*failed);
  child_process child(pid);
  sigpipe_blocker no_sigpipe;

  stdin_feeder feed(j.body, pipes.in);
  output_collector output(s.max_output, s.max_stderr);
  int poll_error = 0;
  const ending how = feed_and_collect(pipes, feed, output, deadline, poll_error);
  if (how == ending::poll_failed) {
    child.terminate();
    return job_result::failure(status::worker_failed, "poll: " + errno_text(poll_error));
  }

  // Closing our ends first turns a child blocked on a full pipe into one that gets EPIPE.
  pipes.in.reset();
  pipes.out.reset();
  pipes.err.reset();
  if (auto failed = wait_or_kill(child, how, deadline, limit, s.max_output))
    return std::move(*failed);
  return outcome(child, output);
}

}  // namespace

job_handler make_exec_handler(exec_options options) {
  auto state = prepare(std::move(options));
  return [state](job& j) { return run(*state, j); };
}

}  // namespace scale0
