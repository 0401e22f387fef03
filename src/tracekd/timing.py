"""Paired wall-time measurement: callables timed in alternating rounds, so a drift of the machine's load hits
each alike (the precision calibration and the attention-kernel choice use it).
"""

from __future__ import annotations

import time
from typing import Callable


def time_pairs(runs: dict[str, Callable[[], None]], *, pairs: int = 3, budget_s: float = float("inf"),
               min_pairs: int = 2, warm_up: bool = True, first_round: int = 0) -> dict[str, list[float]]:
    """Wall times of each callable, timed in rounds after one warm-up each (unless not ``warm_up``); the order
    alternates every round.

    Round 0 runs a then b, round 1 b then a, ... so a drift of the machine's load hits both alike (rounds
    added later continue the alternation from ``first_round``).
    No new round starts once ``budget_s`` has passed (counted from the first warm-up) and ``min_pairs``
    rounds are done. Returns each callable's times, round by round.

    >>> t = time_pairs({"a": lambda: None, "b": lambda: None}, pairs=3)
    >>> sorted(t), len(t["a"]), len(t["b"])
    (['a', 'b'], 3, 3)
    """
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    t_end = time.monotonic() + budget_s
    for fn in runs.values() if warm_up else ():  # warm-up: kernels, oneDNN primitives, allocator
        fn()
    for i in range(pairs):
        if i >= min_pairs and time.monotonic() > t_end:
            break
        for name in (names if (first_round + i) % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    return times
