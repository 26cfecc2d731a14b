// SPDX-License-Identifier: Apache-2.0
// A minimal NATS client connection speaking the text protocol over TCP (no library): what the
// comparison needs and nothing more.
//
//   server -> INFO {...}                    on accept (and possibly later: ignored)
//   client -> CONNECT {"verbose":false,...} then SUB / PUB / PING
//   server -> MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n
//   both   -> PING / PONG (a PING is always answered with PONG)
//   server -> +OK (verbose mode only) / -ERR '<text>'
//
// Non-blocking socket: queue() appends to the output buffer, flush() writes what the kernel takes,
// read_some() appends what has arrived, and parse() hands every complete MSG to a callback.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

struct nats_msg {
  std::string_view subject;
  std::string_view sid;
  std::string_view reply;  // empty when none
  std::string_view payload;
};

class nats_conn {
 public:
  // "host:port"; throws std::runtime_error. Sends CONNECT once the server's INFO has arrived.
  nats_conn(const std::string& server, const std::string& name) {
    const auto colon = server.rfind(':');
    if (colon == std::string::npos) throw std::runtime_error("server must be host:port");
    const std::string host = server.substr(0, colon);
    const std::string port = server.substr(colon + 1);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
      throw std::runtime_error("cannot resolve " + server);
    }
    fd_ = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    const int rc = fd_ < 0 ? -1 : ::connect(fd_, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0) {
      const std::string why = std::strerror(errno);
      close_fd();
      throw std::runtime_error("connect " + server + ": " + why);
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
    buf_.resize(1 << 17);
    out_.reserve(1 << 16);
    // The server speaks first: wait for its INFO line.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (input().find("\r\n") == std::string_view::npos) {
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("no INFO");
      wait(POLLIN, 100);
      if (!read_some()) throw std::runtime_error("connection closed before INFO");
    }
    if (input().substr(0, 5) != "INFO ") throw std::runtime_error("expected INFO");
    head_ += input().find("\r\n") + 2;
    queue(R"(CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":")" + name +
          R"(","lang":"c++","version":"0.1","protocol":1,"echo":false})"
          "\r\n");
  }
  ~nats_conn() { close_fd(); }
  nats_conn(const nats_conn&) = delete;
  nats_conn& operator=(const nats_conn&) = delete;

  int fd() const { return fd_; }
  const std::string& error() const { return error_; }
  bool closed_by_server() const { return closed_; }

  void queue(std::string_view s) { out_.append(s); }
  bool want_write() const { return out_pos_ < out_.size(); }

  // Writes what the kernel takes. False on a broken connection.
  bool flush() {
    while (out_pos_ < out_.size()) {
      const ssize_t n = ::send(fd_, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL);
      if (n > 0) {
        out_pos_ += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return true;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        error_ = std::string("send: ") + std::strerror(errno);
        return false;
      }
    }
    out_.clear();
    out_pos_ = 0;
    return true;
  }

  // Appends what has arrived. False on EOF or error.
  bool read_some() {
    for (int i = 0; i < 16; ++i) {
      if (buf_.size() - tail_ < 16384) make_room();
      const std::size_t room = buf_.size() - tail_;
      const ssize_t n = ::recv(fd_, buf_.data() + tail_, room, 0);
      if (n > 0) {
        tail_ += static_cast<std::size_t>(n);
        if (static_cast<std::size_t>(n) < room) return true;
        continue;
      }
      if (n == 0) {
        error_ = "connection closed by the server";
        closed_ = true;
        return false;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
      error_ = std::string("recv: ") + std::strerror(errno);
      return false;
    }
    return true;
  }

  // Waits for `events` (POLLIN/POLLOUT) up to timeout_ms; returns poll's revents.
  short wait(short events, int timeout_ms) const {
    pollfd p{fd_, events, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return 0;
    return p.revents;
  }

  // Handles every complete protocol message buffered: MSG -> on_msg(msg), PING -> queue PONG,
  // PONG -> ++pongs, -ERR -> false (error() says why). Views in `msg` die with the call.
  template <typename F>
  bool parse(F&& on_msg) {
    const std::string_view in = input();
    std::size_t pos = 0;
    bool ok = true;
    while (ok) {
      const std::size_t eol = in.find("\r\n", pos);
      if (eol == std::string_view::npos) break;
      const std::string_view line = in.substr(pos, eol - pos);
      if (starts_with_ci(line, "MSG ")) {
        std::string_view tok[5];
        const int n = split(line.substr(4), tok, 5);
        if (n != 3 && n != 4) {
          error_ = "bad MSG line";
          return false;
        }
        const std::size_t bytes = to_size(tok[n - 1]);
        if (in.size() < eol + 2 + bytes + 2) break;  // payload not all here yet
        nats_msg m;
        m.subject = tok[0];
        m.sid = tok[1];
        m.reply = n == 4 ? tok[2] : std::string_view{};
        m.payload = in.substr(eol + 2, bytes);
        on_msg(m);
        pos = eol + 2 + bytes + 2;
        continue;
      }
      if (starts_with_ci(line, "PING")) {
        queue("PONG\r\n");
      } else if (starts_with_ci(line, "PONG")) {
        ++pongs_;
      } else if (starts_with_ci(line, "-ERR")) {
        error_ = std::string(line);
        ok = false;
      }  // +OK, INFO: nothing to do
      pos = eol + 2;
    }
    head_ += pos;
    if (head_ == tail_) head_ = tail_ = 0;
    return ok;
  }

  // Sends PING and waits (up to timeout_ms) for its PONG: after it, everything sent before (SUB)
  // is in effect at the server. MSGs that arrive meanwhile go to on_msg.
  template <typename F>
  bool sync(int timeout_ms, F&& on_msg) {
    const long want = pongs_ + 1;
    queue("PING\r\n");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (pongs_ < want) {
      if (!flush()) return false;
      if (std::chrono::steady_clock::now() > deadline) {
        error_ = "no PONG";
        return false;
      }
      if ((wait(POLLIN, 50) & (POLLIN | POLLHUP | POLLERR)) != 0) {
        if (!read_some() || !parse(on_msg)) return false;
      }
    }
    return flush();
  }

 private:
  static bool starts_with_ci(std::string_view s, std::string_view p) {
    if (s.size() < p.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i) {
      char c = s[i];
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      if (c != p[i]) return false;
    }
    return true;
  }
  static int split(std::string_view s, std::string_view* out, int max) {
    int n = 0;
    std::size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
      if (i >= s.size()) break;
      std::size_t j = i;
      while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
      if (n == max) return max + 1;
      out[n++] = s.substr(i, j - i);
      i = j;
    }
    return n;
  }
  static std::size_t to_size(std::string_view s) {
    std::size_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return 0;
      v = v * 10 + static_cast<std::size_t>(c - '0');
    }
    return v;
  }
  std::string_view input() const { return {buf_.data() + head_, tail_ - head_}; }
  // Moves unparsed input to the front of the buffer, and grows it if that is not enough.
  void make_room() {
    if (head_ > 0) {
      std::memmove(buf_.data(), buf_.data() + head_, tail_ - head_);
      tail_ -= head_;
      head_ = 0;
    }
    if (buf_.size() - tail_ < 16384) buf_.resize(buf_.size() * 2);
  }
  void close_fd() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd_ = -1;
  std::vector<char> buf_;  // input: [head_, tail_) not parsed yet
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
  std::string out_;
  std::size_t out_pos_ = 0;
  long pongs_ = 0;
  bool closed_ = false;
  std::string error_;
};

}  // namespace bench
