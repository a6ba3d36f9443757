"""A created stack, read back through AWS APIs only (CloudFormation, Lambda, SQS), as an operator or
Lambda's own pollers see it: physical ids, outputs, each function's configuration (environment,
timeout, memory, role, layers), its SQS event source mappings and its asynchronous-invocation config.

Nothing here reads template.yaml: what the event runner and the workers do follows from what
CloudFormation created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class DeployedFunction:
    """One Lambda function as `GetFunctionConfiguration` describes it."""

    logical_id: str
    name: str
    arn: str
    role_arn: str
    handler: str
    runtime: str
    timeout: int
    memory: int
    environment: dict[str, str]
    layer_arns: tuple[str, ...]


@dataclass(frozen=True)
class SqsEventSource:
    """One SQS event source mapping as `ListEventSourceMappings` describes it."""

    function_logical_id: str
    queue_arn: str
    queue_url: str
    batch_size: int
    partial_batch: bool  # FunctionResponseTypes has ReportBatchItemFailures
    max_concurrency: int  # ScalingConfig.MaximumConcurrency (Lambda's default minimum of 2 when unset)
    enabled: bool


@dataclass(frozen=True)
class AsyncInvokeConfig:
    """A function's EventInvokeConfig: retries of a failed asynchronous event and where it goes then."""

    maximum_retry_attempts: int = 2  # Lambda's defaults when no config exists
    maximum_event_age_seconds: int = 21600
    on_failure_arn: str | None = None


LAMBDA_DEFAULT_SQS_CONCURRENCY = 2  # the lowest MaximumConcurrency Lambda allows; used when none is set


class DeployedStack:
    """What one CloudFormation stack created; `client(service)` reaches the AWS it lives in."""

    def __init__(self, client: Any, stack_name: str) -> None:
        self.client = client
        self.stack_name = stack_name
        cloudformation = client("cloudformation")
        described = cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
        # moto lists the resource types its CloudFormation skips without ids: not_emulated covers them.
        self.physical: dict[str, str] = {
            r["LogicalResourceId"]: r["PhysicalResourceId"] for r in described if r.get("PhysicalResourceId")
        }
        self.types: dict[str, str] = {
            r["LogicalResourceId"]: r["ResourceType"] for r in described if r.get("PhysicalResourceId")
        }
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        self.parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
        self.functions = {
            logical: self._function(logical)
            for logical, kind in self.types.items()
            if kind == "AWS::Lambda::Function"
        }
        self.event_sources = self._event_sources()

    @property
    def bucket(self) -> str:
        """The inbox bucket's name (the stack's BucketName output)."""
        return self._outputs["BucketName"]

    def of_type(self, kind: str) -> dict[str, str]:
        """Logical id → physical id of every created resource of `kind`."""
        return {logical: self.physical[logical] for logical, k in self.types.items() if k == kind}

    def outputs(self) -> dict[str, str]:
        """The stack's outputs, as `aws cloudformation describe-stacks` lists them."""
        return dict(self._outputs)

    def environment(self, logical_id: str) -> dict[str, str]:
        """A function's environment variables as Lambda hands them to the function."""
        return dict(self.functions[logical_id].environment)

    def queue_url(self, logical_id: str) -> str:
        return self.physical[logical_id]

    def queue_arn(self, logical_id: str) -> str:
        answer = self.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url(logical_id), AttributeNames=["QueueArn"]
        )
        return str(answer["Attributes"]["QueueArn"])

    def queue_url_of_arn(self, arn: str) -> str:
        name = arn.rsplit(":", 1)[1]
        return str(self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])

    def async_config(self, logical_id: str) -> AsyncInvokeConfig:
        try:
            config = self.client("lambda").get_function_event_invoke_config(
                FunctionName=self.functions[logical_id].name
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return AsyncInvokeConfig()
            raise
        on_failure = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        return AsyncInvokeConfig(
            maximum_retry_attempts=int(config.get("MaximumRetryAttempts", 2)),
            maximum_event_age_seconds=int(config.get("MaximumEventAgeInSeconds", 21600)),
            on_failure_arn=on_failure or None,
        )

    def _function(self, logical_id: str) -> DeployedFunction:
        config = self.client("lambda").get_function_configuration(FunctionName=self.physical[logical_id])
        return DeployedFunction(
            logical_id=logical_id,
            name=config["FunctionName"],
            arn=config["FunctionArn"],
            role_arn=config["Role"],
            handler=config["Handler"],
            runtime=config.get("Runtime", ""),
            timeout=int(config["Timeout"]),
            memory=int(config["MemorySize"]),
            # Lambda hands a function every variable as a string (moto keeps a Number parameter's int).
            environment={k: str(v) for k, v in config.get("Environment", {}).get("Variables", {}).items()},
            layer_arns=tuple(layer["Arn"] for layer in config.get("Layers", [])),
        )

    def _event_sources(self) -> list[SqsEventSource]:
        by_arn = {f.arn: f.logical_id for f in self.functions.values()}
        sources = []
        paginator = self.client("lambda").get_paginator("list_event_source_mappings")
        for page in paginator.paginate():
            for mapping in page["EventSourceMappings"]:
                logical = by_arn.get(mapping["FunctionArn"])
                arn = mapping.get("EventSourceArn", "")
                if logical is None or ":sqs:" not in arn:
                    continue
                scaling = mapping.get("ScalingConfig") or {}
                sources.append(
                    SqsEventSource(
                        function_logical_id=logical,
                        queue_arn=arn,
                        queue_url=self.queue_url_of_arn(arn),
                        batch_size=int(mapping.get("BatchSize") or 10),
                        partial_batch="ReportBatchItemFailures"
                        in (mapping.get("FunctionResponseTypes") or []),
                        max_concurrency=int(
                            scaling.get("MaximumConcurrency") or LAMBDA_DEFAULT_SQS_CONCURRENCY
                        ),
                        enabled=mapping.get("State", "Enabled") in ("Enabled", "Enabling", "Creating"),
                    )
                )
        return sources
