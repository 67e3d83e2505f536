"""The one log rate limiter: the note about held-back records appears only when some were held back."""

from __future__ import annotations

from amshan._ratelimit import LogLimiter


def test_the_held_back_note_is_empty_unless_records_were_held_back() -> None:
    limiter = LogLimiter(interval_sec=3600)
    assert limiter.ready()
    assert limiter.held_back_note("similar warnings suppressed") == ""  # never "(0 ... suppressed)"
    assert not limiter.ready()
    assert not limiter.ready()
    limiter.interval_sec = 0
    limiter._next_time = 0  # the interval has passed
    assert limiter.ready()
    assert limiter.held_back_note("more drops not logged") == " (2 more drops not logged)"
