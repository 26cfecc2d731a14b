# SPDX-License-Identifier: Apache-2.0
"""Scale0's Python library: the native protocol (docs/protocol.md) on pyzmq.

- ``scale0.Client``: blocking requests with deadlines, statuses as ``scale0.Error``, pipelining
  (send/receive) and opt-in Lazy Pirate retries.
- ``scale0.Worker``: serves services with a handler (a thread pool, or ``async def`` on an event
  loop), concurrency credit, heartbeats, reconnects and graceful stop.
- ``scale0.aio.Client``: the asyncio client; ``scale0.wsgi.serve`` and ``scale0.asgi.serve``:
  WSGI and ASGI apps as workers.
- ``scale0.Curve``: CURVE to a broker (its key, the own key pair, zcert files) for all of them.
"""

from ._types import Error, Job, Reply, ServicePolicy
from .client import Client
from .curve import Curve
from .worker import Worker

__all__ = ["Client", "Curve", "Error", "Job", "Reply", "ServicePolicy", "Worker"]
__version__ = "0.2.0"
