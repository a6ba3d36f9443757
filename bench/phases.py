"""The end-to-end run cut into its three phases, with the CPU each process of the stack spent in each.

- split: from the drop to the end of the last splitter invocation (its last chunk message queued);
- send: from there to the last provider call;
- settle: from there to the job's final status (rows.csv and summary.json written, event sent).

A sampler thread reads every process's CPU seconds a few times a second; a phase's CPU is the difference
between the samples nearest its two ends. What bounds a phase is read from these figures: the stack's
CPU over the phase's wall time on this machine's cores (near 1.0: the cores are full) and which process
took most of it.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SAMPLE_SECONDS = 0.25


@dataclass(slots=True)
class CpuSampler:
    """Samples `read()` (process name -> CPU seconds so far) every SAMPLE_SECONDS until stopped."""

    read: Callable[[], dict[str, float]]
    times: list[float] = field(default_factory=list)
    samples: list[dict[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> CpuSampler:
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        self.samples.append(self.read())
        self.times.append(time.time())

    def at(self, moment: float) -> dict[str, float]:
        """The sample nearest `moment`."""
        i = bisect.bisect_left(self.times, moment)
        if i > 0 and (i == len(self.times) or moment - self.times[i - 1] < self.times[i] - moment):
            i -= 1
        return self.samples[min(i, len(self.samples) - 1)]

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds each process spent from `start` to `end` (a process born meanwhile: from 0)."""
        first, last = self.at(start), self.at(end)
        return {name: round(last[name] - first.get(name, 0.0), 2) for name in last}


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def phase_figures(phase: Phase, cpu: dict[str, float], cores: int) -> dict[str, Any]:
    """A phase's wall time, its CPU by process, and how full the cores were."""
    total = sum(cpu.values())
    busiest = max(cpu, key=lambda name: cpu[name]) if cpu else ""
    return {
        "seconds": round(phase.seconds, 2),
        "cpu_seconds": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
        "cpu_total": round(total, 2),
        "cores_busy": round(total / phase.seconds / cores, 2) if phase.seconds > 0 else 0.0,
        "busiest": busiest,
    }


def cores() -> int:
    return len(os.sched_getaffinity(0))


def process_group(name: str) -> str:
    """`MateoSenderFunction #2` -> `MateoSenderFunction`: the workers of one function summed."""
    return name.split(" #", 1)[0]


def grouped(cpu: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, seconds in cpu.items():
        out[process_group(name)] = round(out.get(process_group(name), 0.0) + seconds, 2)
    return out


def describe(name: str, figures: dict[str, Any]) -> str:
    """`send 40.1 s: cores 0.97 busy; moto 30.2, MateoSenderFunction 25.0, ... CPU-s`."""
    top = ", ".join(f"{proc} {sec:.1f}" for proc, sec in list(figures["cpu_seconds"].items())[:4])
    return f"{name} {figures['seconds']:.1f} s: cores {figures['cores_busy']:.2f} busy; {top} CPU-s"
