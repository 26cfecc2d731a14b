// SPDX-License-Identifier: Apache-2.0
// The exec handler (scale0/exec.hpp) against real commands: statuses, stdin/stdout plumbing,
// timeouts that kill the whole process group, the output limit, parsing without a shell, running
// in parallel, and no leaked fds or processes.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "scale0/error.hpp"
#include "scale0/exec.hpp"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

scale0::job_handler handler(std::string command, bool shell = false,
                            std::chrono::milliseconds timeout = 10s,
                            std::size_t max_output = 8u << 20) {
  scale0::exec_options o;
  o.command = std::move(command);
  o.shell = shell;
  o.timeout = timeout;
  o.max_output_bytes = max_output;
  return scale0::make_exec_handler(std::move(o));
}

scale0::job make_job(const std::vector<std::string>& frames = {},
                     std::chrono::milliseconds time_left = 0ms) {
  scale0::job j;
  j.service = "exec";
  j.time_left = time_left;
  for (const auto& f : frames) j.body.emplace_back(f.data(), f.size());
  return j;
}

std::string body_of(const scale0::job_result& r) {
  std::string out;
  for (const auto& f : r.body) out.append(static_cast<const char*>(f.data()), f.size());
  return out;
}

scale0::job_result run(const scale0::job_handler& h, const std::vector<std::string>& frames = {},
                       std::chrono::milliseconds time_left = 0ms) {
  auto j = make_job(frames, time_left);
  return h(j);
}

// The test process has no children left: none running, none unreaped.
bool no_children() {
  return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

// The process is gone (or a zombie waiting for init).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto close_paren = line.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < line.size() &&
         line[close_paren + 2] == 'Z';
}

bool wait_gone(pid_t pid) {
  for (int i = 0; i < 100; ++i) {
    if (process_gone(pid)) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

pid_t read_pid(const std::string& path) {
  std::ifstream in(path);
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

int open_fds() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  while (::readdir(d)) ++n;
  ::closedir(d);
  return n;
}

std::string temp_path(const char* tag) {
  return "/tmp/scale0-exec-test-" + std::to_string(::getpid()) + "-" + tag;
}

TEST(exec_handler, stdout_is_the_reply_body_with_status_200) {
  const auto r = run(handler("echo hello world"));
  EXPECT_EQ(r.status, 200) << r.message;
  ASSERT_EQ(r.body.size(), 1u);
  EXPECT_EQ(body_of(r), "hello world\n");
}

TEST(exec_handler, body_frames_are_the_commands_stdin) {
  const auto r = run(handler("tr a-z A-Z"), {"hello ", "", "world"});
  EXPECT_EQ(r.status, 200) << r.message;
  EXPECT_EQ(body_of(r), "HELLO WORLD");
}

TEST(exec_handler, empty_output_is_one_empty_frame) {
  const auto r = run(handler("true"));
  EXPECT_EQ(r.status, 200) << r.message;
  ASSERT_EQ(r.body.size(), 1u);
  EXPECT_EQ(r.body[0].size(), 0u);
}

TEST(exec_handler, words_are_split_with_sh_quoting_but_no_shell) {
  const auto r = run(handler("printf '%s|%s;' 'a b' \"c  d\""));
  EXPECT_EQ(r.status, 200) << r.message;
  EXPECT_EQ(body_of(r), "a b|c  d;");
}

TEST(exec_handler, one_mebibyte_body_through_cat_does_not_deadlock) {
  std::string half(512 * 1024, 'x');
  for (std::size_t i = 0; i < half.size(); ++i) half[i] = static_cast<char>('a' + i % 26);
  const auto t0 = clock_type::now();
  const auto r = run(handler("cat", false, 10s), {half, half});
  EXPECT_EQ(r.status, 200) << r.message;
  EXPECT_EQ(body_of(r), half + half);
  EXPECT_LT(clock_type::now() - t0, 5s);
}

TEST(exec_handler, a_command_that_ignores_stdin_does_not_kill_the_worker) {
  // SIGPIPE would kill this test process if the handler let it through.
  const auto r = run(handler("true"), {std::string(1 << 20, 'x')});
  EXPECT_EQ(r.status, 200) << r.message;
  const auto r2 = run(handler("head -c 3"), {std::string(1 << 20, 'y')});
  EXPECT_EQ(r2.status, 200) << r2.message;
  EXPECT_EQ(body_of(r2), "yyy");
}

TEST(exec_handler, nonzero_exit_is_500_with_stderr_as_the_message) {
  const auto r = run(handler("echo oops >&2; exit 3", true));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.message, "oops");
  EXPECT_TRUE(r.body.empty());
}

TEST(exec_handler, nonzero_exit_without_stderr_reports_the_exit_status) {
  const auto r = run(handler("exit 3", true));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.message, "exit status 3");
}

TEST(exec_handler, death_by_signal_is_reported) {
  const auto r = run(handler("kill -9 $$", true));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.message, "killed by signal 9");
}

TEST(exec_handler, long_stderr_is_truncated) {
  const auto r = run(handler("head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1", true));
  EXPECT_EQ(r.status, 500);
  EXPECT_GE(r.message.size(), 4096u);
  EXPECT_LE(r.message.size(), 4096u + 8);
  EXPECT_EQ(r.message.substr(0, 10), "xxxxxxxxxx");
}

TEST(exec_handler, timeout_is_504_and_the_process_is_gone) {
  const auto t0 = clock_type::now();
  const auto r = run(handler("sleep 5", false, 200ms));
  const auto took = clock_type::now() - t0;
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.message, "command timed out after 200 ms");
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 1500ms);  // 200 ms + at most the 200 ms SIGTERM grace
  EXPECT_TRUE(no_children());
}

TEST(exec_handler, timeout_kills_the_whole_process_group) {
  const std::string pid_file = temp_path("bg");
  // A background child that ignores SIGTERM, and a shell that ignores it too: only SIGKILL works.
  const auto r =
      run(handler("trap '' TERM; (trap '' TERM; exec sleep 30) & echo $! > " + pid_file + "; wait",
                  true, 300ms));
  EXPECT_EQ(r.status, 504);
  const pid_t bg = read_pid(pid_file);
  std::remove(pid_file.c_str());
  ASSERT_GT(bg, 0);
  EXPECT_TRUE(wait_gone(bg)) << "background process " << bg << " survived";
  EXPECT_TRUE(no_children());
}

TEST(exec_handler, the_jobs_deadline_shortens_the_timeout) {
  const auto t0 = clock_type::now();
  const auto r = run(handler("sleep 5", false, 30s), {}, 200ms);
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.message, "command timed out after 200 ms");
  EXPECT_LT(clock_type::now() - t0, 1500ms);
}

TEST(exec_handler, a_command_that_closes_its_output_but_keeps_running_times_out) {
  const auto r = run(handler("exec >&- 2>&-; sleep 5", true, 300ms));
  EXPECT_EQ(r.status, 504);
  EXPECT_TRUE(no_children());
}

TEST(exec_handler, output_over_the_limit_is_413) {
  const auto t0 = clock_type::now();
  const auto r = run(handler("head -c 100000 /dev/zero", false, 10s, 1000));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.message, "output larger than 1000 bytes");
  EXPECT_TRUE(r.body.empty());
  EXPECT_LT(clock_type::now() - t0, 2s);
  EXPECT_TRUE(no_children());
  // An endless producer is stopped too.
  const auto r2 = run(handler("cat /dev/zero", false, 10s, 1000));
  EXPECT_EQ(r2.status, 413);
  EXPECT_TRUE(no_children());
}

TEST(exec_handler, output_exactly_at_the_limit_is_fine) {
  const auto r = run(handler("head -c 1000 /dev/zero", false, 10s, 1000));
  EXPECT_EQ(r.status, 200) << r.message;
  EXPECT_EQ(body_of(r).size(), 1000u);
}

TEST(exec_handler, command_not_found_is_500) {
  const auto r = run(handler("scale0-no-such-command --flag"));
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.message.find("cannot run 'scale0-no-such-command'"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("No such file"), std::string::npos) << r.message;
  EXPECT_TRUE(no_children());
}

TEST(exec_handler, shell_operators_without_shell_fail_at_creation) {
  for (const char* bad : {"ls | wc -l", "echo a; echo b", "sleep 1 &", "cat < /etc/passwd",
                          "echo a > /tmp/x", "(echo a)", "echo {a}", "echo a\necho b"}) {
    try {
      handler(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const scale0::error& e) {
      EXPECT_EQ(e.code(), 400);
      EXPECT_NE(e.message().find("--shell"), std::string::npos) << e.message();
    }
  }
  for (const char* bad : {"echo $(date)", "echo `date`", "echo 'unbalanced", "", "   "}) {
    try {
      handler(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const scale0::error& e) {
      EXPECT_EQ(e.code(), 400) << e.message();
    }
  }
  EXPECT_THROW(handler("true", false, 0ms), scale0::error);
  EXPECT_THROW(handler("", true), scale0::error);
}

TEST(exec_handler, quoted_operators_are_plain_arguments) {
  const auto r = run(handler("echo 'a | b; c'"));
  EXPECT_EQ(r.status, 200) << r.message;
  EXPECT_EQ(body_of(r), "a | b; c\n");
}

TEST(exec_handler, with_shell_operators_work) {
  const auto r = run(handler("tr a-z A-Z | rev; echo done >&2", true), {"abc"});
  EXPECT_EQ(r.status, 200) << r.message;
  EXPECT_EQ(body_of(r), "CBA");  // rev keeps the missing final newline
}

TEST(exec_handler, concurrent_jobs_run_in_parallel) {
  const auto h = handler("sleep 0.3");
  std::vector<scale0::job_result> results(4);
  const auto t0 = clock_type::now();
  {
    std::vector<std::thread> threads;
    for (auto& r : results) threads.emplace_back([&h, &r] { r = run(h); });
    for (auto& t : threads) t.join();
  }
  const auto took = clock_type::now() - t0;
  for (const auto& r : results) EXPECT_EQ(r.status, 200) << r.message;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 900ms) << "4 x sleep 0.3 on 4 threads should overlap";
  EXPECT_TRUE(no_children());
}

TEST(exec_handler, no_fd_or_process_leaks) {
  const auto cat = handler("cat");
  const auto fail = handler("echo no >&2; exit 1", true);
  const auto missing = handler("scale0-no-such-command");
  const auto big = handler("head -c 5000 /dev/zero", false, 10s, 100);
  const int before = open_fds();
  ASSERT_GT(before, 0);
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(run(cat, {"x"}).status, 200);
    EXPECT_EQ(run(fail).status, 500);
    EXPECT_EQ(run(missing).status, 500);
    EXPECT_EQ(run(big).status, 413);
  }
  EXPECT_EQ(open_fds(), before);
  EXPECT_TRUE(no_children());
}

TEST(exec_handler, the_childs_fds_are_only_stdin_stdout_stderr) {
  // /proc/self/fd of the child lists 0, 1, 2 and the fd ls uses to read the directory.
  const auto r = run(handler("ls /proc/self/fd"));
  EXPECT_EQ(r.status, 200) << r.message;
  EXPECT_EQ(body_of(r), "0\n1\n2\n3\n");
}

}  // namespace
