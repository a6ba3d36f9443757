"""What CloudFormation's `AWS::LanguageExtensions` transform does to template.yaml, done locally.

template.yaml declares `Transform: [AWS::LanguageExtensions, AWS::Serverless-2016-10-31]`: in AWS,
CloudFormation first expands the language extensions and then hands the result to the SAM transform.
SAM's translator (`samtranslator`) knows only the second, and moto's CloudFormation applies no
transform at all, so the local deploy path calls `expand_language_extensions` right after loading the
template (before packaging code and before `samtranslator`):

    template = expand_language_extensions(cfn_yaml.load_template(path), parameter_values)

What it does, as the transform does:
- every `Fn::ForEach::<Loop>: [Identifier, Collection, {OutputKey: OutputValue}]` in Conditions,
  Resources (resource properties included) and Outputs becomes one copy of the fragment per item of
  the collection, with every `${Identifier}` and `&{Identifier}` (the item with non-alphanumerics
  removed) in keys and strings, and every `{"Ref": "Identifier"}`, replaced by the item; an `Fn::Sub`
  left with no variable becomes its string (so `Ref: !Sub "Queue${Id}"` names a resource, the form
  cfn-lint understands). Loops nest.
  A collection is a list of strings or a `Ref` to a CommaDelimitedList parameter;
- `Fn::FindInMap` whose map, top-level and second-level keys are known (literals, loop items, or
  `Ref`s to parameters) is replaced by the mapping's value (or its `DefaultValue`);
- `AWS::LanguageExtensions` leaves the Transform list.

A template without the transform comes back unchanged (as a copy). Language-extension functions this
module does not implement (`Fn::Length`, `Fn::ToJsonString`) raise `LanguageExtensionsError` rather
than reach CloudFormation unexpanded.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "LANGUAGE_EXTENSIONS",
    "LanguageExtensionsError",
    "expand_language_extensions",
    "uses_language_extensions",
]

LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
FOR_EACH_PREFIX = "Fn::ForEach::"
UNSUPPORTED = ("Fn::Length", "Fn::ToJsonString")
EXPANDED_SECTIONS = ("Conditions", "Resources", "Outputs")


class LanguageExtensionsError(ValueError):
    """The template's language extensions cannot be expanded; the message names where and why."""


def uses_language_extensions(template: Mapping[str, Any]) -> bool:
    """Whether `template` declares the AWS::LanguageExtensions transform."""
    transform = template.get("Transform")
    names = transform if isinstance(transform, list) else [transform]
    return LANGUAGE_EXTENSIONS in names


def expand_language_extensions(
    template: Mapping[str, Any], parameter_values: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`template` (as fanout_local.cfn_yaml loads it) with its language extensions expanded.

    `parameter_values` are the stack's parameters (strings, as CreateStack takes them); a parameter
    not given there counts with its Default. They are read only where the transform needs a value: a
    ForEach collection or a FindInMap key given as `Ref`. Every other `Ref` stays for CloudFormation.
    """
    expanded = copy.deepcopy(dict(template))
    if not uses_language_extensions(expanded):
        return expanded
    parameters = _parameter_values(expanded, parameter_values or {})
    mappings = expanded.get("Mappings", {})
    for section in EXPANDED_SECTIONS:
        if section in expanded:
            body = _expand_for_each(expanded[section], parameters, section)
            expanded[section] = _resolve_find_in_map(body, mappings, parameters, section)
    remaining = [name for name in expanded["Transform"] if name != LANGUAGE_EXTENSIONS]
    if isinstance(expanded["Transform"], str) or not remaining:
        del expanded["Transform"]
    else:
        expanded["Transform"] = remaining[0] if len(remaining) == 1 else remaining
    return expanded


def _parameter_values(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    values = {
        name: str(declaration["Default"])
        for name, declaration in template.get("Parameters", {}).items()
        if isinstance(declaration, dict) and "Default" in declaration
    }
    values.update({name: str(value) for name, value in given.items()})
    return values


# ------------------------------------------------------------------------------------------------
# Fn::ForEach
# ------------------------------------------------------------------------------------------------


def _expand_for_each(node: Any, parameters: Mapping[str, str], where: str) -> Any:
    """`node` with every Fn::ForEach below it expanded (depth first, so loops nest)."""
    if isinstance(node, list):
        return [_expand_for_each(item, parameters, f"{where}[{index}]") for index, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        here = f"{where}/{key}"
        if key in UNSUPPORTED:
            raise LanguageExtensionsError(f"{here}: {key} is not expanded by the local deploy path")
        if not key.startswith(FOR_EACH_PREFIX):
            _add(result, key, _expand_for_each(value, parameters, here), here)
            continue
        identifier, items, fragment = _loop(value, parameters, here)
        for item in items:
            copy_of = _substitute(fragment, identifier, item)
            for out_key, out_value in _expand_for_each(copy_of, parameters, here).items():
                _add(result, out_key, out_value, here)
    return result


def _loop(value: Any, parameters: Mapping[str, str], where: str) -> tuple[str, list[str], dict[str, Any]]:
    """The identifier, collection and fragment of one Fn::ForEach, checked."""
    if not (isinstance(value, list) and len(value) == 3):
        raise LanguageExtensionsError(f"{where}: needs [Identifier, Collection, {{OutputKey: OutputValue}}]")
    identifier, collection, fragment = value
    if not (isinstance(identifier, str) and re.fullmatch(r"[A-Za-z0-9]+", identifier)):
        raise LanguageExtensionsError(f"{where}: the identifier must be alphanumeric, got {identifier!r}")
    if not isinstance(fragment, dict) or not fragment:
        raise LanguageExtensionsError(f"{where}: the fragment must be a non-empty mapping")
    for key in fragment:
        named = f"${{{identifier}}}" in key or f"&{{{identifier}}}" in key
        if not named and not key.startswith(FOR_EACH_PREFIX):
            raise LanguageExtensionsError(f"{where}: key {key!r} does not contain ${{{identifier}}}")
    return identifier, _collection(collection, parameters, where), fragment


def _collection(collection: Any, parameters: Mapping[str, str], where: str) -> list[str]:
    if isinstance(collection, dict) and set(collection) == {"Ref"}:
        name = collection["Ref"]
        if name not in parameters:
            raise LanguageExtensionsError(f"{where}: collection parameter {name!r} has no value")
        return [item.strip() for item in parameters[name].split(",") if item.strip()]
    if isinstance(collection, list) and all(isinstance(item, str | int) for item in collection):
        return [str(item) for item in collection]
    raise LanguageExtensionsError(
        f"{where}: the collection must be a list of strings or a Ref to a parameter"
    )


def _substitute(node: Any, identifier: str, item: str) -> Any:
    """`node` with ${identifier}, &{identifier} and {"Ref": identifier} replaced by `item`."""
    if isinstance(node, str):
        stripped = re.sub(r"[^A-Za-z0-9]", "", item)
        return node.replace(f"${{{identifier}}}", item).replace(f"&{{{identifier}}}", stripped)
    if isinstance(node, list):
        return [_substitute(value, identifier, item) for value in node]
    if isinstance(node, dict):
        if node == {"Ref": identifier}:
            return item
        replaced = {
            _substitute(key, identifier, item): _substitute(value, identifier, item)
            for key, value in node.items()
        }
        text = replaced.get("Fn::Sub")
        if len(replaced) == 1 and isinstance(text, str) and "${" not in text:
            return text  # nothing left to substitute: `Ref: !Sub "Queue${Id}"` names one resource
        return replaced
    return node


def _add(result: dict[str, Any], key: str, value: Any, where: str) -> None:
    if key in result:
        raise LanguageExtensionsError(f"{where}: Fn::ForEach produces {key!r} twice")
    result[key] = value


# ------------------------------------------------------------------------------------------------
# Fn::FindInMap
# ------------------------------------------------------------------------------------------------


def _resolve_find_in_map(
    node: Any, mappings: Mapping[str, Any], parameters: Mapping[str, str], where: str
) -> Any:
    """`node` with every FindInMap whose keys are known replaced by its value."""
    if isinstance(node, list):
        return [_resolve_find_in_map(item, mappings, parameters, where) for item in node]
    if not isinstance(node, dict):
        return node
    resolved = {key: _resolve_find_in_map(value, mappings, parameters, where) for key, value in node.items()}
    if set(resolved) != {"Fn::FindInMap"}:
        return resolved
    arguments = resolved["Fn::FindInMap"]
    if not isinstance(arguments, list) or len(arguments) not in (3, 4):
        raise LanguageExtensionsError(
            f"{where}: Fn::FindInMap needs [Map, TopKey, SecondKey(, DefaultValue)]"
        )
    keys = [_known(argument, parameters) for argument in arguments[:3]]
    if any(key is None for key in keys):
        return resolved  # a pseudo parameter or another function: CloudFormation resolves it
    map_name, top, second = (str(key) for key in keys)
    default = (
        arguments[3].get("DefaultValue") if len(arguments) == 4 and isinstance(arguments[3], dict) else None
    )
    value = mappings.get(map_name, {}).get(top, {}).get(second)
    if value is None and default is None:
        raise LanguageExtensionsError(f"{where}: Fn::FindInMap [{map_name}, {top}, {second}] has no value")
    return copy.deepcopy(value if value is not None else default)


def _known(argument: Any, parameters: Mapping[str, str]) -> str | None:
    if isinstance(argument, str | int):
        return str(argument)
    if isinstance(argument, dict) and set(argument) == {"Ref"} and argument["Ref"] in parameters:
        return parameters[argument["Ref"]]
    return None
