# SPDX-License-Identifier: Apache-2.0
"""Black-box harness, the HTTP gateway process (docs/http.md): Gateway starts a `scale0 gateway`
on a free loopback port, reads its ready line (GATEWAY_READY_RE) and can be stopped or killed like
a Broker.
"""

import re

from harness_procs import BIN, BrokerStartError, Proc, await_ready, binary_available


GATEWAY_READY_RE = re.compile(rb"^ready listen=(\S+) broker=(\S+)(?: metrics=(\S+))?\s*$")


def _opt_flags(opts):
    """{"max_body": 10} -> ["--max-body", "10"] (None values skipped)."""
    out = []
    for k, v in opts.items():
        if v is None:
            continue
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


class Gateway:
    """A `scale0 gateway` process on a free loopback port (`--listen 127.0.0.1:0`).

    routes: list of rule strings (each becomes `--route RULE`); opts: option=value (underscores
    become dashes, e.g. max_body=1000 -> --max-body 1000); config: path of a TOML file (then only
    `--config FILE` and `extra` are passed)."""

    def __init__(self, broker_ep, routes=(), extra=(), config=None, listen="127.0.0.1:0",
                 metrics_listen="127.0.0.1:0", **opts):
        self.broker_ep = broker_ep
        self.routes = list(routes)
        self.extra = list(extra)
        self.config = config
        self.listen_arg = listen
        self.metrics_listen = metrics_listen
        self.opts = opts
        self.proc = None
        self.procs = []
        self.ready_line = None
        self.listen = None  # "HOST:PORT" from the ready line
        self.metrics = None

    def args(self):
        if self.config is not None:
            return [BIN, "gateway", "--config", self.config] + self.extra
        a = [BIN, "gateway", "--listen", self.listen_arg, "--broker", self.broker_ep]
        if self.metrics_listen is not None:
            a += ["--metrics-listen", self.metrics_listen]
        for r in self.routes:
            a += ["--route", r]
        return a + _opt_flags(self.opts) + self.extra

    @property
    def host(self):
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self):
        return int(self.listen.rsplit(":", 1)[1])

    def start(self, timeout=15.0):
        if not binary_available():
            raise BrokerStartError("scale0 binary not found at %s (set SCALE0_BIN)" % BIN)
        proc = Proc(self.args(), capture_stdout=True)
        self.procs.append(proc)
        self.proc = proc
        m, self.ready_line = await_ready(
            proc, "gateway", GATEWAY_READY_RE, self.args(), timeout,
            " (docs/http.md: `ready listen=HOST:PORT broker=EP [metrics=HOST:PORT]`)")
        self.listen = m.group(1).decode()
        self.ready_broker = m.group(2).decode()
        self.metrics = m.group(3).decode() if m.group(3) else None
        return self

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def kill(self):
        if self.proc:
            self.proc.kill()

    def stop(self, timeout=10.0):
        return self.proc.terminate(timeout) if self.proc else None

    def stderr_text(self):
        return "\n".join(p.stderr_text() for p in self.procs)

    def cleanup(self):
        for p in self.procs:
            p.cleanup()
