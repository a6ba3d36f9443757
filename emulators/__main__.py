"""``python -m emulators``: run the four provider emulators in the foreground until SIGINT/SIGTERM.

Once all are listening it prints ONE line of JSON to stdout and flushes it::

    {"mateo": "http://127.0.0.1:P/api/v1", "symplify": "http://127.0.0.1:P/rest",
     "workshop": "http://127.0.0.1:P/api/v1", "altcraft": "http://127.0.0.1:P/api/v1.1",
     "admin": {"mateo": "http://127.0.0.1:P", ...}}

and writes the same line to ``--port-file`` (atomically; removed again on exit).

Options (repeatable ones may also hold comma-separated ``provider=value`` pairs):

    --fixture F          seed state (default emulators/fixtures/default.json)
    --faults SPEC        fault string for all emulators, or "mateo:SPEC" for one (see emulators/faults.py);
                         applied in order, a later option replaces an earlier one for its providers
    --seed N             fault seed for all emulators (overrides seed= in --faults)
    --rate-limit P=N     requests per second for provider P ("mateo=2"); a bare N applies to all
    --daily-limit P=R[/E]
                         requests (R) and imported entities (E) per UTC day for provider P
                         ("mateo=10000/25000", "mateo=/100000" for the entities only; 0 = no limit,
                         a missing part is left as it is); a bare R[/E] applies to all. Entities are
                         counted by Mateo only.
    --documented-limits  Mateo's documented limits: 2 requests/s, 10,000 requests and 25,000 imported
                         entities per UTC day (later --rate-limit/--daily-limit options override them)

Without --documented-limits, --rate-limit or --daily-limit no limit is enforced (the local stack,
the tests and the benchmarks rely on that: see emulators/mateo.py).
    --port P=N           fixed port for provider P (default: a free port)
    --host H             listen address (default 127.0.0.1)
    --port-file PATH     also write the JSON line there
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from emulators import mateo
from emulators.base import PROVIDERS
from emulators.faults import FaultSettings


def _pairs(values: list[str], option: str) -> dict[str, str]:
    """``["mateo=2,altcraft=3", "5"]`` -> {"mateo": "2", "altcraft": "3"} with "*" for a bare value."""
    result: dict[str, str] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, number = item.partition("=")
            if not sep:
                name, number = "*", item
            if name != "*" and name not in PROVIDERS:
                raise ValueError(f"{option}: unknown provider {name!r}; known: {', '.join(PROVIDERS)}")
            result[name.strip()] = number.strip()
    return result


def _daily_limit(option: str) -> dict[str, int]:
    """``"10000/25000"`` -> {"daily_requests": 10000, "daily_entities": 25000}; a missing part is left
    out (``"/500"`` sets only the entities); ValueError if malformed."""
    parts = dict(zip(("daily_requests", "daily_entities"), option.partition("/")[::2], strict=True))
    try:
        limits = {key: int(value) for key, value in parts.items() if value.strip()}
    except ValueError:
        raise ValueError(f"--daily-limit {option}: expected REQUESTS[/ENTITIES] as whole numbers") from None
    if not limits or min(limits.values()) < 0:
        raise ValueError(f"--daily-limit {option}: expected REQUESTS[/ENTITIES], each >= 0")
    return limits


def build_faults(
    specs: list[str],
    seed: int | None,
    rate_limits: list[str],
    daily_limits: list[str] | None = None,
    documented_limits: bool = False,
) -> dict[str, FaultSettings]:
    """Fault settings per provider from the command-line options; ValueError on a bad option."""
    faults = {name: FaultSettings() for name in PROVIDERS}
    for spec in specs:
        prefix, sep, rest = spec.partition(":")
        if sep and prefix.strip() in PROVIDERS:
            faults[prefix.strip()] = FaultSettings.parse(rest)
        else:  # a bare spec applies to all; options apply in order, later ones win
            faults = dict.fromkeys(PROVIDERS, FaultSettings.parse(spec))
    if documented_limits:
        faults["mateo"] = mateo.documented_limits(faults["mateo"])
    for name, limit in _pairs(rate_limits, "--rate-limit").items():
        try:
            rate = float(limit)
        except ValueError:
            raise ValueError(f"--rate-limit {name}={limit}: not a number of requests per second") from None
        for target in PROVIDERS if name == "*" else (name,):
            faults[target] = faults[target].with_overrides(rate_limit=rate)
    for name, option in _pairs(daily_limits or [], "--daily-limit").items():
        for target in PROVIDERS if name == "*" else (name,):
            faults[target] = faults[target].with_overrides(**_daily_limit(option))
    if seed is not None:
        faults = {name: settings.with_overrides(seed=seed) for name, settings in faults.items()}
    return faults


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulators",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fixture", type=Path, default=None)
    parser.add_argument("--faults", action="append", default=[], metavar="SPEC")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate-limit", action="append", default=[], metavar="PROVIDER=N")
    parser.add_argument("--daily-limit", action="append", default=[], metavar="PROVIDER=R[/E]")
    parser.add_argument("--documented-limits", action="store_true")
    parser.add_argument("--port", action="append", default=[], metavar="PROVIDER=N")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-file", type=Path, default=None)
    return parser


def _write_port_file(path: Path, line: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(line + "\n", encoding="utf-8")
    os.replace(tmp, path)  # readers never see a half-written file


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        faults = build_faults(
            args.faults, args.seed, args.rate_limit, args.daily_limit, args.documented_limits
        )
        ports = {name: int(port) for name, port in _pairs(args.port, "--port").items() if name != "*"}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from emulators.server import start_emulators  # imported late: argument errors answer faster

    try:
        emulators = start_emulators(host=args.host, ports=ports, fixture=args.fixture, faults=faults)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: could not start the emulators: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    line = emulators.to_json()
    print(line, flush=True)
    if args.port_file:
        _write_port_file(args.port_file, line)
    try:
        while not stop.wait(0.1):
            pass
    finally:
        emulators.stop()
        if args.port_file:
            with contextlib.suppress(FileNotFoundError):
                args.port_file.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
