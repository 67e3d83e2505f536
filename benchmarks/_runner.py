"""Serve benchmark passes for one implementation (JSON lines on stdin/stdout), or run one memory task.

    python _runner.py ours serve   # amshan from this checkout (run with the project's venv)
    python _runner.py old serve    # amshan 2021.12.1 (run with benchmarks/.old-venv's python)
    python _runner.py floor serve  # the floor of _floor.py (needs crcmod)
    python _runner.py ours task    # one memory task, its job JSON on stdin (fresh process: clean peak RSS)

bench.py keeps one server per implementation and asks them for timed passes in turn, so that load from
elsewhere on a shared machine hits all implementations alike; the two packages named ``amshan`` never meet in
one interpreter.
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

    def new_decoder(
        self, options: Optional[Dict[str, Any]] = None
    ) -> Callable[[bytes], Optional[Dict[Any, Any]]]:
        # options (e.g. max_shapes=0) are ours only: the old AutoDecoder has no shape cache to turn off
        kwargs = (options or {}) if self.name == "ours" else {}
        return self.autodecoder.AutoDecoder(**kwargs).decode_frame_content  # type: ignore[no-any-return]

    def pipeline(self, chunks: List[bytes], options: Optional[Dict[str, Any]] = None) -> int:
        async def run() -> int:
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            protocol = self.meter_connection.SmartMeterFrameContentProtocol(queue)
            data_received = protocol.data_received
            decode = self.new_decoder(options)
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

    def new_decoder(
        self, options: Optional[Dict[str, Any]] = None
    ) -> Callable[[bytes], Optional[Dict[Any, Any]]]:
        return self.floor.decode  # type: ignore[no-any-return]

    def pipeline(self, chunks: List[bytes], options: Optional[Dict[str, Any]] = None) -> int:
        return self.floor.pipeline(chunks)  # type: ignore[no-any-return]

    def feed_random(self, total: int, chunk: int) -> Dict[str, Any]:
        read = self.floor.sink()
        messages = 0
        for piece in _measure.random_chunks(total, chunk):
            messages += len(read(piece))
        return {"messages": messages}


def _inputs(meter: Dict[str, Any], stream_bytes: int, chunk: int) -> Dict[str, Any]:
    frames = [bytes.fromhex(h) for h in meter["frames"]]
    stream, count = _measure.build_stream(frames, stream_bytes)
    return {
        "chunks": _measure.chunked(stream, chunk),
        "bytes": len(stream),
        "frames": count,
        "contents": [bytes.fromhex(h) for h in meter["contents"]],
    }


_NEEDS = {
    "reader": ("hdlc",),
    "decoder": ("autodecoder",),
    "pipeline": ("hdlc", "autodecoder", "meter_connection"),
}


def _consistency(impl: Any, contents: List[bytes], options: Dict[str, Any]) -> Dict[str, Any]:
    """Compare one long-lived decoder (warm: caches filled) with a fresh decoder per message (cold)."""
    try:
        warm = impl.new_decoder(options)
        for content in contents * 2:  # fill whatever the decoder remembers (shapes: on the second sighting)
            warm(content)
        differ = sum(1 for content in contents if warm(content) != impl.new_decoder(options)(content))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"messages": len(contents), "differ": differ}


def serve(impl: Any) -> None:
    """Answer setup/run/quit commands, one JSON object a line, until quit or end of input."""
    passes: Dict[str, Dict[str, Any]] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        reply: Dict[str, Any]
        if cmd["cmd"] == "setup":
            reply = {"missing": impl.missing, "python": sys.version.split()[0], "meters": {}}
            for meter in cmd["meters"]:
                inputs = _inputs(meter, cmd["stream_bytes"], cmd["chunk"])
                contents = inputs["contents"]
                batch = (contents * (-(-cmd["decode_messages"] // len(contents))))[: cmd["decode_messages"]]
                info: Dict[str, Any] = {"bytes": inputs["bytes"], "frames": inputs["frames"], "parts": {}}
                expected = {"reader": inputs["frames"], "decoder": len(batch), "pipeline": inputs["frames"]}
                options = meter.get("decoder_options", {})
                makers = {
                    "reader": lambda i=inputs: _measure.reader_pass(impl, i["chunks"]),
                    "decoder": lambda b=batch, o=options: _measure.decoder_pass(impl, b, o),
                    "pipeline": lambda i=inputs, o=options: _measure.pipeline_pass(impl, i["chunks"], o),
                }
                for part, needs in _NEEDS.items():
                    if not all(getattr(impl, module) is not None for module in needs):
                        continue
                    func = makers[part]()
                    try:
                        seconds, count = _measure.time_pass(func)  # warm-up, and the count check
                    except Exception as exc:  # e.g. the old AutoDecoder raises KeyError on the Swedish list
                        info["parts"][part] = {"error": f"{type(exc).__name__}: {exc}"}
                        continue
                    passes.setdefault(meter["name"], {})[part] = func
                    info["parts"][part] = {
                        "expected": expected[part],
                        "count": count,
                        "ok": count == expected[part],
                        "warmup_seconds": seconds,
                    }
                if impl.autodecoder is not None:
                    info["consistency"] = _consistency(impl, contents, options)
                reply["meters"][meter["name"]] = info
        elif cmd["cmd"] == "run":
            seconds, count = _measure.time_pass(passes[cmd["meter"]][cmd["part"]])
            reply = {"seconds": seconds, "count": count}
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def task_pipeline_memory(impl: Any, job: Dict[str, Any]) -> Dict[str, Any]:
    """Peak RSS growth of one pipeline pass over the first meter's stream (stream built beforehand)."""
    chunks = _inputs(job["meters"][0], job["stream_bytes"], job["chunk"])["chunks"]
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
    frames = [bytes.fromhex(h) for h in job["meters"][0]["frames"]]
    stream, _ = _measure.build_stream(frames, job["big_bytes"])
    return _measure.measure_big_read(impl, stream, job["chunk"], job["runs"])


TASKS = {
    "pipeline_memory": task_pipeline_memory,
    "random_memory": task_random_memory,
    "big_read": task_big_read,
}


def main() -> None:
    which, mode = sys.argv[1], sys.argv[2]
    counter = _CountingHandler()
    logging.getLogger().addHandler(counter)
    impl: Any = FloorImpl() if which == "floor" else AmshanImpl(which)
    if mode == "serve":
        serve(impl)
        return
    job = json.load(sys.stdin)
    result: Dict[str, Any] = {"impl": which, "python": sys.version.split()[0], "missing": impl.missing}
    if not impl.missing:
        result["result"] = TASKS[job["task"]](impl, job)
    result["log_records"] = counter.count
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
