// SPDX-License-Identifier: Apache-2.0
#include "exposition.hpp"

#include <dirent.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "common/text.hpp"
#include "latency_histogram.hpp"
#include "scale0/version.hpp"

namespace scale0::metrics {
namespace {

// prometheus-cpp 1.0.1 writes HELP as it is given; the format wants \ and newlines escaped there.
std::string help_text(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::vector<prometheus::ClientMetric::Label> label_list(labels l) {
  std::vector<prometheus::ClientMetric::Label> out;
  out.reserve(l.size());
  for (const label& x : l) out.push_back({std::string(x.name), utf8_or_replacement(x.value)});
  return out;
}

}  // namespace

exposition::exposition() = default;
exposition::~exposition() = default;
exposition::exposition(exposition&&) noexcept = default;
exposition& exposition::operator=(exposition&&) noexcept = default;

exposition& exposition::counter(std::string_view name, std::string_view help) {
  families_.push_back({std::string(name), help_text(help), prometheus::MetricType::Counter, {}});
  return *this;
}

exposition& exposition::gauge(std::string_view name, std::string_view help) {
  families_.push_back({std::string(name), help_text(help), prometheus::MetricType::Gauge, {}});
  return *this;
}

exposition& exposition::histogram(std::string_view name, std::string_view help) {
  families_.push_back({std::string(name), help_text(help), prometheus::MetricType::Histogram, {}});
  return *this;
}

exposition& exposition::add(double value, labels l) {
  if (families_.empty()) throw std::logic_error("metrics: a sample before any family");
  prometheus::MetricFamily& f = families_.back();
  prometheus::ClientMetric m;
  m.label = label_list(l);
  switch (f.type) {
    case prometheus::MetricType::Counter:
      m.counter.value = value;
      break;
    case prometheus::MetricType::Gauge:
      m.gauge.value = value;
      break;
    default:
      throw std::logic_error("metrics: a value added to " + f.name +
                             ", which is not a counter "
                             "or a gauge");
  }
  f.metric.push_back(std::move(m));
  return *this;
}

exposition& exposition::add(const latency_histogram& h, labels l) {
  if (families_.empty() || families_.back().type != prometheus::MetricType::Histogram)
    throw std::logic_error("metrics: a histogram added outside a histogram family");
  prometheus::ClientMetric m;
  m.label = label_list(l);
  m.histogram.sample_count = h.count;
  m.histogram.sample_sum = h.sum;
  std::uint64_t cumulative = 0;
  m.histogram.bucket.reserve(latency_histogram::bounds.size() + 1);
  for (std::size_t i = 0; i < latency_histogram::bounds.size(); ++i) {
    cumulative += h.counts[i];
    m.histogram.bucket.push_back({cumulative, latency_histogram::bounds[i]});
  }
  m.histogram.bucket.push_back({h.count, std::numeric_limits<double>::infinity()});
  families_.back().metric.push_back(std::move(m));
  return *this;
}

void exposition::append(exposition&& other) {
  for (auto& f : other.families_) families_.push_back(std::move(f));
  other.families_.clear();
}

std::size_t exposition::size() const noexcept {
  return families_.size();
}

std::string exposition::text() const {
  std::ostringstream o;
  prometheus::TextSerializer().Serialize(o, families_);
  return o.str();
}

void add_build_info(exposition& e) {
  e.gauge("scale0_build_info", "Always 1: the version and the commit this program was built from.")
      .add(1, {{"version", version()}, {"commit", commit()}});
}

namespace {

// The fields of /proc/self/stat after the command name (which may hold spaces and parentheses):
// fields[0] is field 3 (state) of proc(5).
std::vector<std::string> self_stat_fields() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return {};
  const auto close = line.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// The boot time in seconds since the epoch (btime in /proc/stat); 0 when unknown.
double boot_time() {
  std::ifstream in("/proc/stat");
  for (std::string key; in >> key;) {
    if (key == "btime") {
      double t = 0;
      in >> t;
      return t;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

}  // namespace

void add_process_metrics(exposition& e) {
  if (rusage ru{}; getrusage(RUSAGE_SELF, &ru) == 0) {
    const auto seconds = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    e.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
        .add(seconds(ru.ru_utime) + seconds(ru.ru_stime));
  }
  const long page = sysconf(_SC_PAGESIZE);
  if (std::ifstream statm("/proc/self/statm"); statm && page > 0) {
    double size = 0;
    double resident = 0;
    if (statm >> size >> resident) {
      e.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
          .add(size * static_cast<double>(page));
      e.gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
          .add(resident * static_cast<double>(page));
    }
  }
  if (DIR* d = opendir("/proc/self/fd"); d != nullptr) {
    double open = 0;
    while (const dirent* ent = readdir(d))
      if (ent->d_name[0] != '.') ++open;
    closedir(d);
    e.gauge("process_open_fds", "Number of open file descriptors.").add(open - 1);  // not `d`'s
  }
  if (rlimit rl{}; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    e.gauge("process_max_fds", "Maximum number of open file descriptors.")
        .add(static_cast<double>(rl.rlim_cur));
  // Field 22 of /proc/self/stat: the start time in clock ticks after boot.
  const auto fields = self_stat_fields();
  const long ticks = sysconf(_SC_CLK_TCK);
  const double boot = boot_time();
  if (fields.size() > 19 && ticks > 0 && boot > 0) {
    const double after_boot = std::strtod(fields[19].c_str(), nullptr) / static_cast<double>(ticks);
    e.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
        .add(boot + after_boot);
  }
}

}  // namespace scale0::metrics
