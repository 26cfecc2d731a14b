// SPDX-License-Identifier: Apache-2.0
// The HTTP gateway's state (docs/http.md): one io_context on one thread owns the acceptor, every
// HTTP connection (session.cpp) and the DEALER to the broker (broker_link.cpp); the loop's own
// work (accepting, the deadline sweep, stop/drain/reload, options) is in gateway.cpp.
#pragma once

// clang-format off
#include <utility>  // before Asio: Boost 1.74 uses std::exchange without including it
// clang-format on

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

#include "gateway_stats.hpp"
#include "metrics/metrics_server.hpp"
#include "protocol/batch.hpp"
#include "request_rules.hpp"
#include "routes.hpp"
#include "scale0/gateway.hpp"
#include "scale0/protocol.hpp"
#include "session.hpp"

namespace scale0::gateway_detail {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct server {
  explicit server(gateway_options o);
  ~server();

  void accept();
  void sweep();
  void watch_control();
  void begin_drain();
  void maybe_finish_drain();
  void apply_reload();
  void reload_tls();

  // The broker link (broker_link.cpp).
  bool send_request(std::uint64_t id, std::string_view service, std::chrono::milliseconds timeout,
                    const std::string& wire);
  void wait_broker();
  void read_broker();
  void after_send();
  void schedule_read_broker();
  void on_broker_message();
  // The requests of one turn of the io_context leave as one BATCH (docs/protocol.md, "Batches").
  void flush_requests();

  // Sessions refer to these until the io_context has destroyed the last of them: declared first.
  gateway_options opt;
  std::shared_ptr<const router> routes;  // replaced whole by a reload
  trusted_proxies trusted;
  std::shared_ptr<asio::ssl::context> tls;  // null: plain HTTP; replaced whole by a reload
  gateway_stats stats;
  std::unordered_map<std::uint64_t, std::shared_ptr<connection>> pending;
  std::unordered_set<connection*> sessions;
  bool shutting_down = false;
  bool draining = false;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  asio::steady_timer accept_retry{io};
  asio::steady_timer drain_deadline{io};
  asio::steady_timer sweep_timer{io};
  std::chrono::milliseconds sweep_interval{50};
  std::vector<std::shared_ptr<connection>> expired;  // reused by every sweep
  int control_fd = -1;  // eventfd: stop()/drain() from any thread or a signal handler
  asio::posix::stream_descriptor control{io};
  std::atomic<bool> stop_requested{false};
  std::atomic<bool> drain_requested{false};
  std::atomic<bool> reload_requested{false};

  zmq::context_t zctx{1};
  zmq::socket_t dealer{zctx, zmq::socket_type::dealer};
  asio::posix::stream_descriptor dealer_fd{io};
  bool dealer_waiting = false;
  bool dealer_posted = false;
  protocol::frames inbound;
  protocol::frames outbound;
  protocol::batch_writer box{0};       // requests of this turn
  std::vector<std::uint64_t> box_ids;  // their ids, answered 503 if the batch cannot be sent
  bool flush_posted = false;
  protocol::batch_reader batch_in;
  protocol::frames entry;
  std::uint64_t next_id = 1;
  std::uint64_t request_id_seed = 0;
  std::uint64_t request_id_count = 0;

  std::unique_ptr<metrics::metrics_server> metrics;
};

}  // namespace scale0::gateway_detail
