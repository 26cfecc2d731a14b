// SPDX-License-Identifier: Apache-2.0
// metrics::exposition: families as the Prometheus text format (0.0.4) writes them.
#include "metrics/exposition.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <stdexcept>
#include <string>

#include "metrics/latency_histogram.hpp"
#include "scale0/version.hpp"

namespace {

using scale0::metrics::exposition;
using scale0::metrics::latency_histogram;

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

// The value of the first sample line that starts with `prefix` (NaN when there is none).
double value_of(const std::string& text, const std::string& prefix) {
  const auto at = ("\n" + text).find("\n" + prefix);
  if (at == std::string::npos) return std::nan("");
  const auto end = text.find('\n', at);
  const auto space = text.rfind(' ', end);
  return std::stod(text.substr(space + 1, end - space - 1));
}

TEST(exposition, counters_and_gauges_with_their_help_and_type) {
  exposition e;
  e.counter("scale0_things_total", "Things.").add(3, {{"kind", "a"}}).add(4, {{"kind", "b"}});
  e.gauge("scale0_level", "A level.").add(0.5);
  const std::string t = e.text();
  EXPECT_TRUE(has_line(t, "# HELP scale0_things_total Things.")) << t;
  EXPECT_TRUE(has_line(t, "# TYPE scale0_things_total counter")) << t;
  EXPECT_TRUE(has_line(t, "scale0_things_total{kind=\"a\"} 3")) << t;
  EXPECT_TRUE(has_line(t, "scale0_things_total{kind=\"b\"} 4")) << t;
  EXPECT_TRUE(has_line(t, "# TYPE scale0_level gauge")) << t;
  EXPECT_TRUE(has_line(t, "scale0_level 0.5")) << t;
  EXPECT_LT(t.find("scale0_things_total"), t.find("scale0_level")) << "families in order";
  EXPECT_EQ(e.size(), 2u);
}

TEST(exposition, big_counts_are_written_whole) {
  exposition e;
  e.counter("scale0_big_total", "Big.").add(12345678901234.0);
  EXPECT_TRUE(has_line(e.text(), "scale0_big_total 12345678901234")) << e.text();
}

TEST(exposition, label_values_are_escaped_and_made_utf8) {
  exposition e;
  e.gauge("scale0_x", "X.")
      .add(1, {{"service", "a\"b\\c\nd"}})
      .add(2, {{"service", "caf\xc3\xa9"}})
      .add(3, {{"service", std::string_view("bad\xff\0z", 6)}});
  const std::string t = e.text();
  EXPECT_TRUE(has_line(t, "scale0_x{service=\"a\\\"b\\\\c\\nd\"} 1")) << t;
  EXPECT_TRUE(has_line(t, "scale0_x{service=\"caf\xc3\xa9\"} 2")) << t;
  // Not UTF-8: the byte becomes U+FFFD. (NUL is a character: kept, the format allows it.)
  EXPECT_NE(t.find("scale0_x{service=\"bad\xef\xbf\xbd"), std::string::npos) << t;
}

TEST(exposition, help_is_escaped) {
  exposition e;
  e.gauge("scale0_x", "one \\ two\nthree").add(1);
  EXPECT_TRUE(has_line(e.text(), "# HELP scale0_x one \\\\ two\\nthree")) << e.text();
}

TEST(exposition, histogram_buckets_are_cumulative_with_inf_sum_and_count) {
  latency_histogram h;
  h.record(std::chrono::microseconds(50));  // <= 0.0001
  h.record(std::chrono::microseconds(50));  // <= 0.0001
  h.record(std::chrono::milliseconds(3));   // <= 0.005
  h.record(std::chrono::seconds(100));      // +Inf only
  exposition e;
  e.histogram("scale0_took_seconds", "Took.").add(h, {{"service", "s"}});
  const std::string t = e.text();
  EXPECT_TRUE(has_line(t, "# TYPE scale0_took_seconds histogram")) << t;
  EXPECT_TRUE(has_line(t, "scale0_took_seconds_bucket{service=\"s\",le=\"0.0001\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "scale0_took_seconds_bucket{service=\"s\",le=\"0.0025\"} 2")) << t;
  EXPECT_TRUE(has_line(t, "scale0_took_seconds_bucket{service=\"s\",le=\"0.005\"} 3")) << t;
  EXPECT_TRUE(has_line(t, "scale0_took_seconds_bucket{service=\"s\",le=\"30\"} 3")) << t;
  EXPECT_TRUE(has_line(t, "scale0_took_seconds_bucket{service=\"s\",le=\"+Inf\"} 4")) << t;
  EXPECT_TRUE(has_line(t, "scale0_took_seconds_count{service=\"s\"} 4")) << t;
  EXPECT_NEAR(value_of(t, "scale0_took_seconds_sum{service=\"s\"}"), 100.0031, 1e-9) << t;
  // One +Inf bucket, not two.
  EXPECT_EQ(t.find("le=\"+Inf\""), t.rfind("le=\"+Inf\"")) << t;
}

TEST(exposition, samples_outside_their_kind_of_family_are_refused) {
  exposition e;
  EXPECT_THROW(e.add(1), std::logic_error);  // no family yet
  latency_histogram h;
  e.counter("scale0_c_total", "C.");
  EXPECT_THROW(e.add(h), std::logic_error);
  e.histogram("scale0_h_seconds", "H.");
  EXPECT_THROW(e.add(1), std::logic_error);
}

TEST(exposition, append_keeps_both_in_order) {
  exposition a;
  a.gauge("scale0_a", "A.").add(1);
  exposition b;
  b.gauge("scale0_b", "B.").add(2);
  a.append(std::move(b));
  EXPECT_EQ(a.size(), 2u);
  const std::string t = a.text();
  EXPECT_LT(t.find("scale0_a 1"), t.find("scale0_b 2")) << t;
}

TEST(exposition, build_info_names_version_and_commit) {
  exposition e;
  scale0::metrics::add_build_info(e);
  const std::string line = "scale0_build_info{version=\"" + std::string(scale0::version()) +
                           "\",commit=\"" + std::string(scale0::commit()) + "\"} 1";
  EXPECT_TRUE(has_line(e.text(), line)) << e.text();
}

TEST(exposition, process_metrics_describe_this_process) {
  exposition e;
  scale0::metrics::add_process_metrics(e);
  const std::string t = e.text();
  EXPECT_TRUE(has_line(t, "# TYPE process_cpu_seconds_total counter")) << t;
  EXPECT_GE(value_of(t, "process_cpu_seconds_total "), 0) << t;
  EXPECT_GT(value_of(t, "process_resident_memory_bytes "), 1 << 20) << t;
  EXPECT_GE(value_of(t, "process_virtual_memory_bytes "),
            value_of(t, "process_resident_memory_bytes "))
      << t;
  const double fds = value_of(t, "process_open_fds ");
  EXPECT_GE(fds, 3) << "stdin, stdout, stderr: " << t;
  EXPECT_GE(value_of(t, "process_max_fds "), fds) << t;
  const double started = value_of(t, "process_start_time_seconds ");
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(started, now + 1) << t;
  EXPECT_GT(started, now - 3600) << "a test binary started within the hour: " << t;
}

}  // namespace
