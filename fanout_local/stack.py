"""The embedded local stack: moto in server mode, the provider emulators, and the event runner, with
template.yaml deployed into the local AWS as `sam deploy` deploys it into AWS (`fanout_local.deploy`):
SAM's translator, CloudFormation's CreateStack, IAM enforced, each function under its own role.

    with LocalStack(StackSettings()) as stack:
        job_id = stack.drop(Path("examples/contacts.csv"), "mateo", "3c90c3cc-...")
        job = stack.wait(job_id)
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config

from fanout import ids
from fanout.store import DynamoJobStore, Job
from fanout_local import deploy, not_emulated
from fanout_local.aws_faults import parse_fault_rates
from fanout_local.deployed import DeployedFunction, DeployedStack
from fanout_local.lambda_worker import FunctionSpec, Worker
from fanout_local.moto_server import async_queue_name
from fanout_local.runner import (
    LAMBDA_ASYNC_RETRY_DELAYS,
    POLL_WAIT_SECONDS,
    AsyncInvoker,
    SqsPoller,
    SqsSource,
)

REPO = deploy.REPO
ACCOUNT = "123456789012"
# Before IAM is enforced, moto accepts any keys: these create the deployer, whose keys sign every call
# after (the operator's, the CLI's, the event runner's: Lambda's own service).
BOOTSTRAP_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bootstrap", "AWS_SECRET_ACCESS_KEY": "bootstrap"}
DEPLOYER = "journey-fanout-deployer"
UNLIMITED_DAILY_QUOTAS = {"DAILY_REQUEST_QUOTA": "0", "DAILY_CONTACT_QUOTA": "0"}  # 0: no daily quota
STOP_GRACE_SECONDS = 3.0  # how long a stopping stack lets its pollers finish the batches they handle
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

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
    # The senders plan for Mateo's documented daily quotas as on AWS only when the emulators enforce them
    # (`--documented-limits`); by default the local stack, like its emulators, runs unthrottled.
    provider_quotas: bool = False
    state_dir: Path | None = None  # logs, port files, deployed code; a temporary folder by default
    iam: bool = True  # enforce IAM: each function may do only what its execution role allows
    aws_faults: str = ""  # e.g. "dynamodb=0.1,s3=0.05,sqs=0.05": AWS's own errors for that share of calls
    aws_seed: int | None = None  # which calls fail (defaults to `seed`)
    template: Path | None = None  # another template (a test's mutated copy); template.yaml by default
    # Function timeouts changed after the deploy, as an operator would (UpdateFunctionConfiguration):
    # logical id -> seconds. A short splitter timeout makes a small file need what a huge one needs.
    function_timeouts: dict[str, int] = field(default_factory=dict)


def _layer_logical_id(template: dict[str, Any]) -> str:
    (logical,) = (
        name
        for name, res in template["Resources"].items()
        if res.get("Type") == "AWS::Serverless::LayerVersion"
    )
    return logical


class LocalStack:
    """Starts and stops the whole local system; see the module docstring."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.state_dir = self.settings.state_dir or Path(self._make_tmp())
        self.log_dir = self.state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.template = deploy.load_template(
            self.settings.template or deploy.TEMPLATE, self.settings.parameters
        )
        self._processes: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.workers: dict[str, list[Worker]] = {}
        self.endpoint = ""
        self.emulators: dict[str, Any] = {}
        self._credentials = dict(BOOTSTRAP_CREDENTIALS)
        self._function_credentials: dict[str, dict[str, str]] = {}
        self.deployed: DeployedStack | None = None
        self.bucket = ""
        self.splitter_events_url = ""
        self._unpacked: set[str] = set()  # deployment packages unpacked by this run

    @property
    def _artifacts_bucket(self) -> str:
        return f"{self.settings.stack_name}-artifacts"

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
            self._deploy()
            self._start_functions()
            self.set_aws_faults(self.settings.aws_faults, self.settings.aws_seed)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._stop.set()
        # A poller handling a batch finishes it (3 s in all); one waiting in a long poll has nothing in
        # flight and ends once moto stops, below (its poll client does not retry).
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for thread in self._threads:
            while thread.is_alive() and not getattr(thread, "waiting", False) and time.monotonic() < deadline:
                thread.join(0.05)
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
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline + STOP_GRACE_SECONDS - time.monotonic()))

    # -- AWS (moto server) -------------------------------------------------------------------------
    def aws_env(self) -> dict[str, str]:
        """What a process needs to talk to the local AWS as the deployer (an operator), exactly as it
        would talk to AWS."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.settings.region,
            "AWS_ACCESS_KEY_ID": self._credentials["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": self._credentials["AWS_SECRET_ACCESS_KEY"],
        }

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id=self._credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self._credentials["AWS_SECRET_ACCESS_KEY"],
            region_name=self.settings.region,
        )

    def client(self, service: str) -> Any:
        """A client of the local AWS with the deployer's (an operator's) rights."""
        return self.session().client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=30),
        )

    def _poll_client(self) -> Any:
        """The pollers' client for their long polls: one attempt a call (a poller polls again by itself),
        and a read timeout past the longest poll."""
        return self.session().client(
            "sqs",
            endpoint_url=self.endpoint,
            config=Config(
                retries={"total_max_attempts": 1},
                read_timeout=POLL_WAIT_SECONDS + 10,
                max_pool_connections=50,
            ),
        )

    def _start_moto(self) -> None:
        port = free_port()
        log = open(self.log_dir / "moto.log", "ab")  # noqa: SIM115 - closed with the process
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "fanout_local.moto_server", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            # AWS's managed policies (AWSLambdaBasicExecutionRole, AWSLambdaSQSQueueExecutionRole, ...)
            # exist in moto only when loaded; the roles SAM makes attach them and IAM evaluates them.
            env={**env, **BOOTSTRAP_CREDENTIALS, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
            preexec_fn=_die_with_parent,
        )
        self._processes.append(process)
        _wait_for_port(port, 30)
        self.endpoint = f"http://127.0.0.1:{port}"

    def aws_stats(self) -> dict[str, Any]:
        """What the local AWS counted: IAM enforced or not, calls it denied, faults it injected."""
        answer = httpx.get(f"{self.endpoint}/_fanout/stats", timeout=10)
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
        return stats

    def peak_memory(self) -> dict[str, dict[str, int]]:
        """Per function: the most memory any of its containers held, its MemorySize, and how many
        invocations were killed for passing it."""
        report: dict[str, dict[str, int]] = {}
        for logical, workers in self.workers.items():
            report[logical] = {
                "peak_mb": max((w.peak_mb for w in workers), default=0),
                "limit_mb": workers[0].spec.memory if workers else 0,
                "killed_out_of_memory": sum(w.out_of_memory for w in workers),
            }
        return report

    def aws_report(self) -> dict[str, Any]:
        """The summary's `aws` object: IAM enforced, calls denied, faults injected, memory per function."""
        stats = self.aws_stats()
        return {
            "iam_enforced": stats["iam_enforced"],
            "access_denied": stats["access_denied"],
            "access_denied_by_action": stats["access_denied_by_action"],
            "faults_injected": stats["faults_injected"],
            "memory": self.peak_memory(),
        }

    def set_aws_faults(self, spec: str, seed: int | None = None) -> None:
        """Answer a share of the functions' AWS calls with AWS's own errors ("dynamodb=0.1,s3=0.05")."""
        rates = parse_fault_rates(spec)
        seed = seed if seed is not None else self.settings.seed
        httpx.post(
            f"{self.endpoint}/_fanout/faults", json={"rates": rates, "seed": seed}, timeout=10
        ).raise_for_status()

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

    # -- deploying template.yaml ----------------------------------------------------------------------
    def _deploy(self) -> None:
        self._create_deployer()
        deploy.deploy(
            self.session(),
            self.settings.stack_name,
            self.settings.parameters,
            artifacts_bucket=self._artifacts_bucket,
            template=self.template,
            endpoint_url=self.endpoint,
        )
        self.deployed = deployed = DeployedStack(self.client, self.settings.stack_name)
        if self.settings.function_timeouts:
            self._update_timeouts(self.settings.function_timeouts)
            self.deployed = deployed = DeployedStack(self.client, self.settings.stack_name)
        secrets = {
            dest: {"base_url": self.emulators[EMULATOR_OF[dest]], **values}
            for dest, values in LOCAL_SECRETS.items()
        }
        not_emulated.put_local_secrets(deployed, secrets)
        self.bucket = deployed.outputs()["BucketName"]
        if self.settings.visibility_timeout is not None:
            self._shorten_visibility(self.settings.visibility_timeout)
        # Lambda assumes each execution role for its function: only the Lambda service may (the roles'
        # trust policy), and the local Lambda service is this stack, so it does so before IAM applies.
        self._function_credentials = {
            logical: self._role_credentials(function) for logical, function in deployed.functions.items()
        }
        if self.settings.iam:
            httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=b"0", timeout=10).raise_for_status()

    def _create_deployer(self) -> None:
        """An IAM user allowed everything, created while moto still accepts any keys; its keys sign
        every call that is not a function's (the operator's, and Lambda's own pollers')."""
        iam = self.client("iam")
        iam.create_user(UserName=DEPLOYER)
        iam.put_user_policy(UserName=DEPLOYER, PolicyName="deploy", PolicyDocument=json.dumps(ADMIN_POLICY))
        key = iam.create_access_key(UserName=DEPLOYER)["AccessKey"]
        self._credentials = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }

    def _update_timeouts(self, timeouts: dict[str, int]) -> None:
        assert self.deployed is not None
        awslambda = self.client("lambda")
        for logical, seconds in timeouts.items():
            awslambda.update_function_configuration(
                FunctionName=self.deployed.physical[logical], Timeout=seconds
            )

    def _shorten_visibility(self, seconds: int) -> None:
        """Fast tests: every queue's visibility timeout set to `seconds` after the deploy, as an operator
        would with SetQueueAttributes."""
        assert self.deployed is not None
        sqs = self.client("sqs")
        for url in self.deployed.of_type("AWS::SQS::Queue").values():
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(seconds)})

    def outputs(self) -> dict[str, str]:
        assert self.deployed is not None
        return self.deployed.outputs()

    def physical(self, logical_id: str) -> str:
        """The physical id (queue URL, table name, function name ...) CloudFormation gave a resource."""
        assert self.deployed is not None
        return self.deployed.physical[logical_id]

    # -- functions and event sources ------------------------------------------------------------------
    def _code_dir(self, logical_id: str, prefix: str = "") -> Path:
        """The function's (or layer's) deployment package as CloudFormation got it, unpacked once per run:
        a folder an earlier run left in the same state folder (the benchmarks keep theirs) holds that
        run's code, and is replaced."""
        target = self.state_dir / "code" / logical_id
        if logical_id not in self._unpacked:
            shutil.rmtree(target, ignore_errors=True)
            body = (
                self.client("s3")
                .get_object(
                    Bucket=self._artifacts_bucket,
                    Key=f"artifacts/{logical_id}.zip",
                )["Body"]
                .read()
            )
            target.mkdir(parents=True)
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                archive.extractall(target)
            self._unpacked.add(logical_id)
        return target / prefix if prefix else target

    def _role_credentials(self, function: DeployedFunction) -> dict[str, str]:
        """What Lambda gives a function: temporary credentials of its execution role."""
        answer = self.client("sts").assume_role(
            RoleArn=function.role_arn, RoleSessionName=function.name[:64]
        )["Credentials"]
        return {
            "AWS_ACCESS_KEY_ID": answer["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": answer["SecretAccessKey"],
            "AWS_SESSION_TOKEN": answer["SessionToken"],
        }

    def function_specs(self) -> dict[str, FunctionSpec]:
        """Each deployed function as its worker runs it: configuration from Lambda's API, code from
        its deployment package, credentials of its own role."""
        assert self.deployed is not None
        layer_dir = self._code_dir(_layer_logical_id(self.template), deploy.LAYER_PREFIX)
        specs = {}
        for logical, function in self.deployed.functions.items():
            env = dict(function.environment)
            env.update(
                {
                    "AWS_ENDPOINT_URL": self.endpoint,
                    "AWS_REGION": self.settings.region,
                    "AWS_DEFAULT_REGION": self.settings.region,
                    "AWS_LAMBDA_FUNCTION_NAME": function.name,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
                    "POWERTOOLS_TRACE_DISABLED": "true",
                    "LAMBDA_TASK_ROOT": str(self._code_dir(logical)),
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "LANG": "en_US.UTF-8",
                    "TZ": ":UTC",
                    **self._function_credentials[logical],
                }
            )
            if not self.settings.provider_quotas:
                env.update(UNLIMITED_DAILY_QUOTAS)
            env.update(self.settings.function_env)
            specs[logical] = FunctionSpec(
                logical_id=logical,
                name=function.name,
                code_dir=self._code_dir(logical),
                handler=function.handler,
                timeout=function.timeout,
                memory=function.memory,
                environment=env,
                arn=function.arn,
                layer_dirs=(layer_dir,),
            )
        return specs

    def _start_functions(self) -> None:
        assert self.deployed is not None
        deployed = self.deployed
        specs = self.function_specs()
        poll_sqs = self._poll_client()
        for logical, spec in specs.items():
            config = deployed.async_config(logical)
            if logical not in self._async_targets():
                continue
            sqs = self.client("sqs")
            url = sqs.create_queue(QueueName=async_queue_name(spec.name))["QueueUrl"]
            if logical == "SplitterFunction":
                self.splitter_events_url = url
            worker = Worker(spec, self.log_dir)
            self.workers.setdefault(logical, []).append(worker)
            on_failure = deployed.queue_url_of_arn(config.on_failure_arn) if config.on_failure_arn else None
            self._threads.append(
                AsyncInvoker(
                    sqs,
                    url,
                    worker,
                    config.maximum_retry_attempts,
                    on_failure,
                    self._stop,
                    self.settings.async_retry_delays,
                    poll_sqs=poll_sqs,
                )
            )
        for source in deployed.event_sources:
            source_spec = specs.get(source.function_logical_id)
            if not source.enabled or source_spec is None:
                continue
            mapping = SqsSource(
                queue_url=source.queue_url,
                queue_arn=source.queue_arn,
                batch_size=source.batch_size,
                partial_batch=source.partial_batch,
                region=self.settings.region,
            )
            for _ in range(min(source.max_concurrency, self.settings.concurrency)):
                worker = Worker(source_spec, self.log_dir)
                self.workers.setdefault(source.function_logical_id, []).append(worker)
                self._threads.append(
                    SqsPoller(self.client("sqs"), mapping, worker, self._stop, poll_sqs=poll_sqs)
                )
        for thread in self._threads:
            thread.start()

    def _async_targets(self) -> set[str]:
        """Functions something invokes asynchronously: targets of the stack's EventBridge rules, of the
        bucket's notification, and functions with an EventInvokeConfig."""
        assert self.deployed is not None
        by_arn = {f.arn: logical for logical, f in self.deployed.functions.items()}
        targets: set[str] = set()
        events = self.client("events")
        for rule in self.deployed.of_type("AWS::Events::Rule").values():
            name = rule.rsplit("/", 1)[-1].split("|")[-1]
            for target in events.list_targets_by_rule(Rule=name)["Targets"]:
                if target["Arn"] in by_arn:
                    targets.add(by_arn[target["Arn"]])
        notification = self.client("s3").get_bucket_notification_configuration(Bucket=self.bucket)
        for config in notification.get("LambdaFunctionConfigurations", []):
            if config["LambdaFunctionArn"] in by_arn:
                targets.add(by_arn[config["LambdaFunctionArn"]])
        for logical in self.deployed.functions:
            if self.deployed.async_config(logical).on_failure_arn:
                targets.add(logical)
        return targets

    # -- using it ----------------------------------------------------------------------------------------
    def store(self) -> DynamoJobStore:
        """The job store of this stack, through this stack's own client."""
        return DynamoJobStore(self.physical("JobsTable"), db=self.client("dynamodb"))

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

    def wait_for(self, condition: Any, timeout: float = 60, every: float = 0.2) -> None:
        """Until `condition()` holds; TimeoutError after `timeout` seconds."""
        deadline = time.time() + timeout
        while not condition():
            if time.time() > deadline:
                raise TimeoutError(f"not true after {timeout} s")
            time.sleep(every)

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
