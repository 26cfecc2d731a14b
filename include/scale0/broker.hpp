// The embeddable Scale0 broker: binds its endpoints on construction, runs its event loop in run().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace scale0 {

struct broker_options {
  std::string frontend = "tcp://127.0.0.1:5555";   // clients (and workers)
  std::string backend = "tcp://127.0.0.1:5556";    // workers (and clients)
  std::string heartbeat = "tcp://127.0.0.1:5557";  // PUB: broker heartbeats
  std::chrono::milliseconds heartbeat_interval{1000};
  std::uint32_t liveness = 3;
  std::chrono::milliseconds no_worker_timeout{1000};
  std::chrono::milliseconds request_timeout{30000};  // used when a request gives 0
  std::size_t max_frames = 128;  // a READY for 64 services is 71 frames
  std::size_t max_message_bytes = 8u << 20;
  std::size_t max_queue = 10000;  // queued requests per service
  std::size_t max_services = 10000;
  std::size_t max_client_inflight = 10000;
  std::vector<std::string> idempotent_services;  // for Majordomo workers, which cannot declare it

  // Throws scale0::error (400) naming the first invalid option.
  void validate() const;
};

struct bound_endpoints {
  std::string frontend;
  std::string backend;
  std::string heartbeat;
};

class broker {
 public:
  // Binds every endpoint; throws scale0::error when an option is invalid or an endpoint cannot be
  // bound (for instance, address in use).
  explicit broker(broker_options options);
  ~broker();
  broker(const broker&) = delete;
  broker& operator=(const broker&) = delete;

  // The endpoints actually bound (a `*` port resolved to the port the system chose).
  const bound_endpoints& endpoints() const noexcept;

  // Runs the event loop until stop(); then tells every worker DISCONNECT and answers what is
  // still pending with 503.
  void run();

  // Asks run() to return. Safe to call from another thread or a signal handler.
  void stop() noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace scale0
