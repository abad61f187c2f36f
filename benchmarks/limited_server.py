"""A local OpenAI-compatible server that enforces a request limit or fails at random (bench_llm).

    python benchmarks/limited_server.py --rate 100 --burst 20      # token bucket, 429 above it
    python benchmarks/limited_server.py --p429 0.1 --p500 0.05     # random faults
    python benchmarks/limited_server.py --rate 100 --headers       # and say so: x-ratelimit-*

It serves tests/llm_server.py's ScriptedServer on 127.0.0.1 with one handler: a token bucket of
``--rate`` requests/s holding ``--burst`` (429 with Retry-After: 1 when empty), then random 429s
(Retry-After: 1) and 500s with the given probabilities (seeded), else the fixed boxed answer.
Prints ``PORT <n>``; then each line ``stats`` on stdin prints one JSON line of counts (200, 429,
500, how many request bodies were answered 200 more than once: paid twice, and the answers and
429s from SETTLED_AFTER seconds after the first request on: a client's steady state, without
the start where it has not met the limit yet), and ``reset`` zeroes them.

``--headers``: every answer, 200 or 429, states the bucket as OpenAI does:
``x-ratelimit-limit-requests`` (its capacity), ``-remaining-requests`` (its level, rounded
down), ``-reset-requests`` (the time until it is full again, in Go's duration format).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from llm_server import Received, Response, ScriptedServer, error, reply  # noqa: E402


SETTLED_AFTER = 2.0  # seconds: answers after this also count as "settled" (the client's start left out)


class LimitedHandler:
    def __init__(self, rate: float, burst: float, p429: float, p500: float, seed: int = 0, headers: bool = False):
        self.rate, self.capacity = rate, burst
        self.level, self.updated = burst, time.monotonic()
        self.p429, self.p500 = p429, p500
        self.headers = headers
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.began = 0.0  # the first request's arrival
        self.counts: Counter[str] = Counter()
        self.paid: Counter[str] = Counter()

    def __call__(self, req: Received) -> Response:
        response = self._answer(req)
        if self.headers and self.rate:
            response.headers.update(self._stated())
        return response

    def _stated(self) -> dict[str, str]:
        with self.lock:
            level = self.level
        return {"x-ratelimit-limit-requests": f"{self.capacity:g}",
                "x-ratelimit-remaining-requests": str(max(0, math.floor(level))),
                "x-ratelimit-reset-requests": f"{(self.capacity - level) / self.rate * 1000:.3f}ms"}

    def _answer(self, req: Received) -> Response:
        with self.lock:
            now = time.monotonic()
            self.began = self.began or now
            settled = now - self.began >= SETTLED_AFTER
            self.counts["settled"] += settled
            if self.rate:
                self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
                self.updated = now
                if self.level < 1:
                    self.counts["429"] += 1
                    self.counts["settled_429"] += settled
                    return error(429, "rate limit reached", retry_after=1)
                self.level -= 1
            roll = self.rng.random()
            if roll < self.p429:
                self.counts["429"] += 1
                self.counts["settled_429"] += settled
                return error(429, "try again", retry_after=1)
            if roll < self.p429 + self.p500:
                self.counts["500"] += 1
                return error(500, "boom")
            self.counts["200"] += 1
            self.paid[req.key] += 1
        return reply(req, "The answer is \\boxed{A}.")

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {**self.counts, "paid_twice": sum(1 for n in self.paid.values() if n > 1)}

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.paid.clear()
            self.began = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s the bucket refills (0: no limit)")
    parser.add_argument("--burst", type=float, default=20.0)
    parser.add_argument("--p429", type=float, default=0.0)
    parser.add_argument("--p500", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--headers", action="store_true", help="state the bucket in x-ratelimit-* headers")
    args = parser.parse_args()
    handler = LimitedHandler(args.rate, args.burst, args.p429, args.p500, args.seed, args.headers)
    server = ScriptedServer(handler, record=False)
    server.start()
    print(f"PORT {server.port}", flush=True)
    for line in sys.stdin:  # bounded by the caller: it closes stdin (or kills us) when done
        if line.strip() == "stats":
            print(json.dumps(handler.stats()), flush=True)
        elif line.strip() == "reset":
            handler.reset()
    server.stop()


if __name__ == "__main__":
    main()
