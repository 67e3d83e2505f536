"""MeterReader on real HDLC streams: every message the HDLC pipeline decodes comes out, in any chunking."""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from _decoders import hdlc_pipeline
from _support import corpus_frames

from amshan.reader import MeterReader

PLAIN_HDLC = [v for v in corpus_frames(layer="hdlc", valid=True) if not v["encrypted"]]


def test_corpus_has_plain_hdlc_vectors() -> None:
    assert len(PLAIN_HDLC) > 100


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_reader_equals_the_layers_in_any_chunking(chunk: int) -> None:
    stream = b"".join(bytes.fromhex(v["hex"]) for v in PLAIN_HDLC)
    expected = hdlc_pipeline(stream)
    assert len(expected) > 50
    reader = MeterReader()
    got: List[Dict[str, Any]] = []
    for start in range(0, len(stream), chunk):
        got.extend(reader.read(stream[start : start + chunk]))
    assert got == expected
    assert reader.stats.decoded == len(expected)
    assert reader.stats.bytes_read == len(stream)
    assert reader.stats.transports["hdlc"] == reader.stats.valid_frames


def test_noise_never_costs_the_next_message() -> None:
    vector = next(v for v in PLAIN_HDLC if v["values"])
    frame = bytes.fromhex(vector["hex"])
    reader = MeterReader()
    assert reader.read(bytes(range(256)) * 4 + b"\x7e\xa0\x10garbage") == []
    assert len(reader.read(frame)) == len(hdlc_pipeline(frame))
    assert reader.stats.invalid_frames > 0


@pytest.mark.parametrize("junk", [None, "text", 12345, b"\x00" * 3])
def test_read_never_raises(junk: Any) -> None:
    assert MeterReader().read(junk) == []
