"""Serve timed P1 passes for one implementation (JSON lines on stdin/stdout): bytes -> dictionaries.

    python _p1_runner.py ours    # amshan.reader.MeterReader from this checkout (the project's venv)
    python _p1_runner.py dsmr    # dsmr_parser's TelegramBuffer + TelegramParser, CRC on (.dsmr-venv)
    python _p1_runner.py floor   # split at '/' .. '!', CRC-16/ARC (crcmod), the lines str.split into a dict

Commands: {"cmd": "setup", "stream": path, "spec": dsmr_parser specification name, "chunk": bytes} answers
the telegram count of one warm-up pass; {"cmd": "run"} answers {"seconds", "count"}; {"cmd": "quit"}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent


def ours(spec: str) -> Callable[[List[bytes]], int]:
    """Return a pass of amshan's MeterReader over the chunks (a new reader per pass)."""
    sys.path.insert(0, str(ROOT))
    from amshan.reader import MeterReader

    def run(chunks: List[bytes]) -> int:
        reader = MeterReader()
        read = reader.read
        return sum(len(read(chunk)) for chunk in chunks)

    return run


def dsmr(spec: str) -> Callable[[List[bytes]], int]:
    """Return a pass of dsmr_parser's buffer and parser (checksum validation on) over the chunks."""
    from dsmr_parser import telegram_specifications
    from dsmr_parser.clients.telegram_buffer import TelegramBuffer
    from dsmr_parser.parsers import TelegramParser

    parser = TelegramParser(getattr(telegram_specifications, spec), apply_checksum_validation=True)

    def run(chunks: List[bytes]) -> int:
        buffer = TelegramBuffer()
        count = 0
        for chunk in chunks:
            buffer.append(chunk.decode("ascii"))
            for telegram in buffer.get_all():
                parser.parse(telegram)
                count += 1
        return count

    return run


def floor(spec: str) -> Callable[[List[bytes]], int]:
    """Return the least a P1 reader does: cut at '/' .. '!', check the CRC, split the lines into a dict."""
    import crcmod.predefined

    crc16 = crcmod.predefined.mkCrcFun("crc-16")

    def run(chunks: List[bytes]) -> int:
        buffer = b""
        count = 0
        for chunk in chunks:
            buffer += chunk
            while True:
                start = buffer.find(b"/")
                end = buffer.find(b"\r\n!", start)
                if start < 0 or end < 0 or len(buffer) < end + 7:
                    break
                telegram = buffer[start : end + 3]
                if crc16(telegram) == int(buffer[end + 3 : end + 7], 16):
                    lines = telegram.decode("ascii").split("\r\n")
                    values = dict(line.split("(", 1) for line in lines[2:-1])
                    count += len(values) > 0
                buffer = buffer[end + 7 :]
        return count

    return run


def main() -> None:
    """Answer commands for one implementation until told to quit."""
    make = {"ours": ours, "dsmr": dsmr, "floor": floor}[sys.argv[1]]
    run: Callable[[List[bytes]], int] = lambda chunks: 0  # noqa: E731
    chunks: List[bytes] = []
    for line in sys.stdin:
        cmd: Dict[str, Any] = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "setup":
            data = Path(cmd["stream"]).read_bytes()
            size = cmd["chunk"]
            chunks = [data[i : i + size] for i in range(0, len(data), size)]
            run = make(cmd["spec"])
            reply: Dict[str, Any] = {"count": run(chunks)}
        else:
            started = time.perf_counter()
            count = run(chunks)
            reply = {"seconds": time.perf_counter() - started, "count": count}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
