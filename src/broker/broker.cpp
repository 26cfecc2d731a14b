// The public, embeddable broker: option checks and a thin shell around the event loop.
#include "scale0/broker.hpp"

#include "event_loop.hpp"
#include "scale0/error.hpp"

namespace scale0 {

void broker_options::validate() const {
  auto fail = [](const std::string& what) { throw error(status::bad_request, what); };
  if (frontend.empty() || backend.empty() || heartbeat.empty()) fail("endpoints must not be empty");
  if (heartbeat_interval.count() < 10) fail("heartbeat interval must be at least 10 ms");
  if (liveness < 1 || liveness > 100) fail("liveness must be 1-100");
  if (no_worker_timeout.count() < 1) fail("no-worker timeout must be at least 1 ms");
  if (request_timeout.count() < 1) fail("request timeout must be at least 1 ms");
  if (max_frames < 8) fail("max frames must be at least 8");
  if (max_message_bytes < 1024) fail("max message bytes must be at least 1024");
  if (max_queue < 1) fail("max queue must be at least 1");
  if (max_services < 1) fail("max services must be at least 1");
  if (max_client_inflight < 1) fail("max client in-flight must be at least 1");
}

struct broker::impl {
  explicit impl(const broker_options& o) : loop(o) {}
  broker_detail::event_loop loop;
};

broker::broker(broker_options options) {
  options.validate();
  impl_ = std::make_unique<impl>(options);
}

broker::~broker() = default;

const bound_endpoints& broker::endpoints() const noexcept {
  return impl_->loop.endpoints();
}
void broker::run() {
  impl_->loop.run();
}
void broker::stop() noexcept {
  impl_->loop.stop();
}

}  // namespace scale0
