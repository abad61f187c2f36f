"""A local OpenAI-style Batch API (files and batches endpoints) on top of the scripted server.

Why: no real provider is reachable from the test machines, and the behaviour that matters (files
uploaded as multipart, batches that take several polls, results in output and error files keyed
by custom_id, a batch that expires) must be exercised through the real SDK over a real socket.

Routes, as OpenAI documents them:
    POST /v1/files                      multipart upload (purpose=batch) -> file object
    GET  /v1/files/{id}/content         the file's bytes
    POST /v1/batches                    {input_file_id, endpoint, completion_window, metadata}
    GET  /v1/batches/{id}               the batch; each poll moves it one step:
                                        validating -> in_progress -> ... -> completed
    GET  /v1/batches                    list (newest first)

Each request line is answered by the server's `handler`, exactly as an online call would be;
200s go to the output file, other statuses to the error file. `polls_to_finish` sets how many
polls a batch stays in progress; `hold = True` keeps every batch in progress until released;
`expire_next = True` makes the next batch end `expired` with no output.
"""

from __future__ import annotations

import json
import time
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import pytest
from llm_server import Received, Response, ScriptedServer, error


class BatchServer(ScriptedServer):
    def __init__(self, *args: Any, polls_to_finish: int = 2, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls_to_finish = polls_to_finish
        self.hold = False
        self.expire_next = False
        self.lines_answered = 0

    # -- what tests check ---------------------------------------------------------------------

    def created(self) -> int:
        """How many batches were created (each one is paid for)."""
        return len(self.batches)

    def uploaded_lines(self) -> list[dict[str, Any]]:
        return [
            json.loads(line) for f in self.files.values() if f["purpose"] == "batch" for line in f["data"].splitlines()
        ]

    # -- routes --------------------------------------------------------------------------------

    def _respond(self, received: Received) -> Response:
        path = received.path.split("?", 1)[0]
        if path.startswith(("/v1/files", "/v1/batches")):
            try:
                return self._batch_route(received.method, path, received)
            except Exception as exc:  # noqa: BLE001  (a broken route must be visible, not a hang)
                self.handler_errors.append(repr(exc))
                return error(500, f"batch server raised {exc!r}")
        return super()._respond(received)

    def _batch_route(self, method: str, path: str, received: Received) -> Response:
        parts = path.strip("/").split("/")  # v1, files|batches, id?, content?
        if parts[1] == "files" and method == "POST":
            return self._upload(received)
        if parts[1] == "files" and len(parts) == 4 and parts[3] == "content":
            stored = self.files.get(parts[2])
            return Response(body=stored["data"]) if stored else error(404, "no such file")
        if parts[1] == "batches" and method == "POST" and len(parts) == 2:
            return self._create(json.loads(received.raw))
        if parts[1] == "batches" and method == "GET" and len(parts) == 2:
            data = sorted(self.batches.values(), key=lambda b: b["created_at"], reverse=True)
            return Response(
                body={
                    "object": "list",
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                }
            )
        if parts[1] == "batches" and method == "GET" and len(parts) == 3:
            batch = self.batches.get(parts[2])
            return Response(body=self._advance(batch)) if batch else error(404, "no such batch")
        return error(404, f"no route {method} {path}")

    def _upload(self, received: Received) -> Response:
        head = f"Content-Type: {received.headers['content-type']}\r\n\r\n".encode()
        message = BytesParser(policy=default_policy).parsebytes(head + received.raw)
        fields: dict[str, Any] = {}
        filename = "upload"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = part.get_payload(decode=True)
            if name == "file":
                filename = part.get_filename() or filename
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = {"data": fields["file"], "purpose": fields["purpose"].decode(), "filename": filename}
        return Response(body=self._file_object(file_id))

    def _file_object(self, file_id: str) -> dict[str, Any]:
        stored = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(stored["data"]),
            "created_at": int(time.time()),
            "filename": stored["filename"],
            "purpose": stored["purpose"],
            "status": "processed",
        }

    def _create(self, body: dict[str, Any]) -> Response:
        if body.get("input_file_id") not in self.files:
            return error(400, "input file not found")
        lines = self.files[body["input_file_id"]]["data"].splitlines()
        batch_id = f"batch_{len(self.batches) + 1}"
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": time.time(),
            "metadata": body.get("metadata"),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "_polls": 0,
            "_expire": self.expire_next,
        }
        self.expire_next = False
        return Response(body=_public(self.batches[batch_id]))

    def _advance(self, batch: dict[str, Any]) -> dict[str, Any]:
        if batch["status"] in ("completed", "expired", "failed", "cancelled") or self.hold:
            return _public(batch)
        batch["_polls"] += 1
        if batch["_polls"] < self.polls_to_finish:
            batch["status"] = "in_progress"
        elif batch["_expire"]:
            batch["status"] = "expired"
        else:
            self._run(batch)
            batch["status"] = "completed"
        return _public(batch)

    def _run(self, batch: dict[str, Any]) -> None:
        output, errors = [], []
        for raw in self.files[batch["input_file_id"]]["data"].splitlines():
            line = json.loads(raw)
            body = line["body"]
            with self._lock:
                self._seen[json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)] += 1
            received = Received("POST", line["url"], {}, json.dumps(body).encode(), body, 1, time.time())
            response = self.handler(received)
            self.lines_answered += 1
            result = {
                "id": f"batch_req_{self.lines_answered}",
                "custom_id": line["custom_id"],
                "response": {"status_code": response.status, "request_id": "r", "body": response.body},
                "error": None,
            }
            (output if response.status == 200 else errors).append(json.dumps(result))
        counts = batch["request_counts"]
        counts["completed"], counts["failed"] = len(output), len(errors)
        for name, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = {
                    "data": ("\n".join(lines) + "\n").encode(),
                    "purpose": "batch_output",
                    "filename": f"{batch['id']}_{name}.jsonl",
                }
                batch[name] = file_id


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")} | {"created_at": int(batch["created_at"])}


@pytest.fixture
def batch_server():
    """A running BatchServer with the default boxed-A script; set `.handler` to rescript."""
    with BatchServer() as server:
        yield server
