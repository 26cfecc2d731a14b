// SPDX-License-Identifier: Apache-2.0
#include "broker_config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>
#include <variant>

#include "common/text.hpp"
#include "duration_flag.hpp"
#include "protocol/peer_codec.hpp"
#include "scale0/error.hpp"
#include "scale0/protocol.hpp"
#include "toml_guard.hpp"

namespace scale0::cli {
namespace {

using text_field = std::string broker_settings::*;
using int_field = std::int64_t broker_settings::*;
using list_field = std::vector<std::string> broker_settings::*;
using flag_field = bool broker_settings::*;

struct field {
  const char* name;
  std::variant<text_field, int_field, list_field, flag_field> member;
  std::int64_t min = 0;  // integers only
  std::int64_t max = 0;
  // strings: error or ""; lists: each item (without one, a list holds service names)
  std::function<std::string(const std::string&)> check_text;
};

// "" when `port` is a TCP port number (1-65535; 0 too when `zero_ok`).
std::string check_port(std::string_view port, bool zero_ok) {
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos)
    return "port '" + std::string(port) + "' is not a number";
  const int n = std::stoi(std::string(port));
  if (n > 65535 || (n == 0 && !zero_ok)) return "port " + std::string(port) + " is out of range";
  return "";
}

std::string check_endpoint(const std::string& ep) {
  const auto sep = ep.find("://");
  const std::string scheme = ep.substr(0, sep);
  const std::string bad = "invalid endpoint '" + ep + "': ";
  if (sep == std::string::npos || (scheme != "tcp" && scheme != "ipc" && scheme != "inproc"))
    return bad + "expected tcp://host:port, ipc://path or inproc://name";
  if (ep.size() == sep + 3) return bad + "nothing after ://";
  if (scheme != "tcp") return "";
  const auto colon = ep.rfind(':');
  if (colon <= sep + 3) return bad + "no host or no port";
  const std::string_view port = std::string_view(ep).substr(colon + 1);
  if (port == "*") return "";  // any free port
  const std::string problem = check_port(port, false);
  return problem.empty() ? "" : bad + problem;
}

// A family endpoint: "" (off, or the bound endpoint for advertise-*) when `empty_ok`, else
// tcp://host:port (a port, not `*`) or ipc://path, at most 255 bytes.
std::string check_peer_endpoint(const std::string& ep, bool empty_ok) {
  if (ep.empty()) return empty_ok ? "" : "an endpoint is needed";
  if (const std::string problem = check_endpoint(ep); !problem.empty()) return problem;
  if (!protocol::peer::valid_endpoint(ep))
    return "invalid endpoint '" + escape_text(ep) +
           "': expected tcp://host:port (a port 1-65535, not *) or ipc://path, at most 255 "
           "printable bytes";
  return "";
}

// Where the peer ROUTER binds: "" (no family), or tcp:// (a `*` port too) or ipc://.
std::string check_peer_listen(const std::string& ep) {
  if (ep.empty()) return "";
  if (const std::string problem = check_endpoint(ep); !problem.empty()) return problem;
  if (ep.rfind("inproc://", 0) == 0)
    return "invalid endpoint '" + ep + "': other brokers cannot reach inproc://";
  return "";
}

std::string check_family(const std::string& name) {
  return protocol::peer::valid_family(name)
             ? ""
             : "a family name is 1-255 bytes of printable UTF-8 (no control characters)";
}

std::string check_listen(const std::string& v) {
  if (v.empty()) return "";  // off
  const auto colon = v.rfind(':');
  const std::string bad = "invalid listen address '" + v + "': ";
  if (colon == std::string::npos || colon == 0) return bad + "expected host:port, or \"\" for none";
  const std::string problem = check_port(std::string_view(v).substr(colon + 1), true);
  return problem.empty() ? "" : bad + problem;
}

std::string one_of(const std::string& v, std::initializer_list<const char*> allowed) {
  for (const char* a : allowed)
    if (v == a) return "";
  std::string msg = "'" + v + "' is not one of";
  for (const char* a : allowed) msg += std::string(" ") + a;
  return msg;
}

const std::vector<field>& fields() {
  static const std::vector<field> all = {
      {"frontend", &broker_settings::frontend, 0, 0, check_endpoint},
      {"backend", &broker_settings::backend, 0, 0, check_endpoint},
      {"heartbeat", &broker_settings::heartbeat, 0, 0, check_endpoint},
      {"heartbeat-interval", &broker_settings::heartbeat_interval, 10, 3600000, {}},
      {"liveness", &broker_settings::liveness, 1, 100, {}},
      {"max-worker-heartbeats", &broker_settings::max_worker_heartbeats, 0, 10000000, {}},
      {"no-worker-timeout", &broker_settings::no_worker_timeout, 1, 3600000, {}},
      {"request-timeout", &broker_settings::request_timeout, 1, 86400000, {}},
      {"drain-timeout", &broker_settings::drain_timeout, 0, 3600000, {}},
      {"max-frames", &broker_settings::max_frames, 8, 100000, {}},
      {"max-message-bytes", &broker_settings::max_message_bytes, 1024, std::int64_t{1} << 31, {}},
      {"max-queue", &broker_settings::max_queue, 1, 10000000, {}},
      {"max-services", &broker_settings::max_services, 1, 10000000, {}},
      {"max-client-inflight", &broker_settings::max_client_inflight, 1, 10000000, {}},
      {"max-client-backlog-bytes",
       &broker_settings::max_client_backlog_bytes,
       1024,
       std::int64_t{1} << 40,
       {}},
      {"max-total-backlog-bytes",
       &broker_settings::max_total_backlog_bytes,
       1024,
       std::int64_t{1} << 40,
       {}},
      {"max-queue-bytes", &broker_settings::max_queue_bytes, 1024, std::int64_t{1} << 40, {}},
      {"max-total-queue-bytes",
       &broker_settings::max_total_queue_bytes,
       1024,
       std::int64_t{1} << 40,
       {}},
      {"max-unserved-services", &broker_settings::max_unserved_services, 0, 10000000, {}},
      {"max-worker-services", &broker_settings::max_worker_services, 1, 64, {}},
      {"service-ttl", &broker_settings::service_ttl, 0, 86400000, {}},
      {"max-heartbeat-interval", &broker_settings::max_heartbeat_interval, 10, 86400000, {}},
      {"mdp-heartbeat-interval", &broker_settings::mdp_heartbeat_interval, 10, 3600000, {}},
      {"idempotent", &broker_settings::idempotent, 0, 0, {}},
      {"metrics-listen", &broker_settings::metrics_listen, 0, 0, check_listen},
      {"curve-cert", &broker_settings::curve_cert, 0, 0, {}},
      {"worker-keys", &broker_settings::worker_keys, 0, 0, {}},
      {"client-keys", &broker_settings::client_keys, 0, 0, {}},
      {"admin-keys", &broker_settings::admin_keys, 0, 0, {}},
      {"handshake-timeout", &broker_settings::handshake_timeout, 100, 3600000, {}},
      {"insecure", &broker_settings::insecure, 0, 0, {}},
      {"peer-listen", &broker_settings::peer_listen, 0, 0, check_peer_listen},
      {"peer", &broker_settings::peer, 0, 0,
       [](const std::string& v) { return check_peer_endpoint(v, false); }},
      {"family", &broker_settings::family, 0, 0, check_family},
      {"fallback-family", &broker_settings::fallback_family, 0, 0, check_family},
      {"rebalance-workers", &broker_settings::rebalance_workers, 0, 0, {}},
      {"peer-cert", &broker_settings::peer_cert, 0, 0, {}},
      {"advertise-frontend", &broker_settings::advertise_frontend, 0, 0,
       [](const std::string& v) { return check_peer_endpoint(v, true); }},
      {"advertise-backend", &broker_settings::advertise_backend, 0, 0,
       [](const std::string& v) { return check_peer_endpoint(v, true); }},
      {"advertise-peer", &broker_settings::advertise_peer, 0, 0,
       [](const std::string& v) { return check_peer_endpoint(v, true); }},
      {"max-peers", &broker_settings::max_peers, 1, 4096, {}},
      {"log-level", &broker_settings::log_level, 0, 0,
       [](const std::string& v) {
         return one_of(v, {"trace", "debug", "info", "warn", "error", "critical", "off"});
       }},
      {"log-format", &broker_settings::log_format, 0, 0,
       [](const std::string& v) {
         return one_of(v, {"text", "json"});
       }},
  };
  return all;
}

const field* find_field(std::string_view name) {
  for (const auto& f : fields())
    if (name == f.name) return &f;
  return nullptr;
}

// The keys of a [service."NAME"] table. Each integer is range-checked like its broker-wide twin
// (`twin`, a top-level key of the same name); max-concurrency has none and is 1 to the most a
// worker may announce.
using opt_int = std::optional<std::int64_t> service_settings::*;
using opt_flag = std::optional<bool> service_settings::*;
struct service_field {
  const char* name;
  std::variant<opt_int, opt_flag> member;
  std::int64_t min = 0;
  std::int64_t max = 0;
};

const std::vector<service_field>& service_fields() {
  static const std::vector<service_field> all = [] {
    auto twin = [](const char* name, opt_int member) {
      const field* f = find_field(name);
      return service_field{name, member, f->min, f->max};
    };
    return std::vector<service_field>{
        twin("request-timeout", &service_settings::request_timeout),
        twin("max-queue", &service_settings::max_queue),
        {"idempotent", &service_settings::idempotent, 0, 0},
        {"max-concurrency", &service_settings::max_concurrency, 1, protocol::max_concurrency},
    };
  }();
  return all;
}

const service_field* find_service_field(std::string_view name) {
  for (const auto& f : service_fields())
    if (name == f.name) return &f;
  return nullptr;
}

// How a service table's key is named in messages: service."NAME".KEY (the name escaped).
std::string service_key(std::string_view name, std::string_view key = {}) {
  std::string k = "service.\"" + escape_text(name) + "\"";
  if (!key.empty()) k += "." + std::string(key);
  return k;
}

// "" when `name` may have a service table: a name as on the wire, not a reserved one.
std::string check_service_name(std::string_view name) {
  if (!protocol::valid_service_name(name))
    return "a service name is 1-255 bytes of printable UTF-8 (no control characters)";
  if (name.starts_with("mmi.") || name.starts_with("scale0."))
    return "service names starting with mmi. or scale0. are reserved for the broker";
  return "";
}

std::string check(const field& f, const broker_settings& s) {
  if (auto m = std::get_if<int_field>(&f.member)) {
    const auto v = s.**m;
    if (v < f.min || v > f.max)
      return std::to_string(v) + " is out of range (" + std::to_string(f.min) + " to " +
             std::to_string(f.max) + ")";
  } else if (auto t = std::get_if<text_field>(&f.member)) {
    if (f.check_text) return f.check_text(s.**t);
  } else if (auto l = std::get_if<list_field>(&f.member)) {
    for (const auto& item : s.**l) {
      if (f.check_text) {
        if (std::string problem = f.check_text(item); !problem.empty()) return problem;
      } else if (item.empty() || item.size() > 255) {
        return "service names must be 1-255 bytes";
      }
    }
  }
  return "";
}

[[noreturn]] void fail(const std::string& path, std::size_t line, std::string_view key,
                       const std::string& what) {
  std::string msg = path + ":" + std::to_string(line) + ": ";
  if (!key.empty()) msg += "key '" + std::string(key) + "': ";
  throw config_error(msg + what);
}

const char* type_name(const toml::node& n);

// An integer, or for a key of milliseconds also a duration string ("2s", "500ms", "1m").
std::int64_t read_integer(const std::string& path, std::size_t line, std::string_view key,
                          const toml::node& node) {
  if (node.is_integer()) return node.as_integer()->get();
  const std::string_view name =
      key.substr(key.rfind('.') == std::string_view::npos ? 0 : key.rfind('.') + 1);
  if (duration_key(name) && node.is_string()) {
    if (const auto ms = milliseconds_of(node.as_string()->get())) return *ms;
    fail(path, line, key,
         "'" + escape_text(node.as_string()->get()) +
             "' is not a duration (milliseconds, or a number with ms, s, m or h)");
  }
  fail(path, line, key,
       std::string(duration_key(name) ? "expected milliseconds or a duration string, found "
                                      : "expected an integer, found ") +
           type_name(node));
}

// The `service` key: one table per service, [service."NAME"], each with the keys of
// service_fields().
std::map<std::string, service_settings> read_services(const std::string& path, std::size_t line,
                                                      const toml::node& node) {
  const toml::table* all = node.as_table();
  if (all == nullptr)
    fail(path, line, "service",
         std::string("expected tables [service.\"NAME\"], found ") + type_name(node));
  std::map<std::string, service_settings> services;
  for (auto&& [name_key, entry] : *all) {
    const std::size_t at = name_key.source().begin.line;
    const std::string name(name_key.str());
    if (services.size() >= max_service_policies)
      fail(path, at, service_key(name),
           "too many service tables (at most " + std::to_string(max_service_policies) + ")");
    if (const std::string problem = check_service_name(name); !problem.empty())
      fail(path, at, service_key(name), problem);
    const toml::table* t = entry.as_table();
    if (t == nullptr)
      fail(path, at, service_key(name),
           std::string("expected a table [service.\"NAME\"], found ") + type_name(entry));
    service_settings ss;
    for (auto&& [key, value] : *t) {
      const std::size_t kline = key.source().begin.line;
      const std::string where = service_key(name, key.str());
      const service_field* f = find_service_field(key.str());
      if (f == nullptr) fail(path, kline, where, "unknown key");
      if (auto m = std::get_if<opt_int>(&f->member)) {
        const std::int64_t v = read_integer(path, kline, where, value);
        if (v < f->min || v > f->max)
          fail(path, kline, where,
               std::to_string(v) + " is out of range (" + std::to_string(f->min) + " to " +
                   std::to_string(f->max) + ")");
        ss.*(*m) = v;
      } else if (auto b = std::get_if<opt_flag>(&f->member)) {
        if (!value.is_boolean())
          fail(path, kline, where,
               std::string("expected true or false, found ") + type_name(value));
        ss.*(*b) = value.as_boolean()->get();
      }
    }
    services.emplace(name, ss);
  }
  return services;
}

// The key a syntax error's line assigns to, if it looks like `key = ...`; "" otherwise.
std::string key_on_line(const std::string& path, std::size_t line) {
  std::ifstream in(path);
  std::string text;
  for (std::size_t i = 0; i < line && std::getline(in, text); ++i) {
  }
  const auto first = text.find_first_not_of(" \t");
  const auto eq = text.find('=');
  if (first == std::string::npos || eq == std::string::npos || eq <= first) return "";
  std::string key = text.substr(first, eq - first);
  key.erase(key.find_last_not_of(" \t") + 1);
  if (key.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
      std::string::npos)
    return "";
  return key;
}

const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date or time";
  }
}

}  // namespace

namespace {

// The secret key of certificate `path` ("" for none): the running one on a reload (certificates are
// read only at start), else read from the file, which must be a secret certificate.
std::string secret_key_of(const std::string& path, const std::string* running,
                          const char* who_needs) {
  if (path.empty()) return {};
  if (running != nullptr) return *running;
  const security::keypair k = security::load_certificate(path);
  if (k.secret_key.empty())
    throw error(status::bad_request, path + ": a public certificate; " + who_needs +
                                         " its secret one (NAME_secret from scale0 keygen)");
  return k.secret_key;
}

}  // namespace

broker_options broker_settings::to_options(const std::string* running_secret,
                                           const std::string* running_peer_secret) const {
  using std::chrono::milliseconds;
  broker_options o;
  o.frontend = frontend;
  o.backend = backend;
  o.heartbeat = heartbeat;
  o.heartbeat_interval = milliseconds(heartbeat_interval);
  o.liveness = static_cast<std::uint32_t>(liveness);
  o.max_worker_heartbeats = static_cast<std::uint32_t>(max_worker_heartbeats);
  o.no_worker_timeout = milliseconds(no_worker_timeout);
  o.request_timeout = milliseconds(request_timeout);
  o.drain_timeout = milliseconds(drain_timeout);
  o.max_frames = static_cast<std::size_t>(max_frames);
  o.max_message_bytes = static_cast<std::size_t>(max_message_bytes);
  o.max_queue = static_cast<std::size_t>(max_queue);
  o.max_services = static_cast<std::size_t>(max_services);
  o.max_client_inflight = static_cast<std::size_t>(max_client_inflight);
  o.max_client_backlog_bytes = static_cast<std::size_t>(max_client_backlog_bytes);
  o.max_total_backlog_bytes = static_cast<std::size_t>(max_total_backlog_bytes);
  o.max_queue_bytes = static_cast<std::size_t>(max_queue_bytes);
  o.max_total_queue_bytes = static_cast<std::size_t>(max_total_queue_bytes);
  o.max_unserved_services = static_cast<std::size_t>(max_unserved_services);
  o.max_worker_services = static_cast<std::size_t>(max_worker_services);
  o.service_ttl = milliseconds(service_ttl);
  o.max_heartbeat_interval = milliseconds(max_heartbeat_interval);
  o.mdp_heartbeat_interval = milliseconds(mdp_heartbeat_interval);
  o.idempotent_services = idempotent;
  for (const auto& [name, ss] : services) {
    service_policy& p = o.service_policies[name];
    if (ss.request_timeout) p.request_timeout = milliseconds(*ss.request_timeout);
    if (ss.max_queue) p.max_queue = static_cast<std::size_t>(*ss.max_queue);
    p.idempotent = ss.idempotent;
    if (ss.max_concurrency) p.max_concurrency = static_cast<std::uint32_t>(*ss.max_concurrency);
  }
  o.metrics_listen = metrics_listen;
  o.curve_secret_key = secret_key_of(curve_cert, running_secret, "the broker needs");
  if (!worker_keys.empty()) o.worker_keys = security::load_key_list(worker_keys);
  o.handshake_timeout = milliseconds(handshake_timeout);
  o.insecure = insecure;
  if (client_keys == "any")
    o.any_client_key = true;
  else if (!client_keys.empty())
    o.client_keys = security::load_key_list(client_keys);
  if (!admin_keys.empty()) o.admin_keys = security::load_key_names(admin_keys);
  o.peer_listen = peer_listen;
  o.peers = peer;
  o.family = family;
  o.fallback_families = fallback_family;
  o.rebalance_workers = rebalance_workers;
  o.peer_secret_key = secret_key_of(peer_cert, running_peer_secret, "the family's brokers need");
  o.advertise_frontend = advertise_frontend;
  o.advertise_backend = advertise_backend;
  o.advertise_peer = advertise_peer;
  o.max_peers = static_cast<std::size_t>(max_peers);
  return o;
}

const std::vector<std::string>& setting_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& f : fields()) n.emplace_back(f.name);
    return n;
  }();
  return names;
}

const std::vector<std::string>& service_setting_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& f : service_fields()) n.emplace_back(f.name);
    return n;
  }();
  return names;
}

broker_settings load_config(const std::string& path, broker_settings s) {
  // Bytes toml++ 3.3 cannot read safely are refused first (toml_guard.hpp). A file that cannot be
  // opened is left to the parser, which reports it.
  if (std::ifstream in{path, std::ios::binary}) {
    std::ostringstream text;
    text << in.rdbuf();
    if (const toml_hazard h = find_toml_hazard(text.str()); h.line != 0)
      fail(path, h.line, "", h.what);
  }
  toml::table doc;
  try {
    doc = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto line = e.source().begin.line;
    if (line == 0) throw config_error(path + ": " + std::string(e.description()));
    fail(path, line, key_on_line(path, line), std::string(e.description()));
  }
  for (auto&& [key, node] : doc) {
    const std::size_t line = key.source().begin.line;
    if (key.str() == "service") {
      s.services = read_services(path, line, node);
      continue;
    }
    const field* f = find_field(key.str());
    if (f == nullptr) fail(path, line, key.str(), "unknown key");
    if (auto m = std::get_if<int_field>(&f->member)) {
      s.** m = read_integer(path, line, key.str(), node);
    } else if (auto t = std::get_if<text_field>(&f->member)) {
      if (!node.is_string())
        fail(path, line, key.str(), std::string("expected a string, found ") + type_name(node));
      s.** t = node.as_string()->get();
    } else if (auto l = std::get_if<list_field>(&f->member)) {
      const toml::array* a = node.as_array();
      if (a == nullptr)
        fail(path, line, key.str(),
             std::string("expected an array of strings, found ") + type_name(node));
      std::vector<std::string> values;
      for (const auto& item : *a) {
        if (!item.is_string())
          fail(path, line, key.str(), std::string("expected strings, found ") + type_name(item));
        values.push_back(item.as_string()->get());
      }
      s.** l = std::move(values);
    } else if (auto b = std::get_if<flag_field>(&f->member)) {
      if (!node.is_boolean())
        fail(path, line, key.str(),
             std::string("expected true or false, found ") + type_name(node));
      s.** b = node.as_boolean()->get();
    }
    if (const std::string problem = check(*f, s); !problem.empty())
      fail(path, line, key.str(), problem);
  }
  return s;
}

void copy_setting(const std::string& name, const broker_settings& from, broker_settings& to) {
  const field* f = find_field(name);
  if (f == nullptr) return;
  std::visit([&](auto member) { to.*member = from.*member; }, f->member);
}

std::string check_setting(const std::string& name, const broker_settings& s) {
  const field* f = find_field(name);
  return f == nullptr ? "unknown setting" : check(*f, s);
}

std::string to_toml(const broker_settings& s) {
  // Written key by key (not via a toml::table, which sorts keys) so the output follows the
  // documented order; toml++ formats each value.
  std::ostringstream out;
  out << "# scale0 broker configuration (every key is also a flag: --KEY)\n";
  for (const auto& f : fields()) {
    out << f.name << " = ";
    if (auto m = std::get_if<int_field>(&f.member)) {
      out << toml::value<std::int64_t>(s.**m);
    } else if (auto t = std::get_if<text_field>(&f.member)) {
      out << toml::value<std::string>(s.**t);
    } else if (auto l = std::get_if<list_field>(&f.member)) {
      toml::array a;
      for (const auto& v : s.**l) a.push_back(v);
      out << a;
    } else if (auto b = std::get_if<flag_field>(&f.member)) {
      out << (s.**b ? "true" : "false");
    }
    out << '\n';
  }
  for (const auto& [name, ss] : s.services) {
    out << "\n[service." << toml::value<std::string>(name) << "]\n";
    for (const auto& f : service_fields()) {
      if (auto m = std::get_if<opt_int>(&f.member); m != nullptr && (ss.*(*m)).has_value()) {
        out << f.name << " = " << toml::value<std::int64_t>(*(ss.*(*m))) << '\n';
      } else if (auto b = std::get_if<opt_flag>(&f.member);
                 b != nullptr && (ss.*(*b)).has_value()) {
        out << f.name << " = " << (*(ss.*(*b)) ? "true" : "false") << '\n';
      }
    }
  }
  return out.str();
}

}  // namespace scale0::cli
