# SPDX-License-Identifier: Apache-2.0
"""Issue 9, item 3: stalls. A broker stopped (SIGSTOP) for 2 s under load must not answer 502 for
requests whose workers were fine or had already replied; a worker that was itself frozen reads its
sockets before deciding the broker is gone (it re-registers at once when the broker expired it,
instead of waiting out a reconnect backoff)."""

import signal
import time
import unittest

from harness import Scale0TestCase, now


class BrokerStallTest(Scale0TestCase):
    def test_no_502_after_the_broker_is_stopped_for_two_seconds_under_load(self):
        self.stall(1000)

    def test_no_502_after_a_stall_longer_than_the_workers_liveness(self):
        self.stall(250)

    def stall(self, interval):
        b = self.start_broker(heartbeat_interval=interval, liveness=3)
        workers = [self.scale0_worker(b, ["work"], delay=20, concurrency=2, name="w%d" % i) for i in range(3)]
        self.wait_names(b, "work", ["w0", "w1", "w2"])
        c = self.client(b)
        outcomes = {}
        pending = set()
        t_end = now() + 7.0
        stopped = resumed = False
        t0 = now()
        for _ in range(200000):
            t = now()
            if t >= t_end:
                break
            if not stopped and t - t0 > 1.5:
                b.proc.signal(signal.SIGSTOP)
                stopped = True
                t_stop = t
            if stopped and not resumed and t - t_stop >= 2.0:
                b.proc.signal(signal.SIGCONT)
                resumed = True
            while len(pending) < 40:
                pending.add(c.send_request("work", b"x", timeout_ms=20000))
            r = c.recv_reply(0.05)
            if r is not None and r.rid in pending:
                pending.discard(r.rid)
                outcomes[r.status] = outcomes.get(r.status, 0) + 1
        if stopped and not resumed:
            b.proc.signal(signal.SIGCONT)
        deadline = now() + 25.0
        while pending and now() < deadline:
            r = c.recv_reply(0.5)
            if r is not None and r.rid in pending:
                pending.discard(r.rid)
                outcomes[r.status] = outcomes.get(r.status, 0) + 1
        self.assertEqual(pending, set(), "requests without an outcome (outcomes %r)" % outcomes)
        self.assertNotIn(502, outcomes, "502s after a broker stall: %r\n%s" % (
            outcomes, "\n".join(w.proc.stderr_text()[-1500:] for w in workers)))
        self.assertEqual(set(outcomes), {200}, outcomes)
        self.assertTrue(all(w.alive() for w in workers))


class WorkerFreezeTest(Scale0TestCase):
    def test_a_frozen_worker_reads_before_it_gives_up_on_the_broker(self):
        b = self.start_broker(heartbeat_interval=200, liveness=3)
        w = self.scale0_worker(b, ["frozen"], name="fz")
        self.wait_names(b, "frozen", ["fz"])
        w.proc.signal(signal.SIGSTOP)
        time.sleep(2.0)  # well past its liveness (0.6 s): the broker expires it
        w.proc.signal(signal.SIGCONT)
        t0 = now()
        self.wait_names(b, "frozen", ["fz"], timeout=10.0)
        back = now() - t0
        log = w.proc.stderr_text()
        self.assertNotIn("lost broker", log, "it gave up on a live broker after its own freeze:\n%s" % log[-2000:])
        self.assertIn("registering again", log)
        self.assertLess(back, 1.0, "re-registered %.2fs after SIGCONT (a reconnect backoff is 1 s)" % back)


if __name__ == "__main__":
    unittest.main()
