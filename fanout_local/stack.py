"""The embedded local stack: moto in server mode, the provider emulators, and the event runner, with
every AWS resource created from template.yaml itself.

    with LocalStack(StackSettings()) as stack:
        job_id = stack.drop(Path("examples/contacts.csv"), "mateo", "3c90c3cc-...")
        job = stack.wait(job_id)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

from fanout import ids
from fanout.store import DynamoJobStore, Job
from fanout_local.lambda_worker import FunctionSpec, Worker
from fanout_local.resources import TemplateResources
from fanout_local.runner import LAMBDA_ASYNC_RETRY_DELAYS, AsyncInvoker, SqsPoller, SqsSource
from fanout_local.template import (
    REPO,
    Resolver,
    load_template,
    resources_of_type,
)

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# The emulators' demo tokens (emulators/fixtures/default.json); the local secrets carry them.
LOCAL_SECRETS: dict[str, dict[str, str]] = {
    "mateo": {"token": "local-mateo-token"},
    "mateo-message": {"token": "local-mateo-token"},
    "symplify": {"token": "local-symplify-token", "customer_id": "demo"},
    "workshop": {"token": "local-workshop-token"},
    "altcraft": {"token": "local-altcraft-token"},
}
EMULATOR_OF = {
    "mateo": "mateo",
    "mateo-message": "mateo",
    "symplify": "symplify",
    "workshop": "workshop",
    "altcraft": "altcraft",
}


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the process that started it dies, so no server outlives a
    killed test run or CLI."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class StackSettings:
    """How to run the local stack; every field has a sensible default."""

    region: str = "eu-west-1"
    stack_name: str = "journey-fanout-local"
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    faults: str = ""  # e.g. "5xx=0.2,429=0.05,timeout=0.02,lost_response=0.02"
    seed: int | None = None
    rate_limits: dict[str, float] = field(default_factory=dict)  # emulator -> requests/s it enforces
    concurrency: int = 1  # workers per SQS event source (≤ the template's MaximumConcurrency)
    visibility_timeout: int | None = None  # override the queues' visibility timeout (fast tests)
    async_retry_delays: tuple[int, ...] = LAMBDA_ASYNC_RETRY_DELAYS  # before the splitter's event retries
    function_env: dict[str, str] = field(default_factory=dict)  # extra env for every function
    state_dir: Path | None = None  # logs and port files; a temporary folder by default


class LocalStack:
    """Starts and stops the whole local system; see the module docstring."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.state_dir = self.settings.state_dir or Path(self._make_tmp())
        self.log_dir = self.state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.template = load_template()
        self._processes: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.workers: dict[str, list[Worker]] = {}
        self.endpoint = ""
        self.emulators: dict[str, Any] = {}
        self.resolver: Resolver | None = None

    def _make_tmp(self) -> str:
        self._tmp = tempfile.TemporaryDirectory(prefix="fanout-local-")
        return self._tmp.name

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start_moto()
            self._start_emulators()
            self._create_resources()
            self._start_functions()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=3)
        for workers in self.workers.values():
            for worker in workers:
                worker.kill()
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        self._processes.clear()

    # -- AWS (moto server) -------------------------------------------------------------------------
    def aws_env(self) -> dict[str, str]:
        """What a process needs to talk to the local AWS, exactly as it would talk to AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.settings.region,
            **LOCAL_CREDENTIALS,
        }

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=self.settings.region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=30),
        )

    def _start_moto(self) -> None:
        port = free_port()
        log = open(self.log_dir / "moto.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "fanout_local.moto_server", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **LOCAL_CREDENTIALS},
            preexec_fn=_die_with_parent,
        )
        self._processes.append(process)
        _wait_for_port(port, 30)
        self.endpoint = f"http://127.0.0.1:{port}"

    # -- provider emulators -------------------------------------------------------------------------
    def _start_emulators(self) -> None:
        port_file = self.state_dir / "emulators.json"
        port_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "emulators", "--port-file", str(port_file)]
        if self.settings.faults:
            command += ["--faults", self.settings.faults]
        if self.settings.seed is not None:
            command += ["--seed", str(self.settings.seed)]
        for name, rate in self.settings.rate_limits.items():
            command += ["--rate-limit", f"{name}={rate:g}"]
        log = open(self.log_dir / "emulators.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=_die_with_parent
        )
        self._processes.append(process)
        deadline = time.time() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"the emulators did not start; see {self.log_dir / 'emulators.log'}")
            time.sleep(0.05)
        self.emulators = json.loads(port_file.read_text())

    def emulator_admin(self, name: str) -> str:
        return str(self.emulators["admin"][name])

    def received(self, destination: str) -> dict[str, Any]:
        """What the destination's emulator accepted: per target, each contact and how often."""
        emulator = EMULATOR_OF[destination]
        answer = httpx.get(f"{self.emulator_admin(emulator)}/_emulator/received", timeout=10)
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def set_faults(self, emulator: str, faults: dict[str, Any]) -> None:
        httpx.post(
            f"{self.emulator_admin(emulator)}/_emulator/faults", json=faults, timeout=10
        ).raise_for_status()

    # -- resources from template.yaml -------------------------------------------------------------------
    def _create_resources(self) -> None:
        secrets = {
            dest: {"base_url": self.emulators[EMULATOR_OF[dest]], **values}
            for dest, values in LOCAL_SECRETS.items()
        }
        self.resources = TemplateResources(
            self.client,
            self.template,
            stack_name=self.settings.stack_name,
            region=self.settings.region,
            parameters=self.settings.parameters,
            secret_values=secrets,
            visibility_timeout=self.settings.visibility_timeout,
        )
        self.resources.create()
        self.resolver = self.resources.resolver
        self.bucket = self.resources.bucket
        self.splitter_events_url = self.resources.splitter_events_url

    # -- functions and event sources ------------------------------------------------------------------
    def function_specs(self) -> dict[str, tuple[FunctionSpec, dict[str, Any]]]:
        """Each function's spec and resolved properties, environment merged from Globals."""
        assert self.resolver is not None
        resolver = self.resolver
        globals_fn = resolver.resolve(self.template.get("Globals", {}).get("Function", {}))
        specs = {}
        for logical, res in resources_of_type(self.template, "AWS::Serverless::Function").items():
            props = resolver.resolve(res["Properties"])
            env = self.resources.environment(logical)
            env.update(self.aws_env())
            env.update(
                {
                    "POWERTOOLS_TRACE_DISABLED": "true",
                    "AWS_LAMBDA_FUNCTION_NAME": f"{self.settings.stack_name}-{logical}",
                    "PYTHONPATH": str(REPO / "layers" / "fanout"),
                }
            )
            env.update(self.settings.function_env)
            spec = FunctionSpec(
                logical_id=logical,
                name=f"{self.settings.stack_name}-{logical}",
                code_dir=REPO / props["CodeUri"],
                handler=props.get("Handler", "app.handler"),
                timeout=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                memory=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
                environment=env,
                arn=resolver.attrs[(logical, "Arn")],
            )
            specs[logical] = (spec, props)
        return specs

    def _start_functions(self) -> None:
        assert self.resolver is not None
        sqs = self.client("sqs")
        arn_to_url = {
            self.resolver.attrs[(q, "Arn")]: self.resolver.refs[q]
            for q in resources_of_type(self.template, "AWS::SQS::Queue")
        }
        for logical, (spec, props) in self.function_specs().items():
            sources = [e["Properties"] for e in props.get("Events", {}).values() if e.get("Type") == "SQS"]
            if logical == "SplitterFunction":
                worker = Worker(spec, self.log_dir)
                self.workers[logical] = [worker]
                invoke_config = props.get("EventInvokeConfig", {})
                on_failure = (
                    invoke_config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
                )
                thread: threading.Thread = AsyncInvoker(
                    sqs,
                    self.splitter_events_url,
                    worker,
                    int(invoke_config.get("MaximumRetryAttempts", 2)),
                    arn_to_url.get(on_failure) if on_failure else None,
                    self._stop,
                    self.settings.async_retry_delays,
                )
                self._threads.append(thread)
                continue
            for source in sources:
                limit = int(source.get("ScalingConfig", {}).get("MaximumConcurrency", 2))
                mapping = SqsSource(
                    queue_url=arn_to_url[source["Queue"]],
                    queue_arn=source["Queue"],
                    batch_size=int(source.get("BatchSize", 10)),
                    partial_batch="ReportBatchItemFailures" in source.get("FunctionResponseTypes", []),
                    region=self.settings.region,
                )
                for _ in range(min(limit, self.settings.concurrency)):
                    worker = Worker(spec, self.log_dir)
                    self.workers.setdefault(logical, []).append(worker)
                    self._threads.append(SqsPoller(self.client("sqs"), mapping, worker, self._stop))
        for thread in self._threads:
            thread.start()

    # -- using it ----------------------------------------------------------------------------------------
    def store(self) -> DynamoJobStore:
        """The job store of this stack, through this stack's own client."""
        assert self.resolver is not None
        return DynamoJobStore(self.resolver.refs["JobsTable"], db=self.client("dynamodb"))

    def drop(
        self,
        path: Path,
        destination: str,
        target: str,
        options: dict[str, str] | None = None,
        name: str | None = None,
    ) -> str:
        """Upload `path` under inbox/<destination>/<target>/ and return the job id it starts."""
        key = f"inbox/{destination}/{target}/{name or path.name}"
        answer = self.client("s3").put_object(
            Bucket=self.bucket, Key=key, Body=path.read_bytes(), Metadata=options or {}
        )
        return ids.job_id(self.bucket, key, answer.get("VersionId") or answer["ETag"].strip('"'))

    def wait(self, job_id: str, timeout: float = 300) -> Job:
        """Wait until the job is final; TimeoutError with its last state otherwise."""
        store = self.store()
        deadline = time.time() + timeout
        job = None
        while time.time() < deadline:
            job = store.get_job(job_id)
            if job is not None and job.status.is_final:
                return job
            time.sleep(0.2)
        raise TimeoutError(
            f"job {job_id} did not settle in {timeout} s; last seen: {job.summary() if job else 'not started'}"
        )
