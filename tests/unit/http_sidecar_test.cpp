// SPDX-License-Identifier: Apache-2.0
// The HTTP sidecar's pieces (scale0/http_sidecar.hpp): URL parsing, and the forwarder against a
// scripted app on loopback (what the app sees, what comes back, which failures are the app's).
#include "scale0/http_sidecar.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <string>
#include <thread>

#include "http/beast_codec.hpp"
#include "scale0/error.hpp"
#include "scale0/http.hpp"

namespace scale0::http {
namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using std::chrono::milliseconds;

std::uint16_t url_error(std::string_view url) {
  try {
    (void)parse_app_url(url);
  } catch (const error& e) {
    return e.code();
  }
  return 0;
}

TEST(http_sidecar, parses_app_urls) {
  app_url u = parse_app_url("http://127.0.0.1:8000");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8000);
  EXPECT_EQ(u.base_path, "");
  u = parse_app_url("HTTP://app.internal/base/path/");
  EXPECT_EQ(u.host, "app.internal");
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.base_path, "/base/path") << "no trailing '/'";
  EXPECT_EQ(u.text(), "http://app.internal:80/base/path");
  u = parse_app_url("http://[::1]:9/x");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.authority(), "[::1]:9");
  for (auto bad : {"https://h:1", "h:80", "http://", "http://:80", "http://h:", "http://h:0",
                   "http://h:65536", "http://h:x", "http://h:1?x", "http://h:1/p#f", "http://u@h:1",
                   "http://h h:1", "http://::1:80", "http://[::1", "http://[::1]x", "tcp://h:1"})
    EXPECT_EQ(url_error(bad), status::bad_request) << bad;
}

// Reads one request (head + Content-Length body); "" when the peer closed first.
std::string read_request(tcp::socket& s, std::string& buf) {
  boost::system::error_code ec;
  const std::size_t head = asio::read_until(s, asio::dynamic_buffer(buf), "\r\n\r\n", ec);
  if (ec) return {};
  std::size_t length = 0;
  const auto at = buf.find("Content-Length: ");
  if (at != std::string::npos && at < head) length = std::stoul(buf.substr(at + 16));
  if (buf.size() < head + length)
    asio::read(s, asio::dynamic_buffer(buf), asio::transfer_exactly(head + length - buf.size()),
               ec);
  std::string req = buf.substr(0, head + length);
  buf.erase(0, head + length);
  return req;
}

// An app on 127.0.0.1 that runs `script` on each connection it accepts, one after another.
class scripted_app {
 public:
  using script = std::function<void(tcp::socket&, int connection)>;
  explicit scripted_app(script run) : script_(std::move(run)) {
    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this] {
      for (int n = 0;; ++n) {
        tcp::socket s(ioc_);
        boost::system::error_code ec;
        acceptor_.accept(s, ec);
        if (ec || stopping_) return;
        ++connections;
        try {
          script_(s, n);
        } catch (const std::exception&) {
        }
      }
    });
  }
  ~scripted_app() {
    stopping_ = true;
    asio::io_context ioc;
    tcp::socket wake(ioc);
    boost::system::error_code ec;
    wake.connect(acceptor_.local_endpoint(), ec);  // unblocks accept()
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  std::atomic<int> connections{0};

 private:
  script script_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

job make_job(const std::string& body, milliseconds time_left = milliseconds(5000)) {
  job j;
  j.service = "web";
  j.body.emplace_back(body.data(), body.size());
  j.time_left = time_left;
  return j;
}

std::string get(std::string_view target, std::string_view method = "GET") {
  return std::string(method) + " " + std::string(target) +
         " HTTP/1.1\r\nHost: client.example\r\nContent-Length: 0\r\n\r\n";
}

struct forwarded {
  job_result result;
  int app_errors = 0;
};

forwarded forward_once(const std::string& url, const std::string& wire,
                       milliseconds time_left = milliseconds(5000)) {
  forwarded out;
  forward_options o;
  o.url = url;
  o.on_app_error = [&](const std::string&) { ++out.app_errors; };
  job j = make_job(wire, time_left);
  out.result = make_http_forwarder(o)(j);
  return out;
}

void send_all(tcp::socket& s, std::string_view bytes) {
  asio::write(s, asio::buffer(bytes.data(), bytes.size()));
}

TEST(http_sidecar, forwards_under_the_base_path_and_dechunks_the_answer) {
  std::string seen;
  scripted_app app([&](tcp::socket& s, int) {
    std::string buf;
    seen = read_request(s, buf);
    send_all(s,
             "HTTP/1.1 201 Made\r\nConnection: X-Private, keep-alive\r\nX-Private: p\r\n"
             "Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-App: a\r\n\r\n"
             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    read_request(s, buf);  // until the sidecar closes
  });
  const std::string wire =
      "POST /x?y=1 HTTP/1.1\r\nHost: client.example\r\nConnection: X-Hop\r\nX-Hop: h\r\n"
      "X-Kept: k\r\nContent-Length: 4\r\n\r\nbody";
  const forwarded f = forward_once(app.url() + "/base", wire);
  ASSERT_EQ(f.result.status, status::ok) << f.result.message;
  EXPECT_EQ(seen.rfind("POST /base/x?y=1 HTTP/1.1\r\n", 0), 0u) << seen;
  EXPECT_NE(seen.find("Host: client.example\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("X-Kept: k\r\n"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("X-Hop"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("Connection"), std::string::npos) << seen;
  EXPECT_NE(seen.find("\r\n\r\nbody"), std::string::npos) << seen;
  EXPECT_EQ(f.result.body.at(0).to_string(),
            "HTTP/1.1 201 Made\r\nX-App: a\r\nContent-Length: 5\r\n\r\nabcde");
}

TEST(http_sidecar, head_keeps_the_apps_content_length) {
  scripted_app app([&](tcp::socket& s, int) {
    std::string buf;
    read_request(s, buf);
    send_all(s, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
    read_request(s, buf);
  });
  const forwarded f = forward_once(app.url(), get("/", "HEAD"));
  ASSERT_EQ(f.result.status, status::ok) << f.result.message;
  const std::string wire = f.result.body.at(0).to_string();
  EXPECT_EQ(wire, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n");
  http_detail::beast_response m;
  EXPECT_EQ(http_detail::parse_response_into(wire, m, true), "");
}

TEST(http_sidecar, not_http_from_the_app_is_502_but_not_an_app_failure) {
  scripted_app app([&](tcp::socket& s, int) {
    std::string buf;
    read_request(s, buf);
    send_all(s, "SSH-2.0-OpenSSH\r\n\r\n");
  });
  const forwarded f = forward_once(app.url(), get("/"));
  EXPECT_EQ(f.result.status, status::worker_lost);
  EXPECT_NE(f.result.message.find("not HTTP"), std::string::npos) << f.result.message;
  EXPECT_EQ(f.app_errors, 0);
}

TEST(http_sidecar, bad_job_is_400) {
  const forwarded f = forward_once("http://127.0.0.1:9", "not http");
  EXPECT_EQ(f.result.status, status::bad_request);
  EXPECT_EQ(f.app_errors, 0);
}

TEST(http_sidecar, connect_refused_is_502_and_an_app_failure) {
  std::string url;
  {
    scripted_app gone([](tcp::socket&, int) {});
    url = gone.url();
  }
  const forwarded f = forward_once(url, get("/"));
  EXPECT_EQ(f.result.status, status::worker_lost);
  EXPECT_NE(f.result.message.find("cannot connect"), std::string::npos) << f.result.message;
  EXPECT_EQ(f.app_errors, 1);
}

TEST(http_sidecar, no_answer_before_the_deadline_is_504) {
  scripted_app app([&](tcp::socket& s, int) {
    std::string buf;
    read_request(s, buf);
    read_request(s, buf);  // never answers; returns when the sidecar gives up
  });
  const auto t0 = std::chrono::steady_clock::now();
  const forwarded f = forward_once(app.url(), get("/"), milliseconds(200));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(2000));
  EXPECT_EQ(f.result.status, status::deadline);
  EXPECT_NE(f.result.message.find("did not answer within 200 ms"), std::string::npos)
      << f.result.message;
  EXPECT_EQ(f.app_errors, 1);
}

// Connection 0 answers one request, then reads the next and closes without answering; later
// connections answer everything.
void answer_once_then_drop(tcp::socket& s, int connection) {
  std::string buf;
  for (int i = 0;; ++i) {
    if (read_request(s, buf).empty()) return;
    if (connection == 0 && i == 1) return;
    send_all(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  }
}

TEST(http_sidecar, keeps_connections_and_retries_an_idempotent_request_the_app_dropped) {
  scripted_app app(answer_once_then_drop);
  forward_options o;
  o.url = app.url();
  const job_handler h = make_http_forwarder(o);
  job first = make_job(get("/1"));
  EXPECT_EQ(h(first).status, status::ok);
  job second = make_job(get("/2"));
  const job_result r = h(second);
  EXPECT_EQ(r.status, status::ok) << r.message;
  job third = make_job(get("/3"));
  EXPECT_EQ(h(third).status, status::ok);
  EXPECT_EQ(app.connections.load(), 2) << "the retry's connection is kept for the third";
}

TEST(http_sidecar, never_retries_a_post) {
  scripted_app app(answer_once_then_drop);
  forward_options o;
  o.url = app.url();
  int app_errors = 0;
  o.on_app_error = [&](const std::string&) { ++app_errors; };
  const job_handler h = make_http_forwarder(o);
  job first = make_job(get("/1"));
  EXPECT_EQ(h(first).status, status::ok);
  job post = make_job(get("/2", "POST"));
  EXPECT_EQ(h(post).status, status::worker_lost);
  EXPECT_EQ(app_errors, 1);
  EXPECT_EQ(app.connections.load(), 1) << "the app may have acted on it: not sent twice";
}

}  // namespace
}  // namespace scale0::http
