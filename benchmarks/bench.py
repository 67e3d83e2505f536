"""amshan benchmark: this checkout against amshan 2021.12.1 and the Python floor, on real meter frames.

    .venv/bin/python benchmarks/bench.py          # the issue's sizes: 10 MB streams, 200 MB random, ...
    .venv/bin/python benchmarks/bench.py --quick  # smaller sizes, about a minute
    .venv/bin/python benchmarks/bench.py --mqtt-only  # only the MQTT row (a local mosquitto)

Inputs are real frames from ../shared/corpus (Aidon NO list 3, Kaifa NO list 3, Kamstrup NO list 2, the
Swedish Aidon 27-item list, and Aidon lists 1-3 interleaved).  Each frame is varied into several messages of
the same shape with other values (numbers and clock times re-drawn, HCS and FCS recomputed with
amshan.fastframecheck.crc16_x25), so no implementation can win by remembering whole messages.  The frames
are repeated into a stream and fed in 1 KiB chunks.

Every implementation runs in its own process (_runner.py): ours with this interpreter, amshan 2021.12.1
with benchmarks/.old-venv (made on first use: python -m venv + pip install amshan==2021.12.1), the floor
(_floor.py) with this interpreter.  They take turns pass by pass; each figure is a median of several
passes.  On a shared, noisy machine the ratios of one run are the figures that count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "frames.jsonl"
OLD_VENV = HERE / ".old-venv"
OLD_SPEC = "amshan==2021.12.1"  # yanked on PyPI; an exact pin still installs it
RUNNER = HERE / "_runner.py"
METER_READER = HERE / "_meter_reader.py"

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from _p1 import report_p1, run_p1  # noqa: E402
from _venvs import venv_python  # noqa: E402

#: (label, corpus ids in stream order): real, valid, unencrypted single-frame HDLC captures
METERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("Aidon NO list 3", ("no-aidon-list3-gh1119-1",)),
    ("Kaifa NO list 3", ("no-kaifa-list3-hass-hourly",)),
    ("Kamstrup NO list 2", ("no-kamstrup-list2-em001-1",)),
    ("Aidon SE 27 items", ("se-aidon-se-list-gh143-2",)),
    # what an Aidon meter sends, compressed: list 1 every 2.5 s, list 2 every 10 s, list 3 (here) more often
    (
        "Aidon NO lists 1-3",
        ("no-aidon-list1-hass-mini",) * 3
        + ("no-aidon-list2-hass-short",)
        + ("no-aidon-list1-hass-mini",) * 3
        + ("no-aidon-list2-hass-short", "no-aidon-list3-gh1119-1"),
    ),
]
MAIN_METER = "Aidon NO list 3"
MANY_METERS = "200 Aidon meters"  # Aidon NO list 3 of 200 meters (other meter ids) interleaved
MANY_LAYOUTS = "50 layouts"  # 50 list layouts of Aidon, Kaifa, Kamstrup NO/SE meters interleaved
CACHE_OFF = "Aidon 3, cache off"  # Aidon NO list 3 through AutoDecoder(max_shapes=0): the full decoder
METER_COUNT = 200
LAYOUT_COUNT = 50
LAYOUT_MAKERS = ("aidon", "kaifa", "kamstrup")

FULL = {
    "stream_bytes": 10_000_000,
    "old_stream_bytes": 1_000_000,
    "runs": 7,
    "decode_messages": 20_000,
    "old_decode_messages": 1_000,
    "random_bytes": 200_000_000,
    "big_bytes": 100_000_000,
    "big_runs": 3,
    "p1_stream_bytes": 5_000_000,
    "p1_dsmr_stream_bytes": 500_000,
}
QUICK = {
    "stream_bytes": 3_000_000,
    "old_stream_bytes": 250_000,
    "runs": 5,
    "decode_messages": 5_000,
    "old_decode_messages": 300,
    "random_bytes": 40_000_000,
    "big_bytes": 20_000_000,
    "big_runs": 3,
    "p1_stream_bytes": 1_500_000,
    "p1_dsmr_stream_bytes": 150_000,
}
CHUNK = 1024
VARIANTS = 16


# ---------------------------------------------------------------------------------------------- inputs


def _crc() -> Any:
    from amshan.fastframecheck import crc16_x25

    return crc16_x25


def _info_position(frame_data: bytes) -> int:
    """Return where the information field starts in frame data (between the flags)."""
    pos = 2
    while not frame_data[pos] & 1:  # destination address: the last byte has bit 0 set
        pos += 1
    pos += 1
    while not frame_data[pos] & 1:  # source address, the same way
        pos += 1
    return pos + 4  # control, HCS


def _value_leaves(content: bytes) -> List[Tuple[int, int]]:
    """Return (tag, offset of the value) of the integers, strings and 12-byte date-times (tag 0x19) of a
    data-notification.

    The date-time of the APDU header (09 0C .., or a bare 0C .. as Kamstrup sends it) counts as one too.
    """
    leaves = []
    tag = content[8]
    if tag == 0x09 and content[9] == 12:
        leaves.append((0x19, 10))
    elif tag == 0x0C:
        leaves.append((0x19, 9))
    pos = 9 if tag == 0 else (10 + content[9] if tag == 0x09 else 9 + tag)
    sizes = {0x06: 4, 0x05: 4, 0x12: 2, 0x10: 2, 0x0F: 1, 0x11: 1, 0x16: 1, 0x14: 8, 0x15: 8}
    while pos < len(content):
        tag = content[pos]
        if tag in (0x01, 0x02):
            pos += 2
        elif tag in (0x09, 0x0A):
            if (
                tag == 0x09
                and content[pos + 1] == 12
                and 2000 <= int.from_bytes(content[pos + 2 : pos + 4], "big") < 2100
            ):
                leaves.append((0x19, pos + 2))  # an octet-string holding a date-time (the clock)
            elif content[pos + 1] and not (
                tag == 0x09 and content[pos + 1] == 6 and content[pos + 7] == 0xFF
            ):
                leaves.append((tag, pos + 2))  # a string (not an OBIS code): its length is the byte before
            pos += 2 + content[pos + 1]
        elif tag in sizes:
            leaves.append((tag, pos + 1))
            pos += 1 + sizes[tag]
        else:
            pos += 1
    return leaves


def _new_value(tag: int, old: bytes, rnd: random.Random) -> bytes:
    """Draw a plausible new value of the same A-XDR type (same length)."""
    if tag == 0x06:  # power, energy, Kaifa current/voltage
        return rnd.randrange(0, max(2 * int.from_bytes(old, "big"), 20_000) + 1).to_bytes(4, "big")
    if tag == 0x10:  # current, 0.1 A
        return rnd.randrange(-50, 700).to_bytes(2, "big", signed=True)
    if tag == 0x12:  # voltage, 0.1 V or 1 V
        base = int.from_bytes(old, "big")
        return max(0, base + rnd.randrange(-100, 100)).to_bytes(2, "big")
    return old  # scalers, units: the shape


def _meter_id_at(content: bytes) -> Optional[Tuple[int, int]]:
    """Return (offset, length) of the meter id: the first string of 8 or more ASCII digits, if any."""
    for tag, off in _value_leaves(content):
        if tag in (0x09, 0x0A) and content[off - 1] >= 8 and content[off : off + content[off - 1]].isdigit():
            return off, content[off - 1]
    return None


def _frame_of(frame: bytes, content: bytes) -> bytes:
    """Return the frame with another information field: frame length, HCS and FCS made to fit."""
    crc = _crc()
    data = frame[1:-1]
    info_at = _info_position(data)
    length = info_at + len(content) + 2
    header = bytes(((data[0] & 0xF8) | length >> 8, length & 0xFF)) + data[2 : info_at - 2]
    inner = header + crc(header).to_bytes(2, "little") + content
    return b"\x7e" + inner + crc(inner).to_bytes(2, "little") + b"\x7e"


def make_variants(frame: bytes, count: int, seed: int, meter_ids: bool = False) -> List[bytes]:
    """Return the frame and count-1 variants with other values, HCS/FCS recomputed, no 0x7E/0x7D inside.

    With meter_ids, every variant also comes from another meter: its meter id's digits are redrawn.
    """
    crc = _crc()
    data = frame[1:-1]
    info_at = _info_position(data)
    content = data[info_at:-2]
    leaves = [(tag, off) for tag, off in _value_leaves(content) if tag in (0x06, 0x10, 0x12, 0x19)]
    meter_id = _meter_id_at(content) if meter_ids else None
    if meter_ids and meter_id is None:
        raise SystemExit("a benchmark frame of many meters has no meter id")
    rnd = random.Random(seed)
    out = [frame]
    ids = {content[meter_id[0] : sum(meter_id)]} if meter_id else set()
    if 0x7E in data or 0x7D in data:
        raise SystemExit("a benchmark frame holds 0x7E/0x7D inside: pick another")
    while len(out) < count:
        body = bytearray(content)
        clock = bytes((rnd.randrange(24), rnd.randrange(60), rnd.randrange(60)))  # one instant per message
        for tag, off in leaves:
            if tag == 0x19:  # hour, minute, second of a date-time
                body[off + 5 : off + 8] = clock
                continue
            size = 4 if tag == 0x06 else 2
            body[off : off + size] = _new_value(tag, bytes(body[off : off + size]), rnd)
        if meter_id is not None:
            new_id = bytes(body[meter_id[0] : meter_id[0] + 4]) + bytes(
                rnd.choice(b"0123456789") for _ in range(meter_id[1] - 4)
            )
            if new_id in ids:
                continue
            body[meter_id[0] : sum(meter_id)] = new_id
        inner = _frame_of(frame, bytes(body))[1:-1]
        if 0x7E in inner or 0x7D in inner:  # keep the old reader's (flag-delimited) job comparable
            continue
        if meter_id is not None:
            ids.add(bytes(body[meter_id[0] : sum(meter_id)]))
        out.append(b"\x7e" + inner + b"\x7e")
    for f in out:
        if crc(f[1:-1]) != 0x0F47 or len(f) - 2 != ((f[1] & 0x07) << 8 | f[2]):
            raise AssertionError("variant frame does not check out")
    return out


def _skeleton(content: bytes) -> bytes:
    """Return content with every value zeroed (numbers, strings, date-times): what a list layout is."""
    body = bytearray(content)
    sizes = {0x06: 4, 0x05: 4, 0x12: 2, 0x10: 2, 0x14: 8, 0x15: 8}
    for tag, off in _value_leaves(content):
        size = 12 if tag == 0x19 else content[off - 1] if tag in (0x09, 0x0A) else sizes.get(tag, 1)
        body[off : off + size] = bytes(size)
    return bytes(body)


def _widened(frame: bytes, extra: int) -> Optional[bytes]:
    """Return the frame with its last string (the meter type) longer by extra digits: another layout.

    None when the frame has no string, or the new frame would hold 0x7E/0x7D inside.
    """
    data = frame[1:-1]
    content = data[_info_position(data) : -2]
    strings = [
        off
        for tag, off in _value_leaves(content)
        if tag in (0x09, 0x0A) and content[off : off + content[off - 1]].isalnum()
    ]
    if not strings:
        return None
    off = strings[-1]
    end = off + content[off - 1]
    wider = content[: off - 1] + bytes((content[off - 1] + extra,)) + content[off:end]
    wider += b"0123456789"[:extra] + content[end:]
    new = _frame_of(frame, wider)
    return None if 0x7E in new[1:-1] or 0x7D in new[1:-1] else new


def _layout_frames(vectors: Dict[str, Dict[str, Any]]) -> List[bytes]:
    """Return LAYOUT_COUNT frames of distinct list layouts, each from another meter, interleaved.

    The layouts are those of the corpus's valid single-frame Aidon, Kaifa and Kamstrup NO/SE captures, then
    the same with a meter type longer by 1, 2, ... digits (as other meter models send), until there are
    enough; each gets 4 variants of its values (and meter id).
    """
    bases: Dict[bytes, bytes] = {}
    for vid in sorted(vectors):
        vec = vectors[vid]
        if not (
            vec["layer"] == "hdlc"
            and vec["valid"] is True
            and not vec["encrypted"]
            and vec["meter"] in LAYOUT_MAKERS
            and vec["country"] in ("NO", "SE")
            and not vec["frames"]
        ):
            continue
        frame = bytes.fromhex(vec["hex"])
        data = frame[1:-1]
        if len(frame) < 9 or len(data) != ((data[0] & 0x07) << 8 | data[1]) or 0x7E in data or 0x7D in data:
            continue
        if data[0] & 0x08 or _crc()(data) != 0x0F47:  # a segment, or not one intact frame
            continue
        bases.setdefault(_skeleton(data[_info_position(data) : -2]), frame)
    layouts = list(bases.values())
    extra = 1
    while len(layouts) < LAYOUT_COUNT and extra < 40:
        layouts += [w for w in (_widened(f, extra) for f in bases.values()) if w is not None]
        extra += 1
    if len(layouts) < LAYOUT_COUNT:
        raise SystemExit(f"only {len(layouts)} layouts found for the {MANY_LAYOUTS} row")
    per_layout = [
        make_variants(
            f, 4, seed=100 + i, meter_ids=_meter_id_at(f[1:-1][_info_position(f[1:-1]) : -2]) is not None
        )
        for i, f in enumerate(layouts[:LAYOUT_COUNT])
    ]
    return [variants[v] for v in range(4) for variants in per_layout]


def _row(name: str, ident: str, frames: List[bytes], **extra: Any) -> Dict[str, Any]:
    """Return one row's inputs for the runners: frames and information fields in hex."""
    contents = [f[1:-1][_info_position(f[1:-1]) : -2] for f in frames]
    return {
        "name": name,
        "id": ident,
        "frame_bytes": len(b"".join(frames)) // len(frames),
        "frames": [f.hex() for f in frames],
        "contents": [c.hex() for c in contents],
        **extra,
    }


def load_meters() -> List[Dict[str, Any]]:
    """Return, per meter, the frame variants and their information fields (hex, for the runners)."""
    if not CORPUS.is_file():
        raise SystemExit(f"corpus missing: {CORPUS} (../shared/corpus must sit beside the project)")
    vectors = {}
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            vec = json.loads(line)
            vectors[vec["id"]] = vec
    meters = []
    variants: Dict[str, List[bytes]] = {}
    for vid in sorted({vid for _, ids in METERS for vid in ids}):
        vec = vectors[vid]
        if not (vec["layer"] == "hdlc" and vec["valid"] is True and not vec["encrypted"]):
            raise SystemExit(f"{vid} is not a valid unencrypted HDLC vector")
        variants[vid] = make_variants(bytes.fromhex(vec["hex"]), VARIANTS, seed=len(variants))
    for label, ids in METERS:
        used = dict.fromkeys(ids, 0)
        frames = []
        for _ in range(VARIANTS):
            for vid in ids:  # each frame of the pattern takes the next variant of its list
                frames.append(variants[vid][used[vid] % VARIANTS])
                used[vid] += 1
        meters.append(_row(label, "+".join(dict.fromkeys(ids)), frames))
    main = next(m for m in meters if m["name"] == MAIN_METER)
    main_id = dict(METERS)[MAIN_METER][0]
    many = make_variants(bytes.fromhex(vectors[main_id]["hex"]), METER_COUNT, seed=99, meter_ids=True)
    meters.append(_row(MANY_METERS, f"{main_id}, {METER_COUNT} meter ids", many))
    meters.append(
        _row(MANY_LAYOUTS, f"{LAYOUT_COUNT} layouts of {'/'.join(LAYOUT_MAKERS)}", _layout_frames(vectors))
    )
    cache_off = {**main, "name": CACHE_OFF, "decoder_options": {"max_shapes": 0}}
    meters.append(cache_off)
    return meters


# ---------------------------------------------------------------------------------------------- runners


def old_python() -> Path:
    """Return the old venv's python, creating the venv with amshan 2021.12.1 on first use."""
    check = "import amshan.hdlc, amshan.autodecoder, amshan.meter_connection"
    return venv_python(OLD_VENV, [OLD_SPEC], check)


def _python_for(impl: str) -> str:
    return str(old_python()) if impl == "old" else sys.executable


def _run_json(argv: List[str], stdin: str, what: str) -> Dict[str, Any]:
    """Run a fresh process that prints one JSON object; return it, or {"error": ...} when it fails."""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=str(HERE), check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        print(f"!! {what} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return {"error": tail}
    result: Dict[str, Any] = json.loads(proc.stdout)
    return result


def run_task(impl: str, job: Dict[str, Any]) -> Dict[str, Any]:
    """Run one memory task in a fresh subprocess of the implementation's interpreter; return its result."""
    argv = [_python_for(impl), str(RUNNER), impl, "task"]
    result = _run_json(argv, json.dumps(job), f"{impl} {job['task']}")
    return {"impl": impl, **result} if "error" in result else result


def run_meter_reader(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Run the MeterReader rows (_meter_reader.py, ours only) in a fresh process; return its figures."""
    job = json.dumps({"stream_bytes": cfg["stream_bytes"], "runs": cfg["runs"]})
    return _run_json([sys.executable, str(METER_READER), job], "", "MeterReader rows")


class Server:
    """One implementation's runner (_runner.py in serve mode, or argv's): timed passes on request."""

    def __init__(self, impl: str, argv: Optional[List[str]] = None) -> None:
        self.impl = impl
        # a file, not a pipe: a pipe nobody reads could fill and block the runner; closed in close()
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv or [_python_for(impl), str(RUNNER), impl, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=str(HERE),
        )

    def ask(self, **cmd: Any) -> Dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            self.stderr.seek(0)
            tail = "\n".join(self.stderr.read().strip().splitlines()[-15:])
            raise RuntimeError(f"{self.impl} runner died (exit {self.proc.returncode}):\n{tail}")
        reply: Dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def _median(values: List[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def run_speed(impls: List[str], cfg: Dict[str, Any], meters: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Time every part for every meter, the implementations taking turns pass by pass."""
    servers: Dict[str, Server] = {}
    setups: Dict[str, Dict[str, Any]] = {}
    speed: Dict[str, Dict[str, Any]] = {impl: {} for impl in ("ours", "old", "floor")}
    try:
        for impl in impls:
            old = impl == "old"
            print(f"... {impl}: setting up (and one warm-up pass of everything)", file=sys.stderr, flush=True)
            servers[impl] = Server(impl)
            setups[impl] = servers[impl].ask(
                cmd="setup",
                meters=meters,
                chunk=CHUNK,
                stream_bytes=cfg["old_stream_bytes"] if old else cfg["stream_bytes"],
                decode_messages=cfg["old_decode_messages"] if old else cfg["decode_messages"],
            )
            for missing in setups[impl]["missing"]:
                print(f"-- {impl}: not measured yet: {missing}", file=sys.stderr)
        for meter in meters:
            name = meter["name"]
            print(f"... timing {name}", file=sys.stderr, flush=True)
            for part in ("reader", "decoder", "pipeline"):
                times: Dict[str, List[float]] = {}
                for round_no in range(cfg["runs"]):
                    order = impls[round_no % len(impls) :] + impls[: round_no % len(impls)]
                    for impl in order:
                        info = _get(setups[impl], "meters", name, "parts", part)
                        if info is None or "error" in info:
                            continue
                        reply = servers[impl].ask(cmd="run", meter=name, part=part)
                        if reply["count"] != info["count"]:
                            info["ok"] = False
                        times.setdefault(impl, []).append(reply["seconds"])
                for impl in impls:
                    info = _get(setups[impl], "meters", name, "parts", part)
                    if info is None:
                        continue
                    entry = dict(info)
                    if impl in times:
                        seconds = _median(times[impl])
                        meter_info = setups[impl]["meters"][name]
                        entry.update(seconds=seconds, all_seconds=times[impl])
                        if part == "decoder":
                            entry["msgs_per_s"] = info["expected"] / seconds
                        else:
                            entry["mb_per_s"] = meter_info["bytes"] / seconds / 1e6
                            entry["frames_per_s" if part == "reader" else "msgs_per_s"] = (
                                meter_info["frames"] / seconds
                            )
                    speed[impl].setdefault(name, {})[part] = entry
            for impl in impls:
                consistency = _get(setups[impl], "meters", name, "consistency")
                if consistency is not None:
                    speed[impl].setdefault(name, {})["consistency"] = consistency
    finally:
        for server in servers.values():
            server.close()
    return speed


# ---------------------------------------------------------------------------------------------- report


def _get(res: Dict[str, Any], *keys: str) -> Optional[Any]:
    cur: Any = res
    for key in keys:
        if not isinstance(cur, dict) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _num(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:,.2f}x" if a / b < 100 else f"{a / b:,.0f}x"


def _flag(entry: Optional[Dict[str, Any]]) -> str:
    if entry is None:
        return ""
    if "error" in entry:
        return " fails"
    return "" if entry.get("ok") else " !"


def print_table(
    title: str, rows: List[Tuple[str, List[Optional[float]], List[str]]], unit_digits: int = 0
) -> None:
    print(f"\n{title}")
    header = f"{'meter':<20}{'ours':>12}{'old':>12}{'floor':>12}{'ours/old':>11}{'ours/floor':>12}"
    print(header)
    print("-" * len(header))
    for label, (ours, old, floor), flags in rows:
        cells = [
            "raises" if flag == " fails" else _num(value, unit_digits) + flag
            for value, flag in zip((ours, old, floor), flags)
        ]
        print(
            f"{label:<20}{cells[0]:>12}{cells[1]:>12}{cells[2]:>12}"
            f"{_ratio(ours, old):>11}{_ratio(ours, floor):>12}"
        )


def report(results: Dict[str, Any], cfg: Dict[str, Any], meters: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Print the tables and the targets; return the target verdicts."""
    speed = results["speed"]

    def rows(part: str, key: str) -> List[Tuple[str, List[Optional[float]], List[str]]]:
        out = []
        for meter in meters:
            name = meter["name"]
            entries = [_get(speed[impl], name, part) for impl in ("ours", "old", "floor")]
            values = [e.get(key) if e else None for e in entries]
            out.append((name, values, [_flag(e) for e in entries]))
        return out

    print_table(
        "(a) reader, MB/s  (1 KiB chunks; every returned frame's validity checked)",
        rows("reader", "mb_per_s"),
        2,
    )
    print_table("(a) reader, frames/s", rows("reader", "frames_per_s"))
    print_table("(b) AutoDecoder, messages/s  (floor: positional A-XDR walk)", rows("decoder", "msgs_per_s"))
    for impl in ("ours", "old"):
        checks = [(m["name"], _get(speed[impl], m["name"], "consistency")) for m in meters]
        shown = [
            f"{name} raises" if "error" in c else f"{name} {c['messages'] - c['differ']}/{c['messages']}"
            for name, c in checks
            if c is not None
        ]
        if shown:
            print(f"  {impl}, same dict from one warm decoder as from a fresh one: " + ", ".join(shown))
    print_table(
        "(c) pipeline bytes -> dicts, messages/s  (content protocol + AutoDecoder; floor: reader + walk)",
        rows("pipeline", "msgs_per_s"),
    )
    print_table("(c) pipeline, MB/s", rows("pipeline", "mb_per_s"), 2)

    mem = {impl: results[impl].get("pipeline_memory", {}).get("result") for impl in ("ours", "old", "floor")}
    rnd = {impl: results[impl].get("random_memory", {}).get("result") for impl in ("ours", "floor")}
    big = {impl: results[impl].get("big_read", {}).get("result") for impl in ("ours", "floor")}

    def mib(value: Optional[int]) -> str:
        return "n/a" if value is None else f"{value / 2**20:.1f} MiB"

    print("\n(d) memory: peak RSS growth")
    print(f"{'':<44}{'ours':>12}{'old':>12}{'floor':>12}")
    print(
        f"{'pipeline over the ' + MAIN_METER + ' stream':<44}"
        + "".join(f"{mib(_get(mem[i] or {}, 'growth')):>12}" for i in ("ours", "old", "floor"))
    )
    random_label = f"{cfg['random_bytes'] // 1_000_000} MB random bytes, reader + content protocol"
    print(
        f"{random_label:<44}"
        f"{mib(_get(rnd['ours'] or {}, 'growth')):>12}{'-':>12}{mib(_get(rnd['floor'] or {}, 'growth')):>12}"
    )
    big_label = f"one read() of {cfg['big_bytes'] // 1_000_000} MB / 1 KiB reads, per byte"
    print(
        f"{big_label:<44}"
        f"{_num(_get(big['ours'] or {}, 'ratio'), 2) + 'x':>12}{'-':>12}"
        f"{_num(_get(big['floor'] or {}, 'ratio'), 2) + 'x':>12}"
    )
    peaks = [_get(res or {}, "peak_after") for res in (mem["ours"], mem["old"], mem["floor"])]
    print(f"{'(peak RSS of the pipeline process)':<44}" + "".join(f"{mib(p):>12}" for p in peaks))

    # targets
    def val(impl: str, part: str, key: str) -> Optional[float]:
        return _get(speed[impl], MAIN_METER, part, key)

    verdicts: Dict[str, Any] = {}

    def target(
        name: str, value: Optional[float], goal: float, below: bool = False, fmt: str = "{:.2f}"
    ) -> None:
        if value is None:
            verdict = "NOT MEASURED"
        else:
            verdict = "met" if (value < goal if below else value >= goal) else "NOT MET"
        shown = "n/a" if value is None else fmt.format(value)
        verdicts[name] = {"value": value, "goal": goal, "verdict": verdict}
        print(f"  {name:<58}{shown:>12}  ({'<' if below else '>='} {fmt.format(goal)})  {verdict}")

    def div(a: Optional[float], b: Optional[float]) -> Optional[float]:
        return None if a is None or b is None or b == 0 else a / b

    print("\nTargets (issue 6)")
    target(
        f"pipeline ours/old, {MAIN_METER}",
        div(val("ours", "pipeline", "msgs_per_s"), val("old", "pipeline", "msgs_per_s")),
        50,
        fmt="{:.1f}x",
    )
    target(
        f"pipeline ours/floor, {MAIN_METER}",
        div(val("ours", "pipeline", "msgs_per_s"), val("floor", "pipeline", "msgs_per_s")),
        0.7,
        fmt="{:.2f}x",
    )
    target(
        f"reader ours/old MB/s, {MAIN_METER}",
        div(val("ours", "reader", "mb_per_s"), val("old", "reader", "mb_per_s")),
        100,
        fmt="{:.0f}x",
    )
    growth = _get(rnd["ours"] or {}, "growth")
    target(
        f"peak RSS growth, {cfg['random_bytes'] // 1_000_000} MB random (MiB)",
        None if growth is None else growth / 2**20,
        20,
        below=True,
        fmt="{:.1f}",
    )
    target(
        f"one {cfg['big_bytes'] // 1_000_000} MB read() per byte / 1 KiB reads",
        _get(big["ours"] or {}, "ratio"),
        1.5,
        below=True,
        fmt="{:.2f}x",
    )
    target(
        f"stretch: pipeline ours/floor, {MAIN_METER}",
        div(val("ours", "pipeline", "msgs_per_s"), val("floor", "pipeline", "msgs_per_s")),
        1.0,
        fmt="{:.2f}x",
    )
    print("\nTargets (issue 15: many meters, many layouts, the full decoder; AutoDecoder messages/s)")
    for row, goal in ((MANY_METERS, 1.0), (MANY_LAYOUTS, 0.7), (CACHE_OFF, 0.5)):
        target(
            f"decoder ours/floor, {row}",
            div(
                _get(speed["ours"], row, "decoder", "msgs_per_s"),
                _get(speed["floor"], row, "decoder", "msgs_per_s"),
            ),
            goal,
            fmt="{:.2f}x",
        )
    for meter in meters:
        name = meter["name"]
        ratios = [
            _ratio(
                _get(speed["ours"], name, part, "msgs_per_s"), _get(speed["floor"], name, part, "msgs_per_s")
            )
            for part in ("decoder", "pipeline")
        ]
        print(f"  {name:<20} ours/floor: decoder {ratios[0]:>7}, pipeline {ratios[1]:>7}")
    readers = results.get("meter_reader")
    if readers and "error" not in readers:
        print("\n(e) MeterReader (any transport, no flag) against the pipeline, messages/s  (issue 11)")
        header = f"{'stream':<36}{'pipeline':>12}{'MeterReader':>13}{'ratio':>8}"
        print(header + "\n" + "-" * len(header))
        for kind in ("plain", "ciphered"):
            for name, row in readers[kind].items():
                label = f"{name} (ciphered)" if kind == "ciphered" else name
                flag = "" if row["ok"] else " !"
                print(
                    f"{label:<36}{_num(row['pipeline']['msgs_per_s']):>12}"
                    f"{_num(row['meter_reader']['msgs_per_s']) + flag:>13}{row['ratio']:>7.2f}x"
                )
        print("  ciphered rows: the pipeline reads the same messages unciphered in HDLC frames")
        print("\nTargets (issue 11)")
        for name, row in readers["plain"].items():
            target(f"MeterReader/pipeline, {name}", row["ratio"], 0.9, fmt="{:.2f}x")
        for name, row in readers["ciphered"].items():
            target(f"ciphered MeterReader/plain pipeline, {name[:22]}", row["ratio"], 0.5, fmt="{:.2f}x")
    bad, raised = [], {}
    for impl in ("ours", "old", "floor"):
        for meter in meters:
            for part in ("reader", "decoder", "pipeline"):
                entry = _get(speed[impl], meter["name"], part)
                if entry is None:
                    continue
                if "error" in entry:
                    raised.setdefault(f"{impl}: {entry['error']}", []).append(f"{meter['name']} {part}")
                elif not entry.get("ok"):
                    bad.append(f"{impl} {meter['name']} {part}")
    for error, where in raised.items():
        print(f"\n'raises': {error}  ({', '.join(where)})")
    if bad:
        print("\n! wrong counts (a frame not found / a message not decoded): " + "; ".join(bad))
    return verdicts


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    return platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    parser.add_argument("--only", choices=["ours", "old", "floor"], action="append", help="run only these")
    parser.add_argument("--json", type=Path, help="also write all figures to this file")
    parser.add_argument("--p1", action="store_true", help="only the P1 part (f): MeterReader vs dsmr_parser")
    parser.add_argument("--mqtt-only", action="store_true", help="run only the MQTT row (needs mosquitto)")
    args = parser.parse_args()
    from _mqtt_bench import print_mqtt, run_mqtt

    mqtt_messages, mqtt_rounds = (5_000, 3) if args.quick else (10_000, 5)
    if args.mqtt_only:
        print_mqtt(run_mqtt(mqtt_messages, mqtt_rounds))
        return
    cfg = dict(QUICK if args.quick else FULL)
    if args.p1:
        mode = "quick" if args.quick else "full"
        print(f"amshan P1 benchmark ({mode}): Python {platform.python_version()} on {_cpu_name()}")
        p1 = run_p1(cfg, CHUNK, Server)
        ratios = report_p1(p1)
        if args.json:
            args.json.write_text(json.dumps({"config": cfg, "p1": p1, "p1_ratios": ratios}, indent=1))
        return
    meters = load_meters()
    impls = args.only or ["ours", "old", "floor"]
    if "old" in impls:
        try:
            old_python()
        except (SystemExit, OSError, subprocess.CalledProcessError) as exc:  # e.g. no network for pip
            print(f"!! amshan 2021.12.1 unavailable, measuring without it: {exc}", file=sys.stderr)
            impls.remove("old")

    started = time.perf_counter()
    print(
        f"amshan benchmark ({'quick' if args.quick else 'full'}): Python {platform.python_version()} "
        f"on {_cpu_name()}, {os.cpu_count()} CPUs"
    )
    print(
        f"streams of >= {cfg['stream_bytes'] / 1e6:g} MB per meter "
        f"(old: {cfg['old_stream_bytes'] / 1e6:g} MB), "
        f"{CHUNK}-byte chunks, {VARIANTS} value variants per meter; median of {cfg['runs']} passes, "
        "the implementations taking turns"
    )
    for m in meters:
        print(f"  {m['name']:<20} {m['id']} (corpus; {m['frame_bytes']} B a frame on average)")

    results: Dict[str, Any] = {impl: {} for impl in ("ours", "old", "floor")}
    results["speed"] = run_speed(impls, cfg, meters)
    main_meter = [m for m in meters if m["name"] == MAIN_METER]
    for impl in impls:
        base = {"meters": main_meter, "chunk": CHUNK}
        print(f"... {impl}: memory", file=sys.stderr, flush=True)
        stream_bytes = cfg["old_stream_bytes"] if impl == "old" else cfg["stream_bytes"]
        results[impl]["pipeline_memory"] = run_task(
            impl, {**base, "task": "pipeline_memory", "stream_bytes": stream_bytes}
        )
        if impl != "old":  # the old reader is too slow for 200 MB, and quadratic in one big read()
            results[impl]["random_memory"] = run_task(
                impl, {**base, "task": "random_memory", "random_bytes": cfg["random_bytes"]}
            )
            results[impl]["big_read"] = run_task(
                impl, {**base, "task": "big_read", "big_bytes": cfg["big_bytes"], "runs": cfg["big_runs"]}
            )
    if "ours" in impls:
        print("... ours: MeterReader rows", file=sys.stderr, flush=True)
        results["meter_reader"] = run_meter_reader(cfg)
    results["p1"] = run_p1(cfg, CHUNK, Server)
    verdicts = report(results, cfg, meters)
    verdicts["p1"] = report_p1(results["p1"])
    results["mqtt"] = run_mqtt(mqtt_messages, mqtt_rounds)
    print_mqtt(results["mqtt"])
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(
            json.dumps({"config": cfg, "results": results, "targets": verdicts}, indent=1), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
