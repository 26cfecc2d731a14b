// SPDX-License-Identifier: Apache-2.0
#include "tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdio>

#include "scale0/error.hpp"

namespace scale0::gateway_detail {
namespace {

namespace ssl = boost::asio::ssl;

// ALPN: HTTP/1.1 is all the gateway speaks. A client that offers ALPN without it (only "h2",
// say) is refused in the handshake rather than answered in a protocol it did not ask for.
int select_alpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
                unsigned in_length, void*) {
  static constexpr unsigned char ours[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, out_length, ours, sizeof ours, in, in_length) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

[[noreturn]] void fail(const std::string& what, const std::string& file,
                       const boost::system::error_code& ec) {
  ERR_clear_error();
  throw error(status::bad_request, what + " " + file + ": " + ec.message());
}

void must_be_readable(const std::string& what, const std::string& file) {
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) throw error(status::bad_request, what + " " + file + ": cannot be read");
  std::fclose(f);
}

}  // namespace

std::shared_ptr<ssl::context> make_tls_context(const std::string& cert_file,
                                               const std::string& key_file) {
  if (cert_file.empty() || key_file.empty())
    throw error(status::bad_request, "TLS needs both --tls-cert and --tls-key");
  must_be_readable("--tls-cert", cert_file);
  must_be_readable("--tls-key", key_file);
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1)
    throw error(status::bad_request, "TLS: cannot require TLS 1.2 or later");
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_SINGLE_DH_USE);
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);  // idle connections hold no record buffers
  // An encrypted key would make OpenSSL ask on the terminal, stopping the gateway's only thread
  // (at start, or at a SIGHUP): with an empty passphrase it fails at once instead.
  context->set_password_callback(
      [](std::size_t, boost::asio::ssl::context::password_purpose) { return std::string(); });
  boost::system::error_code ec;
  context->use_certificate_chain_file(cert_file, ec);
  if (ec) fail("--tls-cert", cert_file, ec);
  context->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) fail("--tls-key", key_file, ec);
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    throw error(status::bad_request,
                "--tls-key " + key_file + " is not the key of the certificate in " + cert_file);
  }
  SSL_CTX_set_alpn_select_cb(native, select_alpn, nullptr);
  return context;
}

}  // namespace scale0::gateway_detail
