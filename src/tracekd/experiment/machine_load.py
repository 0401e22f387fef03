"""How much of the machine other processes used while a stage ran (Linux ``/proc/stat``).

A finished stage's time feeds later dry-run estimates (:func:`.estimate.record_stage`), which is only
right when the stage had the CPUs to itself. Its own CPU time does not say that: PyTorch's worker
threads spin while they wait for each other, so a starved stage still reports busy threads. What
does is the machine's busy time minus the stage's own: the share of all CPUs that other processes
(and the hypervisor, as steal time) took meanwhile.

>>> share_of_others(busy_s=30.0, own_s=18.0, wall_s=10.0, cpus=2)
0.6
>>> share_of_others(busy_s=19.0, own_s=19.0, wall_s=10.0, cpus=2)
0.0
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: records whose stage saw other processes use more than this share of the CPUs are left out of estimates
MAX_OTHERS_SHARE = 0.25


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (user, nice, system, irq, softirq, steal), or None."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def share_of_others(*, busy_s: float, own_s: float, wall_s: float, cpus: int) -> float:
    """The share (0-1) of ``cpus`` CPUs over ``wall_s`` seconds busy with work other than ``own_s``."""
    if wall_s <= 0 or cpus <= 0:
        return 0.0
    return round(min(1.0, max(0.0, (busy_s - own_s) / (wall_s * cpus))), 3)


@dataclass
class LoadMeter:
    """Started before a stage; :meth:`others_share` after it (None where ``/proc/stat`` is not there)."""

    wall0: float
    own0: float
    busy0: float | None

    @classmethod
    def start(cls) -> LoadMeter:
        return cls(time.monotonic(), time.process_time(), busy_cpu_seconds())

    def others_share(self) -> float | None:
        busy = busy_cpu_seconds()
        if busy is None or self.busy0 is None:
            return None
        return share_of_others(busy_s=busy - self.busy0, own_s=time.process_time() - self.own0,
                               wall_s=time.monotonic() - self.wall0, cpus=os.cpu_count() or 1)
