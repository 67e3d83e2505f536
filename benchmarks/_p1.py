"""The P1 part of bench.py: bytes -> dictionaries through MeterReader against dsmr_parser and the floor.

Inputs are real telegrams from ../shared/corpus/p1.jsonl (a DSMR 5 telegram and a Swedish one). Each is
varied into telegrams of the same shape with other values (every number's digits and the clock's hour,
minute and second redrawn, the CRC recomputed), repeated into a stream and fed in 1 KiB chunks.

dsmr_parser runs in benchmarks/.dsmr-venv (made on first use: python -m venv + pip install dsmr-parser),
its TelegramBuffer + TelegramParser with checksum validation on, the way its serial reader uses them;
ours (MeterReader) and the floor (_p1_runner.floor) run with this interpreter. Each implementation is one
server process (_p1_runner.py); they take turns pass by pass and each figure is a median.
"""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from _venvs import venv_python

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "corpus" / "p1.jsonl"
DSMR_VENV = HERE / ".dsmr-venv"
DSMR_SPEC = "dsmr-parser==1.11.2"
RUNNER = HERE / "_p1_runner.py"
IMPLS = ("ours", "dsmr", "floor")

#: (label, corpus id, dsmr_parser specification)
P1_METERS: List[Tuple[str, str, str]] = [
    ("DSMR 5 (NL Iskra)", "nl-iskra-p1-dsmrparser-telegram-v5", "V5"),
    ("Sweden (L+G E360)", "se-landisgyr-p1-amshan-e360-d", "SWEDEN"),
]
VARIANTS = 16
_NUMBER = re.compile(r"\((\d+)\.(\d+)(\*[A-Za-z0-9]+)?\)")
_CLOCK = re.compile(r"(0-0:1\.0\.0\(\d{6})(\d{6})([SW]\))")


def make_variants(text: str, count: int, seed: int) -> List[bytes]:
    """Return the telegram and count-1 variants with other numbers and clock times, CRC recomputed."""
    sys.path.insert(0, str(HERE.parent))
    from amshan.p1 import crc16_arc

    rnd = random.Random(seed)
    body = text[: text.index("!") + 1]

    def digits(match: re.Match[str]) -> str:
        whole, fraction, unit = match.group(1), match.group(2), match.group(3) or ""
        redrawn = "".join(rnd.choice("0123456789") for _ in whole[-3:])
        return f"({whole[:-3]}{redrawn}.{''.join(rnd.choice('0123456789') for _ in fraction)}{unit})"

    out = []
    for index in range(count):
        varied = body
        if index:
            clock = f"{rnd.randrange(24):02}{rnd.randrange(60):02}{rnd.randrange(60):02}"
            varied = _CLOCK.sub(lambda m, c=clock: m.group(1) + c + m.group(3), _NUMBER.sub(digits, body))
        data = varied.encode("ascii")
        out.append(data + f"{crc16_arc(data):04X}\r\n".encode("ascii"))
    return out


def load_streams(stream_bytes: int) -> List[Dict[str, Any]]:
    """Return, per meter, its label, corpus id, dsmr_parser spec and the variants as one stream's bytes."""
    if not CORPUS.is_file():
        raise SystemExit(f"corpus missing: {CORPUS} (../shared/corpus must sit beside the project)")
    vectors = {v["id"]: v for v in map(json.loads, CORPUS.read_text(encoding="utf-8").splitlines())}
    meters = []
    for seed, (label, vid, spec) in enumerate(P1_METERS):
        vec = vectors[vid]
        if not (vec["valid"] is True and vec["checks"].get("p1_crc") == "ok"):
            raise SystemExit(f"{vid} is not a valid telegram with a CRC")
        variants = make_variants(vec["text"], VARIANTS, seed)
        pattern = b"".join(variants)
        meters.append(
            {
                "name": label,
                "id": vid,
                "spec": spec,
                "telegram_bytes": len(pattern) // len(variants),
                "pattern": pattern,
                "per_pattern": len(variants),
                "stream_bytes": stream_bytes,
            }
        )
    return meters


def dsmr_python() -> Path:
    """Return the dsmr_parser venv's python, creating the venv on first use."""
    return venv_python(DSMR_VENV, [DSMR_SPEC, "crcmod-plus"], "import dsmr_parser.parsers, crcmod")


def run_p1(cfg: Dict[str, Any], chunk: int, start_server: Callable[[str, List[str]], Any]) -> Dict[str, Any]:
    """Time every implementation on every P1 stream, taking turns pass by pass; return figures per meter.

    start_server(impl, argv) starts one runner process (bench.py's Server) with ask(**cmd) and close().
    """
    results: Dict[str, Dict[str, Dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for meter in load_streams(cfg["p1_stream_bytes"]):
            name = meter["name"]
            print(f"... P1: timing {name}", file=sys.stderr, flush=True)
            results[name] = {}
            servers: Dict[str, Any] = {}
            times: Dict[str, List[float]] = {}
            try:
                for impl in IMPLS:
                    size = cfg["p1_dsmr_stream_bytes"] if impl == "dsmr" else cfg["p1_stream_bytes"]
                    repeats = max(1, size // len(meter["pattern"]))
                    path = Path(tmp) / f"{impl}.bin"
                    path.write_bytes(meter["pattern"] * repeats)
                    expected = repeats * meter["per_pattern"]
                    python = str(dsmr_python()) if impl == "dsmr" else sys.executable
                    servers[impl] = start_server(impl, [python, str(RUNNER), impl])
                    warm = servers[impl].ask(cmd="setup", stream=str(path), spec=meter["spec"], chunk=chunk)
                    results[name][impl] = {"expected": expected, "ok": warm["count"] == expected}
                for round_no in range(cfg["runs"]):
                    order = IMPLS[round_no % 3 :] + IMPLS[: round_no % 3]
                    for impl in order:
                        reply = servers[impl].ask(cmd="run")
                        if reply["count"] != results[name][impl]["expected"]:
                            results[name][impl]["ok"] = False
                        times.setdefault(impl, []).append(reply["seconds"])
            finally:
                for server in servers.values():
                    server.close()
            for impl in IMPLS:
                ordered = sorted(times.get(impl, []))
                if ordered:
                    seconds = ordered[len(ordered) // 2]
                    entry = results[name][impl]
                    entry.update(seconds=seconds, telegrams_per_s=entry["expected"] / seconds)
            results[name]["telegram_bytes"] = {"value": meter["telegram_bytes"]}
    return results


def report_p1(results: Dict[str, Dict[str, Dict[str, Any]]]) -> Dict[str, Any]:
    """Print the P1 table and its target (ours >= 20x dsmr_parser); return the ratios."""

    def rate(name: str, impl: str) -> Optional[float]:
        value = results[name][impl].get("telegrams_per_s")
        return None if value is None else float(value)

    print("\n(f) P1 bytes -> dicts, telegrams/s  (MeterReader; dsmr_parser buffer + parser, CRC on)")
    header = f"{'meter':<20}{'ours':>10}{'dsmr':>10}{'floor':>10}{'ours/dsmr':>11}{'ours/floor':>12}"
    print(header)
    print("-" * len(header))
    ratios: Dict[str, Any] = {}
    for name, entries in results.items():
        ours, dsmr, floor = (rate(name, impl) for impl in IMPLS)
        cells = [
            "n/a" if value is None else f"{value:,.0f}" + ("" if entries[impl]["ok"] else " !")
            for value, impl in zip((ours, dsmr, floor), IMPLS)
        ]
        to_dsmr = None if ours is None or not dsmr else ours / dsmr
        to_floor = None if ours is None or not floor else ours / floor
        ratios[name] = {"ours/dsmr": to_dsmr, "ours/floor": to_floor}
        print(
            f"{name:<20}{cells[0]:>10}{cells[1]:>10}{cells[2]:>10}"
            f"{'n/a' if to_dsmr is None else f'{to_dsmr:.1f}x':>11}"
            f"{'n/a' if to_floor is None else f'{to_floor:.2f}x':>12}"
        )
    for name, ratio in ratios.items():
        value = ratio["ours/dsmr"]
        verdict = "NOT MEASURED" if value is None else ("met" if value >= 20 else "NOT MET")
        shown = "n/a" if value is None else f"{value:.1f}x"
        print(f"  P1 ours/dsmr_parser, {name:<37}{shown:>12}  (>= 20.0x)  {verdict}")
    return ratios
