"""A local OpenAI-compatible server that enforces a request limit or fails at random (bench_llm).

    python benchmarks/limited_server.py --rate 100 --burst 20      # token bucket, 429 above it
    python benchmarks/limited_server.py --p429 0.1 --p500 0.05     # random faults
    python benchmarks/limited_server.py --rate 100 --header-style openai   # and say so (or anthropic, ietf)

It serves tests/llm_server.py's ScriptedServer on 127.0.0.1 with one handler: a token bucket of
``--rate`` requests/s holding ``--burst`` (429 with Retry-After: 1 when empty), then random 429s
(Retry-After: 1) and 500s with the given probabilities (seeded), else the fixed boxed answer.
Prints ``PORT <n>``; then each line ``stats`` on stdin prints one JSON line of counts (200, 429,
500, how many request bodies were answered 200 more than once: paid twice, and the answers and
429s from SETTLED_AFTER seconds after the first request on: a client's steady state, without
the start where it has not met the limit yet), and ``reset`` zeroes them.

``--header-style``: every answer, 200 or 429, states the bucket (its capacity, its level rounded
down, the time until it is full again) in one provider's style, so one benchmark shows the client
riding each (m1data.llm.limits.RATE_HEADER_STYLES; ``none``, the default, states nothing):

- ``openai``: ``x-ratelimit-{limit,remaining,reset}-requests``, the reset in Go's duration format;
- ``anthropic``: ``anthropic-ratelimit-requests-{limit,remaining,reset}``, the reset an RFC 3339
  time (to the ms), with the ``Date`` header a real server sends;
- ``ietf``: the IETF draft's structured fields from draft-08 on, ``RateLimit: "bucket";r=..;t=..``
  and ``RateLimit-Policy: "bucket";q=..;w=..`` (w: the seconds an empty bucket takes to fill).
  The drafts give ``t`` as whole seconds; it is written to the ms here, as a structured-field
  Decimal, since a 100/s bucket of 20 is full again within 0.2 s: in whole seconds a reset reads
  as 0 or 1, and says nothing of a rate that fast.
"""

from __future__ import annotations

import argparse
import datetime
import email.utils
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


def openai_headers(limit: float, remaining: int, reset: float) -> dict[str, str]:
    return {"x-ratelimit-limit-requests": f"{limit:g}", "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{reset * 1000:.3f}ms"}


def anthropic_headers(limit: float, remaining: int, reset: float) -> dict[str, str]:
    wall = time.time()
    whole = datetime.datetime.fromtimestamp(wall + reset, datetime.timezone.utc)
    return {"anthropic-ratelimit-requests-limit": f"{limit:g}",
            "anthropic-ratelimit-requests-remaining": str(remaining),
            "anthropic-ratelimit-requests-reset": whole.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "date": email.utils.formatdate(wall, usegmt=True)}


def ietf_headers(limit: float, remaining: int, reset: float, window: float) -> dict[str, str]:
    return {"ratelimit": f'"bucket";r={remaining};t={reset:.3f}',
            "ratelimit-policy": f'"bucket";q={limit:g};w={window:.3f}'}


HEADER_STYLES = ("openai", "anthropic", "ietf", "none")


class LimitedHandler:
    def __init__(self, rate: float, burst: float, p429: float, p500: float, seed: int = 0,
                 header_style: str = "none"):
        if header_style not in HEADER_STYLES:
            raise ValueError(f"header_style {header_style!r}: expected one of {', '.join(HEADER_STYLES)}")
        self.rate, self.capacity = rate, burst
        self.level, self.updated = burst, time.monotonic()
        self.p429, self.p500 = p429, p500
        self.header_style = header_style
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.began = 0.0  # the first request's arrival
        self.counts: Counter[str] = Counter()
        self.paid: Counter[str] = Counter()

    def __call__(self, req: Received) -> Response:
        response = self._answer(req)
        if self.header_style != "none" and self.rate:
            response.headers.update(self._stated())
        return response

    def _stated(self) -> dict[str, str]:
        """The bucket as it is now, in ``header_style``."""
        with self.lock:
            level = self.level
        remaining, reset = max(0, math.floor(level)), (self.capacity - level) / self.rate
        if self.header_style == "anthropic":
            return anthropic_headers(self.capacity, remaining, reset)
        if self.header_style == "ietf":
            return ietf_headers(self.capacity, remaining, reset, self.capacity / self.rate)
        return openai_headers(self.capacity, remaining, reset)

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
    parser.add_argument("--header-style", choices=HEADER_STYLES, default="none",
                        help="state the bucket on every answer in this provider's rate-limit headers")
    args = parser.parse_args()
    handler = LimitedHandler(args.rate, args.burst, args.p429, args.p500, args.seed, args.header_style)
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
