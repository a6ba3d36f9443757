"""Where a file goes: from its key (`inbox/<destination>/<target>/<name>`), its S3 metadata, or a routes
entry that sends one prefix to one or more destinations.

Routes file (YAML or JSON, at ROUTES_KEY in the bucket, default `config/routes.yaml`):

    routes:
      - prefix: inbox/vip-weekly/
        destinations:
          - destination: mateo
            target: 3c90c3cc-0d44-4b50-8888-8dd25736052a
            columns: {"Kundnummer": external_id}    # optional: file header -> field
          - destination: workshop
            target: jrn_welcome
        options: {tolerated-invalid-percent: "5"}   # optional: defaults for every file there

Per-file options come from S3 user metadata (`x-amz-meta-<name>`), a routes entry's `options:` (defaults
for the prefix, then the destination's own) and the file's metadata, later ones winning; fanout.options
defines them all and refuses what it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from fanout.destinations import Destination
from fanout.models import Route
from fanout.options import OptionsError, columns_of, normalise, yes
from fanout.providers import provider_for

INBOX = "inbox/"
DRYRUN = "dryrun/"


class RouteError(ValueError):
    """The file cannot be routed; the message says what to fix."""


def decode_key(raw_key: str) -> str:
    """S3 event keys are URL-encoded (spaces as '+'); EventBridge keys are too."""
    return unquote_plus(raw_key)


def checked_options(raw: Mapping[str, Any], source: str) -> dict[str, str]:
    """`raw` options as canonical ones (fanout.options); RouteError naming the problem otherwise."""
    try:
        return normalise(raw, source)
    except OptionsError as exc:
        raise RouteError(str(exc)) from None


def options_from_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Per-file options from S3 user metadata; anything the options model does not accept is refused."""
    return checked_options(metadata, "the object's metadata")


def is_dry_run(key: str, options: Mapping[str, str]) -> bool:
    """A dry run: the key is under dryrun/, or the (canonical) options say dry-run."""
    return key.startswith(DRYRUN) or yes(options, "dry-run")


def _check(destination: Destination, target: str) -> str:
    """`target` in the provider's canonical form (a Mateo uuid in any notation becomes 8-4-4-4-12, lower
    case), or RouteError saying what is wrong with it."""
    provider = provider_for(destination)
    problem = provider.target_problem(target)
    if problem:
        raise RouteError(f"wrong target for {destination.value}: {problem}")
    return provider.canonical_target(target)


def _destination(name: str) -> Destination:
    try:
        return Destination(name)
    except ValueError:
        known = ", ".join(d.value for d in Destination)
        raise RouteError(f"unknown destination '{name}': use one of {known}") from None


def route_from_key(key: str, options: dict[str, str]) -> Route | None:
    """The route a key names itself (`inbox/<destination>/<target>/<file>`), or None if it names none."""
    path = key.removeprefix(DRYRUN)
    if not path.startswith(INBOX):
        raise RouteError(f"the key must start with {INBOX}")
    parts = path[len(INBOX) :].split("/")
    if len(parts) < 3 or not parts[-1]:
        return None
    name, target = parts[0], parts[1]
    if name not in {d.value for d in Destination}:
        return None
    destination = _destination(name)
    if not target:
        raise RouteError(f"no target in the key: use inbox/{name}/<target>/<file>")
    return Route(destination, _check(destination, target), options, columns_of(options))


def parse_routes(text: str) -> list[dict[str, Any]]:
    """The `routes` list of a routes file (YAML is a superset of JSON, so both parse)."""
    import yaml  # here, not at cold start: only a bucket with a routes file needs it

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RouteError(f"the routes file is not valid YAML/JSON: {exc}") from None
    routes = data.get("routes") if isinstance(data, dict) else None
    if not isinstance(routes, list):
        raise RouteError("the routes file needs a top-level 'routes:' list")
    return routes


def routes_for_key(key: str, options: dict[str, str], routes: list[dict[str, Any]]) -> list[Route]:
    """Every route of `key`: its own, or the longest matching routes-file prefix's destinations."""
    own = route_from_key(key, options)
    if own is not None:
        return [own]
    path = key.removeprefix(DRYRUN)
    matches = [r for r in routes if isinstance(r, dict) and path.startswith(str(r.get("prefix", "\0")))]
    if not matches:
        first = path[len(INBOX) :].split("/")[0]
        if first in {d.value for d in Destination}:
            raise RouteError(f"the key names no target or no file: use {INBOX}{first}/<target>/<file>")
        known = ", ".join(d.value for d in Destination)
        raise RouteError(
            f"no route for '{first}': use inbox/<destination>/<target>/<file> with a destination of {known},"
            f" or add a routes-file entry for the prefix {INBOX}{first}/"
        )
    entry = max(matches, key=lambda r: len(str(r["prefix"])))
    where = f"the routes entry for {entry['prefix']}"
    defaults = checked_options(_mapping(entry.get("options"), where), where)
    result = []
    for spec in entry.get("destinations") or []:
        destination = _destination(str(spec.get("destination", "")))
        target = _check(destination, str(spec.get("target", "")))
        label = f"{where} ({destination.value}/{target})"
        merged = {**defaults, **checked_options(_mapping(spec.get("options"), label), label), **options}
        columns = columns_of(checked_options({"columns": _mapping(spec.get("columns"), label)}, label))
        result.append(Route(destination, target, merged, {**columns, **columns_of(merged)}))
    if not result:
        raise RouteError(f"the routes entry for {entry['prefix']} lists no destinations")
    return result


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RouteError(f"{where}: options and columns must be a mapping of name: value")
    return value
