"""Several tries per question (traces `attempts`) against a scripted teacher whose per-try success
is known, through the real stage, HTTP client and reply cache.

    python benchmarks/bench_attempts.py                 # 2,000 questions, K = 4
    python benchmarks/bench_attempts.py --questions 500 --concurrency 64

The teacher answers question q right from try j on, where j is fixed by q % 20: 50% of the
questions at try 1, 20% at try 2, 10% at try 3, 5% at try 4 and 15% never. So, for N questions:

    K = 1: rows kept 0.50 N, requests 1.00 N
    K = 4: rows kept 0.85 N, requests (0.50*1 + 0.20*2 + 0.10*3 + 0.05*4 + 0.15*4) N = 2.00 N

Latency is heavy-tailed, as a reasoning teacher's is: 95% of replies take `--fast` seconds and 5%
(fixed per question and try) take `--slow`. Three runs, each with a fresh cache and server count:
K = 1; K = 4 as the stage runs it online (the next try goes out as soon as the last is judged);
and K = 4 in rounds (every first try, then every second try, ...: what re-running the failures as
a new job amounts to, and what the Batch API path does), to show what pipelining saves: each
round waits for its slowest request, the pipelined run overlaps them. The script checks that rows
kept and requests received by the server equal the expected counts, and exits 1 if not.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import datasets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from llm_server import ScriptedServer, chat, try_number  # noqa: E402

from m1data.llm import RetryPolicy  # noqa: E402
from m1data.llm.attempts import run_rounds  # noqa: E402
from m1data.llm.stages import LLMRuntime  # noqa: E402
from m1data.schema import LETTERS, make_row, rows_to_dataset  # noqa: E402
from m1data.stages.traces import TeacherTraces, TracesConfig  # noqa: E402

datasets.disable_progress_bars()

SEED = 1000
RIGHT_AT = {**dict.fromkeys(range(10), 1), **dict.fromkeys(range(10, 14), 2), **dict.fromkeys(range(14, 16), 3), 16: 4}


def right_at(q: int) -> int | None:
    return RIGHT_AT.get(q % 20)


def expected(n: int, k: int) -> tuple[int, int]:
    """(rows kept, requests sent) of a `keep: first` run with K = k."""
    kept = sum((right_at(q) or k + 1) <= k for q in range(n))
    sent = sum(min(right_at(q) or k, k) for q in range(n))
    return kept, sent


class InRounds(TeacherTraces):
    """The same stage with its tries in rounds online (the way the Batch API path goes)."""

    def call_tries(self, endpoint, first, cache, ctx, by_attempt, again, *, label=None):
        def one_round(requests, stats, attempt):
            return self.call(endpoint, requests, cache, ctx, stats)

        return run_rounds(one_round, first, len(by_attempt), again, by_attempt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--attempts", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--fast", type=float, default=0.2)
    parser.add_argument("--slow", type=float, default=3.0)
    args = parser.parse_args()

    n = args.questions
    rows = rows_to_dataset([
        make_row(source="medmcqa", row_id=f"b{q}", question=f"Q{q}: which option is right for case {q}?",
                 options=[f"option {q}-{k}" for k in range(4)], answer_idx=q % 4, raw={}) for q in range(n)
    ])
    by_prompt = {r["prompt"]: (int(r["id"][1:]), LETTERS[r["answer_idx"]]) for r in rows}

    def teacher(req):
        q, right = by_prompt[req.text.split("\n", 1)[1]]
        attempt = try_number(req, SEED)
        delay = args.slow if hash((q, attempt)) % 20 == 0 else args.fast
        target = right_at(q)
        letter = right if target is not None and attempt >= target else LETTERS[(LETTERS.index(right) + 1) % 4]
        return chat(f"\\boxed{{{letter}}}", reasoning=f"try {attempt}", completion_tokens=500, delay=delay)

    results = {}
    ok = True
    with ScriptedServer(teacher) as server:
        for name, k, stage_class in (("K=1", 1, TeacherTraces), (f"K={args.attempts}", args.attempts, TeacherTraces),
                                     (f"K={args.attempts}, in rounds", args.attempts, InRounds)):
            server.reset()
            with tempfile.TemporaryDirectory() as tmp:
                runtime = LLMRuntime(progress=False, concurrency=args.concurrency, cache_path=f"{tmp}/cache.sqlite",
                                     retries=RetryPolicy(max_attempts=2, base_delay=0.01))
                config = TracesConfig(model="teacher", base_url=server.base_url, api_key_env=None, temperature=0.7,
                                      extra_params={"seed": SEED}, attempts=k, runtime=runtime)
                began = time.perf_counter()
                result = stage_class(config).run(rows, None)
                wall = time.perf_counter() - began
            want_kept, want_sent = expected(n, k)
            got = {"rows_kept": len(result.rows), "requests_received": server.count(), "wall_s": round(wall, 2),
                   "expected_rows_kept": want_kept, "expected_requests": want_sent,
                   "first_verified_by_try": [t["first_verified"] for t in result.stats["by_attempt"].values()]}
            ok &= got["rows_kept"] == want_kept and got["requests_received"] == want_sent
            results[name] = got
            print(f"{name:>16}: kept {got['rows_kept']:,} (expected {want_kept:,}), "
                  f"requests {got['requests_received']:,} (expected {want_sent:,}), wall {wall:.1f}s, "
                  f"new rows by try {got['first_verified_by_try']}",
                  flush=True)
    print(json.dumps({"questions": n, "concurrency": args.concurrency, "fast_s": args.fast, "slow_s": args.slow,
                      "runs": results}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
