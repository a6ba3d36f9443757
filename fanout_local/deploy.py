"""Deploys template.yaml into the local AWS the way `sam deploy` deploys it into AWS.

0. language extensions: `Fn::ForEach` and `Fn::FindInMap` expanded as CloudFormation's
   `AWS::LanguageExtensions` transform does (`fanout_local.sam_deploy_prep`);
1. package: each function's `CodeUri` and the layer's `ContentUri` are zipped and uploaded to an
   artifacts bucket, and the template is rewritten to point at them (what `sam package` does);
2. transform: AWS SAM's own translator (`aws-sam-translator`, the library inside the `sam` CLI and
   behind CloudFormation's `AWS::Serverless-2016-10-31` transform) turns the SAM template into plain
   CloudFormation: functions, their execution roles with the policy templates expanded, event source
   mappings, permissions, the layer version;
3. create: CloudFormation's `CreateStack` (moto's) creates it, and the stack's resources are then read
   back through AWS APIs only (`fanout_local.deployed`).

moto's CloudFormation skips a few resource types; `fanout_local.not_emulated` lists them and creates
what the flow needs of them through the services' own APIs.
"""

from __future__ import annotations

import copy
import io
import json
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from fanout_local import cfn_yaml
from fanout_local.deployed import DeployedStack
from fanout_local.sam_deploy_prep import expand_language_extensions

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "template.yaml"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
ARTIFACT_KEYS = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}
# A layer's Python packages live under python/ in its zip (Lambda puts /opt/python on sys.path).
LAYER_PREFIX = "python/"


class DeployError(RuntimeError):
    """CloudFormation did not reach CREATE_COMPLETE; the message carries the failed resources' reasons."""


def load_template(path: Path = TEMPLATE, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The SAM template as plain data, short tags (`!Ref`, `!Sub`, ...) turned into their long form and
    its language extensions (`Fn::ForEach`) expanded, as CloudFormation hands it to the SAM transform."""
    return expand_language_extensions(cfn_yaml.load_template(path), parameters)


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    """A deployment package of `folder`, as `sam package` zips it (caches and bytecode left out)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            archive.write(path, prefix + path.relative_to(folder).as_posix())
    return buffer.getvalue()


def package(template: Mapping[str, Any], s3: Any, bucket: str, root: Path = REPO) -> dict[str, Any]:
    """A copy of `template` whose code locations are S3 URIs of zips uploaded to `bucket`."""
    packaged = copy.deepcopy(dict(template))
    for logical, resource in packaged.get("Resources", {}).items():
        key_name = ARTIFACT_KEYS.get(resource.get("Type", ""))
        location = resource.get("Properties", {}).get(key_name) if key_name else None
        if not isinstance(location, str) or location.startswith("s3://"):
            continue
        prefix = LAYER_PREFIX if resource["Type"] == "AWS::Serverless::LayerVersion" else ""
        key = f"artifacts/{logical}.zip"
        s3.put_object(Bucket=bucket, Key=key, Body=zip_folder(root / location, prefix))
        resource["Properties"][key_name] = f"s3://{bucket}/{key}"
    return packaged


def transform(template: Mapping[str, Any], session: boto3.session.Session) -> dict[str, Any]:
    """SAM's own transform of `template` into CloudFormation (region and partition from `session`).

    Managed policies are named by ARN in the template, so the translator needs no policy list.
    """
    translator = Translator(None, Parser(), boto_session=session)
    transformed: dict[str, Any] = translator.translate(
        copy.deepcopy(dict(template)), parameter_values={}, get_managed_policy_map=lambda: {}
    )
    return transformed


def create_stack(
    cloudformation: Any,
    stack_name: str,
    template: Mapping[str, Any],
    parameters: Mapping[str, str],
    timeout: float = 120,
) -> None:
    """CreateStack and wait for CREATE_COMPLETE; DeployError with the failed resources otherwise."""
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()],
        Capabilities=CAPABILITIES,
    )
    deadline = time.monotonic() + timeout
    while True:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return
        if not status.endswith("IN_PROGRESS") or time.monotonic() > deadline:
            events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
            failed = [
                f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}"
                for e in events
                if e.get("ResourceStatus", "").endswith("FAILED")
            ]
            raise DeployError(f"stack {stack_name} is {status}: " + ("; ".join(failed) or "no reason given"))
        time.sleep(0.2)


def deploy(
    session: boto3.session.Session,
    stack_name: str,
    parameters: Mapping[str, str],
    artifacts_bucket: str,
    template: Mapping[str, Any] | None = None,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """package → transform → create: the whole `sam deploy`; returns the CloudFormation template used."""
    s3 = session.client("s3", endpoint_url=endpoint_url)
    region = session.region_name
    s3.create_bucket(Bucket=artifacts_bucket, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]
    packaged = package(template if template is not None else load_template(), s3, artifacts_bucket)
    cloudformation_template = transform(packaged, session)
    create_stack(
        session.client("cloudformation", endpoint_url=endpoint_url),
        stack_name,
        cloudformation_template,
        parameters,
    )
    return cloudformation_template


def deploy_stack(
    session: boto3.session.Session,
    stack_name: str,
    parameters: Mapping[str, str] | None = None,
    secret_values: Mapping[str, Mapping[str, str]] | None = None,
    endpoint_url: str | None = None,
    template: Mapping[str, Any] | None = None,
) -> DeployedStack:
    """`deploy`, then the created stack read back, with the provider secrets given local values: the
    whole stack without the event runner (benchmarks, and the unit suite on moto's in-process AWS)."""
    from fanout_local.not_emulated import put_local_secrets

    deploy(
        session,
        stack_name,
        parameters or {},
        artifacts_bucket=f"{stack_name}-artifacts",
        template=template,
        endpoint_url=endpoint_url,
    )

    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url)  # type: ignore[call-overload]

    stack = DeployedStack(client, stack_name)
    put_local_secrets(stack, secret_values or {})
    return stack
