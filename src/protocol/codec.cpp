// The decoder is a pure function over frames: every size is checked before a field is read, and
// nothing here throws or asserts on input. Encoders only append frames.
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"

namespace scale0::protocol {
namespace {

std::uint64_t load_be(const zmq::message_t& m, std::size_t width) noexcept {
  const auto* p = static_cast<const unsigned char*>(m.data());
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < width; ++i) v = (v << 8) | p[i];
  return v;
}

zmq::message_t store_be(std::uint64_t v, std::size_t width) {
  unsigned char buf[8];
  for (std::size_t i = 0; i < width; ++i)
    buf[width - 1 - i] = static_cast<unsigned char>(v >> (8 * i));
  return zmq::message_t(buf, width);
}

bool valid_service(const zmq::message_t& m) noexcept {
  return m.size() >= 1 && m.size() <= max_service_name;
}

inbound client_error(std::uint16_t code, std::string_view reason, const frames& f) noexcept {
  inbound in;
  in.kind = inbound_kind::client_error;
  in.status = code;
  in.reason = reason;
  if (f.size() > 4 && f[4].size() == 8) in.id = read_u64(f[4]);
  return in;
}

inbound worker_error(std::uint16_t code, std::string_view reason) noexcept {
  inbound in;
  in.kind = inbound_kind::worker_error;
  in.status = code;
  in.reason = reason;
  return in;
}

inbound decode_client(const frames& f) noexcept {
  // f: identity · "" · S0C1 · command · ...
  if (f.size() < 4 || f[3].size() != 1)
    return client_error(status::bad_request, "missing or malformed command frame", f);
  const auto cmd = static_cast<client_command>(*static_cast<const std::uint8_t*>(f[3].data()));
  inbound in;
  switch (cmd) {
    case client_command::request:
      if (f.size() < 7)
        return client_error(status::bad_request,
                            "REQUEST needs request-id, service and timeout frames", f);
      if (f[4].size() != 8)
        return client_error(status::bad_request, "request-id must be 8 bytes", f);
      if (!valid_service(f[5]))
        return client_error(status::bad_request, "service name must be 1-255 bytes", f);
      if (f[6].size() != 4) return client_error(status::bad_request, "timeout must be 4 bytes", f);
      in.kind = inbound_kind::client_request;
      in.id = read_u64(f[4]);
      in.service = view(f[5]);
      in.timeout_ms = read_u32(f[6]);
      in.first = 7;
      return in;
    case client_command::ping:
      in.kind = inbound_kind::client_ping;
      in.first = 4;
      return in;
    default:
      return client_error(status::not_implemented, "unknown command", f);
  }
}

inbound decode_ready(const frames& f) noexcept {
  // identity · "" · S0W1 · 0x01 · concurrency · heartbeat-ms · flags · service...
  if (f.size() < 8)
    return worker_error(status::bad_request,
                        "READY needs concurrency, heartbeat, flags and a service");
  if (f[4].size() != 4 || f[5].size() != 4 || f[6].size() != 1)
    return worker_error(status::bad_request, "READY field of the wrong size");
  inbound in;
  in.concurrency = read_u32(f[4]);
  in.heartbeat_ms = read_u32(f[5]);
  in.flags = *static_cast<const std::uint8_t*>(f[6].data());
  if (in.concurrency < 1 || in.concurrency > max_concurrency)
    return worker_error(status::bad_request, "concurrency must be 1-1024");
  if ((in.flags & ~flag_idempotent) != 0)
    return worker_error(status::bad_request, "unknown READY flags");
  if (f.size() - 7 > max_services_per_worker)
    return worker_error(status::bad_request, "too many services in READY");
  for (std::size_t i = 7; i < f.size(); ++i)
    if (!valid_service(f[i]))
      return worker_error(status::bad_request, "service name must be 1-255 bytes");
  in.kind = inbound_kind::worker_ready;
  in.service = view(f[7]);
  in.first = 7;
  return in;
}

inbound decode_worker(const frames& f) noexcept {
  if (f.size() < 4 || f[3].size() != 1)
    return worker_error(status::bad_request, "missing or malformed command frame");
  const auto cmd = static_cast<worker_command>(*static_cast<const std::uint8_t*>(f[3].data()));
  inbound in;
  switch (cmd) {
    case worker_command::ready:
      return decode_ready(f);
    case worker_command::reply:
      if (f.size() < 7 || f[4].size() != 8 || f[5].size() != 2)
        return worker_error(status::bad_request,
                            "REPLY needs job-id (8 bytes), status (2 bytes) and message");
      in.kind = inbound_kind::worker_reply;
      in.id = read_u64(f[4]);
      in.reply_status = read_u16(f[5]);
      in.first = 6;  // message frame, then body
      return in;
    case worker_command::heartbeat:
      in.kind = inbound_kind::worker_heartbeat;
      return in;
    case worker_command::disconnect:
      in.kind = inbound_kind::worker_disconnect;
      return in;
    case worker_command::stopping:
      in.kind = inbound_kind::worker_stopping;
      return in;
    default:
      return worker_error(status::not_implemented, "unknown command");
  }
}

inbound decode_mdp_worker(const frames& f) noexcept {
  inbound in;  // invalid MDP messages are dropped, as RFC 7 says
  if (f.size() < 4 || f[3].size() != 1) return in;
  switch (static_cast<mdp_command>(*static_cast<const std::uint8_t*>(f[3].data()))) {
    case mdp_command::ready:
      if (f.size() != 5 || !valid_service(f[4])) return in;
      in.kind = inbound_kind::mdp_ready;
      in.service = view(f[4]);
      in.first = 4;
      return in;
    case mdp_command::reply:
      // client address (our job-id) · "" · body
      if (f.size() < 6 || f[4].size() != 8 || f[5].size() != 0) return in;
      in.kind = inbound_kind::mdp_reply;
      in.id = read_u64(f[4]);
      in.reply_status = status::ok;
      in.first = 6;
      return in;
    case mdp_command::heartbeat:
      in.kind = inbound_kind::mdp_heartbeat;
      return in;
    case mdp_command::disconnect:
      in.kind = inbound_kind::mdp_disconnect;
      return in;
    default:
      return in;
  }
}

}  // namespace

std::string_view view(const zmq::message_t& m) noexcept {
  return {static_cast<const char*>(m.data()), m.size()};
}
std::uint64_t read_u64(const zmq::message_t& m) noexcept {
  return load_be(m, 8);
}
std::uint32_t read_u32(const zmq::message_t& m) noexcept {
  return static_cast<std::uint32_t>(load_be(m, 4));
}
std::uint16_t read_u16(const zmq::message_t& m) noexcept {
  return static_cast<std::uint16_t>(load_be(m, 2));
}
zmq::message_t u64_frame(std::uint64_t v) {
  return store_be(v, 8);
}
zmq::message_t u32_frame(std::uint32_t v) {
  return store_be(v, 4);
}
zmq::message_t u16_frame(std::uint16_t v) {
  return store_be(v, 2);
}

inbound decode_inbound(const frames& f) noexcept {
  if (f.size() < 3 || f[1].size() != 0) return {};
  const std::string_view header = view(f[2]);
  if (header == client_header) return decode_client(f);
  if (header == worker_header) return decode_worker(f);
  if (header == mdp_client_header) {
    inbound in;
    if (f.size() < 5 || !valid_service(f[3])) return in;  // RFC 7: body is 1+ frames
    in.kind = inbound_kind::mdp_request;
    in.service = view(f[3]);
    in.first = 4;
    return in;
  }
  if (header == mdp_worker_header) return decode_mdp_worker(f);
  if (header.size() == 4 && header.substr(0, 3) == "S0C")
    return client_error(status::bad_version,
                        "protocol version not supported: this broker speaks S0C1", f);
  if (header.size() == 4 && header.substr(0, 3) == "S0W")
    return worker_error(status::bad_version,
                        "protocol version not supported: this broker speaks S0W1");
  return {};
}

worker_inbound decode_for_worker(const frames& f) noexcept {
  worker_inbound in;
  if (f.size() < 3 || f[0].size() != 0 || view(f[1]) != worker_header || f[2].size() != 1)
    return in;
  switch (static_cast<worker_command>(*static_cast<const std::uint8_t*>(f[2].data()))) {
    case worker_command::welcome:
      if (f.size() != 7 || f[3].size() != 4 || f[4].size() != 4 || f[6].size() != 8) return in;
      in.kind = worker_inbound_kind::welcome;
      in.heartbeat_ms = read_u32(f[3]);
      in.liveness = read_u32(f[4]);
      in.endpoint = view(f[5]);
      in.broker_id = read_u64(f[6]);
      return in;
    case worker_command::request:
      if (f.size() < 6 || f[3].size() != 8 || !valid_service(f[4]) || f[5].size() != 4) return in;
      in.kind = worker_inbound_kind::request;
      in.job_id = read_u64(f[3]);
      in.service = view(f[4]);
      in.timeout_ms = read_u32(f[5]);
      in.first = 6;
      return in;
    case worker_command::disconnect:
      in.kind = worker_inbound_kind::disconnect;
      if (f.size() >= 5 && f[3].size() == 2) {
        in.status = read_u16(f[3]);
        in.message = view(f[4]);
      }
      return in;
    case worker_command::stopping:
      in.kind = worker_inbound_kind::stopping;
      return in;
    default:
      return in;
  }
}

client_inbound decode_for_client(const frames& f) noexcept {
  client_inbound in;
  if (f.size() < 3 || f[0].size() != 0 || view(f[1]) != client_header || f[2].size() != 1)
    return in;
  switch (static_cast<client_command>(*static_cast<const std::uint8_t*>(f[2].data()))) {
    case client_command::reply:
      if (f.size() < 6 || f[3].size() != 8 || f[4].size() != 2) return in;
      in.kind = client_inbound_kind::reply;
      in.id = read_u64(f[3]);
      in.status = read_u16(f[4]);
      in.message = view(f[5]);
      in.first = 6;
      return in;
    case client_command::pong:
      in.kind = client_inbound_kind::pong;
      in.first = 3;
      return in;
    default:
      return in;
  }
}

bool decode_heartbeat(const frames& f, heartbeat& out) noexcept {
  if (f.size() != 3 || view(f[0]) != heartbeat_header || f[1].size() != 8 || f[2].size() != 8)
    return false;
  out.broker_id = read_u64(f[1]);
  out.sequence = read_u64(f[2]);
  return true;
}

namespace {
void append_head(frames& out, std::string_view header, std::uint8_t command) {
  out.emplace_back();
  out.emplace_back(header.data(), header.size());
  out.emplace_back(&command, 1);
}
}  // namespace

void append_client_request(frames& out, std::uint64_t id, std::string_view service,
                           std::uint32_t timeout_ms) {
  append_head(out, client_header, static_cast<std::uint8_t>(client_command::request));
  out.push_back(u64_frame(id));
  out.push_back(str_frame(service));
  out.push_back(u32_frame(timeout_ms));
}

void append_client_reply(frames& out, std::uint64_t id, std::uint16_t code,
                         std::string_view message) {
  append_head(out, client_header, static_cast<std::uint8_t>(client_command::reply));
  out.push_back(u64_frame(id));
  out.push_back(u16_frame(code));
  out.push_back(str_frame(message));
}

void append_client_ping(frames& out) {
  append_head(out, client_header, static_cast<std::uint8_t>(client_command::ping));
}
void append_client_pong(frames& out) {
  append_head(out, client_header, static_cast<std::uint8_t>(client_command::pong));
}

void append_worker_ready(frames& out, std::uint32_t concurrency, std::uint32_t heartbeat_ms,
                         std::uint8_t flags, const std::vector<std::string_view>& services) {
  append_head(out, worker_header, static_cast<std::uint8_t>(worker_command::ready));
  out.push_back(u32_frame(concurrency));
  out.push_back(u32_frame(heartbeat_ms));
  out.emplace_back(&flags, 1);
  for (auto s : services) out.push_back(str_frame(s));
}

void append_worker_welcome(frames& out, std::uint32_t heartbeat_ms, std::uint32_t liveness,
                           std::string_view endpoint, std::uint64_t broker_id) {
  append_head(out, worker_header, static_cast<std::uint8_t>(worker_command::welcome));
  out.push_back(u32_frame(heartbeat_ms));
  out.push_back(u32_frame(liveness));
  out.push_back(str_frame(endpoint));
  out.push_back(u64_frame(broker_id));
}

void append_worker_request(frames& out, std::uint64_t job_id, std::string_view service,
                           std::uint32_t timeout_ms) {
  append_head(out, worker_header, static_cast<std::uint8_t>(worker_command::request));
  out.push_back(u64_frame(job_id));
  out.push_back(str_frame(service));
  out.push_back(u32_frame(timeout_ms));
}

void append_worker_reply(frames& out, std::uint64_t job_id, std::uint16_t code,
                         std::string_view message) {
  append_head(out, worker_header, static_cast<std::uint8_t>(worker_command::reply));
  out.push_back(u64_frame(job_id));
  out.push_back(u16_frame(code));
  out.push_back(str_frame(message));
}

void append_worker_heartbeat(frames& out) {
  append_head(out, worker_header, static_cast<std::uint8_t>(worker_command::heartbeat));
}

void append_worker_disconnect(frames& out, std::uint16_t code, std::string_view message) {
  append_head(out, worker_header, static_cast<std::uint8_t>(worker_command::disconnect));
  if (code != 0) {
    out.push_back(u16_frame(code));
    out.push_back(str_frame(message));
  }
}

void append_worker_stopping(frames& out) {
  append_head(out, worker_header, static_cast<std::uint8_t>(worker_command::stopping));
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
