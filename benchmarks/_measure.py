"""Measurement harness shared by every implementation under test (stdlib only: it also runs in the old venv).

Each implementation is an ``Impl``: a frame reader factory, a per-frame validity test, a message decoder
factory and a pipeline (bytes in 1 KiB chunks -> dictionaries).  The same pass functions drive all of them,
so the ratios compare like with like.  A pass returns how many results it produced, which the caller checks
against what the stream holds.
"""

from __future__ import annotations

import gc
import random
import resource
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

Pass = Callable[[], int]


class Impl:
    """What the harness needs from one implementation (amshan 2.x, amshan 2021.12.1 or the floor)."""

    name = "?"

    def new_reader(self) -> Any:
        """Return a fresh frame reader with a ``read(bytes) -> list`` method."""
        raise NotImplementedError

    def count_valid(self, frames: List[Any]) -> int:
        """Return how many of the frames a reader returned are valid (as a consumer would check)."""
        raise NotImplementedError

    def new_decoder(
        self, options: Optional[Dict[str, Any]] = None
    ) -> Callable[[bytes], Optional[Dict[Any, Any]]]:
        """Return a function decoding one message (HDLC information field, LLC included) to a dict.

        options are keyword arguments of our AutoDecoder (max_shapes=0: the cache off); others ignore them.
        """
        raise NotImplementedError

    def pipeline(self, chunks: List[bytes], options: Optional[Dict[str, Any]] = None) -> int:
        """Feed the chunks through the content protocol and decode every message; return dicts made."""
        raise NotImplementedError

    def feed_random(self, total: int, chunk: int) -> Dict[str, Any]:
        """Feed ``total`` random bytes through the reader and content protocol (memory test)."""
        raise NotImplementedError


def build_stream(frames: List[bytes], min_bytes: int) -> Tuple[bytes, int]:
    """Repeat the frames in order into a stream of at least ``min_bytes``; return it and its frame count."""
    cycle = b"".join(frames)
    reps = max(1, -(-min_bytes // len(cycle)))
    return cycle * reps, reps * len(frames)


def chunked(data: bytes, size: int) -> List[bytes]:
    """Split ``data`` into ``size``-byte chunks (sliced before timing so slicing is not measured)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def reader_pass(impl: Impl, chunks: List[bytes]) -> Pass:
    """One pass of a fresh reader over the chunks, checking every returned frame's validity."""

    def once() -> int:
        read = impl.new_reader().read
        count_valid = impl.count_valid
        valid = 0
        for chunk in chunks:
            frames = read(chunk)
            if frames:
                valid += count_valid(frames)
        return valid

    return once


def decoder_pass(impl: Impl, batch: List[bytes], options: Optional[Dict[str, Any]] = None) -> Pass:
    """One pass of a fresh AutoDecoder over the messages; counts the dicts it returns."""

    def once() -> int:
        decode = impl.new_decoder(options)
        ok = 0
        for content in batch:
            if decode(content):
                ok += 1
        return ok

    return once


def pipeline_pass(impl: Impl, chunks: List[bytes], options: Optional[Dict[str, Any]] = None) -> Pass:
    """One pass of bytes -> dictionaries through the implementation's pipeline."""
    return lambda: impl.pipeline(chunks, options)


def time_pass(func: Pass) -> Tuple[float, int]:
    """Run one pass after a collection; return (seconds, results)."""
    gc.collect()
    start = time.perf_counter()
    count = func()
    return time.perf_counter() - start, count


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


def measure_big_read(impl: Impl, stream: bytes, chunk: int, runs: int) -> Dict[str, Any]:
    """Compare the per-byte cost of one ``read()`` of the whole stream with ``chunk``-byte reads.

    The two are timed alternately, the median of each taken.
    """
    small = reader_pass(impl, chunked(stream, chunk))

    def big() -> int:
        return impl.count_valid(impl.new_reader().read(stream))

    small_times, big_times, counts = [], [], set()
    for _ in range(runs):
        for func, times in ((small, small_times), (big, big_times)):
            seconds, count = time_pass(func)
            times.append(seconds)
            counts.add(count)
    small_seconds, big_seconds = sorted(small_times)[runs // 2], sorted(big_times)[runs // 2]
    return {
        "bytes": len(stream),
        "small_seconds": small_seconds,
        "big_seconds": big_seconds,
        "ratio": big_seconds / small_seconds,
        "ok": len(counts) == 1,
        "frames": counts.pop() if len(counts) == 1 else sorted(counts),
    }
