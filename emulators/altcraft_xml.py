"""Altcraft's XML request/response format (seed 003's "XML" tabs), as plain dicts for the emulator.

Request: a root ``<xml>`` whose children are the request parameters; every ``<data>`` child is one
profile (its children are the profile's fields), so ``<data>...</data><data>...</data>`` is the XML for
JSON's ``"data": [{"data": {...}}, {"data": {...}}]``. Element text is kept as a string (so
``<CRM_ID string="true">00066</CRM_ID>`` keeps its leading zeros; the ``string`` attribute is
accepted and changes nothing); ``workflow_id`` becomes an int and ``skip_triggers`` /
``skip_invalid_subscriptions`` / ``detect_geo`` booleans when they read as such; an element with
children becomes an object, a repeated child a list (``_subscriptions`` is always a list).

Response: the JSON answer as ``<xml>`` with one element per key, a list as repeated elements (the
seed's ``<result><profile_id>..</profile_id></result><result>..</result>``).

Safety: a document with a DOCTYPE or an ENTITY declaration is refused before parsing, so no entity
is ever expanded (no billion-laughs, no external entities).
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError, SubElement, fromstring, tostring

MEDIA_TYPE = "application/xml"
_FLAGS = ("skip_triggers", "skip_invalid_subscriptions", "detect_geo")
_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_INTEGER = re.compile(r"^-?\d+$")


class XmlError(ValueError):
    """The body is not an acceptable Altcraft XML request."""


def is_xml(raw: bytes, content_type: str) -> bool:
    """An XML request: an XML Content-Type, or a body that starts with ``<``."""
    return "xml" in content_type.lower() or raw.lstrip().startswith(b"<")


def parse_request(raw: bytes) -> dict[str, Any]:
    """The request parameters of an ``<xml>`` body, shaped like the JSON request; XmlError if unusable."""
    if _DECLARATIONS.search(raw):
        raise XmlError("DOCTYPE and ENTITY declarations are not accepted")
    try:
        root = fromstring(raw)  # noqa: S314 - declarations are refused above: nothing can expand
    except ParseError as exc:
        raise XmlError(f"invalid XML: {exc}") from exc
    if root.tag != "xml":
        raise XmlError(f"the root element must be <xml>, not <{root.tag}>")
    body: dict[str, Any] = {"data": []}
    for child in root:
        if child.tag == "data":
            body["data"].append({"data": _profile(child)})
        else:
            body[child.tag] = _typed(child.tag, _value(child))
    return body


def render(body: dict[str, Any]) -> bytes:
    """A JSON-shaped answer as Altcraft's ``<xml>`` document (UTF-8, no declaration)."""
    root = Element("xml")
    _fill(root, body)
    return tostring(root, encoding="unicode").encode("utf-8")


def _profile(element: Element) -> Any:
    value = _value(element)
    if isinstance(value, dict) and isinstance(value.get("_subscriptions"), dict):
        value["_subscriptions"] = [value["_subscriptions"]]
    return value


def _value(element: Element) -> Any:
    """Text for a leaf element, else an object of its children (a repeated tag becomes a list)."""
    if len(element) == 0:
        return (element.text or "").strip()
    result: dict[str, Any] = {}
    for child in element:
        value = _value(child)
        if child.tag not in result:
            result[child.tag] = value
        elif isinstance(result[child.tag], list):
            result[child.tag].append(value)
        else:
            result[child.tag] = [result[child.tag], value]
    return result


def _typed(tag: str, value: Any) -> Any:
    if tag == "workflow_id" and isinstance(value, str) and _INTEGER.match(value):
        return int(value)
    if tag in _FLAGS and value in ("true", "false"):
        return value == "true"
    return value


def _fill(parent: Element, body: dict[str, Any]) -> None:
    for key, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            element = SubElement(parent, key)
            if isinstance(item, dict):
                _fill(element, item)
            elif isinstance(item, bool):
                element.text = "true" if item else "false"
            elif item is not None:
                element.text = str(item)
