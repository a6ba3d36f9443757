"""The local stack with every Lambda function measured from inside (bench/shim/lambda_wrapper.py).

Each function keeps its template configuration; only its code entry point becomes the shim, which loads
the real `app.py`. After a run, `invocations()` reads what every function did: one record per invocation
with its duration, its AWS calls and its provider calls.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.counting import CallCounter
from bench.shim import PROFILE_DIR, REAL_CODE_DIR, REAL_HANDLER, SHIM_DIR, SHIM_HANDLER, USAGE_DIR
from fanout_local.lambda_worker import FunctionSpec
from fanout_local.stack import LocalStack, StackSettings


@dataclass(slots=True)
class Invocation:
    """One measured invocation of one function."""

    function: str
    seconds: float
    error: str
    calls: dict[str, int]
    usage: dict[str, float]
    http: list[list[Any]] = field(default_factory=list)  # [unix time, status, request bytes, fault]
    started: float = 0.0  # unix time the handler was called

    @property
    def ended(self) -> float:
        return self.started + self.seconds


class MeasuredStack(LocalStack):
    """`LocalStack` whose functions run inside the measuring shim; records go under `usage_dir`.

    With `functions`, only those functions run (and only their event sources are polled): the local
    event runner polls every idle queue five times a second, a cost of the local stack alone (on AWS an
    idle event source mapping costs the functions nothing) that would otherwise eat into the figures.
    """

    def __init__(
        self,
        settings: StackSettings,
        usage_dir: Path,
        profile_dir: Path | None = None,
        functions: frozenset[str] | None = None,
    ) -> None:
        super().__init__(settings)
        self.profile_dir = profile_dir
        self.functions = functions
        shutil.rmtree(usage_dir, ignore_errors=True)
        usage_dir.mkdir(parents=True)
        self.usage_dir = usage_dir

    def __enter__(self) -> MeasuredStack:
        self.start()
        return self

    def function_specs(self) -> dict[str, FunctionSpec]:
        """The stack's functions, each loaded through the shim."""
        return {
            logical: self._measured(spec)
            for logical, spec in super().function_specs().items()
            if self.functions is None or logical in self.functions
        }

    def _measured(self, spec: FunctionSpec) -> FunctionSpec:
        environment = {
            **spec.environment,
            REAL_CODE_DIR: str(spec.code_dir),
            REAL_HANDLER: spec.handler,
            USAGE_DIR: str(self.usage_dir),
        }
        if self.profile_dir is not None:
            environment[PROFILE_DIR] = str(self.profile_dir)
        return replace(spec, code_dir=SHIM_DIR, handler=SHIM_HANDLER, environment=environment)

    def memory_mb(self) -> dict[str, int]:
        """Configured memory per function name, from the template."""
        return {spec.name: spec.memory for spec in super().function_specs().values()}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) each live process of the stack has used so far: moto, the
        emulators, every function worker, and this process (the event runner's threads run here)."""
        found: dict[str, float] = {"runner (this process)": sum(os.times()[:2])}
        named = zip(("moto", "emulators"), self._processes, strict=False)
        for name, process in named:
            found[name] = process_cpu_seconds(process.pid)
        for logical, workers in self.workers.items():
            for number, worker in enumerate(workers):
                if worker.pid is not None:
                    found[f"{logical} #{number + 1}"] = process_cpu_seconds(worker.pid)
        return found

    def invocations(self) -> list[Invocation]:
        """Every invocation recorded so far, in no particular order."""
        found = []
        for path in sorted(self.usage_dir.glob("*.jsonl")):
            function = path.stem.rsplit("-", 1)[0]
            for line in path.read_text().splitlines():
                record = json.loads(line)
                found.append(
                    Invocation(
                        function,
                        record["seconds"],
                        record["error"],
                        record["aws"]["calls"],
                        record["aws"]["usage"],
                        record["http"],
                        record.get("started", 0.0),
                    )
                )
        return found


# What a Mateo job uses: the splitter, Mateo's sender, and the dead-letter function behind its queue.
MATEO_FUNCTIONS = frozenset({"SplitterFunction", "MateoSenderFunction", "DeadLetterFunction"})


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc; 0.0 where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def event_source_counter(queue_urls: Mapping[str, str]) -> CallCounter:
    """Counts the SQS calls Lambda's event source mappings make for `queue_urls` (billed to the account
    on AWS too): receives that brought messages, deletes and visibility changes; idle polls are a fixed
    cost per hour, not a cost per contact, so they are left out."""
    urls = set(queue_urls.values())

    def accept(service: str, operation: str, params: Mapping[str, Any], answer: Any) -> bool:
        if service != "sqs" or params.get("QueueUrl") not in urls:
            return False
        if operation == "ReceiveMessage":
            return bool(isinstance(answer, Mapping) and answer.get("Messages"))
        return operation in ("DeleteMessageBatch", "DeleteMessage", "ChangeMessageVisibility")

    return CallCounter(only=accept)
