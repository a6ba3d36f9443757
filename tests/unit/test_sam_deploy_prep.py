"""fanout_local.sam_deploy_prep expands AWS::LanguageExtensions as CloudFormation does before the SAM
transform, so SAM's translator and moto's CloudFormation get a template they can read."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from fanout_local import cfn_yaml
from fanout_local.sam_deploy_prep import (
    LanguageExtensionsError,
    expand_language_extensions,
    uses_language_extensions,
)

pytestmark = pytest.mark.unit

LOOP = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]
Parameters:
  MaxConcurrencyMateo: {Type: Number, Default: 2}
  MaxConcurrencyMateoMessage: {Type: Number, Default: 3}
Mappings:
  Destinations:
    Mateo: {Name: mateo, BatchSize: 5}
    MateoMessage: {Name: mateo-message, BatchSize: 1}
Resources:
  Fn::ForEach::Destinations:
    - Dest
    - [Mateo, MateoMessage]
    - ${Dest}Queue:
        Type: AWS::SQS::Queue
      ${Dest}Secret:
        Type: AWS::SecretsManager::Secret
        Properties:
          Name: !Sub
            - "${AWS::StackName}/providers/${Name}"
            - Name: !FindInMap [Destinations, !Ref Dest, Name]
      ${Dest}SenderFunction:
        Type: AWS::Serverless::Function
        Properties:
          Description: !Sub "Sends ${Dest} chunks from ${AWS::StackName}"
          Environment:
            Variables:
              DESTINATION: !FindInMap [Destinations, !Ref Dest, Name]
              QUEUE_URL: !Ref
                Fn::Sub: ${Dest}Queue
          Events:
            Chunks:
              Type: SQS
              Properties:
                Queue: !GetAtt [!Sub "${Dest}Queue", Arn]
                BatchSize: !FindInMap [Destinations, !Ref Dest, BatchSize]
                ScalingConfig:
                  MaximumConcurrency: {Ref: !Sub "MaxConcurrency${Dest}"}
Outputs:
  Fn::ForEach::QueueUrls:
    - Dest
    - [Mateo, MateoMessage]
    - ${Dest}QueueUrl:
        Value: {Ref: !Sub "${Dest}Queue"}
"""


def _load(text: str) -> dict[str, Any]:
    return cfn_yaml.loads_template(text)


@pytest.fixture
def expanded() -> dict[str, Any]:
    return expand_language_extensions(_load(LOOP))


def test_each_item_gets_its_own_resources_named_after_it(expanded: dict[str, Any]) -> None:
    assert sorted(expanded["Resources"]) == [
        "MateoMessageQueue",
        "MateoMessageSecret",
        "MateoMessageSenderFunction",
        "MateoQueue",
        "MateoSecret",
        "MateoSenderFunction",
    ]
    assert sorted(expanded["Outputs"]) == ["MateoMessageQueueUrl", "MateoQueueUrl"]
    assert expanded["Outputs"]["MateoMessageQueueUrl"] == {"Value": {"Ref": "MateoMessageQueue"}}


def test_references_name_the_items_own_resources_and_parameters(expanded: dict[str, Any]) -> None:
    function = expanded["Resources"]["MateoMessageSenderFunction"]["Properties"]
    assert function["Environment"]["Variables"]["QUEUE_URL"] == {"Ref": "MateoMessageQueue"}
    chunks = function["Events"]["Chunks"]["Properties"]
    assert chunks["Queue"] == {"Fn::GetAtt": ["MateoMessageQueue", "Arn"]}
    assert chunks["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "MaxConcurrencyMateoMessage"}


def test_other_variables_stay_for_cloudformation(expanded: dict[str, Any]) -> None:
    function = expanded["Resources"]["MateoSenderFunction"]["Properties"]
    assert function["Description"] == {"Fn::Sub": "Sends Mateo chunks from ${AWS::StackName}"}
    secret = expanded["Resources"]["MateoMessageSecret"]["Properties"]
    assert secret["Name"] == {"Fn::Sub": ["${AWS::StackName}/providers/${Name}", {"Name": "mateo-message"}]}


def test_mapping_values_are_looked_up_per_item(expanded: dict[str, Any]) -> None:
    mateo = expanded["Resources"]["MateoSenderFunction"]["Properties"]
    message = expanded["Resources"]["MateoMessageSenderFunction"]["Properties"]
    assert mateo["Environment"]["Variables"]["DESTINATION"] == "mateo"
    assert message["Environment"]["Variables"]["DESTINATION"] == "mateo-message"
    assert mateo["Events"]["Chunks"]["Properties"]["BatchSize"] == 5
    assert message["Events"]["Chunks"]["Properties"]["BatchSize"] == 1


def test_the_transform_list_keeps_only_sam(expanded: dict[str, Any]) -> None:
    assert expanded["Transform"] == "AWS::Serverless-2016-10-31"
    assert not uses_language_extensions(expanded)


def test_the_input_is_left_as_it_was() -> None:
    template = _load(LOOP)
    before = copy.deepcopy(template)
    expand_language_extensions(template)
    assert template == before


def test_a_template_without_the_transform_comes_back_unchanged() -> None:
    template = _load("Transform: AWS::Serverless-2016-10-31\nResources:\n  Q: {Type: AWS::SQS::Queue}\n")
    result = expand_language_extensions(template)
    assert result == template
    assert result is not template


def test_a_collection_can_be_a_comma_delimited_list_parameter() -> None:
    text = """
Transform: AWS::LanguageExtensions
Parameters:
  Names: {Type: CommaDelimitedList, Default: "a,b"}
Resources:
  Fn::ForEach::Topics:
    - Name
    - !Ref Names
    - Topic${Name}:
        Type: AWS::SNS::Topic
        Properties:
          TopicName: !Ref Name
"""
    assert sorted(expand_language_extensions(_load(text))["Resources"]) == ["Topica", "Topicb"]
    given = expand_language_extensions(_load(text), {"Names": "x, y,z"})
    assert given["Resources"]["Topicy"] == {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "y"}}
    assert "Transform" not in given


def test_loops_nest_and_ampersand_strips_non_alphanumerics() -> None:
    text = """
Transform: [AWS::LanguageExtensions]
Resources:
  Fn::ForEach::Outer:
    - Env
    - [prod-eu, dev]
    - Fn::ForEach::Inner:
        - Kind
        - [Jobs, Results]
        - "&{Env}${Kind}Bucket":
            Type: AWS::S3::Bucket
            Properties:
              BucketName: !Sub "${Env}-${Kind}"
"""
    resources = expand_language_extensions(_load(text))["Resources"]
    assert sorted(resources) == [
        "devJobsBucket",
        "devResultsBucket",
        "prodeuJobsBucket",
        "prodeuResultsBucket",
    ]
    assert resources["prodeuResultsBucket"]["Properties"]["BucketName"] == "prod-eu-Results"


def test_a_loop_inside_resource_properties_is_expanded() -> None:
    text = """
Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]
Resources:
  Splitter:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          Fn::ForEach::Urls:
            - Dest
            - [Mateo, Workshop]
            - QUEUE_URL_${Dest}: !Ref
                Fn::Sub: ${Dest}Queue
"""
    variables = expand_language_extensions(_load(text))["Resources"]["Splitter"]["Properties"]["Environment"]
    assert variables["Variables"] == {
        "QUEUE_URL_Mateo": {"Ref": "MateoQueue"},
        "QUEUE_URL_Workshop": {"Ref": "WorkshopQueue"},
    }


def test_find_in_map_uses_its_default_and_leaves_pseudo_parameters_to_cloudformation() -> None:
    text = """
Transform: [AWS::LanguageExtensions]
Mappings:
  Sizes:
    big: {Memory: 1024}
Resources:
  Fn::ForEach::Fns:
    - Size
    - [big, small]
    - ${Size}Thing:
        Type: AWS::SNS::Topic
        Properties:
          Memory: !FindInMap [Sizes, !Ref Size, Memory, {DefaultValue: 128}]
          Regional: !FindInMap [Sizes, !Ref AWS::Region, Memory]
"""
    resources = expand_language_extensions(_load(text))["Resources"]
    assert resources["bigThing"]["Properties"]["Memory"] == 1024
    assert resources["smallThing"]["Properties"]["Memory"] == 128
    assert resources["bigThing"]["Properties"]["Regional"] == {
        "Fn::FindInMap": ["Sizes", {"Ref": "AWS::Region"}, "Memory"]
    }


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            "  Fn::ForEach::Q:\n    - Dest\n    - [A, A]\n    - ${Dest}Queue: {Type: AWS::SQS::Queue}\n",
            "Fn::ForEach produces 'AQueue' twice",
        ),
        (
            "  Fn::ForEach::Q:\n    - Dest\n    - [A, B]\n    - Queue: {Type: AWS::SQS::Queue}\n",
            "key 'Queue' does not contain ${Dest}",
        ),
        (
            "  Fn::ForEach::Q:\n    - Dest\n    - [A]\n",
            "needs [Identifier, Collection, {OutputKey: OutputValue}]",
        ),
        (
            "  Fn::ForEach::Q:\n    - Dest\n    - !Ref Missing\n    - ${Dest}Q: {Type: AWS::SQS::Queue}\n",
            "collection parameter 'Missing' has no value",
        ),
        (
            "  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      Size: !FindInMap [Nope, a, b]\n",
            "Fn::FindInMap [Nope, a, b] has no value",
        ),
        (
            "  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      Size: {Fn::Length: [1, 2]}\n",
            "Fn::Length is not expanded by the local deploy path",
        ),
    ],
)
def test_what_cannot_be_expanded_is_named(resources: str, message: str) -> None:
    text = f"Transform: [AWS::LanguageExtensions]\nResources:\n{resources}"
    with pytest.raises(LanguageExtensionsError, match=re.escape(message)):
        expand_language_extensions(_load(text))
