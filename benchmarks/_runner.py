"""Run one benchmark task for one implementation in this process; job JSON on stdin, results JSON on stdout.

    python _runner.py ours   # amshan from this checkout (run with the project's venv)
    python _runner.py old    # amshan 2021.12.1 (run with benchmarks/.old-venv's python)
    python _runner.py floor  # the floor of _floor.py (needs crcmod)

bench.py starts it once per implementation and task, so that peak-RSS figures belong to one task only and the
two packages named ``amshan`` never meet in one interpreter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # _measure, _floor (the old package cannot shadow: it lives in site-packages)

import _measure  # noqa: E402
from _measure import Impl  # noqa: E402


class _CountingHandler(logging.Handler):
    """Count log records (an application with logging at WARNING pays for their creation) without I/O."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class AmshanImpl(Impl):
    """amshan's public API: HdlcFrameReader, AutoDecoder, SmartMeterFrameContentProtocol (old and new)."""

    def __init__(self, which: str) -> None:
        if which == "ours":
            sys.path.insert(0, str(ROOT))
        import amshan

        where = Path(amshan.__file__).resolve()
        if which == "ours" and ROOT not in where.parents:
            raise SystemExit(f"expected amshan from {ROOT}, imported {where}")
        if which == "old" and Path(sys.prefix).resolve() not in where.parents:
            raise SystemExit(f"expected amshan 2021.12.1 from {sys.prefix}, imported {where}")
        self.name = which
        self.hdlc: Any = None
        self.autodecoder: Any = None
        self.meter_connection: Any = None
        self.missing: List[str] = []
        for module in ("hdlc", "autodecoder", "meter_connection"):
            try:
                setattr(self, module, __import__(f"amshan.{module}", fromlist=["_"]))
            except Exception as exc:  # ours lands piece by piece: report what is not there yet
                self.missing.append(f"amshan.{module}: {type(exc).__name__}: {exc}")

    def new_reader(self) -> Any:
        return self.hdlc.HdlcFrameReader()

    def count_valid(self, frames: List[Any]) -> int:
        n = 0
        if self.name == "ours":
            for frame in frames:
                if frame.is_valid:
                    n += 1
        else:  # what the old content protocol checked
            for frame in frames:
                if frame.is_good_ffc and frame.is_expected_length:
                    n += 1
        return n

    def new_decoder(self) -> Callable[[bytes], Optional[Dict[Any, Any]]]:
        return self.autodecoder.AutoDecoder().decode_frame_content  # type: ignore[no-any-return]

    def pipeline(self, chunks: List[bytes]) -> int:
        async def run() -> int:
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            protocol = self.meter_connection.SmartMeterFrameContentProtocol(queue)
            data_received = protocol.data_received
            decode = self.autodecoder.AutoDecoder().decode_frame_content
            get = queue.get_nowait
            empty = queue.empty
            made = 0
            for chunk in chunks:
                data_received(chunk)
                while not empty():
                    if decode(get()):
                        made += 1
            return made

        return asyncio.run(run())  # type: ignore[no-any-return]

    def feed_random(self, total: int, chunk: int) -> Dict[str, Any]:
        async def run() -> Dict[str, Any]:
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            protocol = self.meter_connection.SmartMeterFrameContentProtocol(queue)
            data_received = protocol.data_received
            messages = 0
            for piece in _measure.random_chunks(total, chunk):
                data_received(piece)
                while not queue.empty():
                    queue.get_nowait()
                    messages += 1
            return {"messages": messages}

        return asyncio.run(run())  # type: ignore[no-any-return]


class FloorImpl(Impl):
    """The floor of _floor.py."""

    name = "floor"

    def __init__(self) -> None:
        import _floor

        self.floor = _floor
        self.missing: List[str] = []
        self.hdlc = self.autodecoder = self.meter_connection = _floor  # every part is there

    def new_reader(self) -> Any:
        return self.floor.FloorReader()

    def count_valid(self, frames: List[Any]) -> int:
        return len(frames)  # the floor returns only frames whose FCS is good

    def new_decoder(self) -> Callable[[bytes], Optional[Dict[Any, Any]]]:
        return self.floor.decode  # type: ignore[no-any-return]

    def pipeline(self, chunks: List[bytes]) -> int:
        return self.floor.pipeline(chunks)  # type: ignore[no-any-return]

    def feed_random(self, total: int, chunk: int) -> Dict[str, Any]:
        read = self.floor.sink()
        messages = 0
        for piece in _measure.random_chunks(total, chunk):
            messages += len(read(piece))
        return {"messages": messages}


def _meter_inputs(meter: Dict[str, Any]) -> Dict[str, Any]:
    frames = [bytes.fromhex(h) for h in meter["frames"]]
    contents = [bytes.fromhex(h) for h in meter["contents"]]
    return {"frames": frames, "contents": contents}


def task_speed(impl: Any, job: Dict[str, Any]) -> Dict[str, Any]:
    """Reader, decoder and pipeline figures for every meter."""
    out: Dict[str, Any] = {}
    chunk = job["chunk"]
    runs = job["runs"]
    parts = job.get("parts", ["reader", "decoder", "pipeline"])
    for meter in job["meters"]:
        inputs = _meter_inputs(meter)
        stream = _measure.build_stream(inputs["frames"], job["stream_bytes"])
        n_frames = len(inputs["frames"]) * (len(stream) // len(b"".join(inputs["frames"])))
        chunks = _measure.chunked(stream, chunk)
        res: Dict[str, Any] = {"stream_bytes": len(stream), "frames": n_frames}
        needs = {
            "reader": ("hdlc",),
            "decoder": ("autodecoder",),
            "pipeline": ("hdlc", "autodecoder", "meter_connection"),
        }
        for part in parts:
            if not all(getattr(impl, module) is not None for module in needs[part]):
                continue
            try:
                if part == "reader":
                    res[part] = _measure.measure_reader(impl, chunks, n_frames, runs)
                elif part == "decoder":
                    contents, messages = inputs["contents"], job["decode_messages"]
                    res[part] = _measure.measure_decoder(impl, contents, messages, runs)
                else:
                    res[part] = _measure.measure_pipeline(impl, chunks, n_frames, runs)
            except Exception as exc:  # e.g. the old AutoDecoder raises KeyError on the Swedish list
                res[part] = {"error": f"{type(exc).__name__}: {exc}", "ok": False}
        out[meter["name"]] = res
    return out


def task_pipeline_memory(impl: Any, job: Dict[str, Any]) -> Dict[str, Any]:
    """Peak RSS growth of one pipeline pass over the first meter's stream (stream built beforehand)."""
    inputs = _meter_inputs(job["meters"][0])
    chunks = _measure.chunked(_measure.build_stream(inputs["frames"], job["stream_bytes"]), job["chunk"])
    impl.pipeline(chunks[:64])  # warm up imports and caches before the baseline
    res = _measure.measure_peak_growth(lambda: impl.pipeline(chunks))
    res["stream_bytes"] = sum(map(len, chunks))
    return res


def task_random_memory(impl: Any, job: Dict[str, Any]) -> Dict[str, Any]:
    """Peak RSS growth while random bytes go through the reader and the content protocol."""
    impl.feed_random(1 << 16, job["chunk"])  # warm up
    box: Dict[str, Any] = {}
    total, chunk = job["random_bytes"], job["chunk"]
    res = _measure.measure_peak_growth(lambda: box.update(impl.feed_random(total, chunk)))
    res.update(box, random_bytes=job["random_bytes"])
    return res


def task_big_read(impl: Any, job: Dict[str, Any]) -> Dict[str, Any]:
    """One read() of a big valid stream against 1 KiB reads of the same stream."""
    inputs = _meter_inputs(job["meters"][0])
    stream = _measure.build_stream(inputs["frames"], job["big_bytes"])
    return _measure.measure_big_read(impl, stream, job["chunk"], job["runs"])


TASKS = {
    "speed": task_speed,
    "pipeline_memory": task_pipeline_memory,
    "random_memory": task_random_memory,
    "big_read": task_big_read,
}


def main() -> None:
    which = sys.argv[1]
    job = json.load(sys.stdin)
    counter = _CountingHandler()
    logging.getLogger().addHandler(counter)
    impl: Any = FloorImpl() if which == "floor" else AmshanImpl(which)
    result: Dict[str, Any] = {"impl": which, "python": sys.version.split()[0], "missing": impl.missing}
    if not impl.missing or job["task"] == "speed":
        result["result"] = TASKS[job["task"]](impl, job)
    result["log_records"] = counter.count
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
