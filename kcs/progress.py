"""Progress lines in a job's log, for runs nobody watches (a cluster job's log file, `--no-progress`).

A line is written at the first and the last step, when the step count crosses a multiple of
`every`, and when `seconds` have passed since the previous line, whichever comes first: a fast run
gets few lines, a slow one still shows it is alive. Example:

    train run-7: step 120/40000 (0.3%) loss 1.234 sparsity 0.9812 | 2.4 step/s, elapsed 0:00:50, eta 4:36:57
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Callable


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ProgressLog:
    """Logs `label: step N/TOTAL (P%) name value ... | rate, elapsed, eta` lines at INFO.

    `start` is the step a resumed run starts from: rate and ETA count only the steps of this
    session, whose wall time is all the clock knows about. `clock` is injectable for tests.
    """

    def __init__(self, logger: logging.Logger, label: str, total: int, every: int = 50, seconds: float = 60.0,
                 start: int = 0, unit: str = "step", clock: Callable[[], float] = time.monotonic):
        self.logger, self.label, self.total, self.unit = logger, label, total, unit
        self.every, self.seconds, self.start, self.clock = every, seconds, start, clock
        self.started = self.last_time = clock()
        self.last_step = start

    def due(self, step: int, now: float) -> bool:
        # `//` rather than `%`: a caller may advance by more than one (sentences scored per batch)
        crossed = self.every > 0 and step // self.every > self.last_step // self.every
        waited = self.seconds > 0 and now - self.last_time >= self.seconds
        first = self.last_step == self.start
        return first or step >= self.total or crossed or waited

    def update(self, step: int, **values) -> bool:
        """Record that `step` (1-based, counted from the job's beginning) is done; True if a line was logged."""
        now = self.clock()
        if step <= self.last_step or not self.due(step, now):
            return False
        self.logger.info("%s", self.line(step, now, values))
        self.last_step, self.last_time = step, now
        return True

    def line(self, step: int, now: float, values: dict) -> str:
        text = f"{self.label}: {self.unit} {step}/{self.total}"
        if self.total > 0:
            text += f" ({100 * step / self.total:.1f}%)"
        text += "".join(f" {name} {_value(value)}" for name, value in values.items())
        elapsed = now - self.started
        done = step - self.start
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            text += f" | {rate:.3g} {self.unit}/s, elapsed {_duration(elapsed)}"
            if self.total > 0:
                text += f", eta {_duration(max(self.total - step, 0) / rate)}"
        else:
            text += f" | elapsed {_duration(elapsed)}"
        return text
