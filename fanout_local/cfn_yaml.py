"""Read a CloudFormation/SAM template written in YAML into plain Python data.

CloudFormation's short tags (`!Ref X`, `!Sub "..."`, `!GetAtt A.B`, ...) come back in their long
form (`{"Ref": "X"}`, `{"Fn::Sub": "..."}`, `{"Fn::GetAtt": ["A", "B"]}`), so code that reads the
template sees one shape whatever the author typed. Scalars that YAML 1.1 would turn into dates
(`AWSTemplateFormatVersion: 2010-09-09`) stay strings, as CloudFormation reads them.

Self-contained on purpose (PyYAML only): it is meant to move into the local-stack package as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["CloudFormationLoader", "load_template", "loads_template"]

# Tag -> long-form key, for the intrinsics whose argument is kept exactly as written.
_FUNCTION_TAGS: dict[str, str] = {
    "!Sub": "Fn::Sub",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
    "!Join": "Fn::Join",
    "!FindInMap": "Fn::FindInMap",
    "!ImportValue": "Fn::ImportValue",
    "!Base64": "Fn::Base64",
    "!Cidr": "Fn::Cidr",
    "!GetAZs": "Fn::GetAZs",
    "!Length": "Fn::Length",
    "!ToJsonString": "Fn::ToJsonString",
    "!Transform": "Fn::Transform",
}


class CloudFormationLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags into their long-form dicts."""


def _construct_any(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The tag's argument as plain data, whatever kind of YAML node holds it."""
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(None, None, f"unexpected node for {node.tag}", node.start_mark)


def _construct_ref(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    return {"Ref": _construct_any(loader, node)}


def _construct_condition(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    return {"Condition": _construct_any(loader, node)}


def _construct_get_att(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct_any(loader, node)
    if isinstance(value, str):
        # Only the first dot separates the resource from the attribute: `!GetAtt Db.Endpoint.Address`
        # is ["Db", "Endpoint.Address"].
        resource, _, attribute = value.partition(".")
        if not resource or not attribute:
            raise yaml.constructor.ConstructorError(
                None, None, f"!GetAtt needs Resource.Attribute, got {value!r}", node.start_mark
            )
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::GetAtt": value}


def _function_constructor(key: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {key: _construct_any(loader, node)}

    return construct


CloudFormationLoader.add_constructor("!Ref", _construct_ref)
CloudFormationLoader.add_constructor("!Condition", _construct_condition)
CloudFormationLoader.add_constructor("!GetAtt", _construct_get_att)
for _tag, _key in _FUNCTION_TAGS.items():
    CloudFormationLoader.add_constructor(_tag, _function_constructor(_key))

# CloudFormation has no timestamps: drop YAML 1.1's implicit date resolver for this loader only
# (the class attribute is copied so SafeLoader itself is untouched).
CloudFormationLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def loads_template(text: str) -> dict[str, Any]:
    """Parse template text; raises ValueError when the document is not a mapping."""
    document = yaml.load(text, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError("a CloudFormation template must be a mapping at the top level")
    return document


def load_template(path: str | Path) -> dict[str, Any]:
    """Read the template at `path` (YAML or JSON) with CloudFormation short tags expanded."""
    return loads_template(Path(path).read_text(encoding="utf-8"))
