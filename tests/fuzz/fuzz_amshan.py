"""Coverage-guided fuzzing of amshan's reader and decoders with atheris (libFuzzer for Python).

Run (see README, "Fuzzing"):  python tests/fuzz/fuzz_amshan.py -max_total_time=1800 /tmp/amshan-fuzz
The directory is the working corpus; it is seeded with every real frame of ../shared/corpus when empty.
Each input is checked by check_input(), which the unit tests also run over the seeds and over
tests/fuzz/regressions/ (inputs that once failed), so whatever the fuzzer found stays fixed.

An input's first byte picks what is fuzzed:
  mode 0  a byte stream for HdlcFrameReader, read in chunks (size from the second byte) and whole,
          followed by a real frame that must still come out (a good frame after garbage is never lost);
  mode 1  a byte stream for the octet-stuffing reader (RFC 1662), read in chunks and whole;
  mode 2  two frame contents (information fields: the input's halves) for a new AutoDecoder, the meter
          decoders and the DLMS layer; the first teaches AutoDecoder its shape cache, so that the second, when
          read through that cache, must give what the full decoder gives;
  mode 3  a byte stream for MeterReader (public test keys: HDLC, M-Bus and bare ciphered APDUs), read in
          chunks (size from the second byte) and whole, with the same dictionaries either way, followed by
          one good message of each transport that must still come out, in order;
  mode 4  a byte stream for P1TelegramReader and MeterReader, read in chunks (size from the second byte) and
          whole, followed by a real P1 telegram that must still come out; every telegram reported valid must
          check out by an independent CRC-16/ARC, and every one must parse without raising.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

import crcmod.predefined

CORPUS_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "frames.jsonl"
P1_CORPUS_FILE = CORPUS_FILE.with_name("p1.jsonl")
REGRESSIONS_DIR = Path(__file__).resolve().parent / "regressions"
MODES = 5

# An independent CRC-16/X-25 (crcmod's generic path, not amshan's registered hot-path routine) as the oracle.
_x25 = crcmod.predefined.mkCrcFun("x-25")
_arc = crcmod.predefined.mkCrcFun("crc-16")  # CRC-16/ARC, the P1 oracle, also by the generic path

SENTINEL_ID = "no-kaifa-list1-gh180-1"  # the real frame appended to every mode-0 stream


def _corpus(path: Path = CORPUS_FILE) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


SENTINEL = next(bytes.fromhex(v["hex"]) for v in _corpus() if v["id"] == SENTINEL_ID)
P1_SENTINEL_ID = "nl-iskra-p1-dsmrparser-telegram-v5"  # the real telegram appended to every mode-4 stream
P1_SENTINEL = next(v["text"].encode("ascii") for v in _corpus(P1_CORPUS_FILE) if v["id"] == P1_SENTINEL_ID)
# Mode 3: the L+G vector with public keys (SC 0x30) as an HDLC frame, a bare APDU and an M-Bus frame
KEYED_ID = "at-landisgyr-hdlc-gh501-1"
_KEYED = next(v for v in _corpus() if v["id"] == KEYED_ID)
KEYS = (bytes.fromhex(_KEYED["keys"]["encryption_key"]), bytes.fromhex(_KEYED["keys"]["authentication_key"]))
_KEYED_APDU = bytes.fromhex(_KEYED["hex"])[12:-3]  # after 7E, header, HCS and LLC; before FCS and 7E
_MBUS_BODY = bytes.fromhex("53ff100167") + _KEYED_APDU  # C, A, CI (last segment 0), STSAP, DTSAP, data
METER_SENTINELS = (
    bytes((0x68, len(_MBUS_BODY), len(_MBUS_BODY), 0x68)) + _MBUS_BODY + bytes((sum(_MBUS_BODY) % 256, 0x16)),
    _KEYED_APDU,
    bytes.fromhex(_KEYED["hex"]),
)
METER_PAD = bytes(4200)  # zero octets: every length a header in the input claims is reached


def _load_amshan() -> dict[str, Any]:
    """Import the modules under test (inside atheris.instrument_imports() when fuzzing)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for _decoders
    from _decoders import assert_contained

    from amshan import DecodeError, hdlc, items, p1
    from amshan.autodecoder import DECODERS, AutoDecoder
    from amshan.axdr import read_data
    from amshan.reader import MeterReader

    return {
        "DecodeError": DecodeError,
        "hdlc": hdlc,
        "read_data": read_data,
        "assert_contained": assert_contained,
        "DECODERS": DECODERS,
        "message_to_dict": items.message_to_dict,
        "AutoDecoder": AutoDecoder,
        "p1": p1,
        "MeterReader": MeterReader,
    }


_M: dict[str, Any] = {}


def _modules() -> dict[str, Any]:
    if not _M:
        _M.update(_load_amshan())
    return _M


def _is_verified_frame(frame_data: bytes) -> bool:
    """Return True when frame_data is a type-3 frame of its stated length with good HCS and FCS (oracle)."""
    if len(frame_data) < 7 or frame_data[0] >> 4 != 0xA:
        return False
    if ((frame_data[0] & 0x07) << 8 | frame_data[1]) != len(frame_data):
        return False
    if _x25(frame_data[:-2]) != int.from_bytes(frame_data[-2:], "little"):
        return False
    position = 2
    for _ in range(2):  # destination and source addresses end at the first octet with the low bit set
        while position < len(frame_data) and not frame_data[position] & 1:
            position += 1
        position += 1
    control_end = position + 1
    if control_end == len(frame_data) - 2:
        return True  # no information field: FCS only
    hcs = int.from_bytes(frame_data[control_end : control_end + 2], "little")
    return control_end + 2 <= len(frame_data) - 2 and _x25(frame_data[:control_end]) == hcs


def _read_chunked(reader: Any, stream: bytes, chunk: int, stuffing: bool) -> list[Any]:
    """Read stream in chunks, checking the bound on what the reader holds (a stuffed frame may double)."""
    limit = (2 if stuffing else 1) * (_modules()["hdlc"].HdlcFrame.MAX_FRAME_LENGTH + 2) + chunk
    frames: list[Any] = []
    for start in range(0, len(stream), chunk):
        frames += reader.read(stream[start : start + chunk])
        assert reader.buffered_bytes <= limit, f"reader holds {reader.buffered_bytes} bytes"
    return frames


def _check_stream(data: bytes, stuffing: bool) -> None:
    """Read data in chunks and whole: the same valid frames, each verified by the independent oracle."""
    hdlc = _modules()["hdlc"]
    chunk = 1 + (data[0] if data else 0)
    stream = data[1:] + (b"" if stuffing else SENTINEL)
    reader = hdlc.HdlcFrameReader(stuffing)
    chunked = [f for f in _read_chunked(reader, stream, chunk, stuffing) if f.is_valid]
    whole = [f for f in hdlc.HdlcFrameReader(stuffing).read(stream) if f.is_valid]
    got = [f.frame_data for f in chunked]
    assert got == [f.frame_data for f in whole], "chunked and whole reads disagree"
    for frame_data in got:
        assert _is_verified_frame(frame_data), f"reported valid but is not: {frame_data.hex()}"
    if not stuffing:
        assert got and got[-1] == SENTINEL[1:-1], "the good frame after the input was lost"
    assembler = hdlc.HdlcMessageAssembler()
    decoder = _modules()["AutoDecoder"]()
    for frame in chunked:
        message = assembler.add(frame)
        if message is not None:
            _check_content(message, decoder)


def _check_content(content: bytes, decoder: Any) -> None:
    """Decode content every way: only DecodeError (with an offset inside the data) or a result.

    decoder may read content through a cached shape, which must give what its full decoder gives; every
    decoder, and a new AutoDecoder, must decode or raise DecodeError (tests/_decoders.py); so must A-XDR.
    """
    m = _modules()
    hits = decoder.shape_cache_hits
    result = decoder.decode_frame_content(content)
    assert result is None or isinstance(result, dict)
    if decoder.shape_cache_hits > hits:  # read through a cached shape: must equal that decoder's full path
        full = m["message_to_dict"](m["DECODERS"][decoder.previous_success_decoder](content, None))
        assert result == full, f"shape cache {result} != full decoder {full}"
    m["assert_contained"](content)
    try:
        m["read_data"](content, 0)
    except m["DecodeError"] as error:
        assert error.offset is not None and 0 <= error.offset <= len(content), f"A-XDR: {error}"


def _check_p1(data: bytes) -> None:
    """Read data and a real telegram as P1, in chunks and whole: the same telegrams, each checked."""
    p1 = _modules()["p1"]
    chunk = 1 + (data[0] if data else 0)
    stream = data[1:] + P1_SENTINEL
    splitter = p1.P1TelegramReader()
    chunked = []
    for start in range(0, len(stream), chunk):
        chunked += splitter.read(stream[start : start + chunk])
        held = splitter.buffered_bytes
        assert held <= p1.MAX_TELEGRAM + chunk, f"P1 reader holds {held} bytes"
    assert chunked == p1.P1TelegramReader().read(stream), "chunked and whole reads disagree"
    valid = [t for t in chunked if t.is_valid]
    for telegram in valid:
        assert telegram.data[:1] == b"/" and telegram.data[-1:] == b"!"
        assert telegram.crc is None or _arc(telegram.data) == telegram.crc, f"not valid: {telegram.data!r}"
        assert isinstance(p1.parse_telegram(telegram.data), dict)
    sentinel = P1_SENTINEL[: P1_SENTINEL.index(b"!") + 1]
    assert valid and valid[-1].data == sentinel, "the good telegram after the input was lost"
    reader = _modules()["MeterReader"]()
    results = [r for at in range(0, len(stream), chunk) for r in reader.read(stream[at : at + chunk])]
    assert results[-1] == p1.parse_telegram(valid[-1].data)
    assert reader.stats.transports.get("p1") == len(valid)


def _check_meter_stream(data: bytes) -> None:
    """MeterReader on data, then a good message of each transport: chunked and whole agree, none is lost."""
    meter_reader = _modules()["MeterReader"]
    chunk = 1 + (data[0] if data else 0)
    stream = data[1:] + METER_PAD + b"".join(METER_SENTINELS) + METER_PAD
    reader = meter_reader(*KEYS)
    chunked = []
    for start in range(0, len(stream), chunk):
        chunked += reader.read(stream[start : start + chunk])
        held = reader.buffered_bytes  # the scanner's and HDLC reader's longest frames, a P1 telegram
        assert held <= 2 * 4096 + 2 * 2049 + _modules()["p1"].MAX_TELEGRAM + chunk, f"holds {held} bytes"
    assert chunked == meter_reader(*KEYS).read(stream), "chunked and whole reads disagree"
    sentinel = meter_reader(*KEYS).read(METER_SENTINELS[-1])
    assert len(sentinel) == 1 and chunked[-3:] == sentinel * 3, "a good message after the input was lost"


def check_input(data: bytes) -> None:
    """Check one fuzz input; raises AssertionError (or the escaping exception) on a finding."""
    mode = data[0] % MODES if data else 0
    if mode == 4:
        _check_p1(data[1:])
    elif mode == 3:
        _check_meter_stream(data[1:])
    elif mode == 2:
        half = (len(data) - 1) // 2
        decoder = _modules()["AutoDecoder"]()
        _check_content(data[1 : 1 + half], decoder)
        _check_content(data[1 + half : 1 + 2 * half], decoder)
    else:
        _check_stream(data[1:], stuffing=mode == 1)


def seeds() -> Iterator[bytes]:
    """Yield starting inputs: every corpus HDLC vector and P1 telegram as a stream, every message content."""
    hdlc = _modules()["hdlc"]
    messages: list[bytes] = []
    for vector in _corpus():
        raw = bytes.fromhex(vector["hex"])
        if vector["layer"] in ("hdlc", "mbus", "apdu"):
            yield bytes((3, 31)) + raw
        if vector["layer"] == "hdlc":
            yield bytes((0, 63)) + raw
            yield bytes((1, 15)) + raw
            assembler = hdlc.HdlcMessageAssembler()
            for frame in hdlc.HdlcFrameReader().read(raw):
                message = assembler.add(frame)
                if message:
                    messages.append(message)
        elif vector["layer"] in ("llc", "apdu", "notification_body"):
            messages.append(raw)
    for vector in _corpus(P1_CORPUS_FILE):  # every P1 telegram and data block, in 64-byte chunks
        yield bytes((4, 63)) + vector["text"].encode("latin-1")
    for index, message in enumerate(messages):  # each message twice, and beside the next of its length
        yield b"\x02" + message + message
        twin = next((m for m in messages[index + 1 :] if len(m) == len(message) and m != message), None)
        if twin is not None:
            yield b"\x02" + message + twin


def main() -> None:
    """Seed the corpus directory (first non-option argument) if empty, then fuzz until libFuzzer stops."""
    import atheris

    logging.disable(logging.CRITICAL)  # the library logs garbage at warning level (rate-limited)
    with atheris.instrument_imports():
        _modules()
    directories = [Path(a) for a in sys.argv[1:] if not a.startswith("-")]
    if directories:
        directories[0].mkdir(parents=True, exist_ok=True)
        if not any(directories[0].iterdir()):
            for index, seed in enumerate(seeds()):
                (directories[0] / f"seed-{index:04d}").write_bytes(seed)
    atheris.Setup(sys.argv, lambda data: check_input(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
