"""Every corpus vector of DK AT CH SI HR PL LU (and country-less ones of those meters) through the readers.

Valid vectors that are plain or have public keys must give every value the corpus states for them; valid
vectors encrypted without public keys give no data and no exception; invalid vectors give nothing.  Byte
streams (HDLC, M-Bus) go through MeterReader, bare information fields and APDUs through AutoDecoder, with
the vector's public keys.  Run as a script for the per-country and manufacturer table:

    python tests/test_decode_europe.py
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime
from typing import Any, Dict, List, NamedTuple, Optional

import _cosem_encoder as enc
import pytest
from _processes import information_field, is_segment, vector_frames
from _support import load_corpus

from amshan import DecodeError, generic, iskra, landisgyr
from amshan.autodecoder import AutoDecoder, MeterItem
from amshan.items import positional_layouts
from amshan.reader import MeterReader

COUNTRIES = ("DK", "AT", "CH", "SI", "HR", "PL", "LU")
METERS = sorted({v["meter"] for v in load_corpus() if v["country"] in COUNTRIES})
VECTORS = [
    v for v in load_corpus() if v["country"] in COUNTRIES or (v["country"] is None and v["meter"] in METERS)
]
IDLE = bytes(600)  # a stream ends idle, so every length a header claims can be reached

# Vectors that do not decode as the corpus states, each with the reason; the test requires them to fail
# (so a fix must remove them here) and the script prints the reasons in its table.
KNOWN_GAPS: Dict[str, str] = {
    "ch-landisgyr-hdlc-sdc-lg-e570-unencrypted-valid-data-load-cfg2026": (
        "E570 currents: the push list sends no scaler; the corpus follows smartmeter-datacollector's whole "
        "amperes for this meter, amshan applies the 0-8:25.9.0 setup's 0.01 A (400 A read as 4.0 A)"
    ),
    "dk-kamstrup-push1-gh216-1": (
        "Kamstrup CT meter: push 1 sends currents without a scaler and names no meter type; the corpus reads "
        "0.001 A (CT), amshan the documented 0.01 A of direct meters"
    ),
}


class Outcome(NamedTuple):
    """What the readers made of one vector: the kind of result (FAIL: not what the corpus asks) and why."""

    kind: str  # "equal", "decodes", "fragment", "no keys", "invalid" or "FAIL"
    status: str

    @property
    def ok(self) -> bool:
        """Tell whether the result is what the corpus asks for."""
        return self.kind != "FAIL"


def _key(keys: Optional[Dict[str, Any]], name: str) -> Optional[bytes]:
    """Return one public key of a vector as bytes, or None."""
    value = (keys or {}).get(name)
    return bytes.fromhex(value) if value else None


def decode(vector: Dict[str, Any]) -> tuple[List[Dict[str, Any]], int]:
    """Return the dictionaries the readers give for a vector, and how many whole messages they saw."""
    data = bytes.fromhex(vector["hex"])
    keys = vector["keys"]
    ek, ak = _key(keys, "encryption_key"), _key(keys, "authentication_key")
    if vector["layer"] in ("hdlc", "mbus"):
        reader = MeterReader(encryption_key=ek, authentication_key=ak)
        return reader.read(data + IDLE), reader.stats.messages
    decoded = AutoDecoder(encryption_key=ek, authentication_key=ak).decode_frame_content(data)
    return ([decoded] if decoded is not None else []), 1


def _same(stated: Any, value: Any) -> bool:
    """Tell whether a decoded value equals the value the corpus states (ISO text for a date-time)."""
    if isinstance(value, datetime):
        return value.isoformat() == stated
    if isinstance(stated, (int, float)) and isinstance(value, (int, float)):
        return math.isclose(stated, value, rel_tol=1e-9, abs_tol=1e-9)
    return bool(stated == value)


def _differences(stated: Dict[str, Any], decoded: Dict[str, Any]) -> List[str]:
    """List the stated values a dictionary misses or gets wrong."""
    return [
        f"{key}: {decoded.get(key, 'missing')!r} != {want!r}"
        for key, want in stated.items()
        if key not in decoded or not _same(want, decoded[key])
    ]


def is_fragment(vector: Dict[str, Any]) -> bool:
    """Tell whether a capture ends before its message does: a segment or block with more to follow."""
    last = vector_frames(vector)[-1]
    if vector["layer"] == "mbus":
        return not last[6] & 0x10  # CI without the FIN bit (han-spec 4)
    if vector["layer"] != "hdlc":
        return False
    if is_segment(last):
        return True
    info = information_field(last)
    info = info[3:] if info[:3] == b"\xe6\xe7\x00" else info
    return info[:1] == b"\xe0" and not info[1] & 0x80  # a block transfer's block but the last (han-spec 3.5)


def judge(vector: Dict[str, Any]) -> Outcome:
    """Decode a vector and judge the result against the corpus; never raises for a reader's sake."""
    dictionaries, messages = decode(vector)
    if vector["valid"] is False:
        if dictionaries:
            return Outcome("FAIL", f"invalid vector gave {len(dictionaries)} dictionaries")
        return Outcome("invalid", "invalid: nothing")
    stated = vector["values"]
    if vector["encrypted"] and not vector["keys"]:
        if dictionaries:
            return Outcome("FAIL", "encrypted without keys, yet gave data")
        return Outcome("no keys", "encrypted, no public keys: no data")
    if stated:
        if not dictionaries:
            return Outcome("FAIL", f"no dictionary ({messages} whole messages)")
        differences = min((_differences(stated, d) for d in dictionaries), key=len)
        if differences:
            return Outcome("FAIL", "; ".join(differences))
        return Outcome("equal", f"all {len(stated)} stated values equal")
    if dictionaries:
        return Outcome("decodes", "decodes (the corpus states no values)")
    if is_fragment(vector):
        return Outcome("fragment", "fragment: the capture ends before its message")
    return Outcome("FAIL", f"no dictionary ({messages} whole messages)")


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_vector_decodes_as_the_corpus_states(vector: Dict[str, Any]) -> None:
    outcome = judge(vector)
    if vector["id"] in KNOWN_GAPS:
        assert not outcome.ok, f"fixed: remove {vector['id']} from KNOWN_GAPS ({outcome.status})"
    else:
        assert outcome.ok, outcome.status


def test_the_table_covers_every_country_and_the_meters_in_it() -> None:
    countries = Counter(v["country"] for v in VECTORS)
    assert set(COUNTRIES) <= set(countries) and len(VECTORS) >= 120
    assert {"kamstrup", "kaifa", "landisgyr", "iskra", "sagemcom"} <= set(METERS)
    assert set(KNOWN_GAPS) <= {v["id"] for v in VECTORS}


# --- the bodies, built from the spec's layouts (han-spec 10, 12) -----------------------------------------

V, A, W = 35, 33, 27  # unit enumeration: volt, ampere, watt


def _push_list(setup: str, objects: list[tuple[int, str, int]], values: list[bytes]) -> bytes:
    """Build a push-object-list body: {descriptors, setup logical name, values...}, as Swiss meters send."""
    descriptors = [
        enc.structure([enc.long_unsigned(40), enc.obis(setup), enc.integer(attribute), enc.long_unsigned(0)])
        for attribute in (2, 1)
    ]
    for class_id, code, attribute in objects:
        descriptors.append(
            enc.structure(
                [enc.long_unsigned(class_id), enc.obis(code), enc.integer(attribute), enc.long_unsigned(0)]
            )
        )
    return enc.structure([enc.array(descriptors), enc.obis(setup), *values])


@pytest.mark.parametrize(("setup", "volts"), [("0.8.25.9.0.255", 231), ("0.6.25.9.0.255", 23.1)])
def test_a_push_list_is_scaled_as_its_push_setup_sends(setup: str, volts: float) -> None:
    objects = [
        (3, "1.0.32.7.0.255", 2),
        (3, "1.0.31.7.0.255", 2),
        (3, "1.0.1.7.0.255", 2),
        (1, "0.0.96.1.0.255", 2),
    ]
    values = [enc.long_unsigned(231), enc.long_unsigned(152), enc.double_long_unsigned(350)]
    body = _push_list(setup, objects, [*values, enc.octet_string(b"12345678")])
    decoded = AutoDecoder().decode_frame_content(enc.notification(body))
    assert decoded is not None
    assert decoded["voltage_l1"] == pytest.approx(volts) and decoded["current_l1"] == pytest.approx(1.52)
    assert decoded["active_power_import"] == 350 and decoded["meter_id"] == "12345678"


def test_a_push_list_of_an_unknown_setup_keeps_the_values_as_sent() -> None:
    body = _push_list("0.11.25.9.0.255", [(3, "1.0.31.7.0.255", 2)], [enc.long_unsigned(152)])
    assert AutoDecoder().decode_frame_content(enc.notification(body)) == {"current_l1": 152}


def test_a_pushed_scaler_unit_scales_its_register_whatever_the_setup() -> None:
    objects = [(3, "1.0.14.7.0.255", 2), (3, "1.0.14.7.0.255", 3), (3, "1.0.31.7.0.255", 2)]
    values = [enc.long_unsigned(5002), enc.scaler_unit(-2, 44), enc.long_unsigned(152)]
    items = AutoDecoder().decode_items(enc.notification(_push_list("0.8.25.9.0.255", objects, values)))
    assert items == [
        MeterItem("1.0.14.7.0.255", None, pytest.approx(50.02), "Hz"),
        MeterItem("1.0.31.7.0.255", "current_l1", pytest.approx(1.52), "A"),
    ]


def test_a_pushed_scaler_beyond_an_a_xdr_integer_is_not_applied() -> None:
    objects = [(3, "1.0.14.7.0.255", 2), (3, "1.0.14.7.0.255", 3)]
    values = [enc.double_long_unsigned(5002), enc.structure([enc.long(30000), enc.enum(44)])]
    body = _push_list("0.11.25.9.0.255", objects, values)
    assert generic.decode_frame_content(enc.notification(body)) == {"1.0.14.7.0.255": 5002}


def _idis(*elements: bytes) -> bytes:
    """Build an Austrian IDIS body: a leading date-time, registers with scaler-units, the meter number."""
    clock = enc.octet_string(bytes.fromhex("07e5091b01092f0f00ff8880"))
    return enc.notification(enc.structure([clock, *elements, enc.octet_string(b"1KFM0200182517")]))


def test_an_idis_list_naming_kaifa_decodes_when_every_number_has_its_scaler_unit() -> None:
    nested = enc.structure([enc.obis("1.0.32.7.0.255"), enc.long_unsigned(2330), enc.scaler_unit(-1, V)])
    name = enc.structure([enc.obis("0.0.42.0.0.255"), enc.octet_string(b"KFM1200200182517")])
    decoded = AutoDecoder().decode_frame_content(_idis(name, nested))
    assert decoded is not None and decoded["voltage_l1"] == pytest.approx(233.0)
    assert decoded["meter_manufacturer"] == "Kaifa" and decoded["meter_id"] == "1KFM0200182517"
    assert decoded["meter_datetime"].isoformat() == "2021-09-27T09:47:15+02:00"


def test_an_idis_list_naming_kaifa_with_a_number_without_scaler_unit_is_refused() -> None:
    bare = enc.structure([enc.obis("1.0.32.7.0.255"), enc.long_unsigned(2330)])
    name = enc.structure([enc.obis("0.0.42.0.0.255"), enc.octet_string(b"KFM1200200182517")])
    with pytest.raises(DecodeError, match=re.escape("sending 1.0.32.7.0.255 without a scaler-unit")):
        generic.decode_frame_content(_idis(name, bare))
    assert AutoDecoder().decode_frame_content(_idis(name, bare)) is None


def test_a_positional_list_of_unknown_element_types_is_refused() -> None:
    body = enc.structure([enc.octet_string(b"ISK1030789375606"), enc.long_unsigned(1), enc.long_unsigned(2)])
    with pytest.raises(
        DecodeError, match="expected a positional Iskraemeco list, found 3 elements of types 09 12 12"
    ):
        iskra.decode_frame_content(enc.notification(body))


def test_a_positional_list_naming_another_maker_is_refused() -> None:
    values = [enc.long_unsigned(236)] * 3 + [enc.long_unsigned(4)] * 3 + [enc.double_long_unsigned(1)] * 4
    body = enc.structure([*values, *[enc.long_unsigned(0)] * 3, enc.octet_string(b"30137181")])
    assert landisgyr.decode_frame_content(enc.notification(body))["meter_manufacturer"] == "Landis+Gyr"
    short = landisgyr.decode_frame_content(enc.notification(enc.structure([*values, enc.octet_string(b"3")])))
    assert short["current_l1"] == pytest.approx(0.04) and short["active_power_export_hour"] == 1
    ljubljana = next(v for v in VECTORS if v["id"] == "si-iskra-hdlc-gh615-8")
    content = bytes.fromhex(ljubljana["hex"]).replace(b"ISK1030789014731", b"LGZ1030789014731")
    with pytest.raises(DecodeError, match="expected a positional Iskraemeco list, found one naming Landis"):
        iskra.decode_message(information_field(content))


def test_a_kamstrup_current_transformer_meter_sends_currents_in_milliamperes() -> None:
    vector = next(v for v in VECTORS if v["id"] == "dk-kamstrup-list1-gh741-1")
    direct = information_field(bytes.fromhex(vector["hex"]))
    ct = direct.replace(b"6841138BN", b"6851138BN")  # the same list from a 685-... (CT) meter type
    decoder = AutoDecoder()
    for _ in range(2):  # the second time through the shape cache
        assert decoder.decode_frame_content(direct)["current_l1"] == pytest.approx(
            vector["values"]["current_l1"]
        )
        decoded = decoder.decode_frame_content(ct)
        assert decoded["meter_type"] == "6851138BN143101010"
        assert decoded["current_l1"] == pytest.approx(vector["values"]["current_l1"] / 10)
        assert decoded["voltage_l1"] == vector["values"]["voltage_l1"]


def test_positional_layouts_must_differ_in_their_element_types() -> None:
    with pytest.raises(ValueError, match="two positional layouts of element types 12"):
        positional_layouts(((("32.7.0", 0x12),), (("31.7.0", 0x12),)), {})


def main() -> None:
    """Print per country and manufacturer what the vectors give, and every failure's reason."""
    columns = ("equal", "decodes", "fragment", "no keys", "invalid", "FAIL")
    table: Dict[tuple[str, str], Counter[str]] = {}
    failures: List[str] = []
    for vector in VECTORS:
        outcome = judge(vector)
        table.setdefault((vector["country"] or "-", vector["meter"]), Counter())[outcome.kind] += 1
        if not outcome.ok:
            failures.append(f"  {vector['id']}: {KNOWN_GAPS.get(vector['id'], outcome.status)}")
    print(
        "equal: every stated value equal; decodes: a dictionary, no values stated; fragment: no whole message"
    )
    print(
        "no keys: encrypted without public keys, no data; invalid: invalid vector, nothing; FAIL: see below"
    )
    print(f"{'country':8}{'meter':11}" + "".join(f"{c:>10}" for c in columns))
    for (country, meter), row in sorted(table.items()):
        print(f"{country:8}{meter:11}" + "".join(f"{row[c]:>10}" for c in columns))
    total = Counter(judge(v).kind for v in VECTORS)
    print(f"{'all':19}" + "".join(f"{total[c]:>10}" for c in columns))
    print(f"{len(VECTORS)} vectors; failing ({len(failures)}):")
    print("\n".join(failures) or "  none")


if __name__ == "__main__":
    main()
