# SPDX-License-Identifier: Apache-2.0
"""A Python worker in its own process, for tests that kill it: echoes after DELAY seconds.

Usage: sleepy_worker.py BROKER SERVICE DELAY [idempotent]. Prints "held" (flushed) when a request
arrives, so a test knows the request is held before it kills the process.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import scale0  # noqa: E402


def main() -> None:
    broker, service, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    idempotent = len(sys.argv) > 4 and sys.argv[4] == "idempotent"

    def handle(job: scale0.Job) -> bytes:
        sys.stdout.write("held\n")
        sys.stdout.flush()
        time.sleep(delay)
        return job.body

    scale0.Worker(broker, [service], handle, concurrency=2, idempotent=idempotent, name="sleepy").run()


if __name__ == "__main__":
    main()
