"""The simulated meter: bundled real captures, served over TCP to each client from the first frame."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _support import corpus_frames, load_corpus

import amshan
from amshan.autodecoder import AutoDecoder
from amshan.hdlc import HdlcFrameReader
from amshan.reader import MeterReader
from amshan.simulator import (
    METERS,
    PLAIN_METERS,
    MeterSimulator,
    bundled_frames,
    bundled_keys,
    parse_hex_line,
)

DATA = Path(amshan.__file__).parent / "data"


@pytest.mark.parametrize("meter", PLAIN_METERS)
def test_bundled_frames_are_valid_corpus_frames_of_that_meter(meter: str) -> None:
    vectors = {vector["id"]: vector for vector in load_corpus()}
    lines = (DATA / f"{meter}.txt").read_text(encoding="ascii").splitlines()
    named = [(lines[i - 1][2:], line) for i, line in enumerate(lines) if line and not line.startswith("#")]
    assert len(named) >= 5
    for vector_id, hex_line in named:
        vector = vectors[vector_id]
        found = (vector["hex"], vector["valid"], vector["layer"], vector["meter"])
        assert found == (hex_line, True, "hdlc", meter)
    assert bundled_frames(meter) == [bytes.fromhex(hex_line) for _, hex_line in named]


def test_all_meters_interleave() -> None:
    frames = bundled_frames("all")
    assert frames[:3] == [bundled_frames(meter)[0] for meter in PLAIN_METERS]
    assert sorted(frames) == sorted(frame for meter in PLAIN_METERS for frame in bundled_frames(meter))
    assert set(METERS) - set(PLAIN_METERS) == {"dk", "at"}


def plaintext_of(vector: dict[str, object]) -> bytes:
    """The plaintext APDU of a corpus vector: a bare APDU, or the information field of one HDLC frame."""
    raw = bytes.fromhex(str(vector["hex"]))
    if vector["layer"] == "apdu":
        return raw
    (frame,) = HdlcFrameReader().read(raw)
    assert frame.information is not None
    return frame.information[3:]


@pytest.mark.parametrize("meter", ["dk", "at"])
def test_ciphered_streams_decrypt_to_corpus_plaintexts_with_their_keys(meter: str) -> None:
    """Each line is one ciphered message whose plaintext is a corpus message; counters go forward."""
    vectors = {vector["id"]: vector for vector in load_corpus()}
    lines = (DATA / f"{meter}.txt").read_text(encoding="ascii").splitlines()
    messages = [line for line in lines if line and not line.startswith("#")]
    assert len(messages) >= 20 and bundled_frames(meter) == [bytes.fromhex(line) for line in messages]
    if meter == "dk":  # each message names the corpus message it ciphers
        named = [lines[i - 1][2:].split(",")[0] for i, line in enumerate(lines) if line in messages]
        plaintexts = [plaintext_of(vectors[vector_id]) for vector_id in named]
        assert {vectors[v]["meter"] for v in named} == {"kamstrup"}
    else:  # the official example of Netz NOE, then its published plaintext ciphered again
        assert messages[0] == vectors["at-kaifa-mbus-doc-evn-kundenschnittstelle-ma309-example"]["hex"]
        plain = vectors["at-kaifa-apdu-doc-evn-kundenschnittstelle-ma309-example-plain"]
        plaintexts = [plaintext_of(plain)] * len(messages)
    reader = MeterReader(*bundled_keys(meter))
    for message, plaintext in zip(bundled_frames(meter), plaintexts):
        expected = AutoDecoder().decode_frame_content(plaintext)
        assert expected is not None
        assert reader.read(message) == [expected]
    assert reader.stats.ciphering.decrypted == len(messages)
    assert reader.stats.ciphering.replays == 0
    assert MeterReader().read(b"".join(bundled_frames(meter))) == []  # without the keys: nothing


def test_unknown_meter_is_refused() -> None:
    with pytest.raises(ValueError, match="aidon, kaifa, kamstrup, dk, at"):
        bundled_frames("landisgyr")


def test_parse_hex_line_tolerates_spaces_colons_and_comments() -> None:
    assert parse_hex_line("7e a0 2a:41 # comment") == b"\x7e\xa0\x2a\x41"
    assert parse_hex_line("   ") is None
    assert parse_hex_line("# only a comment") is None
    with pytest.raises(ValueError):
        parse_hex_line("7e a")


async def test_each_client_gets_every_frame_in_order() -> None:
    vectors = corpus_frames(layer="hdlc", valid=True, country="NO")[:8]
    frames = [bytes.fromhex(vector["hex"]) for vector in vectors]
    async with MeterSimulator(frames, interval=0.01, repeat=False) as simulator:
        streams = [await asyncio.open_connection("127.0.0.1", simulator.port) for _ in range(2)]
        for reader, writer in streams:
            assert await asyncio.wait_for(reader.read(), 10) == b"".join(frames)
            writer.close()
        assert simulator.clients_served == 2


async def test_replay_repeats_and_frames_read_back_valid() -> None:
    frames = bundled_frames("all")
    async with MeterSimulator(frames, interval=0.001) as simulator:
        reader, writer = await asyncio.open_connection("127.0.0.1", simulator.port)
        frame_reader = HdlcFrameReader()
        received: list[bytes] = []
        while len(received) < len(frames) + 3:
            data = await asyncio.wait_for(reader.read(4096), 10)
            assert data
            received.extend(b"\x7e" + frame.frame_data + b"\x7e" for frame in frame_reader.read(data))
        writer.close()
    assert received[: len(frames) + 3] == frames + frames[:3]


async def test_close_ends_the_clients_connections() -> None:
    simulator = MeterSimulator(bundled_frames("kaifa"), interval=0.05)
    await simulator.start()
    port = simulator.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(10), 10)
    await asyncio.wait_for(simulator.close(), 10)
    while await asyncio.wait_for(reader.read(4096), 10):
        pass
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


@pytest.mark.parametrize(("meter", "country"), [("p1-se", "SE"), ("p1-nl", "NL"), ("p1-be", "BE")])
def test_bundled_telegrams_are_valid_corpus_telegrams_of_that_country(meter: str, country: str) -> None:
    vectors = {vector["id"]: vector for vector in load_corpus("p1.jsonl")}
    lines = (DATA / f"{meter}.txt").read_text(encoding="ascii").splitlines()
    named = [(lines[i - 1][2:], line) for i, line in enumerate(lines) if line and not line.startswith("#")]
    assert len(named) >= 2
    for vector_id, hex_line in named:
        vector = vectors[vector_id]
        assert (vector["text"].encode("ascii").hex(), vector["valid"], vector["country"]) == (
            hex_line,
            True,
            country,
        )
        assert vector["checks"]["p1_crc"] == "ok"
    assert bundled_frames(meter) == [bytes.fromhex(hex_line) for _, hex_line in named]
    assert set(bundled_frames("p1")) >= set(bundled_frames(meter))


async def test_a_client_reads_every_p1_telegram_through_meter_reader() -> None:
    telegrams = bundled_frames("p1")
    async with MeterSimulator(telegrams, interval=0.01, repeat=False) as simulator:
        reader, writer = await asyncio.open_connection("127.0.0.1", simulator.port)
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    meter_reader = MeterReader()
    results = [
        result
        for start in range(0, len(data), 100)
        for result in meter_reader.read(data[start : start + 100])
    ]
    assert len(results) == len(telegrams) >= 10
    assert {result["meter_manufacturer_id"] for result in results} >= {"LGF", "KAM", "ISk", "KFM", "FLU"}
    assert meter_reader.stats.transports == {"p1": len(telegrams)}
