// SPDX-License-Identifier: Apache-2.0
// The metric families of one scrape, written in the Prometheus text format (version 0.0.4) by
// prometheus-cpp's TextSerializer. Counters and gauges live where they are counted, as plain
// integers (no atomics or locks on a request's path); a scrape copies them into an exposition.
// prometheus-cpp's headers stay inside exposition.cpp.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
struct MetricFamily;
}

namespace scale0::metrics {

struct latency_histogram;

// A label of a sample. The value may be any bytes (a service name, a route): what is not UTF-8
// is replaced by U+FFFD, and the serializer escapes \, " and newlines.
struct label {
  std::string_view name;
  std::string_view value;
};
using labels = std::initializer_list<label>;

class exposition {
 public:
  exposition();
  ~exposition();
  exposition(exposition&&) noexcept;
  exposition& operator=(exposition&&) noexcept;

  // Each begins a family; the samples added next belong to it. Names follow the Prometheus
  // conventions (a counter's ends in _total, units are base units); `help` is one line.
  exposition& counter(std::string_view name, std::string_view help);
  exposition& gauge(std::string_view name, std::string_view help);
  exposition& histogram(std::string_view name, std::string_view help);

  exposition& add(double value, labels l = {});                // to a counter or gauge family
  exposition& add(const latency_histogram& h, labels l = {});  // to a histogram family

  // The families of `other` after these (their names must differ from these).
  void append(exposition&& other);

  std::size_t size() const noexcept;  // families
  std::string text() const;

 private:
  std::vector<prometheus::MetricFamily> families_;
};

// `scale0_build_info{version,commit} 1` and the standard process_* families of this process
// (CPU seconds, resident and virtual memory, open and maximum file descriptors, start time), read
// from /proc and getrusage(2) at the time of the call. What cannot be read is left out.
void add_build_info(exposition& e);
void add_process_metrics(exposition& e);

}  // namespace scale0::metrics
