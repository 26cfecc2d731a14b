// SPDX-License-Identifier: Apache-2.0
// The broker's settings as an operator sees them: one key per `scale0 broker` flag, read from a
// TOML file (toml++), overridden by flags, printed back as TOML.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "scale0/broker.hpp"

namespace scale0::cli {

// One `[service."NAME"]` table of the file: a service's policy. A key left out falls back on the
// broker-wide setting of the same name (docs/operations.md, "Service policies").
struct service_settings {
  std::optional<std::int64_t> request_timeout;  // ms
  std::optional<std::int64_t> max_queue;
  std::optional<bool> idempotent;
  std::optional<std::int64_t> max_concurrency;

  bool operator==(const service_settings&) const = default;
};

struct broker_settings {
  std::string frontend = "tcp://127.0.0.1:5555";
  std::string backend = "tcp://127.0.0.1:5556";
  std::string heartbeat = "tcp://127.0.0.1:5557";
  std::int64_t heartbeat_interval = 1000;  // ms
  std::int64_t liveness = 3;
  std::int64_t max_worker_heartbeats = 500;  // per second; 0: granted intervals do not scale
  std::int64_t no_worker_timeout = 1000;     // ms
  std::int64_t request_timeout = 30000;      // ms
  std::int64_t drain_timeout = 10000;        // ms
  std::int64_t max_frames = 128;
  std::int64_t max_message_bytes = 8 << 20;
  std::int64_t max_queue = 10000;
  std::int64_t max_services = 10000;
  std::int64_t max_client_inflight = 10000;
  std::int64_t max_client_backlog_bytes = std::int64_t{64} << 20;
  std::int64_t max_total_backlog_bytes = std::int64_t{256} << 20;
  std::int64_t max_queue_bytes = std::int64_t{128} << 20;
  std::int64_t max_total_queue_bytes = std::int64_t{1} << 30;
  std::int64_t max_unserved_services = 1000;
  std::int64_t max_worker_services = 64;
  std::int64_t service_ttl = 10000;             // ms
  std::int64_t max_heartbeat_interval = 60000;  // ms
  std::int64_t mdp_heartbeat_interval = 2500;   // ms
  std::vector<std::string> idempotent;
  std::string metrics_listen = "127.0.0.1:9555";
  std::string curve_cert;                 // the broker's secret certificate: CURVE on
  std::string worker_keys;                // key list file
  std::string client_keys;                // key list file, or "any"
  std::string admin_keys;                 // file of keys that may ask scale0.status
  std::int64_t handshake_timeout = 5000;  // ms
  bool insecure = false;                  // allow non-loopback endpoints without CURVE
  // The family (docs/family.md).
  std::string peer_listen = "tcp://127.0.0.1:5558";  // "" : no family
  std::vector<std::string> peer;                     // brokers to join
  std::string family = "default";
  std::vector<std::string> fallback_family;
  bool rebalance_workers = true;   // point workers at the family broker that needs them more
  std::string peer_cert;           // the family's secret certificate: CURVE on the peer port
  std::string advertise_frontend;  // "" : the bound endpoint
  std::string advertise_backend;
  std::string advertise_peer;
  std::int64_t max_peers = 256;
  std::string log_level = "info";
  std::string log_format = "text";
  // The [service."NAME"] tables, by service name. Only in the file (no flag); a file that has
  // service tables replaces the base's.
  std::map<std::string, service_settings> services;

  // Reads the certificate and key lists too; throws scale0::error naming the file.
  // `running_secret`, `running_peer_secret`: the broker's and the peer network's secret keys
  // already loaded (a reload; certificates are read only at start, so a moved file cannot block
  // revoking keys or any other change).
  broker_options to_options(const std::string* running_secret = nullptr,
                            const std::string* running_peer_secret = nullptr) const;
};

// A bad configuration: what() names the file, the line and the key.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Every key, in the order they are documented; the same names as the flags without "--".
// (The [service."NAME"] tables are not settings of their own: they are read and printed with the
// file, and have no flag.)
const std::vector<std::string>& setting_names();

// The keys of a [service."NAME"] table, in the order they are documented.
const std::vector<std::string>& service_setting_names();

// Reads `path` over `base`. Throws config_error on a syntax error, an unknown key, a wrong type or
// an invalid value.
broker_settings load_config(const std::string& path, broker_settings base = {});

// Copies the setting called `name` from `from` into `to`.
void copy_setting(const std::string& name, const broker_settings& from, broker_settings& to);

// Checks one setting's value; returns an error message or "".
std::string check_setting(const std::string& name, const broker_settings& s);

// The settings as a TOML document: every key, then one [service."NAME"] table per service.
std::string to_toml(const broker_settings& s);

}  // namespace scale0::cli
