// SPDX-License-Identifier: Apache-2.0
// An outbox that accepts every message, like sockets that never refuse, and remembers the last job
// id sent to a worker, so a test or benchmark can answer it. Shared by the allocation test and the
// core microbenchmarks.
#pragma once

#include "broker/broker_core.hpp"
#include "protocol/batch.hpp"

namespace scale0::broker_detail {

class job_sink : public outbox {
 public:
  delivery send(std::uint8_t, frames& msg) override {
    ++sent;
    if (protocol::is_batch(msg, 1)) {  // each entry as if sent alone
      ++batches;
      std::size_t bytes = 0;
      if (reader_.open(msg, 1))
        while (reader_.next(entry_, bytes)) note(entry_);
      return delivery::sent;
    }
    note(msg);
    return delivery::sent;
  }
  void publish(frames&) override {}
  std::uint64_t last_job = 0;
  std::uint64_t jobs[2] = {};  // the last two, the latest last
  long sent = 0;
  long batches = 0;

 private:
  void note(const frames& msg) {
    std::uint64_t job = 0;
    if (msg.size() > 4 && msg[3].size() == 1 && *static_cast<const char*>(msg[3].data()) == 2 &&
        msg[4].size() == 8) {
      job = protocol::read_u64(msg[4]);  // S0/1 REQUEST: job-id frame
    } else if (msg.size() > 2 && protocol::view(msg[2]).substr(0, 5) == "S0W2\x02" &&
               msg[2].size() >= 13) {
      for (unsigned char c : protocol::view(msg[2]).substr(5, 8)) job = (job << 8) | c;
    } else {
      return;
    }
    last_job = job;
    jobs[0] = jobs[1];
    jobs[1] = job;
  }
  protocol::batch_reader reader_;
  frames entry_;
};

}  // namespace scale0::broker_detail
