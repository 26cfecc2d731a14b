// SPDX-License-Identifier: Apache-2.0
#include "peer_resolver.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>

namespace scale0::broker_detail {
namespace {

struct split_spec {
  std::string host;  // brackets removed
  std::string port;
};

bool split(const std::string& spec, split_spec& out) {
  if (spec.rfind("tcp://", 0) != 0) return false;
  const std::string rest = spec.substr(6);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  out.host = rest.substr(0, colon);
  out.port = rest.substr(colon + 1);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  return true;
}

}  // namespace

// What the loop and the resolving thread share. The thread holds it by shared_ptr, so the broker
// may go away while a getaddrinfo is still running: the thread then finishes, sees `stop` and
// exits, and the last owner closes the eventfd.
struct peer_resolver::shared {
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  bool fresh = false;  // entries changed since the last take
  std::vector<configured_peer> entries;
  int efd = -1;
  ~shared() {
    if (efd >= 0) ::close(efd);
  }
};

bool peer_resolver::literal(const std::string& spec) {
  if (spec.rfind("ipc://", 0) == 0) return true;
  split_spec s;
  if (!split(spec, s)) return true;  // nothing to resolve: validation refused it already
  unsigned char buf[16];
  return ::inet_pton(AF_INET, s.host.c_str(), buf) == 1 ||
         ::inet_pton(AF_INET6, s.host.c_str(), buf) == 1;
}

std::vector<std::string> peer_resolver::resolve(const std::string& spec, std::string& error) {
  error.clear();
  if (literal(spec)) return {spec};
  split_spec s;
  if (!split(spec, s)) return {spec};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(s.host.c_str(), s.port.c_str(), &hints, &res);
  if (rc != 0) {
    error = ::gai_strerror(rc);
    return {};
  }
  std::set<std::string> found;  // sorted, each once: the same answer in another order is no change
  for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
    char host[INET6_ADDRSTRLEN] = {};
    if (a->ai_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr, host,
                  sizeof host);
      found.insert("tcp://" + std::string(host) + ":" + s.port);
    } else if (a->ai_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr, host,
                  sizeof host);
      found.insert("tcp://[" + std::string(host) + "]:" + s.port);
    }
  }
  ::freeaddrinfo(res);
  if (found.empty()) error = "no address";
  return {found.begin(), found.end()};
}

peer_resolver::peer_resolver(std::vector<std::string> specs, std::chrono::milliseconds every)
    : state_(std::make_shared<shared>()) {
  bool names = false;
  for (auto& spec : specs) {
    configured_peer e;
    e.spec = spec;
    if (literal(spec)) {
      e.endpoints = {spec};
    } else {
      names = true;
    }
    state_->entries.push_back(std::move(e));
  }
  state_->fresh = true;  // the literal ones, at once
  if (!names) return;
  state_->efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::thread([st = state_, every] {
    std::unique_lock lock(st->mu);
    while (!st->stop) {
      std::vector<std::string> todo;
      for (const auto& e : st->entries)
        if (!literal(e.spec)) todo.push_back(e.spec);
      lock.unlock();
      std::vector<std::pair<std::vector<std::string>, std::string>> results;
      for (const auto& spec : todo) {
        std::string error;
        auto eps = resolve(spec, error);
        results.emplace_back(std::move(eps), std::move(error));
      }
      lock.lock();
      if (st->stop) break;
      bool changed = false;
      std::size_t i = 0;
      for (auto& e : st->entries) {
        if (literal(e.spec)) continue;
        auto& [eps, error] = results[i++];
        changed = changed || e.error != error;
        e.error = error;
        if (error.empty() && eps != e.endpoints) {  // a failure keeps the last addresses
          e.endpoints = std::move(eps);
          changed = true;
        }
      }
      if (changed) {
        st->fresh = true;
        const std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(st->efd, &one, sizeof one);
      }
      st->cv.wait_for(lock, every, [&] { return st->stop; });
    }
  }).detach();
}

peer_resolver::~peer_resolver() {
  {
    std::lock_guard lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
}

int peer_resolver::fd() const noexcept {
  return state_->efd;
}

std::optional<std::vector<configured_peer>> peer_resolver::take() {
  std::lock_guard lock(state_->mu);
  if (state_->efd >= 0) {
    std::uint64_t ignored;
    [[maybe_unused]] auto n = ::read(state_->efd, &ignored, sizeof ignored);
  }
  if (!state_->fresh) return std::nullopt;
  state_->fresh = false;
  return state_->entries;
}

}  // namespace scale0::broker_detail
