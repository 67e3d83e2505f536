"""Feed endless garbage to a reader or a protocol in a fresh process; print memory, time, logs (JSON).

python tests/_resource_probe.py reader|meter|content|frames random|headers|dense|mbus|apdu MEGABYTES [CHUNK]
python tests/_resource_probe.py p1 slash|line|values|slashes MEGABYTES [CHUNK]   # hostile P1 text

"reader" is the HDLC frame reader; "meter" is MeterReader with both keys (so bare ciphered APDUs are
looked for too); "mbus" and "apdu" are hostile M-Bus and ciphered-APDU headers claiming their longest lengths;
"p1" is MeterReader on endless P1 text (see P1_HOSTILE).

Peak RSS is read from /proc/self/status (VmHWM, reset through /proc/self/clear_refs after warming up), so the
figure is this process's growth while reading, not the interpreter's start-up.  The protocols are fed through
a real socket pair and asyncio transport, with a consumer draining their bounded queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import socket
import sys
import threading
import time
from typing import Any, Callable

import crcmod.predefined

from amshan.hdlc import HdlcFrameReader
from amshan.meter_connection import (
    SmartMeterBaseProtocol,
    SmartMeterFrameContentProtocol,
    SmartMeterFrameProtocol,
)
from amshan.reader import MeterReader

MIB = 1 << 20
SEGMENTS = 10


def _status_kib(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        match = re.search(rf"^{key}:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match, key
    return int(match.group(1))


P1_HOSTILE = {  # (what starts the stream, what repeats forever)
    "slash": (b"/ABC5\r\n\r\n", b"1-0:1.8.0(00001234.567*kWh)\r\n"),  # a telegram that never ends
    "line": (b"/ABC5\r\n\r\n1-0:1.8.0(", b"1234567890"),  # one endless line
    "values": (b"/ABC5\r\n\r\n1-0:99.97.0", b"(1)"),  # endless values on one line
    "slashes": (b"", b"/ABC5 text/\r\n/x\r\n\r\n1-0:1.7.0(1/2)\r\n"),  # a '/' in every line
}


def p1_garbage(kind: str, chunk: int) -> Callable[[], bytes]:
    """Return a generator of the chunks of one endless hostile P1 stream."""
    start, unit = P1_HOSTILE[kind]
    block = unit * (2 * chunk // len(unit) + 2)
    head, offset = start, 0

    def next_chunk() -> bytes:
        nonlocal head, offset
        body = block[offset : offset + chunk - len(head)]
        data, head = head + body, b""
        offset = (offset + len(body)) % len(unit)
        return data

    return next_chunk


def garbage(kind: str, chunk: int, seed: int = 20) -> Callable[[], bytes]:
    """Return a generator of garbage chunks: random bytes, hostile headers, or flag-dense noise."""
    rng = random.Random(seed)
    if kind == "random":
        return lambda: rng.randbytes(chunk)
    if kind == "headers":  # a good HCS claiming the longest frame, then too few bytes, over and over
        x25 = crcmod.predefined.mkCrcFun("x-25")
        header = bytes.fromhex("a7ff41088313")
        unit = b"\x7e" + header + x25(header).to_bytes(2, "little") + rng.randbytes(100)
        block = unit * (max(4 * MIB, 2 * chunk) // len(unit))
    elif kind == "mbus":  # M-Bus headers claiming the longest frame (and its 256-octet wrap), never closed
        unit = bytes.fromhex("68ffff6853ff0001") + rng.randbytes(200)
        block = unit * (max(4 * MIB, 2 * chunk) // len(unit))
    elif kind == "apdu":  # authenticated ciphered-APDU headers claiming 4000 octets, then too few
        unit = bytes.fromhex("db084b414d4501ac4d6e820fa030") + rng.randbytes(300)
        block = unit * (max(4 * MIB, 2 * chunk) // len(unit))
    elif kind == "dense":  # flags, escapes and type-3 format octets everywhere
        alphabet = bytes([0x7E] * 16 + list(range(0xA0, 0xA8)) * 2 + [0x7D] * 8) + bytes(range(256))
        table = bytes(alphabet[index * len(alphabet) // 256] for index in range(256))
        block = rng.randbytes(max(4 * MIB, 2 * chunk)).translate(table)
    else:
        raise SystemExit(f"unknown garbage {kind!r}")

    def next_chunk() -> bytes:
        start = rng.randrange(len(block) - chunk)
        return block[start : start + chunk]

    return next_chunk


class _Counter(logging.Handler):
    """Count amshan's log records and keep the last few messages."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records = 0
        self.warnings = 0
        self.last: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        self.warnings += record.levelno >= logging.WARNING
        self.last = [*self.last[-4:], record.getMessage()]


def feed_reader(next_chunk: Callable[[], bytes], total: int) -> dict[str, Any]:
    """Read total bytes of garbage (rounded up to whole chunks) in tenths, timing each in CPU seconds."""
    reader = HdlcFrameReader()
    valid = invalid = most_buffered = done = 0
    segment_seconds: list[float] = []
    for segment in range(1, SEGMENTS + 1):
        started = time.process_time()
        while done < total * segment // SEGMENTS:  # a chunk bigger than a tenth leaves later tenths empty
            chunk = next_chunk()
            for frame in reader.read(chunk):
                if frame.is_valid:
                    valid += 1
                else:
                    invalid += 1
            most_buffered = max(most_buffered, reader.buffered_bytes)
            done += len(chunk)
        segment_seconds.append(time.process_time() - started)
    return {
        "bytes": done,
        "valid": valid,
        "invalid": invalid,
        "discarded": reader.discarded_bytes,
        "most_buffered": most_buffered,
        "segment_seconds": segment_seconds,
    }


def feed_meter_reader(next_chunk: Callable[[], bytes], total: int) -> dict[str, Any]:
    """Read total bytes of garbage through MeterReader (both keys) in tenths, timing each in CPU seconds."""
    reader = MeterReader(bytes(range(16)), bytes(range(16, 32)))
    messages = most_buffered = done = 0
    segment_seconds: list[float] = []
    for segment in range(1, SEGMENTS + 1):
        started = time.process_time()
        while done < total * segment // SEGMENTS:
            chunk = next_chunk()
            messages += len(reader.read(chunk))
            most_buffered = max(most_buffered, reader.buffered_bytes)
            done += len(chunk)
        segment_seconds.append(time.process_time() - started)
    stats = reader.stats
    return {
        "bytes": done,
        "valid": stats.valid_frames + messages,
        "invalid": stats.invalid_frames,
        "most_buffered": most_buffered,
        "segment_seconds": segment_seconds,
    }


async def feed_protocol(kind: str, next_chunk: Callable[[], bytes], total: int) -> dict[str, Any]:
    """Stream total bytes of garbage through a socket pair into a protocol whose queue a consumer drains."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=100)
    protocol: SmartMeterBaseProtocol = (
        SmartMeterFrameContentProtocol(queue) if kind == "content" else SmartMeterFrameProtocol(queue)
    )
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, ours)
    received = 0

    async def consume() -> None:
        nonlocal received
        while True:
            await queue.get()
            received += 1

    def write() -> None:
        sent = 0
        with theirs:
            while sent < total:
                chunk = next_chunk()
                theirs.sendall(chunk)
                sent += len(chunk)

    consumer = asyncio.ensure_future(consume())
    writer = threading.Thread(target=write)
    writer.start()
    await protocol.done
    writer.join()
    consumer.cancel()
    transport.close()
    return {
        "bytes": total,
        "valid": protocol.frames_received,
        "invalid": protocol.invalid_frames,
        "discarded": protocol.discarded_bytes,
        "queued": received,
        "queue_full_drops": protocol.queue_full_drops,
    }


def main() -> None:
    """Run one scenario and print its figures as one JSON line."""
    target, kind, megabytes = sys.argv[1], sys.argv[2], float(sys.argv[3])
    chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 64 * 1024
    total = int(megabytes * MIB)
    if target == "p1":
        feed_meter_reader(p1_garbage(kind, chunk), min(64 * chunk, 4 * MIB))  # warm up
        next_chunk = p1_garbage(kind, chunk)
    else:
        next_chunk = garbage(kind, chunk)
        feed_reader(next_chunk, min(64 * chunk, 4 * MIB))  # warm up allocator and caches
    counter = _Counter()
    logger = logging.getLogger("amshan")
    logger.addHandler(counter)
    logger.setLevel(logging.DEBUG)
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    started = time.perf_counter()
    if target == "reader":
        result = feed_reader(next_chunk, total)
    elif target in ("meter", "p1"):
        result = feed_meter_reader(next_chunk, total)
    else:
        result = asyncio.run(feed_protocol(target, next_chunk, total))
    result.update(
        seconds=round(time.perf_counter() - started, 3),
        rss_growth_mib=round((_status_kib("VmHWM") - baseline) / 1024, 2),
        log_records=counter.records,
        log_warnings=counter.warnings,
        last_log=counter.last,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
