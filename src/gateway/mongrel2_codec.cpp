// SPDX-License-Identifier: Apache-2.0
#include "mongrel2_codec.hpp"

#include <nlohmann/json.hpp>

#include "http/beast_codec.hpp"
#include "http/encoding.hpp"
#include "scale0/http.hpp"

namespace scale0::mongrel2_detail {
namespace {

using http_detail::iequals;

constexpr std::size_t max_length_digits = 10;  // tnetstring sizes: at most 9 999 999 999
constexpr std::size_t max_sender = 128;
constexpr std::size_t max_conn_id_digits = 10;  // Mongrel2's ids are 32-bit

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}
bool is_visible(char c) noexcept {
  return c > 0x20 && c < 0x7f;
}

// Reads one tnetstring element, "SIZE:" SIZE bytes and its type byte, off the front of `in`.
// False when it is not one (no digits, a leading zero, a size past the end).
bool read_element(std::string_view& in, std::string_view& payload, char& type) {
  std::size_t i = 0;
  std::size_t size = 0;
  while (i < in.size() && i < max_length_digits && is_digit(in[i])) {
    size = size * 10 + static_cast<std::size_t>(in[i] - '0');
    ++i;
  }
  if (i == 0 || i >= in.size() || in[i] != ':') return false;
  if (i > 1 && in[0] == '0') return false;
  const std::size_t start = i + 1;
  if (size >= in.size() - start) return false;  // the type byte must follow the payload
  payload = in.substr(start, size);
  type = in[start + size];
  in.remove_prefix(start + size + 1);
  return true;
}

// Splits off the text before the next space.
bool read_word(std::string_view& in, std::string_view& word) {
  const auto space = in.find(' ');
  if (space == std::string_view::npos) return false;
  word = in.substr(0, space);
  in.remove_prefix(space + 1);
  return true;
}

// Mongrel2 escapes only '"' and '\' in its JSON, so control bytes in header values arrive raw;
// outside strings it writes none, so escaping every one keeps the document's meaning.
std::string escape_control_bytes(std::string_view json) {
  std::string out;
  out.reserve(json.size() + 16);
  static constexpr char hex[] = "0123456789abcdef";
  for (const char c : json) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20) {
      out.append("\\u00");
      out.push_back(hex[u >> 4]);
      out.push_back(hex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string parse_json_headers(std::string_view text, std::vector<m2_field>& out,
                               std::size_t max_fields) {
  const auto doc = nlohmann::ordered_json::parse(escape_control_bytes(text), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return "headers are not a JSON object";
  for (const auto& [name, value] : doc.items()) {
    if (name.empty()) return "empty header name";
    if (value.is_string()) {
      out.push_back({name, value.get<std::string>()});
    } else if (value.is_array()) {
      for (const auto& item : value) {
        if (!item.is_string()) return "header '" + name + "' holds a list of non-strings";
        out.push_back({name, item.get<std::string>()});
      }
    } else {
      return "header '" + name + "' is neither a string nor a list";
    }
    if (out.size() > max_fields) return "too many header fields";
  }
  return {};
}

bool is_disconnect_body(std::string_view body) {
  const auto doc = nlohmann::json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return false;
  const auto type = doc.find("type");
  return type != doc.end() && type->is_string() && type->get<std::string>() == "disconnect";
}

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!is_visible(c)) return false;
    if (std::string_view("\"(),/:;<=>?@[\\]{}").find(c) != std::string_view::npos) return false;
  }
  return true;
}

// RFC 9110 field-value bytes: visible ASCII, space, tab and obs-text; no other control byte (the
// worker's HTTP parser rejects a request holding one).
bool is_field_value(std::string_view s) noexcept {
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return false;
  }
  return true;
}

bool has_upper(std::string_view s) noexcept {
  for (const char c : s)
    if (c >= 'A' && c <= 'Z') return true;
  return false;
}

std::string_view reason_for(unsigned status) {
  const auto r =
      boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status));
  return {r.data(), r.size()};
}

}  // namespace

const std::string* m2_request::header(std::string_view name) const {
  for (const auto& f : headers)
    if (f.name == name) return &f.value;
  return nullptr;
}

std::string parse_tnetstring_headers(std::string_view dict, std::vector<m2_field>& out,
                                     std::size_t max_fields) {
  while (!dict.empty()) {
    std::string_view name;
    std::string_view value;
    char type = 0;
    if (!read_element(dict, name, type)) return "malformed tnetstring header name";
    if (type != ',') return "tnetstring header name is not a string";
    if (name.empty()) return "empty header name";
    if (!read_element(dict, value, type)) return "malformed tnetstring header value";
    if (type == ',') {
      out.push_back({std::string(name), std::string(value)});
    } else if (type == ']') {
      while (!value.empty()) {
        std::string_view item;
        if (!read_element(value, item, type)) return "malformed tnetstring list";
        if (type != ',') return "tnetstring list holds a non-string";
        out.push_back({std::string(name), std::string(item)});
        if (out.size() > max_fields) return "too many header fields";
      }
    } else {
      return "unsupported tnetstring type '" + std::string(1, type) + "' for a header value";
    }
    if (out.size() > max_fields) return "too many header fields";
  }
  return {};
}

std::string parse_request(std::string_view message, m2_request& out, const m2_limits& limits) {
  out = m2_request{};
  if (message.size() > limits.max_message) return "message over the size limit";
  std::string_view rest = message;
  std::string_view word;
  if (!read_word(rest, word) || word.empty() || word.size() > max_sender) return "no sender UUID";
  for (const char c : word)
    if (!is_visible(c)) return "sender UUID holds a non-visible byte";
  out.sender = std::string(word);
  if (!read_word(rest, word) || word.empty() || word.size() > max_conn_id_digits)
    return "no connection id";
  for (const char c : word)
    if (!is_digit(c)) return "connection id is not a number";
  out.conn_id = std::string(word);
  if (!read_word(rest, word) || word.empty()) return "no path";
  out.path = std::string(word);

  std::string_view headers;
  char type = 0;
  if (!read_element(rest, headers, type)) return "malformed headers netstring";
  std::string problem;
  if (type == ',')
    problem = parse_json_headers(headers, out.headers, limits.max_headers);
  else if (type == '}')
    problem = parse_tnetstring_headers(headers, out.headers, limits.max_headers);
  else
    return "headers are neither a netstring nor a tnetstring dictionary";
  if (!problem.empty()) return problem;

  std::string_view body;
  if (!read_element(rest, body, type) || type != ',') return "malformed body netstring";
  if (!rest.empty()) return "bytes after the body";
  out.body = std::string(body);

  const std::string* method = out.header("METHOD");
  if (method == nullptr) return "no METHOD header";
  if (*method == "JSON")
    out.kind = is_disconnect_body(out.body) ? m2_kind::disconnect : m2_kind::other;
  else if (*method == "XML" || *method == "WEBSOCKET")
    out.kind = m2_kind::other;
  return {};
}

std::string reply_message(std::string_view sender, std::string_view conn_ids,
                          std::string_view payload) {
  std::string out;
  out.reserve(sender.size() + conn_ids.size() + payload.size() + 16);
  out.append(sender).append(" ").append(std::to_string(conn_ids.size())).append(":");
  out.append(conn_ids).append(", ").append(payload);
  return out;
}

bool keep_alive(const m2_request& r) {
  // The front door's own rule (request_rules.hpp), on the Connection fields Mongrel2 passed on.
  const std::string* version = r.header("VERSION");
  std::vector<gateway_detail::field_ref> connection;
  for (const auto& f : r.headers)
    if (f.name == "connection") connection.push_back({f.name, f.value});
  return gateway_detail::keep_alive(connection,
                                    version != nullptr && *version == "HTTP/1.0" ? 10 : 11);
}

bool is_head(const m2_request& r) {
  const std::string* method = r.header("METHOD");
  return method != nullptr && *method == "HEAD";
}

std::string to_http_request(const m2_request& r, std::string_view fresh_id, const m2_rules& rules,
                            http_request& out) {
  out = http_request{};
  const std::string* method = r.header("METHOD");
  if (method == nullptr || !is_token(*method)) return "bad METHOD";
  std::string target;
  const std::string* uri = r.header("URI");
  if (uri != nullptr && !uri->empty()) {
    target = uri->substr(0, uri->find('#'));
  } else {
    const std::string* path = r.header("PATH");
    target = path != nullptr ? *path : r.path;
    const std::string* query = r.header("QUERY");
    if (query != nullptr && !query->empty()) target.append("?").append(*query);
  }
  if (target.empty()) return "empty request target";
  for (const char c : target)
    if (!is_visible(c) && static_cast<unsigned char>(c) < 0x80) return "bad request target";

  const std::string* client_id = r.header("x-request-id");
  out.request_id =
      client_id != nullptr && valid_request_id(*client_id) ? *client_id : std::string(fresh_id);

  // The client's fields: Mongrel2 sends them lower-cased, its own in upper case. Its
  // x-forwarded-for is its own too (it replaces the client's with the peer's address).
  std::vector<gateway_detail::field_ref> fields;
  fields.reserve(r.headers.size());
  for (const auto& f : r.headers) {
    if (has_upper(f.name) || f.name == "x-forwarded-for") continue;
    if (!is_token(f.name) || !is_field_value(f.value))
      return "bad header field '" + f.name.substr(0, 64) + "'";
    fields.push_back({f.name, f.value});
  }
  const std::string* version = r.header("VERSION");
  const unsigned v = version != nullptr && *version == "HTTP/1.0" ? 10 : 11;
  gateway_detail::request_target t;
  const gateway_detail::refusal refused =
      gateway_detail::admit_head(*method, target, v, fields, std::nullopt, t);
  if (refused) {
    out.status = refused.status;
    return refused.problem;
  }
  out.host = t.host;
  out.path = t.path;
  out.target = t.target;
  out.connect = t.form == gateway_detail::target_form::authority;

  const std::string* remote = r.header("REMOTE_ADDR");
  const std::string* scheme = r.header("URL_SCHEME");
  gateway_detail::encode_options eo;
  eo.peer = remote != nullptr ? std::string_view(*remote) : std::string_view("unknown");
  eo.trusted = rules.trusted != nullptr && rules.trusted->contains(eo.peer);
  eo.keep_underscores = rules.keep_underscores;
  eo.scheme = scheme != nullptr && *scheme == "https" ? "https" : "http";
  eo.request_id = out.request_id;
  if (!is_field_value(eo.peer)) return "bad REMOTE_ADDR";
  gateway_detail::encode_request(*method, t, fields, r.body, eo, out.wire);
  return {};
}

std::string client_response(std::string_view worker_wire, bool head, bool keep_alive,
                            std::string_view request_id, std::string& out) {
  namespace bhttp = boost::beast::http;
  http_detail::beast_response m;
  if (auto problem = http_detail::parse_response_into(worker_wire, m, head); !problem.empty())
    return problem;
  const unsigned status = m.result_int();
  if (status < 200 || status > 599) return "status " + std::to_string(status) + " as an answer";
  const auto reason = m.reason();
  out.clear();
  out.reserve(256 + m.body().size());
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
  if (reason.empty())
    out.append(reason_for(status));
  else
    out.append(reason.data(), reason.size());
  out.append("\r\n");
  std::string worker_length;
  for (const auto& f : m) {
    const std::string_view name(f.name_string().data(), f.name_string().size());
    const std::string_view value(f.value().data(), f.value().size());
    if (iequals(name, "content-length")) {
      worker_length = std::string(value);
      continue;
    }
    if (iequals(name, "x-request-id")) continue;
    out.append(name).append(": ").append(value).append("\r\n");
  }
  out.append("Connection: ").append(keep_alive ? "keep-alive" : "close").append("\r\n");
  out.append("X-Request-Id: ").append(request_id).append("\r\n");
  const bool no_body = head || status == 204 || status == 304;
  if (status == 204) {
    // no Content-Length at all (RFC 9110, 8.6)
  } else if (no_body) {
    if (!worker_length.empty()) out.append("Content-Length: ").append(worker_length).append("\r\n");
  } else {
    out.append("Content-Length: ").append(std::to_string(m.body().size())).append("\r\n");
  }
  out.append("\r\n");
  if (!no_body) out.append(m.body());
  return {};
}

std::string error_response(unsigned status, std::string_view text, bool head, bool keep_alive,
                           std::string_view request_id, unsigned retry_after_s) {
  std::string body(text);
  body.push_back('\n');
  std::string out;
  out.reserve(200 + body.size());
  out.append("HTTP/1.1 ").append(std::to_string(status)).append(" ");
  out.append(reason_for(status)).append("\r\n");
  out.append("Content-Type: text/plain; charset=utf-8\r\n");
  if (retry_after_s != 0)
    out.append("Retry-After: ").append(std::to_string(retry_after_s)).append("\r\n");
  out.append("Connection: ").append(keep_alive ? "keep-alive" : "close").append("\r\n");
  out.append("X-Request-Id: ").append(request_id).append("\r\n");
  out.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  if (!head) out.append(body);
  return out;
}

}  // namespace scale0::mongrel2_detail
