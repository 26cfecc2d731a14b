// SPDX-License-Identifier: Apache-2.0
// An outbox that accepts every message, like sockets that never refuse, and remembers the last job
// id sent to a worker, so a test or benchmark can answer it. Shared by the allocation test and the
// core microbenchmarks.
#pragma once

#include "broker/broker_core.hpp"

namespace scale0::broker_detail {

class job_sink : public outbox {
 public:
  delivery send(std::uint8_t, frames& msg) override {
    if (msg.size() > 4 && msg[3].size() == 1 && *static_cast<const char*>(msg[3].data()) == 2 &&
        msg[4].size() == 8)
      last_job = protocol::read_u64(msg[4]);  // S0/1 REQUEST: job-id frame
    if (msg.size() > 2 && protocol::view(msg[2]).substr(0, 5) == "S0W2\x02" &&
        msg[2].size() >= 13) {
      last_job = 0;  // S0/2 REQUEST: the job-id follows the command byte
      for (unsigned char c : protocol::view(msg[2]).substr(5, 8)) last_job = (last_job << 8) | c;
    }
    ++sent;
    return delivery::sent;
  }
  void publish(frames&) override {}
  std::uint64_t last_job = 0;
  long sent = 0;
};

}  // namespace scale0::broker_detail
