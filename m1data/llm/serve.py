"""Serve a GGUF model over llama.cpp's own OpenAI-compatible HTTP server, in this process.

`python -m m1data.llm.serve --model FILE ...` is what the build's embedded server runs in a child
process (m1data.llm.local_server starts, checks and stops it). The server comes from `xllamacpp`,
a prebuilt wheel: nothing is compiled at install time, and its CPU code is built for x86-64-v3
(AVX2, FMA, F16C, BMI2), not for the machine that built it; on a CPU without those
m1data.llm.local_server refuses it before starting it (`PACKAGED_CPU_FLAGS`), as it would die with SIGILL.

Why a child process and not a thread of the build: the build keeps the lifecycle it has for any
server (ready check, stop on exit, Ctrl-C, SIGTERM, death with its parent), the model's memory
and threads go away with the process, and llama.cpp's log goes to a file, not the user's terminal.

The handshake: the server binds port 0 (the kernel picks a free port, so there is no window in
which another process can take it), then this module writes `{"url", "model", "pid"}` as JSON to
the `--ready-file` the parent named (`m1data.durable.write_atomic`: whole, by a rename, fsynced
as every file m1data writes is, so no reader sees a cut or empty handshake). The parent reads the
port from there, so it talks to this process and no other.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path


def build_params(args: argparse.Namespace):  # -> xllamacpp.CommonParams (imported lazily)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(args.model)
    params.model_alias = {args.alias or Path(args.model).name}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.kv_unified = args.parallel > 1  # one KV pool for all slots: a long request fits beside short ones
    params.cache_prompt = args.cache_prompt
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.reasoning_format = xllamacpp.common_reasoning_format.COMMON_REASONING_FORMAT_NONE  # <think> stays inline
    params.ui = False
    params.special = args.special
    if args.chat_template:
        params.use_jinja = True
        params.chat_template = Path(args.chat_template).read_text(encoding="utf-8")
    return params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m m1data.llm.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="GGUF file")
    parser.add_argument("--alias", default=None, help="the model name the server reports (default: the file name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port chosen by the kernel")
    parser.add_argument("--ctx-size", type=int, default=16384)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chat-template", default=None, help="a Jinja chat template file")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="where to write the handshake once listening (default: stdout)")
    parser.add_argument("--special", action=argparse.BooleanOptionalAction, default=False,
                        help="write special tokens (<|im_start|>) into the text, as infer's budget forcing "
                             "needs to stop thinking at one (llama.cpp ignores stop_token_ids)")
    parser.add_argument("--cache-prompt", action=argparse.BooleanOptionalAction, default=False,
                        help="reuse a slot's earlier prompt (faster, but a reply then depends on the request before it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.model.is_file():
        sys.exit(f"error: model file not found: {args.model}")
    import xllamacpp

    server = xllamacpp.Server(build_params(args))  # loads the model and binds; raises if it cannot
    handshake = json.dumps({"url": server.listening_address, "model": args.alias or args.model.name, "pid": os.getpid()})
    if args.ready_file is None:
        print(handshake, flush=True)
    else:
        from m1data.durable import write_atomic

        write_atomic(args.ready_file, handshake)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
