// SPDX-License-Identifier: Apache-2.0
// The front door's request rules (src/gateway/request_rules.hpp, docs/http.md "What the front
// door accepts"), from RFC 9112 §3.2 and §6, RFC 3986 §5.2.4 and §6.2.2.
#include "gateway/request_rules.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "scale0/error.hpp"
#include "scale0/http.hpp"

namespace scale0::gateway_detail {
namespace {

using fields = std::vector<field_ref>;

unsigned te_status(const fields& f, unsigned version = 11) {
  bool chunked = false;
  const refusal r = check_transfer_encoding(f, version, chunked);
  if (!r) return chunked ? 1 : 0;  // 1: chunked, 0: no transfer coding
  return r.status;
}

TEST(request_rules, transfer_encoding_is_chunked_alone_or_refused) {
  EXPECT_EQ(te_status({{"Host", "a"}}), 0u);
  EXPECT_EQ(te_status({{"Transfer-Encoding", "chunked"}}), 1u);
  EXPECT_EQ(te_status({{"transfer-encoding", "CHUNKED"}}), 1u);
  EXPECT_EQ(te_status({{"Transfer-Encoding", " chunked "}}), 1u);
  // the final coding is not chunked: the length cannot be known (RFC 9112 §6.3)
  for (const char* v : {"chunked, identity", "identity", "xchunked", "\"chunked\"", "", "chunked;",
                        "chunked x", "x chunked", "chunkedx", "gzip"})
    EXPECT_EQ(te_status({{"Transfer-Encoding", v}}), 400u) << v;
  EXPECT_EQ(te_status({{"Transfer-Encoding", "chunked, chunked"}}), 400u);
  EXPECT_EQ(te_status({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}), 400u);
  EXPECT_EQ(te_status({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "identity"}}), 400u);
  // chunked last, another coding before it: understood framing, unsupported coding
  EXPECT_EQ(te_status({{"Transfer-Encoding", "gzip, chunked"}}), 501u);
  EXPECT_EQ(te_status({{"Transfer-Encoding", "identity"}, {"Transfer-Encoding", "chunked"}}), 501u);
  // HTTP/1.0 has no transfer codings (RFC 9112 §6.1)
  EXPECT_EQ(te_status({{"Transfer-Encoding", "chunked"}}, 10), 400u);
}

unsigned expect_status(const fields& f, bool* wants = nullptr) {
  bool w = false;
  const refusal r = check_expect(f, w);
  if (wants != nullptr) *wants = w;
  return r.status;
}

TEST(request_rules, expect_only_hundred_continue) {
  bool wants = false;
  EXPECT_EQ(expect_status({{"Expect", "100-continue"}}, &wants), 0u);
  EXPECT_TRUE(wants);
  EXPECT_EQ(expect_status({{"Expect", "100-Continue"}}), 0u);
  EXPECT_EQ(expect_status({{"Expect", "100-continue, 100-continue"}}, &wants), 0u);
  EXPECT_TRUE(wants) << "a list of 100-continue still asks for it";
  EXPECT_EQ(expect_status({{"Host", "h"}}, &wants), 0u);
  EXPECT_FALSE(wants);
  EXPECT_EQ(expect_status({{"Expect", "200-ok"}}), 417u);
  EXPECT_EQ(expect_status({{"Expect", ""}}), 417u);
  EXPECT_EQ(expect_status({{"Expect", "100-continue, x"}}), 417u);
}

TEST(request_rules, every_connection_field_decides_keep_alive) {
  EXPECT_TRUE(keep_alive(fields{}, 11));
  EXPECT_FALSE(keep_alive(fields{}, 10));
  EXPECT_FALSE(keep_alive(fields{{"Connection", "keep-alive"}, {"Connection", "close"}}, 11));
  EXPECT_FALSE(keep_alive(fields{{"Connection", "x, CLOSE"}}, 11));
  EXPECT_TRUE(keep_alive(fields{{"connection", "Keep-Alive"}}, 10));
  EXPECT_FALSE(keep_alive(fields{{"Connection", "keep-alive"}, {"Connection", "close"}}, 10));
  EXPECT_TRUE(keep_alive(fields{{"Connection", "closed"}}, 11)) << "a token, not a substring";
}

TEST(request_rules, host_syntax) {
  for (const char* good : {"", "example.com", "EXAMPLE.com:8080", "a-b_c~d.e", "127.0.0.1:80",
                           "[::1]", "[::1]:8080", "[2001:db8::7]", "h:", "x!$&'()*+,;=y"})
    EXPECT_TRUE(valid_host(good)) << good;
  for (const char* bad : {"a@b", "user:pw@host", "a/b", "a b", "a%2eb", "[::1", "[zz]", "[::1]x",
                          ":80", "h:8o", "h:123456", "a\tb", "h\"", "a?b", "a#b", "[]", "a:1:2"})
    EXPECT_FALSE(valid_host(bad)) << bad;
}

std::string norm(std::string_view p) {
  std::string out;
  if (!normalise_path(p, out).empty()) return "<bad>";
  return out;
}

TEST(request_rules, path_normal_form) {
  EXPECT_EQ(norm("/"), "/");
  EXPECT_EQ(norm("/admin"), "/admin");
  EXPECT_EQ(norm("/admin/"), "/admin/");
  EXPECT_EQ(norm("/./admin"), "/admin");
  EXPECT_EQ(norm("//admin"), "/admin");
  EXPECT_EQ(norm("/a//b///c"), "/a/b/c");
  EXPECT_EQ(norm("/%61dmin"), "/admin");
  EXPECT_EQ(norm("/%41%7a%30%2D%2e%5F%7E"), "/Az0-._~");
  EXPECT_EQ(norm("/x/../admin"), "/admin");
  EXPECT_EQ(norm("/%2e%2e/admin"), "/admin");
  EXPECT_EQ(norm("/.%2E/admin"), "/admin");
  EXPECT_EQ(norm("/../../admin"), "/admin") << "never above the root";
  EXPECT_EQ(norm("/a/b/.."), "/a/");
  EXPECT_EQ(norm("/a/b/."), "/a/b/");
  EXPECT_EQ(norm("/a/.."), "/");
  EXPECT_EQ(norm("/.."), "/");
  EXPECT_EQ(norm("/a/%2f/b"), "<bad>") << "workers disagree on an encoded slash";
  EXPECT_EQ(norm("/a%5Cb"), "<bad>") << "... and an encoded backslash";
  EXPECT_EQ(norm("/admin%00"), "<bad>") << "... and NUL";
  EXPECT_EQ(norm("/%c3%a9"), "/%C3%A9");
  EXPECT_EQ(norm("/caf\xc3\xa9"), "/caf%C3%A9") << "raw and escaped UTF-8 meet";
  EXPECT_EQ(norm("/public/..\\admin"), "<bad>") << "a raw backslash is refused too";
  EXPECT_EQ(norm("/a{b}|c^`\"<>"), "/a%7Bb%7D%7Cc%5E%60%22%3C%3E");
  EXPECT_EQ(norm("/a:b@c;d=e!$&'()*+,"), "/a:b@c;d=e!$&'()*+,") << "pchars stay";
  EXPECT_EQ(norm("/public/..;/admin"), "<bad>") << "a dot segment with parameters";
  EXPECT_EQ(norm("/.;x/admin"), "<bad>");
  EXPECT_EQ(norm("/admin;x"), "/admin;x");
  EXPECT_EQ(norm("/a/...b/..."), "/a/...b/...") << "only exact dot segments";
  EXPECT_EQ(norm("/%"), "<bad>");
  EXPECT_EQ(norm("/%4"), "<bad>");
  EXPECT_EQ(norm("/%zz"), "<bad>");
  EXPECT_EQ(norm("/%%41"), "<bad>");
  // Idempotent: the normal form of a normal form is itself.
  for (const char* p : {"/./a//b/../c/", "/%61/%2c/%7e", "/..", "/a/b/..", "//", "/\xc3\xa9\"x"})
    EXPECT_EQ(norm(norm(p)), norm(p)) << p;
}

request_target target_of(std::string_view method, std::string_view target, const fields& f,
                         unsigned version = 11, unsigned* status = nullptr) {
  request_target t;
  const refusal r = read_target(method, target, version, f, t);
  if (status != nullptr) *status = r.status;
  return t;
}

unsigned target_status(std::string_view method, std::string_view target, const fields& f,
                       unsigned version = 11) {
  unsigned s = 0;
  (void)target_of(method, target, f, version, &s);
  return s;
}

TEST(request_rules, host_field_count) {
  EXPECT_EQ(target_status("GET", "/", {{"Host", "a"}}), 0u);
  EXPECT_EQ(target_status("GET", "/", {}), 400u) << "HTTP/1.1 needs Host";
  EXPECT_EQ(target_status("GET", "/", {}, 10), 0u) << "HTTP/1.0 may omit it";
  EXPECT_EQ(target_status("GET", "/", {{"Host", "a"}, {"Host", "a"}}), 400u);
  EXPECT_EQ(target_status("GET", "/", {{"Host", "a"}, {"host", "b"}}, 10), 400u);
  EXPECT_EQ(target_status("GET", "/", {{"Host", "a@b"}}), 400u);
  const auto t = target_of("GET", "/", {{"Host", ""}});
  EXPECT_EQ(t.host, "");
  EXPECT_TRUE(t.has_host);
}

TEST(request_rules, absolute_form_replaces_host_and_becomes_origin_form) {
  auto t = target_of("GET", "http://app.local/admin/x?q=1", {{"Host", "other"}});
  EXPECT_EQ(t.form, target_form::absolute);
  EXPECT_EQ(t.host, "app.local");
  EXPECT_EQ(t.path, "/admin/x");
  EXPECT_EQ(t.target, "/admin/x?q=1");
  t = target_of("GET", "HTTPS://App.Local:8443", {{"Host", "x"}});
  EXPECT_EQ(t.host, "App.Local:8443");
  EXPECT_EQ(t.target, "/");
  t = target_of("GET", "http://h?x", {{"Host", "x"}});
  EXPECT_EQ(t.target, "/?x");
  t = target_of("GET", "http://h/./%61dmin/", {{"Host", "h"}});
  EXPECT_EQ(t.target, "/admin/");
  EXPECT_EQ(target_status("GET", "http://u@app.local/", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("GET", "ftp://app.local/", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("GET", "http:///x", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("GET", "http://:80/x", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("GET", "http://app.local/", {}), 400u) << "Host is still required";
  EXPECT_EQ(target_status("GET", "app.local/x", {{"Host", "h"}}), 400u);
}

TEST(request_rules, asterisk_and_authority_forms) {
  auto t = target_of("OPTIONS", "*", {{"Host", "h"}});
  EXPECT_EQ(t.form, target_form::asterisk);
  EXPECT_EQ(t.target, "*");
  EXPECT_EQ(target_status("GET", "*", {{"Host", "h"}}), 400u);
  t = target_of("CONNECT", "app.local:443", {{"Host", "app.local:443"}});
  EXPECT_EQ(t.form, target_form::authority);
  EXPECT_EQ(t.host, "app.local:443");
  EXPECT_EQ(t.target, "app.local:443");
  EXPECT_EQ(target_status("CONNECT", "/x", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("CONNECT", "app.local", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("CONNECT", "u@app.local:1", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("CONNECT", "[::1]", {{"Host", "h"}}), 400u) << "no port";
  EXPECT_EQ(target_status("CONNECT", "a:99999", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("CONNECT", "a:0", {{"Host", "h"}}), 400u);
  EXPECT_EQ(target_status("CONNECT", "[::1]:443", {{"Host", "h"}}), 0u);
}

TEST(request_rules, origin_form_keeps_the_query_as_sent) {
  const auto t = target_of("GET", "//a/./b/../c?x=/../y&%61", {{"Host", "h"}});
  EXPECT_EQ(t.path, "/a/c");
  EXPECT_EQ(t.target, "/a/c?x=/../y&%61");
  EXPECT_EQ(target_status("GET", "/%zz", {{"Host", "h"}}), 400u);
}

TEST(request_rules, trusted_proxies) {
  const trusted_proxies t("10.0.0.0/8, 192.168.1.7,::1/128,2001:db8::/32");
  EXPECT_TRUE(t.contains("10.1.2.3"));
  EXPECT_FALSE(t.contains("11.1.2.3"));
  EXPECT_TRUE(t.contains("192.168.1.7"));
  EXPECT_FALSE(t.contains("192.168.1.8"));
  EXPECT_TRUE(t.contains("::1"));
  EXPECT_TRUE(t.contains("2001:db8:1::5"));
  EXPECT_FALSE(t.contains("2001:db9::5"));
  EXPECT_FALSE(t.contains("not an address"));
  EXPECT_TRUE(t.contains("::ffff:10.9.8.7")) << "IPv4-mapped is the IPv4 address";
  EXPECT_FALSE(t.contains("::ffff:11.9.8.7"));
  EXPECT_FALSE(trusted_proxies().contains("127.0.0.1"));
  EXPECT_TRUE(trusted_proxies("0.0.0.0/0").contains("8.8.8.8"));
  EXPECT_THROW(trusted_proxies("10.0.0.0/33"), error);
  EXPECT_THROW(trusted_proxies("example.com"), error);
  EXPECT_THROW(trusted_proxies("10.0.0.0/"), error);
  const trusted_proxies mapped("::ffff:10.0.0.0/104");
  EXPECT_TRUE(mapped.contains("10.1.2.3")) << "an IPv4-mapped net is the IPv4 net";
  EXPECT_TRUE(mapped.contains("::ffff:10.1.2.3"));
  EXPECT_FALSE(mapped.contains("11.1.2.3"));
  EXPECT_THROW(trusted_proxies("::ffff:10.0.0.0/64"), error);
}

http::request encoded(const fields& f, const encode_options& o, std::string_view target = "/p?q") {
  request_target t;
  EXPECT_FALSE(read_target("POST", target, 11, f, t));
  std::string wire;
  encode_request("POST", t, f, "body", o, wire);
  return http::parse_request(wire);
}

TEST(request_rules, encoding_replaces_forwarding_fields_from_untrusted_peers) {
  encode_options o;
  o.peer = "192.0.2.1";
  o.request_id = "rid";
  const auto r = encoded({{"Host", "h"},
                          {"X-Forwarded-For", "1.1.1.1"},
                          {"Forwarded", "for=1.1.1.1"},
                          {"X-Real-IP", "1.1.1.1"},
                          {"X-Forwarded-Host", "evil"},
                          {"X-Forwarded-Proto", "https"},
                          {"X_Forwarded_For", "2.2.2.2"},
                          {"Accept", "*/*"}},
                         o);
  EXPECT_EQ(r.header("X-Forwarded-For"), "192.0.2.1");
  EXPECT_EQ(r.header("Forwarded"), "for=192.0.2.1;proto=http");
  EXPECT_EQ(r.header("X-Real-IP"), "192.0.2.1");
  EXPECT_EQ(r.header("X-Forwarded-Proto"), "http");
  EXPECT_FALSE(r.header("X-Forwarded-Host"));
  EXPECT_FALSE(r.header("X_Forwarded_For")) << "underscores are dropped by default";
  EXPECT_EQ(r.header("Accept"), "*/*");
  EXPECT_EQ(r.header("Host"), "h");
  EXPECT_EQ(r.header("X-Request-Id"), "rid");
  EXPECT_EQ(r.body, "body");
  EXPECT_EQ(r.target, "/p?q");
}

TEST(request_rules, encoding_extends_forwarding_fields_from_trusted_proxies) {
  encode_options o;
  o.peer = "::1";
  o.trusted = true;
  o.keep_underscores = true;
  const auto r = encoded({{"Host", "h"},
                          {"X-Forwarded-For", "1.1.1.1"},
                          {"x-forwarded-for", "3.3.3.3"},
                          {"Forwarded", "for=1.1.1.1"},
                          {"X-Forwarded-Host", "shop.example"},
                          {"X-Forwarded-Proto", "https"},
                          {"X_Custom", "kept"}},
                         o);
  EXPECT_EQ(r.header("X-Forwarded-For"), "1.1.1.1, 3.3.3.3, ::1");
  EXPECT_EQ(r.header("Forwarded"), "for=1.1.1.1, for=\"[::1]\";proto=http");
  EXPECT_EQ(r.header("X-Real-IP"), "::1");
  EXPECT_EQ(r.header("X-Forwarded-Host"), "shop.example");
  EXPECT_EQ(r.header("X-Forwarded-Proto"), "https");
  EXPECT_EQ(r.header("X_Custom"), "kept");
}

TEST(request_rules, connection_cannot_strip_host_or_the_front_doors_fields) {
  encode_options o;
  o.peer = "192.0.2.1";
  o.request_id = "rid";
  const auto r = encoded({{"Host", "h"},
                          {"Connection", "Host, X-Forwarded-For"},
                          {"Connection", "X-Secret, content-length"},
                          {"X-Secret", "s"},
                          {"X-Other", "o"}},
                         o);
  EXPECT_EQ(r.header("Host"), "h");
  EXPECT_EQ(r.header("X-Forwarded-For"), "192.0.2.1");
  EXPECT_EQ(r.header("Content-Length"), "4");
  EXPECT_FALSE(r.header("X-Secret")) << "the second Connection field counts too";
  EXPECT_FALSE(r.header("Connection"));
  EXPECT_EQ(r.header("X-Other"), "o");
}

TEST(request_rules, only_http10_and11) {
  request_target t;
  EXPECT_EQ(admit_head("GET", "/", 9, fields{{"Host", "h"}}, false, t).status, 505u);
  EXPECT_EQ(admit_head("GET", "/", 12, fields{{"Host", "h"}}, false, t).status, 505u);
  EXPECT_EQ(admit_head("GET", "/", 20, fields{{"Host", "h"}}, false, t).status, 505u);
  EXPECT_FALSE(admit_head("GET", "/", 11, fields{{"Host", "h"}}, false, t));
  EXPECT_FALSE(admit_head("GET", "/", 10, fields{}, false, t));
}

TEST(request_rules, path_overrides_only_from_trusted_proxies) {
  encode_options o;
  o.peer = "192.0.2.1";
  auto r = encoded({{"Host", "h"}, {"X-Original-URL", "/admin"}, {"X-Rewrite-URL", "/admin"}}, o);
  EXPECT_FALSE(r.header("X-Original-URL"));
  EXPECT_FALSE(r.header("X-Rewrite-URL"));
  o.trusted = true;
  r = encoded({{"Host", "h"}, {"X-Original-URL", "/admin"}}, o);
  EXPECT_EQ(r.header("X-Original-URL"), "/admin");
}

TEST(request_rules, absolute_form_encodes_the_authority_as_host) {
  encode_options o;
  o.peer = "192.0.2.1";
  const auto r = encoded({{"Host", "ignored"}}, o, "http://app.local:81//admin/./x");
  EXPECT_EQ(r.target, "/admin/x");
  EXPECT_EQ(r.header("Host"), "app.local:81");
  std::size_t hosts = 0;
  for (const auto& f : r.headers) hosts += f.name == "Host" || f.name == "host";
  EXPECT_EQ(hosts, 1u);
}

}  // namespace
}  // namespace scale0::gateway_detail
