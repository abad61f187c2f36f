"""What making rows public costs (`m1data.publishing.export.public_rows`), at pool sizes.

    python benchmarks/bench_export.py [--rows 100000] [--path-rate 0.01] [--seed 0] [--profile] [--secrets]

Rows: ``--rows`` rows of a formatted build's schema (the columns of ``08_format/rows.parquet``:
the question's, one student's, the teacher's traces, the domain, ``messages`` and ``text``), the
questions from benchmarks/perturb.py (recombinations of the real questions of ../shared/data),
each reasoning trace eight to sixteen other questions' texts long (~2-4K characters of medical prose,
with its ``mg/dL``-like slashes). ``--path-rate`` of the rows name a local path (a raw row's source
file in ``metadata``, a served model's GGUF in ``teacher_served_model``, a tool path in
``reasoning`` and so in ``messages`` and ``text``), so the columns that hold one are rewritten:
the slow case. Three inputs: the rows with paths, the same rows without any (nothing to
rewrite, what a typical build exports), and a shuffled selection of half of them (a Dataset with
an indices mapping).

Per input: seconds of `public_rows` (``--profile``: cProfile of the first, top 25 by cumulative
time) and, with ``--reference``, of the row-by-row version it replaced (kept here as
`reference_public_rows`), with a check that both give the same rows. Then the check `publish`
runs on a folder before it uploads (`m1data.publishing.hub.local_paths_inside`) on the rows
without a path written as parquet, and with ``--reference`` the string-by-string scan it
replaced. With ``--secrets``, the secrets check `publish` runs on the same folder before it
uploads, with one and two made-up keys configured (no row holds them, so it reads every string)
and with ``--reference`` the string-by-string loop it replaced. ``uptime`` is printed before and
after: the machine is shared.

Before/after, ``--rows 100000 --reference`` (1,822 characters of ``text`` a row), this 2-core
machine shared with other jobs (load averages 1-min 0.9-1.1), both versions in one run; before =
0f40c91, after = the pubrows branch. Seconds:

    input                                   before    after
    1% of rows with a local path            103.55    12.33   (5 columns rewritten: most of what is
                                                               left is Arrow copying ~500 MB of them)
    no local path (a typical build)          69.67     2.12
    shuffled half, 50K rows                  55.52     2.88
    publish's local-path check, 100K rows    56.51     5.93   (reading the parquet: ~4 s of it)

The secrets check, ``--rows 100000 --secrets --reference`` (load averages 1-min 1.0), both
versions in one run; before = the string-by-string loop of 0c250b4, after = the secrets branch
(Arrow's hint, `m1data.redact.secrets_hint`). Seconds, reading the parquet included (most of
what is left):

    keys configured                         before    after
    one                                       7.25     2.06
    two                                      11.01     2.61
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import perturb  # noqa: E402


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def formatted_rows(n: int, path_rate: float, seed: int) -> Any:
    """`n` rows of a formatted build, through the library's own `make_row` and `to_sft`."""
    import datasets

    from m1data.schema import ROW_FEATURES, make_row, rows_to_dataset
    from m1data.stages.formatting import to_sft

    rng = np.random.default_rng(seed)
    texts = perturb.training_rows(n, seed=seed)
    with_path = rng.random(n) < path_rate
    rows = []
    for i, text in enumerate(texts):
        lines = text.split("\n")
        k = len(lines)
        while k > 0 and len(lines[k - 1]) > 2 and lines[k - 1][1:3] == ". ":
            k -= 1
        question, options = "\n".join(lines[:k]).strip() or f"question {i}", [line[3:] for line in lines[k:]]
        options = list({" ".join(o.lower().split()): o.strip() for o in options if o.strip()}.values()) or ["yes", "no"]
        if len(options) < 2:
            options.append(f"none of {options[0]}")
        raw = {"question": question, "options": options, "meta_info": "step1"}
        if with_path[i]:
            raw["file"] = f"/home/researcher/data/medqa/train_{i % 7}.jsonl"
        row = make_row(source="medqa", row_id=f"medqa:{i:016x}", question=question, options=options,
                       answer_idx=int(rng.integers(len(options))), raw=raw)
        picks = rng.integers(n, size=int(rng.integers(8, 17)))
        reasoning = "\n\n".join(texts[j].split("\n")[0] for j in picks)
        if with_path[i]:
            reasoning += "\n\nI looked it up in /home/researcher/notes/cardiology.md as well."
        letter = row["answer_letter"]
        row.update({
            "student_qwen7b_reply": f"The answer is \\boxed{{{letter}}}", "student_qwen7b_answer": letter,
            "student_qwen7b_correct": bool(rng.random() < 0.25), "student_qwen7b_status": "ok",
            "reasoning": reasoning, "teacher_reply": f"So the answer is \\boxed{{{letter}}}.",
            "teacher_answer": letter, "answer_rule": "boxed", "teacher_model": "deepseek-reasoner",
            "teacher_served_model": "/root/models/R1-Q4_K_M.gguf" if with_path[i] else "deepseek-reasoner",
            "finish_reason": "stop", "prompt_tokens": len(row["prompt"]) // 4,
            "completion_tokens": len(reasoning) // 4, "attempt": 1, "attempts_used": 1,
            "domain_code": f"{int(rng.integers(1, 20)):02d}", "domain": "Diagnosis",
        })
        rows.append(row)
    extra = {
        "student_qwen7b_reply": datasets.Value("string"), "student_qwen7b_answer": datasets.Value("string"),
        "student_qwen7b_correct": datasets.Value("bool"), "student_qwen7b_status": datasets.Value("string"),
        **{name: datasets.Value("string") for name in ("reasoning", "teacher_reply", "teacher_answer", "answer_rule",
                                                       "teacher_model", "teacher_served_model", "finish_reason")},
        **{name: datasets.Value("int64") for name in ("prompt_tokens", "completion_tokens", "attempt",
                                                      "attempts_used")},
        "domain_code": datasets.Value("string"), "domain": datasets.Value("string"),
    }
    return to_sft(rows_to_dataset(rows, datasets.Features({**ROW_FEATURES, **extra})))


def reference_public_rows(rows: Any) -> Any:
    """The row-by-row `public_rows` this benchmark measured first (m1data 0f40c91)."""
    from m1data.redact import local_paths, public_scrub

    def _holds_local_path(value: Any) -> bool:
        if isinstance(value, str):
            return bool(local_paths(value))
        if isinstance(value, dict):
            return any(_holds_local_path(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return any(_holds_local_path(v) for v in value)
        return False

    affected = [c for c in rows.column_names if any(_holds_local_path(v) for v in rows.data.column(c).to_pylist())]
    if not affected:
        return rows
    return rows.map(lambda batch: {c: [public_scrub(v) for v in batch[c]] for c in affected}, batched=True,
                    features=rows.features, keep_in_memory=True, load_from_cache_file=False)


def timed(fn: Any, rows: Any, profile: bool) -> tuple[float, Any]:
    profiler = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    out = fn(rows)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - t0
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return seconds, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--path-rate", type=float, default=0.01, help="share of rows that name a local path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", action="store_true", help="time the row-by-row version too, and compare")
    ap.add_argument("--profile", action="store_true", help="cProfile of public_rows on the first input")
    ap.add_argument("--secrets", action="store_true", help="time publish's secrets check too (made-up keys)")
    args = ap.parse_args()
    if not perturb.DATA.is_dir():
        sys.exit(f"{perturb.DATA} not found: the benchmark needs ../shared/data")

    import datasets

    import m1data
    from m1data.publishing.export import public_rows
    from m1data.publishing.hub import local_paths_inside
    from m1data.schema import column_values

    datasets.disable_progress_bars()
    print(f"m1data from {Path(m1data.__file__).parent}")
    t0 = time.perf_counter()
    with_paths = formatted_rows(args.rows, args.path_rate, args.seed)
    without = formatted_rows(args.rows, 0.0, args.seed)
    chars = sum(len(t) for t in column_values(with_paths, "text"))
    print(f"{args.rows:,} rows made in {time.perf_counter() - t0:.1f}s ({chars / args.rows:,.0f} characters of "
          f"text a row); load: {uptime()}", flush=True)
    order = np.random.default_rng(args.seed).permutation(args.rows)[: args.rows // 2]
    inputs = {f"{args.path_rate:.0%} of rows with a local path": with_paths,
              "no local path": without,
              "shuffled half (indices mapping)": with_paths.select(order)}
    for k, (what, rows) in enumerate(inputs.items()):
        seconds, out = timed(public_rows, rows, args.profile and k == 0)
        line = f"  {what:<36} public_rows {seconds:7.2f}s"
        if args.reference:
            ref_seconds, ref = timed(reference_public_rows, rows, False)
            same = (out.features == ref.features and out.column_names == ref.column_names
                    and out.data.table.equals(ref.data.table) if out._indices is None and ref._indices is None
                    else out.to_list() == ref.to_list())
            line += f"   row by row {ref_seconds:7.2f}s   same rows: {same}"
            if not same:
                line += " (DIFFERENT)"
        print(f"{line}   ({len(rows):,} rows; load: {uptime()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        folder = Path(tmp)
        (folder / "data").mkdir()
        without.to_parquet(str(folder / "data" / "train.parquet"))
        seconds, found = timed(local_paths_inside, folder, args.profile)
        line = f"  {'publish check (local_paths_inside)':<36} whole file  {seconds:7.2f}s"
        if args.reference:
            ref_seconds, ref = timed(reference_local_paths_inside, folder, False)
            line += f"   string by string {ref_seconds:7.2f}s   same paths: {found == ref}"
        print(f"{line}   ({len(without):,} rows, no path; load: {uptime()})", flush=True)
        if args.secrets:
            secrets_check(folder, args.reference)
    print(json.dumps({"load": uptime()}))


# Made-up keys, shaped like a Hub token and a provider's key (with characters every encoding changes),
# that no row holds: the check reads every string, the cost of every real upload.
FAKE_SECRETS = {"a made-up Hub token": b"hf_FAKEbenchTOKEN0123456789abcdef",
                "a made-up API key": b"sk-FAKE/bench+key=0123456789"}


def secrets_check(folder: Path, reference: bool) -> None:
    """Seconds of the secrets check `publish` runs before it uploads
    (`m1data.publishing.hub._refuse_if_secret_inside`) on the folder, with one and two keys
    configured, and with `reference` the string-by-string loop it replaced."""
    from m1data.publishing.hub import _local_files, _refuse_if_secret_inside

    files = _local_files(folder)
    for count in (1, 2):
        secrets = dict(list(FAKE_SECRETS.items())[:count])
        what = f"publish check (secrets: {count} key{'s' if count > 1 else ''})"
        line = f"  {what:<36}"
        for name, check in [("hinted", _refuse_if_secret_inside)] + [("string by string",
                                                                      reference_refuse_if_secret_inside)] * reference:
            t0 = time.perf_counter()
            check(folder, files, secrets)  # raises when it finds one: no row holds these keys
            line += f" {name} {time.perf_counter() - t0:7.2f}s"
        print(f"{line}   (load: {uptime()})", flush=True)


def reference_refuse_if_secret_inside(folder: Path, files: list[Any], secrets: dict[str, bytes]) -> None:
    """The secrets check `publish` ran before the Arrow hint (m1data 0c250b4): `holds_secret` on
    every string of every file, for every key (after the same search of the bytes)."""
    from m1data.publishing.hub import _file_contains, _file_strings
    from m1data.redact import MIN_SECRET_LENGTH, holds_secret

    texts = {label: secret.decode("utf-8", "replace") for label, secret in secrets.items()}
    for planned in files:
        path = folder / planned.path_in_repo
        if any(len(secret) >= MIN_SECRET_LENGTH and _file_contains(path, secret) for secret in secrets.values()):
            raise ValueError(f"{planned.path_in_repo} contains a secret")
        for where, text in _file_strings(path):
            for label, secret in texts.items():
                if holds_secret(text, secret):
                    raise ValueError(f"{planned.path_in_repo} ({where}) contains {label}")


def reference_local_paths_inside(folder: Path) -> list[str]:
    """The string-by-string check of `publish` this benchmark measured first (m1data 0f40c91)."""
    from m1data.publishing.hub import _file_strings, _local_files
    from m1data.redact import local_paths

    return [f"{f.path_in_repo}{f' ({where})' if where else ''}: {p}"
            for f in _local_files(folder) for where, text in _file_strings(folder / f.path_in_repo)
            for p in local_paths(text)]


if __name__ == "__main__":
    main()
