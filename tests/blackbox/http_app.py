# SPDX-License-Identifier: Apache-2.0
"""A small HTTP/1.1 application for the sidecar tests (test_sidecar.py), run as a subprocess so a
test can kill it and start it again on the same port.

    http_app.py [PORT]      prints "ready PORT" on stdout once it listens on 127.0.0.1

Every answer says what the app saw, as JSON: method, target, headers (in order), body, the id of the
connection it came on and how many connections the app has accepted so far. Paths:

    /chunked        the JSON sent with Transfer-Encoding: chunked, in several chunks
    /close          the JSON without Content-Length, then the connection is closed
    /slow?ms=N      the JSON after N ms
    /status/NNN     status NNN with reason "Custom Reason" and X-Custom: yes
    anything else   200 with the JSON
A leading /base is ignored when choosing among these (a sidecar URL's base path).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_lock = threading.Lock()
_connections = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global _connections
        super().setup()
        with _lock:
            _connections += 1
            self.conn_id = _connections

    def log_message(self, fmt, *args):  # quiet
        pass

    def _seen(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        with _lock:
            total = _connections
        return json.dumps({
            "method": self.command,
            "target": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
            "conn": self.conn_id,
            "connections": total,
        }).encode()

    def _answer(self):
        payload = self._seen()
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/base/"):  # the tests' base path
            path = path[len("/base"):]
        if path.startswith("/slow"):
            ms = int(parse_qs(url.query).get("ms", ["0"])[0])
            time.sleep(ms / 1000.0)
        if path.startswith("/status/"):
            code = int(path[len("/status/"):])
            self.send_response(code, "Custom Reason")
            self.send_header("X-Custom", "yes")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(payload), 7):
                part = payload[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/close":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            self.close_connection = True
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-App", "yes")
            self.send_header("Keep-Alive", "timeout=60")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    sys.stdout.write("ready %d\n" % server.server_address[1])
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
