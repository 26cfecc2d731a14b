// SPDX-License-Identifier: Apache-2.0
// The exec handler: a job_handler that runs a command per request. The request body goes to the
// command's stdin, its stdout is the reply body.
//
//   exit 0                      -> 200, stdout as one body frame
//   exit != 0 / killed          -> 500, stderr (truncated) as the message, else "exit status N" or
//                                  "killed by signal S"
//   cannot start (not found...) -> 500 "cannot run 'prog': <reason>"
//   ran past the timeout        -> 504 "command timed out after N ms" (process group killed)
//   stdout over the limit       -> 413 "output larger than N bytes" (process group killed)
//
// Without `shell`, the command is split into words once, at creation, by wordexp(3) with
// WRDE_NOCMD: sh-style quoting, $VAR, ~ and globs are expanded; command substitution and the shell
// operators | & ; < > ( ) { } and newline are refused (use `shell`). With `shell` it runs as
// /bin/sh -c COMMAND. Each run gets its own process group; whatever is left of that group when the
// command exits, times out or overflows is killed with SIGKILL before the reply is returned.
//
// The handler is safe to call from any number of threads at once; it never changes the process's
// signal dispositions (SIGPIPE from a command that does not read its stdin is blocked and consumed
// on the calling thread).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "scale0/worker.hpp"

namespace scale0 {

struct exec_options {
  std::string command;
  bool shell = false;                        // run through /bin/sh -c
  std::chrono::milliseconds timeout{30000};  // per run; the job's deadline is used if sooner
  std::size_t max_output_bytes = 8u << 20;   // stdout beyond this -> 413
  std::size_t max_stderr_bytes = 4096;       // stderr kept for the 500 message
};

// Throws scale0::error (400) for an empty command, one that cannot be parsed (or needs `shell`), or
// a timeout below 1 ms.
job_handler make_exec_handler(exec_options options);

}  // namespace scale0
