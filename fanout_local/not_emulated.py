"""What of template.yaml the local AWS does not emulate, and what the local stack does instead: the one
place that says so.

| resource type (after SAM's transform) | locally                                                          |
| ------------------------------------- | ---------------------------------------------------------------- |
| AWS::S3::BucketPolicy                 | not enforced: moto does not evaluate resource policies, so the   |
|                                       | TLS-only rule of the inbox bucket does not apply locally         |
| AWS::SQS::QueuePolicy                 | not enforced (a resource policy): the event runner, standing in  |
|                                       | for EventBridge and Lambda, delivers dead letters itself         |
| AWS::Lambda::Permission               | created, not evaluated: the event runner invokes the functions   |
| AWS::CloudWatch::Alarm                | not created: no metrics are collected locally                    |
| AWS::CloudWatch::Dashboard            | created, shows nothing: no metrics are collected locally         |
| AWS::SecretsManager::Secret           | created by CloudFormation with the template's placeholder, then  |
|                                       | given the emulators' URLs and tokens (`put_local_secrets`), the  |
|                                       | way an operator puts the real values after the first deploy      |
| X-Ray tracing, CloudWatch Logs        | off; each function's log is a file in the stack's state folder   |

moto's CloudFormation creates everything else itself; what it got wrong, or skipped, and the local
moto server corrects is listed in `fanout_local.moto_server.cloudformation_fixed`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fanout_local.deployed import DeployedStack

NOT_EMULATED = ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::CloudWatch::Alarm")


def put_local_secrets(stack: DeployedStack, values: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Puts `values[destination]` into each provider secret of `stack` (named `<stack>/providers/<destination>`);
    returns destination → secret name."""
    secretsmanager = stack.client("secretsmanager")
    named: dict[str, str] = {}
    for arn in stack.of_type("AWS::SecretsManager::Secret").values():
        name = str(secretsmanager.describe_secret(SecretId=arn)["Name"])
        destination = name.rsplit("/", 1)[-1]
        if destination in values:
            secretsmanager.put_secret_value(SecretId=arn, SecretString=json.dumps(values[destination]))
            named[destination] = name
    return named
