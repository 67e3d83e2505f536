"""Endless garbage: bounded memory, linear time and a bounded log, for the reader and both protocols.

Each scenario runs in a fresh process (tests/_resource_probe.py), so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROBE = Path(__file__).resolve().parent / "_resource_probe.py"
# The README's figures: 200 MB of random bytes grow peak RSS by less than 1 MiB (measured 0.0-0.55 MiB), 16 MB
# of frame-shaped garbage by less than 2 MiB (measured 0.0-0.8 MiB: the protocol's rate-limited summaries).
RSS_GROWTH_LIMIT_MIB = {"random": 1.0, "headers": 2.0, "dense": 2.0}
# MeterReader holds a framer per transport (HDLC, M-Bus, APDU, P1): less than 4 MiB (measured 0.0-1.8 MiB).
METER_READER_RSS_LIMIT_MIB = 4.0


def probe(target: str, kind: str, megabytes: float, chunk: int | None = None) -> dict[str, Any]:
    """Run one scenario of the probe and return its figures."""
    argv = [sys.executable, str(PROBE), target, kind, str(megabytes)] + ([str(chunk)] if chunk else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    print(target, kind, megabytes, "MiB:", {k: v for k, v in result.items() if k != "last_log"})
    return result


def assert_steady_cost(segment_seconds: list[float]) -> None:
    """Each tenth of the stream costs about the same CPU time: the cost per byte does not grow."""
    assert max(segment_seconds) < 2.5 * statistics.median(segment_seconds), segment_seconds


@pytest.mark.parametrize(("kind", "megabytes"), [("random", 200), ("headers", 16), ("dense", 16)])
def test_reader_on_garbage_holds_bounded_memory_in_linear_time_without_logging(
    kind: str, megabytes: int
) -> None:
    result = probe("reader", kind, megabytes)
    assert result["rss_growth_mib"] < RSS_GROWTH_LIMIT_MIB[kind], f"RSS grew {result['rss_growth_mib']} MiB"
    assert result["valid"] == 0
    assert result["most_buffered"] <= 2048 + 64 * 1024
    assert result["discarded"] + result["invalid"] > 0
    assert_steady_cost(result["segment_seconds"])
    assert result["log_records"] == 0, result["last_log"]


@pytest.mark.parametrize(
    ("kind", "megabytes"), [("random", 100), ("headers", 8), ("dense", 8), ("mbus", 8), ("apdu", 8)]
)
def test_meter_reader_on_garbage_holds_bounded_memory_in_linear_time(kind: str, megabytes: int) -> None:
    """MeterReader (HDLC, M-Bus and bare-APDU framing, both keys): no frame, bounded buffer and log."""
    result = probe("meter", kind, megabytes)
    assert result["rss_growth_mib"] < METER_READER_RSS_LIMIT_MIB, f"RSS grew {result['rss_growth_mib']} MiB"
    assert result["valid"] == 0
    assert result["most_buffered"] <= 2 * 4096 + 2048 + 64 * 1024
    assert_steady_cost(result["segment_seconds"])
    assert result["log_records"] <= 8, result["last_log"]


@pytest.mark.parametrize("kind", ["headers", "dense"])
def test_one_read_of_a_whole_hostile_capture_costs_what_streaming_it_does(kind: str) -> None:
    """A capture read in one call must not take quadratic time: its CPU cost per byte matches 64 KiB chunks.

    (Its memory is that of the list of frames it returns, rejected candidates included: read big captures in
    chunks, as the command line does.)
    """
    streamed = probe("reader", kind, 16)
    whole = probe("reader", kind, 16, chunk=16 << 20)
    assert whole["valid"] == streamed["valid"] == 0
    per_byte = [sum(r["segment_seconds"]) / r["bytes"] for r in (streamed, whole)]
    assert per_byte[1] < 3 * per_byte[0], per_byte


@pytest.mark.parametrize(("target", "kind", "megabytes"), [
    ("content", "random", 200), ("frames", "random", 200), ("content", "headers", 16),
])  # fmt: skip
def test_protocol_on_garbage_holds_bounded_memory_and_logs_a_summary(
    target: str, kind: str, megabytes: int
) -> None:
    result = probe(target, kind, megabytes)
    assert result["rss_growth_mib"] < RSS_GROWTH_LIMIT_MIB[kind], f"RSS grew {result['rss_growth_mib']} MiB"
    assert result["valid"] == 0
    assert result["invalid"] > 0
    assert result["log_records"] <= 8, result["last_log"]
    assert result["log_warnings"] <= 2, result["last_log"]
    summary = result["last_log"][-1] if target == "content" else "\n".join(result["last_log"])
    assert f"totals {result['discarded']} and {result['invalid']}" in summary
    if target == "frames":  # invalid frames are queued for diagnosis; a slow consumer drops, counted
        assert result["queued"] + result["queue_full_drops"] == result["invalid"]
    else:
        assert result["queued"] == 0


@pytest.mark.parametrize("kind", ["slash", "line", "values", "slashes"])
def test_meter_reader_on_hostile_p1_text_holds_bounded_memory_in_linear_time(kind: str) -> None:
    """A '/' followed by megabytes without '!', one endless line, endless values, a '/' in every line."""
    result = probe("p1", kind, 32)
    assert result["rss_growth_mib"] < METER_READER_RSS_LIMIT_MIB, f"RSS grew {result['rss_growth_mib']} MiB"
    assert result["valid"] == 0
    assert_steady_cost(result["segment_seconds"])
    assert result["log_records"] == 0, result["last_log"]
