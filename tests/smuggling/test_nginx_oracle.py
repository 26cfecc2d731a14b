# SPDX-License-Identifier: Apache-2.0
"""nginx as an oracle for the smuggling vectors.

nginx (Debian's nginx-light, one process, its own configuration in a temporary directory) proxies
to its own Recorder (`proxy_pass http://127.0.0.1:PORT; proxy_http_version 1.1;`), serving the
hosts that have an app behind the gateway too (app.local, admin.internal, no Host) and answering
503 for the others, as the gateway has no worker for them. Every vector of vectors.VECTORS is sent
to nginx and to the gateway (the gateway runs are shared with test_request_smuggling.py); the
number of requests that reach the app(s) must agree, except for the vectors in KNOWN_DIFFERENCES,
where nginx's count is asserted as stated (so the table stays true) and the difference explained.

Skipped when nginx is not installed.
"""

import os
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import recorder as R  # noqa: E402
import vectors as VX  # noqa: E402
import harness  # noqa: E402

# vector name -> (requests nginx's app sees, why nginx and the rules differ)
# (nginx/1.22.1 as packaged by Debian 12, nginx-light). "SMUG is then a pipelined request" means
# nginx framed the first request without ambiguity and served what followed as the next request:
# a difference in strictness, not a desync inside nginx.
_LENIENT_HOST = "nginx accepts this Host value (answered 503 here: no such host) and keeps the connection, " \
                "so SMUG is then a pipelined request; rule 11 refuses the value and closes"
_LENIENT_HOST_PORT = "nginx strips the port without checking it and serves the request and SMUG pipelined; " \
                     "rule 11 allows 0-5 digits only"
KNOWN_DIFFERENCES = {
    # obs-fold: RFC 9112 §5.2 lets a server reject it (nginx) or replace it by SP (rule 8)
    "te_obsfold_to_chunked": (0, "nginx rejects any obs-fold with 400; rule 8 unfolds it (RFC 9112 §5.2 allows both)"),
    "te_folded_into_previous_field": (0, "nginx rejects any obs-fold with 400; rule 8 unfolds it"),
    "obs_fold_value_joined": (0, "nginx rejects any obs-fold with 400; rule 8 unfolds it"),
    "te_tab_before_value": (0, "nginx skips only SP before a value, so `<TAB>chunked` is an unknown coding (501); "
                               "OWS includes HTAB (RFC 9110 §5.6.3)"),
    "cl_trailing_ows": (0, "nginx does not strip a trailing HTAB from Content-Length (400); OWS includes HTAB"),
    "cl_list_same": (0, "nginx refuses a Content-Length list even of equal values; RFC 9110 §8.6 lets a "
                        "recipient accept it (rule 5)"),
    "cl_two_fields_same": (0, "nginx refuses a repeated Content-Length even with equal values (RFC 9110 §8.6 "
                              "lets a recipient accept it, rule 5)"),
    # chunked bodies: nginx is more lenient about line ends and the trailer section
    "chunk_missing_final_crlf": (1, "nginx reads the request line and Host after `0 CRLF` as trailer fields and "
                                    "serves the POST (SMUG is swallowed); rule 6/7 refuse the malformed trailer"),
    "chunk_bare_lf_after_size": (2, "nginx accepts a bare LF after a chunk size (RFC 9112 §2.2 lets a recipient); "
                                    "SMUG is then a pipelined request; rule 8 refuses bare LF"),
    "trailer_content_length": (2, "nginx drops a Content-Length trailer and serves the POST, then SMUG pipelined; "
                                  "the gateway refuses framing fields in a trailer (RFC 9110 §6.5.1) with 400"),
    "trailer_transfer_encoding": (2, "nginx drops a Transfer-Encoding trailer and serves the POST, then SMUG "
                                     "pipelined; the gateway refuses framing fields in a trailer with 400"),
    "path_encoded_slash_kept": (2, "nginx passes an encoded slash on (and serves the request behind it); the gateway refuses it and closes (workers disagree on it)"),
    "path_encoded_slash_first": (2, "nginx passes an encoded slash on; the gateway refuses it"),
    "path_encoded_slash_dot_dot": (2, "nginx passes an encoded slash on; the gateway refuses it"),
    "path_encoded_backslash": (2, "nginx passes an encoded backslash on; the gateway refuses it"),
    "path_raw_backslash": (2, "nginx passes a raw backslash on; the gateway refuses it"),
    "path_encoded_nul": (0, "nginx refuses an encoded NUL too (400)"),
    "path_dot_dot_with_parameter": (2, "nginx passes `..;` on as a name; the gateway refuses it"),
    "chunk_extension_unbounded": (0, "nginx refuses the over-long chunk line too"),
    "trailer_unbounded": (0, "nginx refuses the over-long trailer too"),
    # line ends and bytes of the head
    "bare_lf_line_ends": (2, "nginx accepts bare LF line ends (RFC 9112 §2.2 allows it); rule 8 refuses them"),
    "bare_lf_one_field": (2, "nginx accepts a bare LF line end; rule 8 refuses it"),
    "del_in_field_value": (2, "nginx accepts DEL in a field value (it refuses only NUL, CR, LF); rule 8 refuses "
                              "control bytes"),
    "ctl_in_field_value": (2, "nginx accepts SOH in a field value; rule 8 refuses control bytes"),
    "request_line_double_space": (2, "nginx skips repeated SP in the request line (RFC 9112 §3 lets a server be "
                                     "lenient); rule 8 refuses extra spaces"),
    "request_line_trailing_space": (2, "nginx accepts a trailing SP in the request line; rule 8 refuses it"),
    "field_line_without_colon": (2, "nginx ignores an invalid field line (ignore_invalid_headers on); "
                                    "rule 8 refuses the request"),
    "field_name_not_token": (2, "nginx drops a field whose name is not a token (ignore_invalid_headers on); "
                                "rule 8 refuses the request"),
    # Expect
    "expect_other": (2, "nginx ignores expectations it does not know (RFC 9110 §10.1.1: a server MAY answer "
                        "417); rule 9 answers 417 and closes"),
    "expect_list": (2, "nginx ignores expectations it does not know; rule 9 answers 417"),
    "expect_empty": (2, "nginx ignores an empty Expect; rule 9 answers 417"),
    "pipeline_after_417": (2, "nginx ignores `Expect: nothing` and serves both requests; rule 9/23 answer 417 "
                              "and discard the rest"),
    # Host
    "host_empty_value": (0, "nginx refuses an empty Host in HTTP/1.1 (400); rule 11 takes it as no host "
                            "(--default-service)"),
    "host_userinfo": (1, _LENIENT_HOST),
    "host_percent": (1, _LENIENT_HOST),
    "host_quoted": (1, _LENIENT_HOST),
    "host_hash": (1, _LENIENT_HOST),
    "host_backslash": (1, _LENIENT_HOST),
    "host_port_six_digits": (2, _LENIENT_HOST_PORT),
    "host_two_ports": (2, _LENIENT_HOST_PORT),
    "host_port_not_digits": (2, _LENIENT_HOST_PORT),
    # targets
    "absolute_form_ftp": (2, "nginx accepts any scheme in an absolute-form target; rule 12 only http(s)"),
    "absolute_form_bad_host_field": (2, "with an absolute-form target nginx ignores the Host field, valid or not; "
                                        "rule 12 still requires one valid Host"),
    "target_asterisk_options": (0, "nginx refuses `OPTIONS *` (400); rule 13 forwards it"),
    "path_encoded_dot_dot": (0, "nginx refuses a path whose `..` climbs above the root (400); rule 14 stops "
                                "at the root"),
    "path_mixed_dot_dot": (0, "nginx refuses a path whose `..` climbs above the root; rule 14 stops at the root"),
    "path_dot_dot_above_root": (0, "nginx refuses a path whose `..` climbs above the root; rule 14 stops at the "
                                   "root"),
    # methods
    "connect_tunnel_route": (0, "nginx refuses every CONNECT (400, since 1.21.1); rule 15 forwards it on a "
                                "connect=yes route"),
    "method_trace": (0, "nginx refuses TRACE (405); rule 16 forwards it"),
    "method_lower_case": (0, "nginx refuses methods that are not upper-case letters (400); rule 16 forwards any "
                             "token"),
    # versions
    "version_http12": (1, "nginx serves HTTP/1.2 as 1.1 (RFC 9110 §2.5 SHOULD); the gateway refuses it (400, "
                          "an alternative the table allows)"),
    "version_http09": (1, "nginx serves `GET /v` as HTTP/0.9; the gateway refuses HTTP/0.9 (400)"),
    "version_two_digit_minor": (2, "nginx reads HTTP/1.10 as a 1.x version and serves it (SMUG pipelined); "
                                   "the gateway refuses it (RFC 9112 §2.3: one digit)"),
}


class NginxOracleTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not R.nginx_available():
            raise unittest.SkipTest("nginx not installed at %s" % R.NGINX)
        if not harness.binary_available():
            raise unittest.SkipTest("scale0 binary not found at %s (set SCALE0_BIN)" % harness.BIN)
        cls.nginx = R.NginxStack()
        try:
            cls.nginx.start()
        except Exception:
            cls.nginx.stop()
            raise
        cls.nginx_results = {}
        # nginx's runs in a thread while the gateway's run here (each stack has its own apps)
        errors = []

        def run_nginx():
            try:
                for v in VX.VECTORS:
                    cls.nginx_results[v.name] = VX.run_vector(cls.nginx, v)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=run_nginx, daemon=True)
        t.start()
        try:
            try:
                cls.gateway_results = VX.gateway_results()
            finally:
                t.join(120.0)
            if errors:
                raise errors[0]
            if t.is_alive():
                raise AssertionError("the nginx runs did not finish within 120 s")
        except BaseException:
            cls.nginx.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.nginx.stop()

    def compare(self, v):
        n = self.nginx_results[v.name]
        g = self.gateway_results[v.name]
        detail = ("\nnginx: %r, app saw %r\ngateway: %r, apps saw %r\nsent: %r"
                  % (n.exchange, [(q.method, q.target) for q in n.seen], g.exchange,
                     [(q.method, q.target) for q in g.seen], v.raw[:300]))
        if v.name in KNOWN_DIFFERENCES:
            count, why = KNOWN_DIFFERENCES[v.name]
            self.assertEqual(n.count, count, "the known difference no longer holds (%s)%s" % (why, detail))
            return
        self.assertEqual(n.count, g.count, "nginx's app saw %d request(s), the gateway's %d%s"
                         % (n.count, g.count, detail))


def _make_test(v):
    def test(self):
        self.compare(v)
    test.__doc__ = "%s: %s (nginx agrees%s)" % (v.rule, v.why, ", known difference" if v.name in KNOWN_DIFFERENCES else "")
    return test


for _v in VX.VECTORS:
    setattr(NginxOracleTests, "test_" + _v.name, _make_test(_v))


class KnownDifferencesTableTests(unittest.TestCase):
    def test_every_known_difference_names_a_vector_and_says_why(self):
        for name, (count, why) in KNOWN_DIFFERENCES.items():
            self.assertIn(name, VX.VECTORS_BY_NAME, name)
            self.assertIsInstance(count, int, name)
            self.assertTrue(why.strip(), name)


if __name__ == "__main__":
    unittest.main()
