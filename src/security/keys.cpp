// SPDX-License-Identifier: Apache-2.0
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

#include "scale0/error.hpp"
#include "scale0/security.hpp"

namespace scale0::security {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw error(status::bad_request, what);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A ZPL value: "quoted", 'quoted' or bare up to a comment or the end.
std::string zpl_value(std::string_view v) {
  v = trim(v);
  if (!v.empty() && (v.front() == '"' || v.front() == '\'')) {
    const auto end = v.find(v.front(), 1);
    if (end == std::string_view::npos) return {};
    return std::string(v.substr(1, end - 1));
  }
  return std::string(trim(v.substr(0, v.find('#'))));
}

}  // namespace

bool valid_z85_key(std::string_view key) {
  if (key.size() != 40) return false;
  // zmq_z85_decode stops at a NUL: every character must be of the alphabet.
  static constexpr std::string_view alphabet =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  if (key.find_first_not_of(alphabet) != std::string_view::npos) return false;
  std::array<char, 41> text{};
  key.copy(text.data(), 40);
  std::array<std::uint8_t, 32> bytes{};
  return zmq_z85_decode(bytes.data(), text.data()) != nullptr;
}

keypair generate_keypair() {
  std::array<char, 41> pub{}, sec{};
  if (zmq_curve_keypair(pub.data(), sec.data()) != 0)
    throw error(status::not_implemented,
                std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()));
  return {pub.data(), sec.data()};
}

std::string public_for_secret(std::string_view secret_key) {
  if (!valid_z85_key(secret_key)) fail("not a Z85 secret key");
  std::array<char, 41> pub{}, sec{};
  secret_key.copy(sec.data(), 40);
  if (zmq_curve_public(pub.data(), sec.data()) != 0)
    throw error(status::not_implemented,
                std::string("cannot derive a CURVE public key: ") + zmq_strerror(zmq_errno()));
  return pub.data();
}

keypair load_certificate(const std::string& path) {
  const std::string text = read_file(path);
  keypair k;
  bool in_curve = false;
  std::istringstream lines(text);
  std::string line;
  int number = 0;
  while (std::getline(lines, line)) {
    ++number;
    const std::string_view l = line;
    const std::string_view content = trim(l);
    if (content.empty() || content.front() == '#') continue;
    const std::size_t indent = l.find_first_not_of(' ');
    if (indent == 0) {  // a top-level name: metadata, curve, ...
      in_curve = trim(content.substr(0, content.find('='))) == "curve";
      continue;
    }
    if (!in_curve || indent != 4) continue;  // the curve section's own names only
    const auto eq = content.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view name = trim(content.substr(0, eq));
    const std::string value = zpl_value(content.substr(eq + 1));
    if (name == "public-key") k.public_key = value;
    if (name == "secret-key") k.secret_key = value;
  }
  if (k.public_key.empty() && k.secret_key.empty())
    fail(path + ": not a certificate (no curve public-key or secret-key)");
  if (!k.public_key.empty() && !valid_z85_key(k.public_key))
    fail(path + ": public-key is not a 40-character Z85 key");
  if (!k.secret_key.empty()) {
    if (!valid_z85_key(k.secret_key)) fail(path + ": secret-key is not a 40-character Z85 key");
    const std::string derived = public_for_secret(k.secret_key);
    if (k.public_key.empty()) k.public_key = derived;
    if (k.public_key != derived) fail(path + ": public-key does not belong to secret-key");
  }
  return k;
}

std::string certificate_text(const keypair& k, bool with_secret) {
  char when[64] = "";
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out;
  out.append("#   ****  Generated on ").append(when).append(" by scale0 keygen  ****\n");
  if (with_secret) {
    out.append(
        "#   ZeroMQ CURVE **Secret** Certificate\n"
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n");
  } else {
    out.append(
        "#   ZeroMQ CURVE Public Certificate\n"
        "#   Exchange securely, or use a secure mechanism to verify the contents\n"
        "#   of this file after exchange.\n\n");
  }
  out.append("metadata\ncurve\n");
  out.append("    public-key = \"").append(k.public_key).append("\"\n");
  if (with_secret) out.append("    secret-key = \"").append(k.secret_key).append("\"\n");
  return out;
}

void save_certificate(const std::string& name, const keypair& k, bool overwrite) {
  // Each file is written new (O_EXCL, never through a symbolic link) under a temporary name, then
  // renamed over NAME_secret and NAME: a failure while writing leaves an existing pair as it was,
  // and an existing pair (a broker's secret, say) is replaced only when asked.
  if (!overwrite)
    for (const std::string& path : {name, name + "_secret"})
      if (struct stat st{}; ::lstat(path.c_str(), &st) == 0)
        fail(path + " exists; not overwritten (--force replaces it)");
  auto write = [](const std::string& path, const std::string& text, mode_t mode) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) fail("cannot write " + path + ": " + std::strerror(errno));
    bool ok = ::fchmod(fd, mode) == 0;  // the umask may have taken bits away
    std::size_t done = 0;
    while (ok && done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      ok = n >= 0;
      if (ok) done += static_cast<std::size_t>(n);
    }
    const int saved = errno;
    ok = ::close(fd) == 0 && ok;
    if (!ok) {
      ::unlink(path.c_str());
      fail("cannot write " + path + ": " + std::strerror(saved != 0 ? saved : errno));
    }
  };
  const std::string suffix = ".new-" + std::to_string(::getpid());
  const std::string secret_tmp = name + "_secret" + suffix;
  const std::string public_tmp = name + suffix;
  write(secret_tmp, certificate_text(k, true), 0600);
  try {
    write(public_tmp, certificate_text(k, false), 0644);
  } catch (...) {
    ::unlink(secret_tmp.c_str());
    throw;
  }
  const auto put = [](const std::string& from, const std::string& to) {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      const int saved = errno;
      ::unlink(from.c_str());
      fail("cannot write " + to + ": " + std::strerror(saved));
    }
  };
  put(secret_tmp, name + "_secret");
  try {
    put(public_tmp, name);
  } catch (...) {  // the secret is in place but its public certificate is not: take it back
    ::unlink((name + "_secret").c_str());
    throw;
  }
}

std::string public_key_from(std::string_view key_or_path) {
  const std::string_view s = trim(key_or_path);
  if (valid_z85_key(s)) return std::string(s);
  struct stat st {};
  const std::string path(s);
  if (::stat(path.c_str(), &st) == 0) return load_certificate(path).public_key;
  fail("'" + path.substr(0, 60) + "' is neither a 40-character Z85 key nor a certificate file");
}

namespace {
// Calls line(text, "FILE:N: ") for every line that is not blank or a comment.
template <class Line>
void for_each_key_line(std::string_view text, const std::string& where, Line line_fn) {
  int number = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++number;
    // '#' is a Z85 character, but never the first of a key: a 5-character group encodes at most
    // 2^32 - 1, so its first character has index 82 or less, and '#' is index 84.
    if (line.empty() || line.front() == '#') continue;
    line_fn(line, where + ":" + std::to_string(number) + ": ");
  }
}
}  // namespace

std::vector<std::string> parse_key_names(std::string_view text, const std::string& where) {
  std::vector<std::string> out;
  for_each_key_line(text, where, [&out](std::string_view line, const std::string& at) {
    const auto space = line.find_first_of(" \t");
    if (!valid_z85_key(line.substr(0, space))) fail(at + "expected a 40-character Z85 public key");
    if (space != std::string_view::npos) fail(at + "one key per line, nothing after it");
    out.emplace_back(line);
  });
  return out;
}

std::vector<std::string> load_key_names(const std::string& path) {
  return parse_key_names(read_file(path), path);
}

std::vector<key_grant> parse_key_list(std::string_view text, const std::string& where) {
  std::vector<key_grant> out;
  for_each_key_line(text, where, [&out](std::string_view line, const std::string& at) {
    const auto space = line.find_first_of(" \t");
    const std::string_view key = line.substr(0, space);
    if (!valid_z85_key(key)) fail(at + "expected a 40-character Z85 public key first");
    if (space == std::string_view::npos) fail(at + "no service globs after the key");
    key_grant g{std::string(key), {}};
    std::string_view globs = trim(line.substr(space));
    while (!globs.empty()) {
      const auto comma = globs.find(',');
      const std::string_view glob = trim(globs.substr(0, comma));
      if (glob.empty() || glob.find_first_of(" \t") != std::string_view::npos)
        fail(at + "service globs are comma-separated, without spaces inside");
      g.globs.emplace_back(glob);
      globs = comma == std::string_view::npos ? std::string_view{} : globs.substr(comma + 1);
    }
    if (g.globs.empty()) fail(at + "no service globs after the key");
    out.push_back(std::move(g));
  });
  return out;
}

std::vector<key_grant> load_key_list(const std::string& path) {
  return parse_key_list(read_file(path), path);
}

curve_client curve_client_from(std::string_view server_key_or_path, const std::string& cert_path) {
  curve_client c;
  if (server_key_or_path.empty()) {
    if (!cert_path.empty()) fail("--curve-cert needs --curve-server-key (the broker's public key)");
    return c;
  }
  c.server_key = public_key_from(server_key_or_path);
  if (!cert_path.empty()) {
    const keypair k = load_certificate(cert_path);
    if (k.secret_key.empty()) fail(cert_path + ": a public certificate; give the _secret one");
    c.public_key = k.public_key;
    c.secret_key = k.secret_key;
  }
  return c;
}

bool glob_match(std::string_view pattern, std::string_view name) noexcept {
  // Iterative matching with one backtrack point for the last '*': linear in practice.
  std::size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace scale0::security
