"""MeterReader rows of the benchmark, run by bench.py in a fresh process of this checkout (JSON on stdout).

    python benchmarks/_meter_reader.py '{"stream_bytes": 3000000, "runs": 5}'

(e) every unencrypted meter of bench.py: bytes -> dictionaries through MeterReader against the pipeline
    of the same stream (content protocol and AutoDecoder, as in the "pipeline" rows);
(f) ciphered streams through MeterReader with their keys against the pipeline of the same messages unciphered:
    the Danish Kamstrup push list (corpus dk-kamstrup-push1-gh216-1) ciphered with SC 0x30 (AES-GCM, tag
    checked) in HDLC frames as Danish meters send it, and the Netz NOE example (corpus
    at-kaifa-apdu-doc-evn-kundenschnittstelle-ma309-example-plain) ciphered with SC 0x20 in two M-Bus frames.
Each ciphered message has its own invocation counter, as a meter's have; values vary as in bench.py.  The
ciphered streams end with zero bytes, as the next push would: a 0x7E in the last frame's ciphertext may
open an HDLC candidate that only the following bytes prove to be none.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE), str(ROOT / "tests")]

import bench  # noqa: E402
from _cipher_encoder import cipher  # noqa: E402  (the tests' encoder: what a meter sends)
from _hdlc_builder import build_frame  # noqa: E402
from _measure import build_stream, chunked, time_pass  # noqa: E402
from _runner import AmshanImpl  # noqa: E402
from _transport_encoder import mbus  # noqa: E402

from amshan.reader import MeterReader  # noqa: E402

LLC = b"\xe6\xe7\x00"
DK_ID = "dk-kamstrup-push1-gh216-1"
AT_ID = "at-kaifa-apdu-doc-evn-kundenschnittstelle-ma309-example-plain"
DK_KEYS = (bytes(range(16)), bytes(range(0xD0, 0xE0)))  # the DLMS demo keys (no Danish key is public)
AT_KEYS = (bytes.fromhex("36c66639e48a8ca4d6bc8b282a793bbb"), None)  # Netz NOE's published example key
AT_SEGMENT = 245  # data octets in the first M-Bus frame of the Netz NOE example


def _information(frame: bytes) -> bytes:
    """The information field of an HDLC frame (flags included) by bench.py's own header walk."""
    data = frame[1:-1]
    return data[bench._info_position(data) : -2]


def _ciphered_streams(stream_bytes: int) -> List[Tuple[str, List[bytes], List[bytes], Tuple[Any, Any]]]:
    """Return (name, plain HDLC frames, the same messages ciphered, keys) for the two ciphered rows."""
    corpus = {vector["id"]: vector for vector in map(json.loads, bench.CORPUS.read_text().splitlines())}
    dk_plain = bench.make_variants(bytes.fromhex(corpus[DK_ID]["hex"]), bench.VARIANTS, seed=11)
    at_apdu = bytes.fromhex(corpus[AT_ID]["hex"])
    at_plain = bench.make_variants(build_frame(LLC + at_apdu), bench.VARIANTS, seed=12)
    rows = []
    for name, variants, wrap, keys in (
        (
            "Kamstrup DK push 1, HDLC, SC 0x30",
            dk_plain,
            lambda apdu: build_frame(LLC + apdu, destination=b"\x41", source=b"\x03"),
            DK_KEYS,
        ),
        ("Kaifa AT Netz NOE, M-Bus, SC 0x20", at_plain, lambda apdu: mbus(apdu, AT_SEGMENT), AT_KEYS),
    ):
        count = max(1, -(-stream_bytes // len(variants[0])))
        plain = [variants[i % len(variants)] for i in range(count)]
        title = b"KAME\x01\xacMn" if keys is DK_KEYS else bytes.fromhex("4b464d6750000009")
        ciphered = [
            wrap(
                cipher(
                    _information(frame)[3:],
                    ek=keys[0],
                    ak=keys[1] or bytes(16),
                    system_title=title,
                    sc=0x30 if keys is DK_KEYS else 0x20,
                    ic=1000 + index,
                )
            )
            for index, frame in enumerate(plain)
        ]
        rows.append((name, plain, ciphered, keys))
    return rows


def _reader_pass(chunks: List[bytes], keys: Tuple[Any, Any]) -> Callable[[], int]:
    """One pass of a fresh MeterReader over the chunks; counts the dictionaries it returns."""

    def once() -> int:
        read = MeterReader(*keys).read
        made = 0
        for chunk in chunks:
            made += len(read(chunk))
        return made

    return once


def _compare(
    plain_chunks: List[bytes], reader_chunks: List[bytes], keys: Tuple[Any, Any], runs: int
) -> Dict[str, Any]:
    """Time the pipeline on the plain chunks and MeterReader on its chunks, taking turns; medians."""
    impl = AmshanImpl("ours")
    passes = {
        "pipeline": lambda: impl.pipeline(plain_chunks),
        "meter_reader": _reader_pass(reader_chunks, keys),
    }
    times: Dict[str, List[float]] = {name: [] for name in passes}
    counts: Dict[str, set[int]] = {name: set() for name in passes}
    for round_no in range(runs + 1):  # the first round warms up
        for name, func in passes.items():
            seconds, count = time_pass(func)
            counts[name].add(count)
            if round_no:
                times[name].append(seconds)
    result: Dict[str, Any] = {}
    for name in passes:
        seconds = bench._median(times[name])
        (count,) = counts[name] if len(counts[name]) == 1 else (-1,)
        result[name] = {"seconds": seconds, "messages": count, "msgs_per_s": count / seconds}
    result["ratio"] = result["meter_reader"]["msgs_per_s"] / result["pipeline"]["msgs_per_s"]
    result["ok"] = result["meter_reader"]["messages"] == result["pipeline"]["messages"] > 0
    return result


def main() -> None:
    """Measure every row and print them as one JSON object."""
    cfg = json.loads(sys.argv[1])
    rows: Dict[str, Any] = {"plain": {}, "ciphered": {}}
    for meter in bench.load_meters():
        frames = [bytes.fromhex(h) for h in meter["frames"]]
        chunks = chunked(build_stream(frames, cfg["stream_bytes"])[0], bench.CHUNK)
        rows["plain"][meter["name"]] = _compare(chunks, chunks, (None, None), cfg["runs"])
    for name, plain, ciphered, keys in _ciphered_streams(cfg["stream_bytes"]):
        rows["ciphered"][name] = _compare(
            chunked(b"".join(plain), bench.CHUNK),
            chunked(b"".join(ciphered) + bytes(4096), bench.CHUNK),
            keys,
            cfg["runs"],
        )
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main()
