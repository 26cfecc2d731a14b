// SPDX-License-Identifier: Apache-2.0
// What both HTTP benchmark servers answer (bench/http/run): the same status, headers and body from
// the Scale0 worker (bench_http_worker) and the plain HTTP backend (bench_http_backend), so the
// paths in front of them do equal work.
#pragma once

#include <string_view>

namespace bench::http {

// 32 bytes.
inline constexpr std::string_view body = "Hello, World! Scale0 HTTP bench\n";
inline constexpr std::string_view content_type = "text/plain";

}  // namespace bench::http
