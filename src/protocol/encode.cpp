// SPDX-License-Identifier: Apache-2.0
// Encoders: each appends one message's frames (S0/1 or S0/2, as asked) to `out`.
#include "protocol/packing.hpp"
#include "scale0/protocol.hpp"

namespace scale0::protocol {

using packing::append_packed;
using packing::reader;
using packing::str16_size;
using packing::str8_size;
using packing::writer;

namespace {
void append_head(frames& out, std::string_view header, std::uint8_t command) {
  out.emplace_back();
  out.emplace_back(header.data(), header.size());
  out.emplace_back(&command, 1);
}

constexpr auto cmd(client_command c) noexcept {
  return static_cast<std::uint8_t>(c);
}
constexpr auto cmd(worker_command c) noexcept {
  return static_cast<std::uint8_t>(c);
}
}  // namespace

void append_client_request(frames& out, std::uint64_t id, std::string_view service,
                           std::uint32_t timeout_ms, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, client_header_v2, cmd(client_command::request), 12 + str8_size(service))
        .u64(id)
        .u32(timeout_ms)
        .str8(service);
    return;
  }
  append_head(out, client_header, cmd(client_command::request));
  out.push_back(u64_frame(id));
  out.push_back(str_frame(service));
  out.push_back(u32_frame(timeout_ms));
}

void append_client_reply(frames& out, std::uint64_t id, std::uint16_t code,
                         std::string_view message, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, client_header_v2, cmd(client_command::reply), 10 + str16_size(message))
        .u64(id)
        .u16(code)
        .str16(message);
    return;
  }
  append_head(out, client_header, cmd(client_command::reply));
  out.push_back(u64_frame(id));
  out.push_back(u16_frame(code));
  out.push_back(str_frame(message));
}

void append_client_hello(frames& out, std::uint8_t flags) {
  if (flags == 0) {
    append_packed(out, client_header_v2, cmd(client_command::hello), 0);
    return;
  }
  append_packed(out, client_header_v2, cmd(client_command::hello), 1).u8(flags);
}

void append_client_welcome(frames& out, std::uint64_t broker_id,
                           const std::vector<std::string_view>& frontends,
                           const std::vector<std::string_view>& idempotent_services,
                           std::optional<std::uint8_t> flags) {
  const std::size_t ne = std::min(frontends.size(), max_welcome_endpoints);
  const std::size_t ns = std::min(idempotent_services.size(), max_welcome_services);
  std::size_t size = 12 + (flags ? 1 : 0);
  for (std::size_t i = 0; i < ne; ++i) size += str16_size(frontends[i]);
  for (std::size_t i = 0; i < ns; ++i) size += str8_size(idempotent_services[i]);
  auto w = append_packed(out, client_header_v2, cmd(client_command::welcome), size);
  w.u64(broker_id).u16(static_cast<std::uint16_t>(ne));
  for (std::size_t i = 0; i < ne; ++i) w.str16(frontends[i]);
  w.u16(static_cast<std::uint16_t>(ns));
  for (std::size_t i = 0; i < ns; ++i) w.str8(idempotent_services[i]);
  if (flags) w.u8(*flags);
}

void append_worker_config(frames& out, std::uint16_t code, std::uint64_t policy_version,
                          const std::vector<service_config>& services) {
  const std::size_t n = std::min(services.size(), max_config_services);
  std::size_t size = 12;
  for (std::size_t i = 0; i < n; ++i) size += str8_size(services[i].service) + 13;
  auto w = append_packed(out, worker_header_v2, cmd(worker_command::config), size);
  w.u16(code).u64(policy_version).u16(static_cast<std::uint16_t>(n));
  for (std::size_t i = 0; i < n; ++i)
    w.str8(services[i].service)
        .u32(services[i].request_timeout_ms)
        .u32(services[i].max_queue)
        .u32(services[i].max_concurrency)
        .u8(services[i].idempotent);
}

void append_worker_config_version(frames& out, std::uint64_t policy_version) {
  append_packed(out, worker_header_v2, cmd(worker_command::config), 8).u64(policy_version);
}

void append_client_ping(frames& out, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, client_header_v2, cmd(client_command::ping), 0);
    return;
  }
  append_head(out, client_header, cmd(client_command::ping));
}

void append_client_pong(frames& out, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, client_header_v2, cmd(client_command::pong), 0);
    return;
  }
  append_head(out, client_header, cmd(client_command::pong));
}

void append_worker_ready(frames& out, std::uint32_t concurrency, std::uint32_t heartbeat_ms,
                         std::uint8_t flags, const std::vector<std::string_view>& services,
                         std::uint8_t version, std::string_view name) {
  if (version == version_2) {
    std::size_t size = 9;
    for (auto s : services) size += str8_size(s);
    writer w = append_packed(out, worker_header_v2, cmd(worker_command::ready), size);
    w.u32(concurrency).u32(heartbeat_ms).u8(flags);
    for (auto s : services) w.str8(s);
    if (!name.empty()) out.push_back(str_frame(name));
    return;
  }
  append_head(out, worker_header, cmd(worker_command::ready));
  out.push_back(u32_frame(concurrency));
  out.push_back(u32_frame(heartbeat_ms));
  out.emplace_back(&flags, 1);
  for (auto s : services) out.push_back(str_frame(s));
}

void append_worker_welcome(frames& out, std::uint32_t heartbeat_ms, std::uint32_t liveness,
                           std::string_view endpoint, std::uint64_t broker_id, std::uint8_t version,
                           std::uint32_t broker_heartbeat_ms,
                           const std::vector<std::string_view>& backends) {
  if (version == version_2) {
    const std::size_t n = std::min(backends.size(), max_welcome_endpoints);
    std::size_t size = 20 + str16_size(endpoint) + (n != 0 ? 2 : 0);
    for (std::size_t i = 0; i < n; ++i) size += str16_size(backends[i]);
    auto w = append_packed(out, worker_header_v2, cmd(worker_command::welcome), size);
    w.u32(heartbeat_ms)
        .u32(liveness)
        .u32(broker_heartbeat_ms != 0 ? broker_heartbeat_ms : heartbeat_ms)
        .u64(broker_id)
        .str16(endpoint);
    if (n != 0) {
      w.u16(static_cast<std::uint16_t>(n));
      for (std::size_t i = 0; i < n; ++i) w.str16(backends[i]);
    }
    return;
  }
  append_head(out, worker_header, cmd(worker_command::welcome));
  out.push_back(u32_frame(heartbeat_ms));
  out.push_back(u32_frame(liveness));
  out.push_back(str_frame(endpoint));
  out.push_back(u64_frame(broker_id));
}

void append_worker_request(frames& out, std::uint64_t job_id, std::string_view service,
                           std::uint32_t timeout_ms, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, worker_header_v2, cmd(worker_command::request), 12 + str8_size(service))
        .u64(job_id)
        .u32(timeout_ms)
        .str8(service);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::request));
  out.push_back(u64_frame(job_id));
  out.push_back(str_frame(service));
  out.push_back(u32_frame(timeout_ms));
}

void append_worker_reply(frames& out, std::uint64_t job_id, std::uint16_t code,
                         std::string_view message, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, worker_header_v2, cmd(worker_command::reply), 10 + str16_size(message))
        .u64(job_id)
        .u16(code)
        .str16(message);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::reply));
  out.push_back(u64_frame(job_id));
  out.push_back(u16_frame(code));
  out.push_back(str_frame(message));
}

void append_worker_heartbeat(frames& out, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, worker_header_v2, cmd(worker_command::heartbeat), 0);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::heartbeat));
}

void append_worker_disconnect(frames& out, std::uint16_t code, std::string_view message,
                              std::uint8_t version) {
  if (version == version_2) {
    const std::size_t size = code != 0 ? 2 + str16_size(message) : 0;
    writer w = append_packed(out, worker_header_v2, cmd(worker_command::disconnect), size);
    if (code != 0) w.u16(code).str16(message);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::disconnect));
  if (code != 0) {
    out.push_back(u16_frame(code));
    out.push_back(str_frame(message));
  }
}

void append_worker_stopping(frames& out, std::uint8_t version) {
  if (version == version_2) {
    append_packed(out, worker_header_v2, cmd(worker_command::stopping), 0);
    return;
  }
  append_head(out, worker_header, cmd(worker_command::stopping));
}

void append_heartbeat(frames& out, std::uint64_t broker_id, std::uint64_t sequence) {
  out.push_back(str_frame(heartbeat_header));
  out.push_back(u64_frame(broker_id));
  out.push_back(u64_frame(sequence));
}

void append_mdp_client_reply(frames& out, std::string_view service) {
  out.emplace_back();
  out.push_back(str_frame(mdp_client_header));
  out.push_back(str_frame(service));
}

void append_mdp_worker_request(frames& out, std::uint64_t job_id) {
  append_head(out, mdp_worker_header, static_cast<std::uint8_t>(mdp_command::request));
  out.push_back(u64_frame(job_id));
  out.emplace_back();
}

void append_mdp_worker_command(frames& out, mdp_command command) {
  append_head(out, mdp_worker_header, static_cast<std::uint8_t>(command));
}

}  // namespace scale0::protocol
