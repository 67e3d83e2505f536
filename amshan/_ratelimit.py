"""The one rate limiter for log records that bad input, a noisy line or an outage can trigger again."""

from __future__ import annotations

import time

DEFAULT_INTERVAL_SEC = 60.0


class LogLimiter:
    """Let a recurring log record through at most once per interval, so garbage cannot flood the log."""

    def __init__(self, interval_sec: float = DEFAULT_INTERVAL_SEC) -> None:
        """Allow the first record at once, then one per ``interval_sec``."""
        self.interval_sec = interval_sec
        self._next_time = -float("inf")
        self._held = 0
        self.held_back = 0  # records held back before the one that ready() last let through

    def ready(self) -> bool:
        """Return True (and start a new interval) when the current interval has passed."""
        now = time.monotonic()
        if now < self._next_time:
            self._held += 1
            return False
        self._next_time = now + self.interval_sec
        self.held_back, self._held = self._held, 0
        return True

    def held_back_note(self, what: str) -> str:
        """Return " (N what)" naming the records held back before this one, or "" when there were none."""
        return f" ({self.held_back} {what})" if self.held_back else ""
