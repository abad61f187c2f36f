"""The embedded model's speed: generated tokens/s through m1data's own path (HTTP engine -> a real
llama-server with SmolLM2-135M-Instruct Q4_1), and the main job's wall time per stage.

    python benchmarks/bench_local_model.py                    # tokens/s at concurrency 1, 4, 16
    python benchmarks/bench_local_model.py --run-dir runs/m1k # + per-stage wall time of that build
    python benchmarks/bench_local_model.py --build            # + build m1k fresh in a temp folder
    python benchmarks/bench_local_model.py --threads 1        # the server on one thread (default: every core)

Each concurrency level sends its own distinct prompts (real questions of the embedded sample,
the students' m1 prompt, greedy, a fixed number of new tokens), with no cache, so every token is
generated. Tokens/s is the server's completion-token count over the wall time of the batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from m1data.llm import RunStats, complete_all
from m1data.llm.embedded import EmbeddedEngine
from m1data.llm.local_server import LocalServer, ServerConfig, default_threads
from m1data.llm.stages import boxed_request
from m1data.stages.loading import LoadConfig, LoadSources


def throughput(server: LocalServer, prompts: list[str], concurrency: int, max_tokens: int) -> dict[str, float]:
    engine = EmbeddedEngine(server.base_url, server.model)
    # ignore nothing: a reply may stop early; tokens/s counts what was generated
    requests = [boxed_request("SmolLM2-135M-Instruct", p, {"max_tokens": max_tokens, "temperature": 0.0})
                for p in prompts]
    stats = RunStats()
    began = time.perf_counter()
    replies = complete_all(engine, requests, None, concurrency=concurrency, progress=False, stats=stats)
    wall = time.perf_counter() - began
    tokens = sum(r.completion_tokens for r in replies)
    errors = sum(r.status == "error" for r in replies)
    return {"requests": len(requests), "errors": errors, "completion_tokens": tokens, "wall_s": wall,
            "tokens_per_s": tokens / wall, "prompt_tokens": sum(r.prompt_tokens for r in replies)}


def stage_times(run_dir: Path) -> list[tuple[str, float, int, int, dict]]:
    rows = []
    for manifest_path in sorted(run_dir.glob("*/manifest.json")):
        m = json.loads(manifest_path.read_text())
        stats = m.get("stats") or {}
        tokens = {k: stats[k] for k in ("prompt_tokens", "completion_tokens") if k in stats}
        if "completion_tokens_sent" in stats and "completion_tokens" not in tokens:
            tokens = {"prompt_tokens": stats.get("prompt_tokens_sent"), "completion_tokens": stats["completion_tokens_sent"]}
        rows.append((m["stage"], m["wall_time_s"], m["rows_in"], m["rows_out"], tokens))
    return rows


def print_stage_times(run_dir: Path, total_wall: float | None = None) -> None:
    print(f"\nmain job per stage ({run_dir}):")
    print(f"{'stage':<22}{'wall s':>9}{'rows in':>9}{'rows out':>9}  tokens")
    total = 0.0
    for stage, wall, rows_in, rows_out, tokens in stage_times(run_dir):
        total += wall
        text = ", ".join(f"{k} {v:,}" for k, v in tokens.items() if v is not None)
        print(f"{stage:<22}{wall:>9.1f}{rows_in:>9}{rows_out:>9}  {text}")
    print(f"{'sum of stages':<22}{total:>9.1f}")
    if total_wall is not None:
        print(f"{'whole command':<22}{total_wall:>9.1f}  (process start, server start, hub folder included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,16", help="concurrency levels")
    parser.add_argument("--requests", type=int, default=16, help="requests per level")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--run-dir", type=Path, help="print the per-stage wall time of this finished build")
    parser.add_argument("--build", action="store_true", help="build m1k with the default config in a temp folder")
    parser.add_argument("--parallel", type=int, default=1,
                        help="server slots (1: the deterministic default; more: batched, faster, not deterministic)")
    parser.add_argument("--threads", type=int, default=None, help="server threads (default: every core)")
    args = parser.parse_args()

    levels = [int(x) for x in args.levels.split(",")]
    prompts = LoadSources(LoadConfig()).run(None, None).rows["prompt"]
    needed = args.requests * len(levels)
    if needed > len(prompts):
        raise SystemExit(f"the embedded sample has {len(prompts)} questions; ask for at most {len(prompts) // len(levels)}")
    config = ServerConfig(parallel=args.parallel, cache_prompt=args.parallel > 1, threads=args.threads)
    with LocalServer(config, Path(tempfile.gettempdir()) / "bench_local_model_server.log") as server:
        print(f"{server.name} with {server.model.name} (parallel {server.config.parallel}, "
              f"prompt cache {'on' if server.config.cache_prompt else 'off'}, "
              f"threads {server.config.threads or default_threads()}, load {os.getloadavg()[0]:.2f})")
        print(f"{'concurrency':>11}{'requests':>9}{'errors':>7}{'gen tokens':>11}{'wall s':>8}{'tokens/s':>10}")
        for i, level in enumerate(levels):
            batch = prompts[i * args.requests:(i + 1) * args.requests]
            r = throughput(server, batch, level, args.max_tokens)
            print(f"{level:>11}{r['requests']:>9}{r['errors']:>7}{r['completion_tokens']:>11,}"
                  f"{r['wall_s']:>8.1f}{r['tokens_per_s']:>10.1f}")

    if args.build:
        run_dir = Path(tempfile.mkdtemp(prefix="m1k-bench-")) / "run"
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "m1data.cli", "build", "m1k", "--out", str(run_dir)], check=True,
                       stdout=subprocess.DEVNULL)
        print_stage_times(run_dir, time.perf_counter() - began)
    if args.run_dir:
        print_stage_times(args.run_dir)


if __name__ == "__main__":
    main()
