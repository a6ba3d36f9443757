"""CloudFormation resource types moto's CloudFormation skips and the flow needs, as moto models: the
local moto server registers them (`moto_server.cloudformation_fixed`). They live in a module of their
own because moto names a model's service after its module."""

from __future__ import annotations

import json
from typing import Any

from moto.awslambda.models import lambda_backends
from moto.core.common_models import CloudFormationModel
from moto.secretsmanager.models import secretsmanager_backends


class CfnSecret(CloudFormationModel):
    """AWS::SecretsManager::Secret, which moto's CloudFormation skips: created through moto's Secrets
    Manager with the template's Name, Description and SecretString; `Ref` answers its ARN, as on AWS."""

    def __init__(self, arn: str) -> None:
        self.arn = arn

    @property
    def physical_resource_id(self) -> str:
        return self.arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SecretsManager::Secret"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> CfnSecret:
        properties = cloudformation_json.get("Properties", {})
        backend = secretsmanager_backends[account_id][region_name]
        answer = backend.create_secret(
            name=properties.get("Name", resource_name),
            secret_string=properties.get("SecretString"),
            secret_binary=None,
            description=properties.get("Description"),
            tags=properties.get("Tags") or [],
            kms_key_id=properties.get("KmsKeyId"),
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        return cls(json.loads(answer)["ARN"])


class CfnEventInvokeConfig(CloudFormationModel):
    """AWS::Lambda::EventInvokeConfig, which moto's CloudFormation skips: put through moto's Lambda, so
    the event runner reads a function's retries and on-failure destination from Lambda's API."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name

    @property
    def physical_resource_id(self) -> str:
        return self.function_name

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::EventInvokeConfig"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> CfnEventInvokeConfig:
        properties = cloudformation_json.get("Properties", {})
        config = {
            key: properties[key]
            for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
            if key in properties
        }
        lambda_backends[account_id][region_name].put_function_event_invoke_config(
            properties["FunctionName"], config
        )
        return cls(properties["FunctionName"])
