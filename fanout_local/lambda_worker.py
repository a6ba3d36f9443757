"""One Lambda function's container, as a child process: its own environment, its own cold start.

The parent sends invocations over a pipe and gets back the handler's result or its error; stdout and
stderr (Powertools' JSON log lines) go to the function's log file. Killing the process is a crash.

Lambda's limits hold here too: an invocation past the function's timeout is stopped, and a container
whose memory (resident set) grows past the function's MemorySize is killed mid-invocation, as Lambda
kills it ("Runtime exited ... out of memory"). Each worker keeps the peak it reached.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about one function, resolved for this machine."""

    logical_id: str
    name: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]
    arn: str = ""  # the function's ARN in the local stack's region and account
    layer_dirs: tuple[Path, ...] = ()  # its layers' python/ folders (Lambda's /opt/python)

    @property
    def function_arn(self) -> str:
        return self.arn or f"arn:aws:lambda:eu-west-1:123456789012:function:{self.name}"


class _Context:
    """The parts of Lambda's context object Powertools reads."""

    def __init__(self, spec: FunctionSpec, deadline: float) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.function_arn
        self.memory_limit_in_mb = spec.memory
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = "local"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _load_handler(spec: FunctionSpec) -> Any:
    module_name, _, attr = spec.handler.rpartition(".")
    path = spec.code_dir / f"{module_name}.py"
    module_spec = importlib.util.spec_from_file_location(f"lambda_{spec.logical_id}_{module_name}", path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, attr)


def _serve(spec: FunctionSpec, conn: Connection, log_path: str) -> None:
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    sys.stdout = log
    sys.stderr = log
    try:
        os.environ.clear()  # a function sees Lambda's environment and its own, nothing of the parent's
        os.environ.update(spec.environment)
        # Lambda's order: the function's code (/var/task) first, then its layers (/opt/python).
        sys.path[0:0] = [str(spec.code_dir), *(str(d) for d in spec.layer_dirs)]
        handler = _load_handler(spec)
        conn.send(("ready", None))
    except Exception as exc:  # a broken cold start is reported, as Lambda's Init error would be
        conn.send(("init_error", f"{type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            event = conn.recv()
        except EOFError:
            return
        context = _Context(spec, time.time() + spec.timeout)
        try:
            result = handler(event, context)
            conn.send(("ok", result))
        except Exception as exc:
            traceback.print_exc()
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


MEMORY_POLL_SECONDS = 0.05  # how often a running invocation's memory is looked at

# Lambda stops a function at its timeout; the grace only covers the pipe's round trip. A larger one would
# let a handler that overruns its timeout succeed here and fail on AWS.
TIMEOUT_GRACE_SECONDS = 0.5


class FunctionError(RuntimeError):
    """The invocation failed: the handler raised, timed out, or its process died."""


class Worker:
    """A warm container for one function; restarted after a crash or a timeout."""

    def __init__(self, spec: FunctionSpec, log_dir: Path) -> None:
        self.spec = spec
        self._log = log_dir / f"{spec.logical_id}.log"
        self._pid_status: Path | None = None
        self.peak_mb = (
            0  # the most memory this worker's containers held (VmHWM), as Lambda's "Max Memory Used"
        )
        self.out_of_memory = 0  # invocations killed for passing MemorySize
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_serve, args=(self.spec, child, str(self._log)), daemon=True)
        process.start()
        child.close()
        self._pid_status = Path(f"/proc/{process.pid}/status")
        if not parent.poll(60):
            process.kill()
            raise FunctionError(f"{self.spec.logical_id}: cold start took over 60 s")
        status, detail = parent.recv()
        if status != "ready":
            process.kill()
            raise FunctionError(f"{self.spec.logical_id}: init failed: {detail}")
        self._process, self._conn = process, parent
        return parent

    def invoke(self, event: dict[str, Any]) -> Any:
        """Run the handler on `event`; FunctionError when it raises, times out, runs out of memory or
        dies."""
        conn = self._conn if self._conn is not None and self.alive else self._start()
        conn.send(event)
        deadline = time.monotonic() + self.spec.timeout + TIMEOUT_GRACE_SECONDS
        while not conn.poll(min(MEMORY_POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
            used = self._resident_mb()
            self.peak_mb = max(self.peak_mb, used)
            if used > self.spec.memory:
                self.kill()
                self.out_of_memory += 1
                raise FunctionError(
                    f"{self.spec.logical_id}: Runtime exited: out of memory "
                    f"({used} MB used of the function's {self.spec.memory} MB)"
                )
            if time.monotonic() >= deadline:
                self.kill()
                raise FunctionError(f"{self.spec.logical_id}: timed out after {self.spec.timeout} s")
        self.peak_mb = max(self.peak_mb, self._peak_resident_mb())
        try:
            status, detail = conn.recv()
        except (EOFError, ConnectionError) as exc:
            self.kill()
            raise FunctionError(f"{self.spec.logical_id}: process died mid-invocation") from exc
        if status != "ok":
            raise FunctionError(f"{self.spec.logical_id}: {detail}")
        return detail

    def _status_mb(self, field: str) -> int:
        """A memory figure of the container's process from /proc (kB there), in MB; 0 once it is gone."""
        try:
            text = self._pid_status.read_text() if self._pid_status else ""
        except OSError:
            return 0
        for line in text.splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
        return 0

    def _resident_mb(self) -> int:
        return self._status_mb("VmRSS")

    def _peak_resident_mb(self) -> int:
        return self._status_mb("VmHWM")

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        self._process, self._conn = None, None
