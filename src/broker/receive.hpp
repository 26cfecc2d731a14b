// SPDX-License-Identifier: Apache-2.0
// Reading one multipart message off a socket the event loop owns, within a frame budget, and
// sending one without waiting.
#pragma once

#include <cerrno>
#include <cstddef>
#include <zmq.hpp>

#include "scale0/protocol.hpp"

namespace scale0::broker_detail {

// Sends msg[first..] on `socket` without waiting. Only the first frame can be refused (the queue is
// full, there is no connection, or a ROUTER_MANDATORY peer is gone): then nothing was sent, the
// frames are left as they are, and the errno is returned; 0 when sent.
inline int send_message(void* socket, protocol::frames& msg, std::size_t first = 0) {
  for (std::size_t i = first; i < msg.size(); ++i) {
    const int flags = ZMQ_DONTWAIT | (i + 1 < msg.size() ? ZMQ_SNDMORE : 0);
    if (zmq_msg_send(msg[i].handle(), socket, flags) < 0 && i == first) return zmq_errno();
  }
  return 0;
}

// Reads one whole message from `socket` into `inbox` without waiting: its first `keep` frames;
// the rest are read into `discard` and dropped (a multipart message cannot be left half-read).
// Returns how many frames the message had (0: none was there); `bytes` gets the size of all of
// them, dropped ones included.
inline std::size_t receive_message(void* socket, protocol::frames& inbox, std::size_t keep,
                                   zmq::message_t& discard, std::size_t& bytes) {
  inbox.clear();
  inbox.emplace_back();
  if (zmq_msg_recv(inbox.back().handle(), socket, ZMQ_DONTWAIT) < 0) {
    inbox.clear();
    return 0;
  }
  std::size_t count = 1;
  bytes = inbox.back().size();
  bool more = inbox.back().more();
  while (more) {
    zmq::message_t* target = &discard;
    if (inbox.size() < keep) {
      inbox.emplace_back();
      target = &inbox.back();
    }
    if (zmq_msg_recv(target->handle(), socket, 0) < 0) break;
    ++count;
    bytes += target->size();
    more = target->more();
  }
  return count;
}

}  // namespace scale0::broker_detail
