// SPDX-License-Identifier: Apache-2.0
// The broker's configuration file (apps/scale0/broker_config.hpp): a good file, every kind of bad
// file (the message names the file, the line and the key), to_toml -> load_config round trips,
// copy_setting and check_setting. Files are written under a unique directory in /tmp.
#include "broker_config.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "scale0/error.hpp"

namespace {

using scale0::cli::broker_settings;
using scale0::cli::check_setting;
using scale0::cli::config_error;
using scale0::cli::copy_setting;
using scale0::cli::load_config;
using scale0::cli::service_setting_names;
using scale0::cli::service_settings;
using scale0::cli::setting_names;
using scale0::cli::to_toml;

// The documented keys, in the documented order (`scale0 broker --help`).
const std::vector<std::string> kDocumentedKeys = {"frontend",
                                                  "backend",
                                                  "heartbeat",
                                                  "heartbeat-interval",
                                                  "liveness",
                                                  "max-worker-heartbeats",
                                                  "no-worker-timeout",
                                                  "request-timeout",
                                                  "drain-timeout",
                                                  "max-frames",
                                                  "max-message-bytes",
                                                  "max-queue",
                                                  "max-services",
                                                  "max-client-inflight",
                                                  "max-client-backlog-bytes",
                                                  "max-total-backlog-bytes",
                                                  "max-queue-bytes",
                                                  "max-total-queue-bytes",
                                                  "max-unserved-services",
                                                  "max-worker-services",
                                                  "service-ttl",
                                                  "max-heartbeat-interval",
                                                  "mdp-heartbeat-interval",
                                                  "idempotent",
                                                  "metrics-listen",
                                                  "curve-cert",
                                                  "worker-keys",
                                                  "client-keys",
                                                  "admin-keys",
                                                  "handshake-timeout",
                                                  "insecure",
                                                  "peer-listen",
                                                  "peer",
                                                  "family",
                                                  "fallback-family",
                                                  "rebalance-workers",
                                                  "peer-cert",
                                                  "advertise-frontend",
                                                  "advertise-backend",
                                                  "advertise-peer",
                                                  "max-peers",
                                                  "log-level",
                                                  "log-format"};

const std::vector<std::string> kIntKeys = {"heartbeat-interval",
                                           "liveness",
                                           "max-worker-heartbeats",
                                           "no-worker-timeout",
                                           "request-timeout",
                                           "drain-timeout",
                                           "max-frames",
                                           "max-message-bytes",
                                           "max-queue",
                                           "max-services",
                                           "max-client-inflight",
                                           "max-client-backlog-bytes",
                                           "max-total-backlog-bytes",
                                           "max-queue-bytes",
                                           "max-total-queue-bytes",
                                           "max-unserved-services",
                                           "max-worker-services",
                                           "service-ttl",
                                           "max-heartbeat-interval",
                                           "mdp-heartbeat-interval",
                                           "max-peers"};

// Every field compared, with the field's name in the failure message.
void ExpectSame(const broker_settings& a, const broker_settings& b) {
  EXPECT_EQ(a.frontend, b.frontend) << "frontend";
  EXPECT_EQ(a.backend, b.backend) << "backend";
  EXPECT_EQ(a.heartbeat, b.heartbeat) << "heartbeat";
  EXPECT_EQ(a.heartbeat_interval, b.heartbeat_interval) << "heartbeat-interval";
  EXPECT_EQ(a.liveness, b.liveness) << "liveness";
  EXPECT_EQ(a.max_worker_heartbeats, b.max_worker_heartbeats) << "max-worker-heartbeats";
  EXPECT_EQ(a.no_worker_timeout, b.no_worker_timeout) << "no-worker-timeout";
  EXPECT_EQ(a.request_timeout, b.request_timeout) << "request-timeout";
  EXPECT_EQ(a.drain_timeout, b.drain_timeout) << "drain-timeout";
  EXPECT_EQ(a.max_frames, b.max_frames) << "max-frames";
  EXPECT_EQ(a.max_message_bytes, b.max_message_bytes) << "max-message-bytes";
  EXPECT_EQ(a.max_queue, b.max_queue) << "max-queue";
  EXPECT_EQ(a.max_services, b.max_services) << "max-services";
  EXPECT_EQ(a.max_client_inflight, b.max_client_inflight) << "max-client-inflight";
  EXPECT_EQ(a.max_client_backlog_bytes, b.max_client_backlog_bytes) << "max-client-backlog-bytes";
  EXPECT_EQ(a.max_total_backlog_bytes, b.max_total_backlog_bytes) << "max-total-backlog-bytes";
  EXPECT_EQ(a.max_queue_bytes, b.max_queue_bytes) << "max-queue-bytes";
  EXPECT_EQ(a.max_total_queue_bytes, b.max_total_queue_bytes) << "max-total-queue-bytes";
  EXPECT_EQ(a.max_unserved_services, b.max_unserved_services) << "max-unserved-services";
  EXPECT_EQ(a.max_worker_services, b.max_worker_services) << "max-worker-services";
  EXPECT_EQ(a.service_ttl, b.service_ttl) << "service-ttl";
  EXPECT_EQ(a.max_heartbeat_interval, b.max_heartbeat_interval) << "max-heartbeat-interval";
  EXPECT_EQ(a.mdp_heartbeat_interval, b.mdp_heartbeat_interval) << "mdp-heartbeat-interval";
  EXPECT_EQ(a.idempotent, b.idempotent) << "idempotent";
  EXPECT_EQ(a.metrics_listen, b.metrics_listen) << "metrics-listen";
  EXPECT_EQ(a.curve_cert, b.curve_cert) << "curve-cert";
  EXPECT_EQ(a.worker_keys, b.worker_keys) << "worker-keys";
  EXPECT_EQ(a.client_keys, b.client_keys) << "client-keys";
  EXPECT_EQ(a.admin_keys, b.admin_keys) << "admin-keys";
  EXPECT_EQ(a.handshake_timeout, b.handshake_timeout) << "handshake-timeout";
  EXPECT_EQ(a.insecure, b.insecure) << "insecure";
  EXPECT_EQ(a.peer_listen, b.peer_listen) << "peer-listen";
  EXPECT_EQ(a.peer, b.peer) << "peer";
  EXPECT_EQ(a.family, b.family) << "family";
  EXPECT_EQ(a.fallback_family, b.fallback_family) << "fallback-family";
  EXPECT_EQ(a.rebalance_workers, b.rebalance_workers) << "rebalance-workers";
  EXPECT_EQ(a.peer_cert, b.peer_cert) << "peer-cert";
  EXPECT_EQ(a.advertise_frontend, b.advertise_frontend) << "advertise-frontend";
  EXPECT_EQ(a.advertise_backend, b.advertise_backend) << "advertise-backend";
  EXPECT_EQ(a.advertise_peer, b.advertise_peer) << "advertise-peer";
  EXPECT_EQ(a.max_peers, b.max_peers) << "max-peers";
  EXPECT_EQ(a.log_level, b.log_level) << "log-level";
  EXPECT_EQ(a.log_format, b.log_format) << "log-format";
  EXPECT_TRUE(a.services == b.services) << "service tables";
}

// A valid configuration where every field differs from its default.
broker_settings NonDefault() {
  broker_settings s;
  s.frontend = "tcp://0.0.0.0:7001";
  s.backend = "ipc:///tmp/scale0-backend.sock";
  s.heartbeat = "tcp://127.0.0.1:7003";
  s.heartbeat_interval = 250;
  s.liveness = 5;
  s.max_worker_heartbeats = 250;
  s.no_worker_timeout = 1500;
  s.request_timeout = 45000;
  s.drain_timeout = 2500;
  s.max_frames = 64;
  s.max_message_bytes = 1 << 20;
  s.max_queue = 77;
  s.max_services = 99;
  s.max_client_inflight = 33;
  s.max_client_backlog_bytes = 1 << 22;
  s.max_total_backlog_bytes = 1 << 24;
  s.max_queue_bytes = 1 << 21;
  s.max_total_queue_bytes = 1 << 23;
  s.max_unserved_services = 12;
  s.max_worker_services = 8;
  s.service_ttl = 2500;
  s.max_heartbeat_interval = 30000;
  s.mdp_heartbeat_interval = 3000;
  s.idempotent = {"alpha", "beta.v2", "with \"quotes\" and \\ backslash", "ünïcode"};
  s.metrics_listen = "0.0.0.0:9100";
  s.curve_cert = "/etc/scale0/broker_secret";
  s.worker_keys = "/etc/scale0/workers";
  s.client_keys = "any";
  s.admin_keys = "/etc/scale0/admins";
  s.handshake_timeout = 2500;
  s.insecure = true;
  s.peer_listen = "tcp://10.0.0.1:7004";
  s.peer = {"tcp://10.0.0.2:7004", "tcp://broker-c.example:7004", "ipc:///tmp/scale0-peer"};
  s.family = "eu-west";
  s.fallback_family = {"eu", "global"};
  s.rebalance_workers = false;
  s.peer_cert = "/etc/scale0/family_secret";
  s.advertise_frontend = "tcp://203.0.113.1:7001";
  s.advertise_backend = "tcp://203.0.113.1:7002";
  s.advertise_peer = "tcp://203.0.113.1:7004";
  s.max_peers = 16;
  s.log_level = "debug";
  s.log_format = "json";
  return s;
}

// Sets the integer setting `name` in s.
void SetInt(broker_settings& s, const std::string& name, std::int64_t v) {
  if (name == "heartbeat-interval") s.heartbeat_interval = v;
  if (name == "liveness") s.liveness = v;
  if (name == "max-worker-heartbeats") s.max_worker_heartbeats = v;
  if (name == "no-worker-timeout") s.no_worker_timeout = v;
  if (name == "request-timeout") s.request_timeout = v;
  if (name == "drain-timeout") s.drain_timeout = v;
  if (name == "max-frames") s.max_frames = v;
  if (name == "max-message-bytes") s.max_message_bytes = v;
  if (name == "max-queue") s.max_queue = v;
  if (name == "max-services") s.max_services = v;
  if (name == "max-client-inflight") s.max_client_inflight = v;
  if (name == "max-client-backlog-bytes") s.max_client_backlog_bytes = v;
  if (name == "max-total-backlog-bytes") s.max_total_backlog_bytes = v;
  if (name == "max-queue-bytes") s.max_queue_bytes = v;
  if (name == "max-total-queue-bytes") s.max_total_queue_bytes = v;
  if (name == "max-unserved-services") s.max_unserved_services = v;
  if (name == "max-worker-services") s.max_worker_services = v;
  if (name == "service-ttl") s.service_ttl = v;
  if (name == "max-heartbeat-interval") s.max_heartbeat_interval = v;
  if (name == "mdp-heartbeat-interval") s.mdp_heartbeat_interval = v;
  if (name == "max-peers") s.max_peers = v;
}

class broker_config_test : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/scale0-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream out(path, std::ios::binary);
    out << text;
    return path;
  }

  // load_config must throw config_error; returns its message ("" if it did not throw).
  std::string LoadError(const std::string& path) {
    try {
      const broker_settings s = load_config(path);
      ADD_FAILURE() << path << " was accepted, giving:\n" << to_toml(s);
    } catch (const config_error& e) {
      return e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected config_error, got another exception: " << e.what();
    }
    return "";
  }

  std::filesystem::path dir_;
};

TEST_F(broker_config_test, setting_names_are_the_documented_flag_names) {
  EXPECT_EQ(setting_names(), kDocumentedKeys);
}

TEST_F(broker_config_test, loads_a_good_file) {
  const std::string path =
      Write("good.toml",
            "# a comment\n"
            "frontend = \"tcp://0.0.0.0:7001\"\n"
            "backend = 'ipc:///tmp/scale0-backend.sock'\n"
            "heartbeat = \"tcp://127.0.0.1:7003\"\n"
            "heartbeat-interval = 250\n"
            "liveness = 5\n"
            "max-worker-heartbeats = 250\n"
            "no-worker-timeout = 1_500\n"
            "request-timeout = 45000\n"
            "drain-timeout = 2500\n"
            "\n"
            "max-frames = 64   # trailing comment\n"
            "max-message-bytes = 1048576\n"
            "max-queue = 77\n"
            "max-services = 99\n"
            "max-client-inflight = 33\n"
            "max-client-backlog-bytes = 4194304\n"
            "max-total-backlog-bytes = 16777216\n"
            "max-queue-bytes = 2097152\n"
            "max-total-queue-bytes = 8388608\n"
            "max-unserved-services = 12\n"
            "max-worker-services = 8\n"
            "service-ttl = 2500\n"
            "max-heartbeat-interval = 30000\n"
            "mdp-heartbeat-interval = 3000\n"
            "idempotent = [\"alpha\", \"beta.v2\",\n"
            "  'with \"quotes\" and \\ backslash', \"\\u00fcn\\u00efcode\"]\n"
            "metrics-listen = \"0.0.0.0:9100\"\n"
            "curve-cert = \"/etc/scale0/broker_secret\"\n"
            "worker-keys = \"/etc/scale0/workers\"\n"
            "client-keys = \"any\"\n"
            "admin-keys = \"/etc/scale0/admins\"\n"
            "handshake-timeout = 2500\n"
            "insecure = true\n"
            "peer-listen = \"tcp://10.0.0.1:7004\"\n"
            "peer = [\"tcp://10.0.0.2:7004\", \"tcp://broker-c.example:7004\",\n"
            "        \"ipc:///tmp/scale0-peer\"]\n"
            "family = \"eu-west\"\n"
            "fallback-family = [\"eu\", \"global\"]\n"
            "rebalance-workers = false\n"
            "peer-cert = \"/etc/scale0/family_secret\"\n"
            "advertise-frontend = \"tcp://203.0.113.1:7001\"\n"
            "advertise-backend = \"tcp://203.0.113.1:7002\"\n"
            "advertise-peer = \"tcp://203.0.113.1:7004\"\n"
            "max-peers = 16\n"
            "log-level = \"debug\"\n"
            "log-format = \"json\"\n");
  broker_settings loaded;
  ASSERT_NO_THROW(loaded = load_config(path));
  ExpectSame(loaded, NonDefault());
}

// Keys of milliseconds also take a duration string, as the flags do.
TEST_F(broker_config_test, durations_take_units) {
  const std::string path = Write("durations.toml",
                                 "heartbeat-interval = \"2s\"\n"
                                 "drain-timeout = \"500ms\"\n"
                                 "service-ttl = \"1m\"\n"
                                 "request-timeout = \"1h\"\n"
                                 "no-worker-timeout = 250\n"
                                 "handshake-timeout = \"750\"\n"
                                 "[service.\"echo\"]\n"
                                 "request-timeout = \"3s\"\n");
  const broker_settings s = load_config(path);
  EXPECT_EQ(s.heartbeat_interval, 2000);
  EXPECT_EQ(s.drain_timeout, 500);
  EXPECT_EQ(s.service_ttl, 60000);
  EXPECT_EQ(s.request_timeout, 3600000);
  EXPECT_EQ(s.no_worker_timeout, 250);
  EXPECT_EQ(s.handshake_timeout, 750);
  EXPECT_EQ(s.services.at("echo").request_timeout, 3000);
}

TEST_F(broker_config_test, empty_file_keeps_the_base) {
  const std::string path = Write("empty.toml", "# nothing but a comment\n\n");
  ExpectSame(load_config(path), broker_settings{});
  ExpectSame(load_config(path, NonDefault()), NonDefault());
}

TEST_F(broker_config_test, keys_missing_from_the_file_keep_the_base) {
  const std::string path = Write("partial.toml", "max-queue = 5\nlog-level = \"warn\"\n");
  broker_settings expected = NonDefault();
  expected.max_queue = 5;
  expected.log_level = "warn";
  ExpectSame(load_config(path, NonDefault()), expected);
}

TEST_F(broker_config_test, empty_metrics_listen_means_none) {
  const std::string path = Write("nometrics.toml", "metrics-listen = \"\"\n");
  EXPECT_EQ(load_config(path).metrics_listen, "");
}

TEST_F(broker_config_test, missing_file_is_a_config_error_naming_the_file) {
  const std::string path = (dir_ / "does-not-exist.toml").string();
  const std::string msg = LoadError(path);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

struct bad_case {
  const char* name;
  std::string text;  // the whole file
  int line;          // where the problem is
  std::string key;   // the key the message must name ("" for none)
};

// Each case: the message contains "<file>:<line>" and the key.
TEST_F(broker_config_test, every_bad_case_names_file_line_and_key) {
  const std::string prelude = "# scale0 test configuration\nliveness = 3\n";  // 2 good lines
  const std::vector<bad_case> cases = {
      {"unknown key", prelude + "no-such-key = 1\n", 3, "no-such-key"},
      {"underscore spelling", prelude + "max_queue = 5\n", 3, "max_queue"},
      {"section header", prelude + "[broker]\nmax-queue = 5\n", 3, "broker"},
      {"int as string", prelude + "max-queue = \"5\"\n", 3, "max-queue"},
      {"int as float", prelude + "heartbeat-interval = 2.5\n", 3, "heartbeat-interval"},
      {"int as bool", prelude + "drain-timeout = true\n", 3, "drain-timeout"},
      {"string as int", prelude + "frontend = 5555\n", 3, "frontend"},
      {"log level as array", prelude + "log-level = [\"info\"]\n", 3, "log-level"},
      {"list as string", prelude + "idempotent = \"svc\"\n", 3, "idempotent"},
      {"list of ints", prelude + "idempotent = [\"a\", 2]\n", 3, "idempotent"},
      {"empty service name", prelude + "idempotent = [\"\"]\n", 3, "idempotent"},
      {"endpoint without scheme", prelude + "frontend = \"127.0.0.1:5555\"\n", 3, "frontend"},
      {"endpoint bad scheme", prelude + "backend = \"http://127.0.0.1:5556\"\n", 3, "backend"},
      {"endpoint without port", prelude + "heartbeat = \"tcp://127.0.0.1\"\n", 3, "heartbeat"},
      {"endpoint empty", prelude + "frontend = \"\"\n", 3, "frontend"},
      {"metrics listen without port", prelude + "metrics-listen = \"localhost\"\n", 3,
       "metrics-listen"},
      {"negative max-queue", prelude + "max-queue = -1\n", 3, "max-queue"},
      {"negative heartbeat-interval", prelude + "heartbeat-interval = -100\n", 3,
       "heartbeat-interval"},
      {"negative drain-timeout", prelude + "drain-timeout = -1\n", 3, "drain-timeout"},
      {"zero liveness", prelude + "\n\nliveness = 0\n", 5, "liveness"},
      {"huge liveness", prelude + "liveness = 1000\n", 3, "liveness"},
      {"huge max-client-inflight", prelude + "max-client-inflight = 9223372036854775807\n", 3,
       "max-client-inflight"},
      {"bad log level", prelude + "log-level = \"loud\"\n", 3, "log-level"},
      {"bad log format", prelude + "log-format = \"xml\"\n", 3, "log-format"},
      {"duration without a known unit", prelude + "drain-timeout = \"5 parsecs\"\n", 3,
       "drain-timeout': '5 parsecs' is not a duration"},
      {"duration string on a count", prelude + "max-queue = \"5s\"\n", 3,
       "max-queue': expected an integer"},
      {"fractional duration", prelude + "request-timeout = \"1.5s\"\n", 3, "request-timeout"},
      {"duration out of range", prelude + "heartbeat-interval = \"2h\"\n", 3, "heartbeat-interval"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Write("bad.toml", c.text);
    const std::string msg = LoadError(path);
    const std::string where = path + ":" + std::to_string(c.line);
    EXPECT_NE(msg.find(where), std::string::npos) << "want '" << where << "' in: " << msg;
    EXPECT_NE(msg.find(c.key), std::string::npos) << "want key '" << c.key << "' in: " << msg;
  }
}

// TOML syntax errors: the file and the line.
TEST_F(broker_config_test, syntax_errors_name_file_and_line) {
  const std::vector<bad_case> cases = {
      {"bad integer", "# c\nliveness = 3\nmax-queue = 12abc\n", 3, ""},
      {"missing value", "# c\n\nliveness =\n", 3, ""},
      {"unterminated string", "frontend = \"tcp://127.0.0.1:1\n", 1, ""},
      {"duplicate key", "max-queue = 5\n# again\nmax-queue = 6\n", 3, ""},
      {"bare words", "liveness = 3\nthis is not toml\n", 2, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Write("syntax.toml", c.text);
    const std::string msg = LoadError(path);
    const std::string where = path + ":" + std::to_string(c.line);
    EXPECT_NE(msg.find(where), std::string::npos) << "want '" << where << "' in: " << msg;
  }
}

// The brief: a bad configuration, a TOML syntax error included, names the key. When the broken
// value sits after a key on its line, that key is known.
TEST_F(broker_config_test, syntax_error_in_a_value_names_the_key) {
  const std::string path = Write("syntax-key.toml", "# c\nliveness = 3\nmax-queue = 12abc\n");
  const std::string msg = LoadError(path);
  EXPECT_NE(msg.find(path + ":3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("max-queue"), std::string::npos)
      << "the syntax error message does not name the key: " << msg;
}

// Found by scale0_config_fuzz: Debian 12's toml++ 3.3.0 reaches __builtin_unreachable() (undefined
// behaviour) when it checks some non-ASCII characters for whitespace (toml_guard.hpp). Those
// places are refused before the parser runs, as errors naming the file and the line; non-ASCII
// text in comments and strings is still read.
TEST_F(broker_config_test, non_ascii_where_toml_expects_whitespace_is_a_config_error) {
  const std::vector<bad_case> cases = {
      {"before a key", "liveness = 3\n\xc3\xafmax-queue = 5\n", 2, ""},
      {"after a value", "# c\n\nliveness = 3\xc2\xa7\n", 3, ""},
      {"two bytes", "\xcc\xaa", 1, ""},
      {"after a key", "log-level\xc2\xa0= \"info\"\n", 1, ""},
      {"in an array", "idempotent = [\"a\",\xc3\xa9]\n", 1, ""},
      {"escaped", "log-level = \"\\\xc3\xa9\"\n", 1, ""},
      // A quote inside a bare value opens no string: toml++ reads on to the value's end.
      {"in a bare value", "frontend =-c://'/run\xd1\x99'\n", 1, ""},
      {"after a line-ending backslash", "# c\nlog-level = \"\"\"\\\n  \xc2\xa7\"\"\"\n", 3, ""},
      // In a value a . is part of the bare value: the quote after it opens no string either
      // (found by the config fuzz target).
      {"after a dot in a bare value", "se = 0xse.\"a\\u000\\u000\xcc\xaa\"7ff", 1, ""},
      {"after a dot in an array", "idempotent = [1.\"\xc2\xa7\"]\n", 1, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Write("non-ascii.toml", c.text);
    const std::string msg = LoadError(path);
    const std::string where = path + ":" + std::to_string(c.line) + ":";
    EXPECT_NE(msg.find(where), std::string::npos) << "want '" << where << "' in: " << msg;
  }
  const std::string path =
      Write("non-ascii-ok.toml",
            "\xef\xbb\xbf# caf\xc3\xa9 \xc2\xa7\n"
            "idempotent = [\"caf\xc3\xa9\", '\xc2\xa7', \"\"\"\xc3\xa9\n\xc2\xa7\"\"\"]\n"
            "\"caf\xc3\xa9\" = 1 # \xc3\xa9\n");
  try {
    load_config(path);
    ADD_FAILURE() << "the unknown quoted key was accepted";
  } catch (const config_error& e) {
    // Read through to the quoted key on line 4: the parser saw everything before it.
    EXPECT_NE(std::string(e.what()).find(path + ":4: key 'caf\xc3\xa9': unknown key"),
              std::string::npos)
        << e.what();
  }
  const broker_settings s = load_config(
      Write("non-ascii-ok2.toml", "idempotent = [\"caf\xc3\xa9\", '\xc2\xa7'] # \xc3\xa9\n"));
  EXPECT_EQ(s.idempotent, (std::vector<std::string>{"caf\xc3\xa9", "\xc2\xa7"}));
  // Quoted key parts after a dot are strings in keys: table headers, dotted keys, inline tables.
  const broker_settings keys = load_config(Write("non-ascii-keys.toml",
                                                 "service.\"a\xc3\xa9\".max-queue = 4\n"
                                                 "service.\"b\xc3\xa9\" = { max-queue = 5 }\n"
                                                 "[service.\"c\xc3\xa9\"]\nmax-queue = 6\n"));
  EXPECT_EQ(keys.services.at("a\xc3\xa9").max_queue, 4);
  EXPECT_EQ(keys.services.at("b\xc3\xa9").max_queue, 5);
  EXPECT_EQ(keys.services.at("c\xc3\xa9").max_queue, 6);
}

// An endpoint whose port is not a port (not a number, or past 65535) is an invalid endpoint and
// must be reported against the file, not accepted (the broker would otherwise bind elsewhere or
// fail later without naming the file).
TEST_F(broker_config_test, endpoint_with_invalid_port_is_rejected) {
  const std::vector<bad_case> cases = {
      {"port not a number", "# c\nfrontend = \"tcp://127.0.0.1:notaport\"\n", 2, "frontend"},
      {"port too large", "# c\nbackend = \"tcp://127.0.0.1:99999\"\n", 2, "backend"},
      {"negative port", "# c\nheartbeat = \"tcp://127.0.0.1:-5\"\n", 2, "heartbeat"},
      {"metrics port too large", "# c\nmetrics-listen = \"127.0.0.1:99999\"\n", 2,
       "metrics-listen"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Write("port.toml", c.text);
    const std::string msg = LoadError(path);
    const std::string where = path + ":" + std::to_string(c.line);
    EXPECT_NE(msg.find(where), std::string::npos) << "want '" << where << "' in: " << msg;
    EXPECT_NE(msg.find(c.key), std::string::npos) << "want key '" << c.key << "' in: " << msg;
  }
}

TEST_F(broker_config_test, to_toml_lists_every_key_once_in_order) {
  const std::string text = to_toml(broker_settings{});
  std::size_t last = 0;
  for (const auto& key : kDocumentedKeys) {
    const std::string needle = "\n" + key + " = ";
    const auto pos = text.find(needle);
    ASSERT_NE(pos, std::string::npos) << key << " missing from:\n" << text;
    EXPECT_EQ(text.find(needle, pos + 1), std::string::npos) << key << " twice";
    EXPECT_GT(pos, last) << key << " out of order";
    last = pos;
  }
}

TEST_F(broker_config_test, defaults_round_trip) {
  const broker_settings defaults;
  const std::string path = Write("defaults.toml", to_toml(defaults));
  // Over a different base: the file alone must restore every value.
  ExpectSame(load_config(path, NonDefault()), defaults);
}

TEST_F(broker_config_test, non_defaults_round_trip) {
  const broker_settings original = NonDefault();
  const std::string path = Write("custom.toml", to_toml(original));
  broker_settings loaded;
  ASSERT_NO_THROW(loaded = load_config(path)) << to_toml(original);
  ExpectSame(loaded, original);
  // And the text is stable: printing what was read gives the same document.
  EXPECT_EQ(to_toml(loaded), to_toml(original));
}

TEST_F(broker_config_test, edge_values_round_trip) {
  broker_settings s;
  s.idempotent = {};
  s.metrics_listen = "";
  s.frontend = "tcp://*:5555";
  s.backend = "inproc://back end";
  s.heartbeat = "tcp://[::1]:5557";
  s.log_level = "off";
  const std::string path = Write("edge.toml", to_toml(s));
  broker_settings loaded;
  ASSERT_NO_THROW(loaded = load_config(path, NonDefault())) << to_toml(s);
  ExpectSame(loaded, s);
}

// The `key = value` line of to_toml(s) for one key.
std::string TomlLine(const broker_settings& s, const std::string& key) {
  const std::string text = "\n" + to_toml(s);
  const auto pos = text.find("\n" + key + " = ");
  if (pos == std::string::npos) return "(missing " + key + ")";
  return text.substr(pos + 1, text.find('\n', pos + 1) - pos - 1);
}

TEST_F(broker_config_test, copy_setting_copies_exactly_one_field) {
  const broker_settings from = NonDefault();
  const broker_settings defaults;
  for (const auto& name : setting_names()) {
    SCOPED_TRACE(name);
    broker_settings to;
    copy_setting(name, from, to);
    EXPECT_EQ(TomlLine(to, name), TomlLine(from, name)) << name << " not copied";
    EXPECT_NE(TomlLine(to, name), TomlLine(defaults, name));
    for (const auto& other : setting_names()) {
      if (other != name) {
        EXPECT_EQ(TomlLine(to, other), TomlLine(defaults, other)) << other << " changed too";
      }
    }
  }
}

TEST_F(broker_config_test, copying_every_setting_copies_everything) {
  const broker_settings from = NonDefault();
  broker_settings to;
  for (const auto& name : setting_names()) copy_setting(name, from, to);
  ExpectSame(to, from);
}

TEST_F(broker_config_test, copy_setting_ignores_unknown_names) {
  broker_settings to;
  copy_setting("no-such-setting", NonDefault(), to);
  ExpectSame(to, broker_settings{});
}

TEST_F(broker_config_test, check_setting_accepts_defaults_and_valid_values) {
  for (const auto& name : setting_names()) {
    EXPECT_EQ(check_setting(name, broker_settings{}), "") << name;
    EXPECT_EQ(check_setting(name, NonDefault()), "") << name;
  }
  broker_settings s;
  s.metrics_listen = "";
  EXPECT_EQ(check_setting("metrics-listen", s), "");
  s.drain_timeout = 0;  // stop at once
  EXPECT_EQ(check_setting("drain-timeout", s), "");
}

TEST_F(broker_config_test, check_setting_rejects_negative_and_absurd_limits) {
  for (const auto& name : kIntKeys) {
    for (std::int64_t v : {std::int64_t{-1}, std::numeric_limits<std::int64_t>::min(),
                           std::numeric_limits<std::int64_t>::max()}) {
      broker_settings s;
      SetInt(s, name, v);
      EXPECT_NE(check_setting(name, s), "") << name << " = " << v << " accepted";
    }
  }
  broker_settings s;
  s.liveness = 0;
  EXPECT_NE(check_setting("liveness", s), "");
  s = {};
  s.heartbeat_interval = 0;
  EXPECT_NE(check_setting("heartbeat-interval", s), "");
  s = {};
  s.max_queue = 0;
  EXPECT_NE(check_setting("max-queue", s), "");
}

TEST_F(broker_config_test, family_settings) {
  broker_settings s;
  EXPECT_EQ(s.peer_listen, "tcp://127.0.0.1:5558");  // on by default, loopback
  EXPECT_EQ(s.family, "default");
  for (const char* ok : {"", "tcp://127.0.0.1:*", "ipc:///tmp/p"}) {
    s.peer_listen = ok;
    EXPECT_EQ(check_setting("peer-listen", s), "") << ok;
  }
  for (const char* bad : {"inproc://x", "127.0.0.1:5558", "tcp://127.0.0.1"}) {
    s.peer_listen = bad;
    EXPECT_NE(check_setting("peer-listen", s), "") << bad;
  }
  s = {};
  s.peer = {"tcp://a.example:5558", "tcp://[::1]:5558", "ipc:///tmp/p"};
  EXPECT_EQ(check_setting("peer", s), "");
  for (const char* bad :
       {"", "tcp://a:*", "tcp://*:5558", "tcp://a:0", "udp://a:1", "tcp://a b:1"}) {
    s.peer = {"tcp://ok:1", bad};
    EXPECT_NE(check_setting("peer", s), "") << bad;
  }
  s.peer = {"tcp://" + std::string(250, 'h') + ":5558"};
  EXPECT_NE(check_setting("peer", s), "");
  s = {};
  for (const char* bad : {"", "two\nlines", "\x1b[31m"}) {
    s.family = bad;
    EXPECT_NE(check_setting("family", s), "") << bad;
    s.fallback_family = {bad};
    EXPECT_NE(check_setting("fallback-family", s), "") << bad;
  }
  s = {};
  s.advertise_peer = "tcp://*:5558";
  EXPECT_NE(check_setting("advertise-peer", s), "");
  s.advertise_frontend = "tcp://10.0.0.1";
  EXPECT_NE(check_setting("advertise-frontend", s), "");
  s.max_peers = 0;
  EXPECT_NE(check_setting("max-peers", s), "");
  s.max_peers = 4097;
  EXPECT_NE(check_setting("max-peers", s), "");
  const std::string path = Write("family.toml",
                                 "peer-listen = \"tcp://127.0.0.1:7004\"\n"
                                 "peer = [\"tcp://127.0.0.1:7014\", \"tcp://b.example:7004\"]\n"
                                 "family = \"eu\"\n"
                                 "fallback-family = [\"global\"]\n"
                                 "max-peers = 8\n");
  const broker_settings loaded = load_config(path);
  EXPECT_EQ(loaded.peer,
            (std::vector<std::string>{"tcp://127.0.0.1:7014", "tcp://b.example:7004"}));
  EXPECT_EQ(loaded.family, "eu");
  const auto o = loaded.to_options();
  EXPECT_EQ(o.peer_listen, "tcp://127.0.0.1:7004");
  EXPECT_EQ(o.peers.size(), 2u);
  EXPECT_EQ(o.fallback_families, (std::vector<std::string>{"global"}));
  EXPECT_EQ(o.max_peers, 8u);
  EXPECT_NE(LoadError(Write("bad-peer.toml", "peer = [\"tcp://a:0\"]\n")).find("key 'peer'"),
            std::string::npos);
}

TEST_F(broker_config_test, check_setting_rejects_bad_strings) {
  broker_settings s;
  s.frontend = "127.0.0.1:5555";
  EXPECT_NE(check_setting("frontend", s), "");
  s = {};
  s.backend = "tcp://127.0.0.1";
  EXPECT_NE(check_setting("backend", s), "");
  s = {};
  s.heartbeat = "udp://127.0.0.1:5557";
  EXPECT_NE(check_setting("heartbeat", s), "");
  s = {};
  s.metrics_listen = "9555";
  EXPECT_NE(check_setting("metrics-listen", s), "");
  s = {};
  s.log_level = "verbose";
  EXPECT_NE(check_setting("log-level", s), "");
  s = {};
  s.log_format = "yaml";
  EXPECT_NE(check_setting("log-format", s), "");
  s = {};
  s.idempotent = {"ok", ""};
  EXPECT_NE(check_setting("idempotent", s), "");
  s = {};
  s.idempotent = {std::string(256, 'x')};
  EXPECT_NE(check_setting("idempotent", s), "");
  s.idempotent = {std::string(255, 'x')};
  EXPECT_EQ(check_setting("idempotent", s), "");
}

TEST_F(broker_config_test, check_setting_unknown_name) {
  EXPECT_NE(check_setting("no-such-setting", broker_settings{}), "");
}

// ---- [service."NAME"] tables ----

TEST_F(broker_config_test, service_table_keys_are_the_documented_ones) {
  EXPECT_EQ(service_setting_names(), (std::vector<std::string>{"request-timeout", "max-queue",
                                                               "idempotent", "max-concurrency"}));
}

TEST_F(broker_config_test, service_tables_are_read) {
  const std::string path = Write("services.toml",
                                 "request-timeout = 30000\n"
                                 "max-queue = 100\n"
                                 "\n"
                                 "[service.\"echo\"]\n"
                                 "request-timeout = 400\n"
                                 "max-queue = 5\n"
                                 "idempotent = false\n"
                                 "max-concurrency = 2\n"
                                 "\n"
                                 "[service.\"caf\\u00e9.v2 with space\"]\n"
                                 "idempotent = true\n"
                                 "\n"
                                 "[service.'empty']\n"
                                 "\n"
                                 "[service]\n"
                                 "dotted.max-queue = 7\n");
  broker_settings s;
  ASSERT_NO_THROW(s = load_config(path));
  EXPECT_EQ(s.request_timeout, 30000);
  EXPECT_EQ(s.max_queue, 100);
  ASSERT_EQ(s.services.size(), 4u);
  const service_settings& echo = s.services.at("echo");
  EXPECT_EQ(echo.request_timeout, 400);
  EXPECT_EQ(echo.max_queue, 5);
  EXPECT_EQ(echo.idempotent, false);
  EXPECT_EQ(echo.max_concurrency, 2);
  const service_settings& cafe = s.services.at("caf\xc3\xa9.v2 with space");
  EXPECT_EQ(cafe.idempotent, true);
  EXPECT_FALSE(cafe.request_timeout.has_value());
  EXPECT_FALSE(cafe.max_queue.has_value());
  EXPECT_FALSE(cafe.max_concurrency.has_value());
  EXPECT_TRUE(s.services.at("empty") == service_settings{});
  EXPECT_EQ(s.services.at("dotted").max_queue, 7);

  // What the broker is given: unset keys stay unset (the broker-wide setting applies).
  const scale0::broker_options o = s.to_options();
  ASSERT_EQ(o.service_policies.size(), 4u);
  const scale0::service_policy& p = o.service_policies.at("echo");
  EXPECT_EQ(p.request_timeout, std::chrono::milliseconds(400));
  EXPECT_EQ(p.max_queue, 5u);
  EXPECT_EQ(p.idempotent, false);
  EXPECT_EQ(p.max_concurrency, 2u);
  EXPECT_FALSE(o.service_policies.at("empty").request_timeout.has_value());
  EXPECT_NO_THROW(o.validate());
}

TEST_F(broker_config_test, service_tables_of_a_file_replace_the_bases) {
  broker_settings base;
  base.services["old"].max_queue = 1;
  const std::string without = Write("without.toml", "max-queue = 5\n");
  EXPECT_EQ(load_config(without, base).services.count("old"), 1u);
  const std::string with = Write("with.toml", "[service.\"new\"]\nmax-queue = 2\n");
  const broker_settings s = load_config(with, base);
  EXPECT_EQ(s.services.count("old"), 0u);
  EXPECT_EQ(s.services.at("new").max_queue, 2);
}

TEST_F(broker_config_test, every_bad_service_table_names_file_line_and_key) {
  const std::string prelude = "# scale0 test configuration\nliveness = 3\n";  // 2 good lines
  const std::string echo = "[service.\"echo\"]\n";                            // line 3
  const std::vector<bad_case> cases = {
      {"unknown key", prelude + echo + "max-queue = 5\nmax-queu = 5\n", 5,
       "key 'service.\"echo\".max-queu': unknown key"},
      {"underscore spelling", prelude + echo + "max_concurrency = 2\n", 4,
       "service.\"echo\".max_concurrency"},
      {"a broker-wide key", prelude + echo + "liveness = 3\n", 4, "service.\"echo\".liveness"},
      {"nested table", prelude + echo + "[service.\"echo\".more]\nmax-queue = 1\n", 4,
       "service.\"echo\".more"},
      {"zero timeout", prelude + echo + "request-timeout = 0\n", 4,
       "key 'service.\"echo\".request-timeout': 0 is out of range (1 to 86400000)"},
      {"huge timeout", prelude + echo + "request-timeout = 86400001\n", 4,
       "service.\"echo\".request-timeout"},
      {"zero max-queue", prelude + echo + "max-queue = 0\n", 4,
       "key 'service.\"echo\".max-queue': 0 is out of range (1 to 10000000)"},
      {"negative max-queue", prelude + echo + "max-queue = -5\n", 4, "service.\"echo\".max-queue"},
      {"zero max-concurrency", prelude + echo + "max-concurrency = 0\n", 4,
       "key 'service.\"echo\".max-concurrency': 0 is out of range (1 to 1024)"},
      {"huge max-concurrency", prelude + echo + "max-concurrency = 1025\n", 4,
       "service.\"echo\".max-concurrency"},
      {"int as string", prelude + echo + "max-queue = \"5\"\n", 4,
       "service.\"echo\".max-queue': expected an integer, found a string"},
      {"int as float", prelude + echo + "request-timeout = 2.5\n", 4,
       "service.\"echo\".request-timeout"},
      {"bool as string", prelude + echo + "idempotent = \"no\"\n", 4,
       "service.\"echo\".idempotent': expected true or false, found a string"},
      {"bool as int", prelude + echo + "idempotent = 0\n", 4, "service.\"echo\".idempotent"},
      {"service not a table", prelude + "service = 5\n", 3,
       "key 'service': expected tables [service.\"NAME\"], found an integer"},
      {"service entry not a table", prelude + "service.echo = 5\n", 3,
       "key 'service.\"echo\"': expected a table"},
      {"service entry an array", prelude + "[[service.echo]]\nmax-queue = 1\n", 3,
       "key 'service.\"echo\"': expected a table"},
      {"empty name", prelude + "[service.\"\"]\nmax-queue = 1\n", 3,
       "key 'service.\"\"': a service name is 1-255 bytes of printable UTF-8"},
      {"control character", prelude + "[service.\"a\\u0001b\"]\n", 3,
       "key 'service.\"a\\x01b\"': a service name is 1-255 bytes of printable UTF-8"},
      {"newline", prelude + "[service.\"a\\nb\"]\n", 3, "service.\"a\\x0ab\""},
      {"C1 control", prelude + "[service.\"a\\u0085b\"]\n", 3, "printable UTF-8"},
      {"256 bytes", prelude + "[service.\"" + std::string(256, 'x') + "\"]\n", 3,
       "printable UTF-8"},
      {"reserved mmi.", prelude + "[service.\"mmi.service\"]\n", 3,
       "key 'service.\"mmi.service\"': service names starting with mmi. or scale0. are reserved"},
      {"reserved scale0.", prelude + "[service.\"scale0.status\"]\nmax-queue = 1\n", 3,
       "are reserved"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Write("bad-service.toml", c.text);
    const std::string msg = LoadError(path);
    const std::string where = path + ":" + std::to_string(c.line) + ":";
    EXPECT_NE(msg.find(where), std::string::npos) << "want '" << where << "' in: " << msg;
    EXPECT_NE(msg.find(c.key), std::string::npos) << "want '" << c.key << "' in: " << msg;
  }
  // 255 bytes is a name.
  const std::string path = Write("long.toml", "[service.\"" + std::string(255, 'x') + "\"]\n");
  EXPECT_EQ(load_config(path).services.size(), 1u);
}

TEST_F(broker_config_test, at_most_ten_thousand_service_tables) {
  auto file = [](std::size_t n) {
    std::string text = "liveness = 3\n";
    for (std::size_t i = 0; i < n; ++i)
      text += "[service.\"s" + std::to_string(100000 + i) + "\"]\nmax-queue = 1\n";
    return text;
  };
  EXPECT_EQ(load_config(Write("10000.toml", file(10000))).services.size(), 10000u);
  const std::string path = Write("10001.toml", file(10001));
  const std::string msg = LoadError(path);
  // The tables are read in name order: the one past the limit is the last, s110000 on line 20002.
  EXPECT_NE(msg.find(path + ":20002: key 'service.\"s110000\"': too many service tables (at most "
                            "10000)"),
            std::string::npos)
      << msg;
}

TEST_F(broker_config_test, service_tables_round_trip_through_to_toml) {
  broker_settings s = NonDefault();
  s.services["echo"] = {400, 5, false, 2};
  s.services["with \"quotes\" and \\ backslash"] = {std::nullopt, std::nullopt, true, std::nullopt};
  s.services["caf\xc3\xa9"] = {};
  s.services["a.b"].max_concurrency = 1024;
  s.services["it's \xe2\x80\xa8 [x] = y # z"].max_queue = 1;  // U+2028, TOML punctuation
  const std::string text = to_toml(s);
  EXPECT_NE(text.find("\n[service.'echo']\nrequest-timeout = 400\nmax-queue = 5\n"
                      "idempotent = false\nmax-concurrency = 2\n"),
            std::string::npos)
      << text;
  EXPECT_GT(text.find("[service."), text.find("log-format = ")) << "tables after every key";
  broker_settings loaded;
  ASSERT_NO_THROW(loaded = load_config(Write("services-round.toml", text))) << text;
  ExpectSame(loaded, s);
  EXPECT_EQ(to_toml(loaded), text);
}

TEST_F(broker_config_test, options_validate_service_policies) {
  scale0::broker_options o;
  o.service_policies["ok"].max_concurrency = 3;
  EXPECT_NO_THROW(o.validate());
  for (const std::string bad : {"", "mmi.x", "scale0.status", "a\nb"}) {
    scale0::broker_options b;
    b.service_policies[bad] = {};
    EXPECT_THROW(b.validate(), scale0::error) << bad;
  }
  scale0::broker_options zero;
  zero.service_policies["s"].max_concurrency = 0;
  EXPECT_THROW(zero.validate(), scale0::error);
  scale0::broker_options many;
  for (std::size_t i = 0; i <= scale0::max_service_policies; ++i)
    many.service_policies["s" + std::to_string(i)] = {};
  EXPECT_THROW(many.validate(), scale0::error);
}

}  // namespace
