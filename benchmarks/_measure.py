"""Measurement harness shared by every implementation under test (stdlib only: it also runs in the old venv).

Each implementation is an ``Impl``: a frame reader factory, a per-frame validity test, a message decoder
factory and a pipeline (bytes in 1 KiB chunks -> dictionaries).  The same functions time all of them, so the
ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import gc
import random
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

MB = 1_000_000


class Impl:
    """What the harness needs from one implementation (amshan 2.x, amshan 2021.12.1 or the floor)."""

    name = "?"

    def new_reader(self) -> Any:
        """Return a fresh frame reader with a ``read(bytes) -> list`` method."""
        raise NotImplementedError

    def count_valid(self, frames: List[Any]) -> int:
        """Return how many of the frames a reader returned are valid (as a consumer would check)."""
        raise NotImplementedError

    def new_decoder(self) -> Callable[[bytes], Optional[Dict[Any, Any]]]:
        """Return a function decoding one message (HDLC information field, LLC included) to a dict."""
        raise NotImplementedError

    def pipeline(self, chunks: List[bytes]) -> int:
        """Feed the chunks through the content protocol and decode every message; return dicts made."""
        raise NotImplementedError

    def pipeline_sink(self) -> Callable[[bytes], Any]:
        """Return a ``data_received``-like callable for the memory test (no decoding needed)."""
        raise NotImplementedError


def build_stream(frames: List[bytes], min_bytes: int) -> bytes:
    """Repeat the frames in order until the stream holds at least ``min_bytes``; whole frames only."""
    cycle = b"".join(frames)
    reps = -(-min_bytes // len(cycle))
    return cycle * reps


def chunked(data: bytes, size: int) -> List[bytes]:
    """Split ``data`` into ``size``-byte chunks (sliced before timing so slicing is not measured)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def timed_runs(func: Callable[[], int], runs: int) -> Dict[str, Any]:
    """Run ``func`` ``runs`` times after one untimed warm-up; return median seconds and the count it gave."""
    count = func()
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        got = func()
        times.append(time.perf_counter() - start)
        if got != count:
            raise RuntimeError(f"run gave {got} results, the warm-up gave {count}")
    return {"seconds": statistics.median(times), "all_seconds": times, "count": count}


def measure_reader(impl: Impl, chunks: List[bytes], expected_frames: int, runs: int) -> Dict[str, Any]:
    """Time a fresh reader over the chunks (and the validity test of every frame it returns)."""
    nbytes = sum(map(len, chunks))

    def once() -> int:
        reader = impl.new_reader()
        read = reader.read
        count_valid = impl.count_valid
        valid = 0
        for chunk in chunks:
            frames = read(chunk)
            if frames:
                valid += count_valid(frames)
        return valid

    res = timed_runs(once, runs)
    res.update(
        bytes=nbytes,
        mb_per_s=nbytes / res["seconds"] / MB,
        frames_per_s=res["count"] / res["seconds"],
        ok=res["count"] == expected_frames,
        expected=expected_frames,
    )
    return res


def measure_decoder(impl: Impl, contents: List[bytes], messages: int, runs: int) -> Dict[str, Any]:
    """Time one decoder over ``messages`` messages cycling through ``contents``."""
    batch = (contents * (-(-messages // len(contents))))[:messages]

    def once() -> int:
        decode = impl.new_decoder()
        ok = 0
        for content in batch:
            if decode(content):
                ok += 1
        return ok

    res = timed_runs(once, runs)
    res.update(
        messages=len(batch),
        msgs_per_s=len(batch) / res["seconds"],
        ok=res["count"] == len(batch),
        expected=len(batch),
    )
    return res


def measure_pipeline(impl: Impl, chunks: List[bytes], expected_msgs: int, runs: int) -> Dict[str, Any]:
    """Time bytes -> dictionaries through the implementation's pipeline."""
    nbytes = sum(map(len, chunks))
    res = timed_runs(lambda: impl.pipeline(chunks), runs)
    res.update(
        bytes=nbytes,
        msgs_per_s=res["count"] / res["seconds"],
        mb_per_s=nbytes / res["seconds"] / MB,
        ok=res["count"] == expected_msgs,
        expected=expected_msgs,
    )
    return res


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure_peak_growth(func: Callable[[], Any]) -> Dict[str, Any]:
    """Return how much ``func`` raises this process's peak RSS (run it in a fresh process for meaning)."""
    gc.collect()
    before = peak_rss_bytes()
    start = time.perf_counter()
    func()
    seconds = time.perf_counter() - start
    after = peak_rss_bytes()
    return {"peak_before": before, "peak_after": after, "growth": after - before, "seconds": seconds}


def random_chunks(total: int, chunk: int, seed: int = 6) -> Iterable[bytes]:
    """Yield ``total`` random bytes in ``chunk``-byte pieces, generated on the fly (never all held)."""
    rnd = random.Random(seed)
    block = 64 * chunk
    done = 0
    while done < total:
        data = rnd.randbytes(min(block, total - done))
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]
        done += len(data)


def feed_all(sink: Callable[[bytes], Any], chunks: Iterable[bytes]) -> None:
    """Call ``sink`` with every chunk."""
    for chunk in chunks:
        sink(chunk)


def measure_big_read(impl: Impl, stream: bytes, chunk: int, runs: int) -> Dict[str, Any]:
    """Compare the per-byte cost of one ``read()`` of the whole stream with ``chunk``-byte reads."""
    chunks = chunked(stream, chunk)

    def small() -> int:
        reader = impl.new_reader()
        read = reader.read
        count_valid = impl.count_valid
        n = 0
        for c in chunks:
            n += count_valid(read(c))
        return n

    def big() -> int:
        return impl.count_valid(impl.new_reader().read(stream))

    small_res = timed_runs(small, runs)
    big_res = timed_runs(big, runs)
    return {
        "bytes": len(stream),
        "small_seconds": small_res["seconds"],
        "big_seconds": big_res["seconds"],
        "ratio": big_res["seconds"] / small_res["seconds"],
        "ok": small_res["count"] == big_res["count"],
        "frames": big_res["count"],
    }


def run_async(coro_func: Callable[[], Any]) -> Any:
    """Run an async callable to completion in a new event loop (protocols want a loop around them)."""
    return asyncio.run(coro_func())
