// The one loop that owns the broker's sockets: wait → drain every readable message in batches →
// hand each to the core → run the core's timers; the core's sends go straight to the sockets.
#pragma once

#include <atomic>
#include <memory>
#include <zmq.hpp>

#include "broker_core.hpp"
#include "scale0/broker.hpp"

namespace scale0::broker_detail {

class event_loop final : public outbox {
 public:
  // Binds every endpoint; throws scale0::error when one cannot be bound.
  explicit event_loop(const broker_options& options);
  ~event_loop() override;

  const bound_endpoints& endpoints() const noexcept { return endpoints_; }
  void run();
  void stop() noexcept;  // async-signal-safe

  bool send(std::uint8_t socket, frames& msg) override;
  void publish(frames& msg) override;

 private:
  std::size_t drain(std::uint8_t socket, std::size_t budget);
  bool receive(zmq::socket_t& socket, bool& oversized);

  broker_options options_;
  zmq::context_t context_;
  zmq::socket_t routers_[2];
  zmq::socket_t pub_;
  int wake_fd_ = -1;
  bound_endpoints endpoints_;
  std::unique_ptr<broker_core> core_;
  frames inbox_;
  zmq::message_t discard_;
};

}  // namespace scale0::broker_detail
