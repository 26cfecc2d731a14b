// SPDX-License-Identifier: Apache-2.0
// Route rules of the HTTP front doors (docs/http.md, "Choosing the service").
#include "gateway/routes.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "scale0/error.hpp"

namespace scale0::gateway_detail {
namespace {

using std::chrono::milliseconds;

std::string parse_error(std::string_view rule) {
  try {
    (void)parse_route(rule, 0);
  } catch (const error& e) {
    EXPECT_EQ(e.code(), status::bad_request) << rule;
    return e.message();
  }
  ADD_FAILURE() << "accepted: " << rule;
  return {};
}

router make_router(std::vector<std::string_view> rules, std::string default_service = {}) {
  std::vector<route> routes;
  for (std::size_t i = 0; i < rules.size(); ++i) routes.push_back(parse_route(rules[i], i));
  return router(std::move(routes), std::move(default_service));
}

TEST(routes, parses_every_key) {
  const route r =
      parse_route(" host = API.Example.com , prefix=/v1,service=api,timeout=2500,name=v1 ", 4);
  EXPECT_EQ(r.host, "api.example.com") << "hosts compare lower-case";
  EXPECT_EQ(r.prefix, "/v1");
  EXPECT_EQ(r.service, "api");
  EXPECT_EQ(r.timeout, milliseconds(2500));
  EXPECT_EQ(r.name, "v1");
}

TEST(routes, default_names) {
  EXPECT_EQ(parse_route("prefix=/static,service=files", 2).name, "files");
  EXPECT_EQ(parse_route("host=a.example.com", 3).name, "route3");
  EXPECT_EQ(parse_route("host=a.example.com", 3).timeout, milliseconds(0));
}

TEST(routes, parse_errors_say_what_is_wrong) {
  EXPECT_NE(parse_error("").find("give host= or prefix="), std::string::npos);
  EXPECT_NE(parse_error("service=x").find("give host= or prefix="), std::string::npos);
  EXPECT_NE(parse_error("host").find("expected key=value"), std::string::npos);
  EXPECT_NE(parse_error("prefix=api").find("must start with '/'"), std::string::npos);
  EXPECT_NE(parse_error("prefix=").find("must start with '/'"), std::string::npos);
  EXPECT_NE(parse_error("host=a,service=").find("service must be"), std::string::npos);
  EXPECT_NE(parse_error("host=a,service=" + std::string(256, 's')).find("service must be"),
            std::string::npos);
  for (auto t : {"0", "-1", "abc", "10ms", "3600001", ""})
    EXPECT_NE(parse_error(std::string("host=a,timeout=") + t).find("timeout must be"),
              std::string::npos)
        << t;
  EXPECT_NE(parse_error("host=a,name=").find("empty name"), std::string::npos);
  EXPECT_NE(parse_error("host=a,colour=red").find("unknown key 'colour'"), std::string::npos);
  EXPECT_NE(parse_error("host=a,prefix=/x,connect=yes").find("no prefix"), std::string::npos);
  EXPECT_NE(parse_error("host=a,connect=maybe").find("yes or no"), std::string::npos);
  EXPECT_NE(parse_error("prefix=/a%2fb").find("encoded"), std::string::npos);
}

TEST(routes, prefixes_are_normalised_like_paths) {
  const router r = make_router({"prefix=//admin/./,service=admin", "prefix=/%61pi,service=api"});
  EXPECT_EQ(r.routes()[0].prefix, "/admin/");
  EXPECT_EQ(r.routes()[1].prefix, "/api");
  EXPECT_EQ(r.choose("h", "/api/x").service, "api");
}

TEST(routes, connect_rules_take_only_connect) {
  const router r = make_router({"host=tunnel,connect=yes,service=t", "host=tunnel,service=web"});
  EXPECT_EQ(r.choose("tunnel:443", "tunnel:443", true).service, "t");
  EXPECT_EQ(r.choose("tunnel", "/", false).service, "web");
  EXPECT_TRUE(r.choose("other:443", "other:443", true).connect_refused);
}

TEST(routes, reserved_service_names_are_refused) {
  // mmi.* and scale0.* are answered by the broker itself (docs/protocol.md): never an HTTP app.
  EXPECT_NE(parse_error("host=a,service=scale0.status").find("reserved"), std::string::npos);
  EXPECT_NE(parse_error("host=a,service=mmi.service").find("reserved"), std::string::npos);
  const router r = make_router({});
  for (auto host : {"scale0.status", "MMI.service:80", "scale0.x"}) {
    const route_choice c = r.choose(host, "/");
    EXPECT_EQ(c.service, "") << host;
    EXPECT_EQ(c.problem, "the host is not a valid service name") << host;
  }
}

TEST(routes, first_match_wins) {
  const router r = make_router({"prefix=/api,service=a", "prefix=/api/v2,service=b",
                                "host=x.com,service=c", "prefix=/,service=d"});
  EXPECT_EQ(r.choose("x.com", "/api/v2/thing").service, "a") << "order, not length, decides";
  EXPECT_EQ(r.choose("x.com", "/other").service, "c");
  EXPECT_EQ(r.choose("y.com", "/other").service, "d");
  const route_choice c = r.choose("x.com", "/api");
  EXPECT_EQ(c.label, "a");
}

TEST(routes, prefix_stops_at_a_segment_boundary) {
  const router r = make_router({"prefix=/api,service=api", "prefix=/static/,service=files"});
  EXPECT_EQ(r.choose("h", "/api").service, "api");
  EXPECT_EQ(r.choose("h", "/api/x").service, "api");
  EXPECT_EQ(r.choose("h", "/api?q=1").service, "api");
  EXPECT_EQ(r.choose("h", "/apix").service, "h") << "no rule: the host is the service";
  EXPECT_EQ(r.choose("h", "/ap").service, "h");
  EXPECT_EQ(r.choose("h", "/static/a.css").service, "files");
  EXPECT_EQ(r.choose("h", "/staticx").service, "h");
  EXPECT_EQ(r.choose("h", "/x?/api").service, "h") << "the query is not the path";
  EXPECT_EQ(r.choose("h", "/api;jsessionid=1").service, "api") << "path parameters";
}

TEST(routes, wildcard_hosts) {
  const router r = make_router({"host=*.example.com,service=sub", "host=*,prefix=/any,service=any",
                                "host=Exact.org,service=exact"});
  EXPECT_EQ(r.choose("a.example.com", "/").service, "sub");
  EXPECT_EQ(r.choose("a.b.EXAMPLE.com:8080", "/").service, "sub");
  EXPECT_EQ(r.choose("example.com", "/").service, "example.com") << "the bare domain is not a sub";
  EXPECT_EQ(r.choose("badexample.com", "/").service, "badexample.com");
  EXPECT_EQ(r.choose("whatever", "/any/1").service, "any");
  EXPECT_EQ(r.choose("", "/any").service, "any");
  EXPECT_EQ(r.choose("exact.ORG", "/").service, "exact");
}

TEST(routes, rule_without_service_uses_the_host_and_its_timeout) {
  const router r = make_router({"prefix=/slow,timeout=9000"});
  const route_choice c = r.choose("Shop.Example:443", "/slow/report");
  EXPECT_EQ(c.service, "shop.example");
  EXPECT_EQ(c.timeout, milliseconds(9000));
  EXPECT_EQ(c.label, "route0");
  EXPECT_EQ(r.choose("shop.example", "/fast").timeout, milliseconds(0));
  EXPECT_EQ(r.choose("shop.example", "/fast").label, "host");
}

TEST(routes, default_service_for_requests_without_a_host) {
  EXPECT_EQ(make_router({}, "fallback").choose("", "/").service, "fallback");
  EXPECT_EQ(make_router({}, "fallback").choose("  ", "/").service, "fallback");
  EXPECT_EQ(make_router({}, "fallback").choose("real.host", "/").service, "real.host");
  const route_choice c = make_router({}).choose("", "/");
  EXPECT_EQ(c.service, "");
  EXPECT_EQ(c.problem, "the request names no host and there is no default service");
  EXPECT_EQ(make_router({}).choose(":8080", "/").service, "") << "a port alone is no host";
}

TEST(routes, host_without_port) {
  EXPECT_EQ(host_without_port("Example.COM:8080"), "example.com");
  EXPECT_EQ(host_without_port(" example.com "), "example.com");
  EXPECT_EQ(host_without_port("[::1]:80"), "[::1]");
  EXPECT_EQ(host_without_port("[2001:DB8::1]"), "[2001:db8::1]");
  EXPECT_EQ(host_without_port("127.0.0.1:5"), "127.0.0.1");
  EXPECT_EQ(host_without_port(""), "");
  EXPECT_EQ(host_without_port("Example.com.:80"), "example.com") << "one trailing dot";
  const router r = make_router({"host=[::1],service=local6"});
  EXPECT_EQ(r.choose("[::1]:8080", "/").service, "local6");
}

TEST(routes, host_that_is_not_a_service_name) {
  const route_choice c = make_router({}).choose(std::string(300, 'h'), "/");
  EXPECT_EQ(c.service, "");
  EXPECT_EQ(c.problem, "the host is not a valid service name");
}

}  // namespace
}  // namespace scale0::gateway_detail
