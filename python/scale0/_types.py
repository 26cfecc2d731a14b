# SPDX-License-Identifier: Apache-2.0
"""The values the API hands out: Error (any non-200 outcome), Reply (a pipelined answer) and Job
(a request a worker handles)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Union

# The texts of outcomes the libraries make themselves (as the C++ libraries word them).
MSG_BROKER_LOST = "broker lost"
MSG_NO_REPLY = "no reply within %d ms"
MSG_SEND_QUEUE_FULL = "send queue full"
MSG_INVALID_SERVICE = "invalid service name"


class Error(Exception):
    """A request's outcome other than 200, or a worker's answer other than 200.

    Raised by the clients with the status of the reply (the broker's or the worker's), or one the
    library made (``local`` true: 504 no reply in time, 502 broker lost, 503 send queue full).
    Raised by a worker's handler, it becomes the REPLY's status and message.
    """

    def __init__(self, status: int, message: Union[str, bytes] = "", *, local: bool = False) -> None:
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        super().__init__(status, message)
        self.status: int = int(status)
        self.message: str = message
        self.local: bool = local

    def __str__(self) -> str:
        return "%d %s" % (self.status, self.message) if self.message else str(self.status)

    def __repr__(self) -> str:
        return "scale0.Error(%d, %r)" % (self.status, self.message)


@dataclass
class Reply:
    """One answer: the request's id, its status, the message and the body frames.

    ``local`` is true when the library made it (no answer in time, broker lost).
    """

    id: int
    status: int
    message: str = ""
    frames: List[bytes] = field(default_factory=list)
    local: bool = False

    @property
    def body(self) -> bytes:
        """The body frames concatenated."""
        return self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)

    @property
    def ok(self) -> bool:
        return self.status == 200

    def raise_for_status(self) -> bytes:
        """The body of a 200 reply; raises Error for any other status."""
        if self.status != 200:
            raise Error(self.status, self.message, local=self.local)
        return self.body


@dataclass
class Job:
    """A request given to a worker's handler.

    ``deadline`` is a ``time.monotonic()`` instant: the client's deadline as the broker told it.
    """

    id: int
    service: str
    frames: List[bytes]
    deadline: float

    @property
    def body(self) -> bytes:
        """The body frames concatenated."""
        return self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)

    @property
    def time_left(self) -> float:
        """Seconds left before the client's deadline (0 when it has passed)."""
        return max(0.0, self.deadline - time.monotonic())


class ServicePolicy(NamedTuple):
    """The broker's effective policy for one service (a CONFIG; docs/operations.md, "Service
    policies"). The broker enforces it; a worker reports it.

    ``request_timeout`` (seconds) is the deadline of requests that give none; ``max_queue`` the
    service's queued requests; ``max_concurrency`` the requests of this service one worker holds
    at once (None: no cap but the worker's concurrency); ``idempotent`` whether a request lost
    with its worker is dispatched once more (None: the workers' flags decide).
    """

    request_timeout: float
    max_queue: int
    max_concurrency: Optional[int]
    idempotent: Optional[bool]
