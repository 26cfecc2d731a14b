// SPDX-License-Identifier: Apache-2.0
// CURVE keys as Scale0 handles them (docs/security.md): Z85 text (40 characters for 32 bytes),
// certificates in CZMQ's zcert text format (ZPL, ZeroMQ RFC 4), and the key lists that say which
// public key may serve or call which services. No cryptography here: key pairs come from libzmq
// (libsodium underneath), the handshake is libzmq's CURVE.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace scale0::security {

// A client's or worker's CURVE settings: the broker's public key turns CURVE on. Without an own
// key pair an ephemeral one is made per connection, which only a broker accepting any client key
// (--client-keys any) lets in.
struct curve_client {
  std::string server_key;  // the broker's public key, Z85; empty: no CURVE
  std::string public_key;  // own key pair, Z85; both empty: ephemeral
  std::string secret_key;
  bool enabled() const noexcept { return !server_key.empty(); }
};

struct keypair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters; empty in a public certificate
};

// True for 40 characters of the Z85 alphabet that decode to 32 bytes.
bool valid_z85_key(std::string_view key);

// A fresh key pair from libzmq (zmq_curve_keypair). Throws scale0::error when libzmq has no CURVE.
keypair generate_keypair();

// The public key for a secret one (zmq_curve_public).
std::string public_for_secret(std::string_view secret_key);

// Reads a certificate in zcert format: the `curve` section's `public-key` and, in a secret
// certificate, `secret-key`; CZMQ's own files load as they are. Throws scale0::error (400) naming
// the file and what is wrong.
keypair load_certificate(const std::string& path);

// The certificate text for `k` (public only, or with the secret key), as CZMQ's zcert_save writes.
std::string certificate_text(const keypair& k, bool with_secret);

// Writes NAME (public) and NAME_secret (both keys, created with mode 0600). Throws on failure.
// Refuses (throws) when either file exists, unless `overwrite`; never writes through a symbolic
// link.
void save_certificate(const std::string& name, const keypair& k, bool overwrite = false);

// A key given on the command line or in a file: a Z85 string, or the path of a certificate whose
// public key is meant. Throws scale0::error (400) saying which it is not.
std::string public_key_from(std::string_view key_or_path);

// One line of a key list: a public key and the service globs it is allowed.
struct key_grant {
  std::string key;                 // Z85 public key
  std::vector<std::string> globs;  // service-name patterns: '*' any run, '?' one character
};

// Reads a key list: one `<public-key> <glob>[,<glob>...]` per line; blank lines and lines whose
// first non-blank character is '#' are skipped (no Z85 key starts with '#'; keys may hold it
// elsewhere, so there are no trailing comments).
// Throws scale0::error (400) naming the file and line.
std::vector<key_grant> load_key_list(const std::string& path);
std::vector<key_grant> parse_key_list(std::string_view text, const std::string& where);

// Reads a list of keys alone (--admin-keys): one `<public-key>` per line, comments as above.
std::vector<std::string> load_key_names(const std::string& path);
std::vector<std::string> parse_key_names(std::string_view text, const std::string& where);

// The CURVE settings of a peer from the command line: the broker's key (Z85 or a certificate file)
// and, optionally, the peer's own secret certificate. Throws scale0::error (400).
curve_client curve_client_from(std::string_view server_key_or_path, const std::string& cert_path);

// Shell-style match of a service name: '*' any run of characters (dots included), '?' one.
bool glob_match(std::string_view pattern, std::string_view name) noexcept;

}  // namespace scale0::security
