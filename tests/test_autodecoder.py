"""AutoDecoder, the item view and the OBIS table: the dictionary contract users code against."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import _cosem_encoder as enc
import pytest
from _support import corpus_frames

from amshan import DecodeError, aidon, generic, kaifa, kamstrup, obis_map
from amshan import items as item_model
from amshan.autodecoder import DECODERS, AutoDecoder, MeterItem
from amshan.cosem import CommonDataTypes, PhysicalUnits, apply_scaler, unit_symbol

W, VAR, WH, A, V = 27, 29, 30, 33, 35


register = enc.register


def vector(vector_id: str) -> dict[str, Any]:
    return next(v for v in corpus_frames() if v["id"] == vector_id)


AIDON_LIST_1 = bytes.fromhex(vector("no-aidon-list1-amshan-llc")["hex"])
AIDON_LIST_3 = bytes.fromhex(vector("no-aidon-list3-amshan-llc")["hex"])
KAIFA_LIST_1 = bytes.fromhex(vector("no-kaifa-list1-amshan-llc")["hex"])
KAMSTRUP_LIST_2 = bytes.fromhex(vector("no-kamstrup-list2-amshan-1ph-real-llc")["hex"])


class TestAutoDecoder:
    def test_previous_success_decoder_follows_the_last_success(self) -> None:
        decoder = AutoDecoder()
        assert decoder.previous_success_decoder is None
        assert decoder.decode_frame_content(AIDON_LIST_1) is not None
        assert decoder.previous_success_decoder == "Aidon"
        assert decoder.decode_frame_content(KAMSTRUP_LIST_2) is not None
        assert decoder.previous_success_decoder == "Kamstrup"
        assert decoder.decode_frame_content(b"garbage") is None
        assert decoder.previous_success_decoder == "Kamstrup"
        assert decoder.decode_frame_content(KAIFA_LIST_1) is not None
        assert decoder.previous_success_decoder == "Kaifa"

    def test_a_message_tries_only_the_decoders_its_body_fits(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[str] = []
        for name, function in list(DECODERS.items()):

            def spy(content: bytes, trace: Any, name: str = name, function: Any = function) -> Any:
                calls.append(name)
                return function(content, trace)

            monkeypatch.setitem(DECODERS, name, spy)
        decoder = AutoDecoder()
        decoder.decode_message(KAMSTRUP_LIST_2)
        assert calls == ["Kamstrup"]  # picked by the body's shape, no trial of the others
        calls.clear()
        decoder.decode_message(KAMSTRUP_LIST_2)
        assert calls == ["Kamstrup"]
        calls.clear()
        decoder.decode_message(AIDON_LIST_1)
        assert calls == ["Aidon"]  # what came before does not matter

    def test_a_message_only_generic_decodes_does_not_change_how_the_next_ones_decode(self) -> None:
        """A Swedish Aidon list (no list id) after a mistyped one still decodes as Aidon, manufacturer too."""
        stated = vector("se-aidon-se-list-amshan-llc")
        swedish = bytes.fromhex(stated["hex"])
        voltage = AIDON_LIST_3.index(bytes.fromhex("0906 0100200700ff")) + 8  # the value after the OBIS code
        assert AIDON_LIST_3[voltage] == 0x12  # long-unsigned
        mistyped = AIDON_LIST_3[:voltage] + b"\x0a\x03230" + AIDON_LIST_3[voltage + 3 :]
        decoder = AutoDecoder()
        assert "voltage_l1" not in (decoder.decode_frame_content(mistyped) or {"voltage_l1": None})
        assert decoder.previous_success_decoder == "Generic"
        decoded = decoder.decode_frame_content(swedish)
        assert decoded == AutoDecoder().decode_frame_content(swedish)
        assert decoded is not None and decoded["meter_manufacturer"] == "Aidon"
        for key, value in stated["values"].items():  # every value the corpus states for it
            found = decoded[key]
            assert (found.isoformat() if isinstance(found, datetime) else found) == pytest.approx(value), key
        assert decoder.previous_success_decoder == "Aidon"

    def test_a_decoder_bug_is_contained_and_logged(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(content: bytes, trace: Any) -> Any:
            raise KeyError("bug")

        monkeypatch.setitem(DECODERS, "Aidon", broken)
        with caplog.at_level(logging.ERROR):
            assert AutoDecoder().decode_frame_content(AIDON_LIST_1) is None
        assert "decoder failure" in caplog.text

    def test_warnings_about_bad_content_are_rate_limited(self, caplog: pytest.LogCaptureFixture) -> None:
        decoder = AutoDecoder()
        with caplog.at_level(logging.WARNING):
            for _ in range(50):
                assert decoder.decode_frame_content(b"\xe6\xe7\x00\xdb\x08") is None
        assert len(caplog.records) == 1
        assert "ciphered content does not parse" in caplog.text

    @pytest.mark.parametrize("content", [b"", b"\xe6", b"\x0f", bytes(300), b"\xff" * 7])
    def test_never_raises(self, content: bytes) -> None:
        assert AutoDecoder().decode_frame_content(content) is None
        assert AutoDecoder().decode_items(content) is None

    @pytest.mark.parametrize("content", [None, "e6e7000f", 42])
    def test_never_raises_on_non_bytes_either(self, content: Any) -> None:
        assert AutoDecoder().decode_frame_content(content) is None
        assert AutoDecoder().decode_items(content) is None

    def test_bytearray_and_memoryview_are_accepted(self) -> None:
        expected = AutoDecoder().decode_frame_content(AIDON_LIST_1)
        assert AutoDecoder().decode_frame_content(bytearray(AIDON_LIST_1)) == expected  # type: ignore[arg-type]
        assert AutoDecoder().decode_frame_content(memoryview(AIDON_LIST_1)) == expected  # type: ignore[arg-type]


class TestItems:
    def test_items_carry_code_name_value_and_unit(self) -> None:
        body = enc.array(
            [
                register("1.0.1.7.0.255", enc.double_long_unsigned(1200), 0, W),
                register("1.0.31.7.0.255", enc.long(-13), -1, A),
                register("1.0.1.8.0.255", enc.double_long_unsigned(5), 1, WH),
                register("1.0.14.7.0.255", enc.long_unsigned(500), -1, 44),
            ]
        )
        items = AutoDecoder().decode_items(enc.notification(body))
        assert items == [
            MeterItem("1.0.1.7.0.255", "active_power_import", 1200, "W"),
            MeterItem("1.0.31.7.0.255", "current_l1", -1.3, "A"),
            MeterItem("1.0.1.8.0.255", "active_power_import_hour", 50, "Wh"),
            MeterItem("1.0.14.7.0.255", None, 50.0, "Hz"),
        ]

    def test_the_dictionary_is_derived_from_the_items(self) -> None:
        for v in corpus_frames(layer="llc", valid=True):
            content = bytes.fromhex(v["hex"])
            items = AutoDecoder().decode_items(content)
            decoded = AutoDecoder().decode_frame_content(content)
            if items is None:
                assert decoded is None
                continue
            assert decoded is not None
            for item in items:
                assert decoded[item.name or item.obis] == item.value

    def test_generic_still_exports_the_item_model_it_offered_before_the_split(self) -> None:
        for name in generic.__all__:
            assert hasattr(generic, name), name
        for name in ("MeterItem", "DecodedMessage", "Trace", "field_of", "make_item", "message_to_dict"):
            assert getattr(generic, name) is getattr(item_model, name)
        assert generic.MeterItem is MeterItem

    def test_positional_kaifa_items_get_their_documented_codes(self) -> None:
        items = AutoDecoder().decode_items(bytes.fromhex(vector("no-kaifa-list3-amshan-llc")["hex"]))
        assert items is not None
        by_name = {item.name: item for item in items}
        assert by_name["active_power_import"].obis == "1.0.1.7.0.255"
        assert by_name["current_l1"].obis == "1.0.31.7.0.255"
        assert by_name["current_l1"].unit == "A"
        assert by_name["meter_datetime"].obis == "0.0.1.0.0.255"
        assert by_name["active_power_import_hour"].unit == "Wh"
        assert by_name["list_ver_id"].obis in obis_map.name_obis_map["list_ver_id"]


class TestDictionaryRules:
    def test_unknown_codes_appear_under_their_dotted_code_scaled(self) -> None:
        body = enc.array(
            [
                register("1.0.1.7.0.255", enc.double_long_unsigned(7), 0, W),
                register("1.0.14.7.0.255", enc.long_unsigned(4998), -2, 44),
                register("0.0.42.0.0.255", enc.octet_string(b"LGZ1030163598905")),
            ]
        )
        decoded = AutoDecoder().decode_frame_content(enc.notification(body))
        assert decoded == {
            "active_power_import": 7,
            "1.0.14.7.0.255": 49.98,
            "0.0.42.0.0.255": "LGZ1030163598905",
            "meter_manufacturer": "Landis+Gyr",
        }

    def test_kamstrup_null_padding_gives_no_key(self) -> None:
        body = enc.structure(
            [
                enc.visible_string("Kamstrup_V0001"),
                enc.obis("1.1.31.7.0.255"),
                enc.double_long_unsigned(896),
                enc.null(),
                enc.null(),
                enc.obis("1.1.71.7.0.255"),
                enc.null(),
            ]
        )
        decoded = kamstrup.decode_frame_content(enc.notification(body, invoke=0))
        assert decoded == {
            "meter_manufacturer": "Kamstrup",
            "list_ver_id": "Kamstrup_V0001",
            "current_l1": 8.96,
        }

    def test_kamstrup_scalers(self) -> None:
        body = enc.structure(
            [
                enc.visible_string("Kamstrup_V0001"),
                enc.obis("1.1.1.8.0.255"),
                enc.double_long_unsigned(7745250),
                enc.obis("1.1.32.7.0.255"),
                enc.long_unsigned(230),
                enc.obis("1.1.13.7.0.255"),
                enc.long_unsigned(98),
            ]
        )
        decoded = kamstrup.decode_frame_content(enc.notification(body, invoke=0))
        assert decoded["active_power_import_hour"] == 77452500  # 10 Wh units, stays int
        assert decoded["voltage_l1"] == 230 and isinstance(decoded["voltage_l1"], int)
        assert decoded["power_factor"] == pytest.approx(0.98)

    def test_clock_item_wins_over_the_header(self) -> None:
        clock = enc.date_time_bytes(datetime(2021, 9, 22, 17, 0, 0), deviation=-60)
        header = enc.date_time_bytes(datetime(2021, 9, 22, 17, 0, 10))
        body = enc.array([register("0.0.1.0.0.255", enc.octet_string(clock))])
        decoded = AutoDecoder().decode_frame_content(enc.notification(body, header_date_time=header))
        assert decoded is not None
        assert decoded["meter_datetime"] == datetime(
            2021, 9, 22, 17, 0, 0, tzinfo=timezone(timedelta(hours=1))
        )

    def test_header_date_time_is_used_without_a_clock_item(self) -> None:
        header = enc.date_time_bytes(datetime(2021, 9, 22, 17, 0, 10))
        body = enc.structure([enc.double_long_unsigned(5)])
        decoded = kaifa.decode_frame_content(
            enc.notification(body, header_date_time=header, date_time_form="090c")
        )
        assert decoded == {
            "meter_manufacturer": "Kaifa",
            "active_power_import": 5,
            "meter_datetime": datetime(2021, 9, 22, 17, 0, 10),
        }

    def test_unspecified_date_times_give_no_meter_datetime_and_no_error(self) -> None:
        unspecified = bytes.fromhex("ffffffffffffffffff8000ff")
        body = enc.array([register("0.0.1.0.0.255", enc.octet_string(unspecified))])
        assert aidon.decode_frame_content(enc.notification(body)) == {"meter_manufacturer": "Aidon"}
        body = enc.structure([enc.double_long_unsigned(5)])
        decoded = kaifa.decode_frame_content(enc.notification(body, header_date_time=unspecified))
        assert "meter_datetime" not in decoded

    def test_octet_strings_holding_text_decode_as_ascii_others_as_hex(self) -> None:
        body = enc.array(
            [
                register("0.0.96.1.0.255", enc.octet_string(b"7359992890941742")),
                register("0.0.96.1.7.255", enc.visible_string("6515")),
                register("0.0.96.1.1.255", enc.octet_string(b"\x01\x02\xff")),
                register("0.0.96.1.2.255", enc.visible_string("13943597\x00\x00\x00")),
            ]
        )
        decoded = AutoDecoder().decode_frame_content(enc.notification(body))
        assert decoded is not None
        assert decoded["meter_id"] == "7359992890941742"
        assert decoded["meter_type"] == "6515"
        assert decoded["0.0.96.1.1.255"] == "0102ff"
        assert decoded["0.0.96.1.2.255"] == "13943597"


class TestMeterModules:
    """Each meter module decodes its own layout and rejects another's with a DecodeError."""

    @pytest.mark.parametrize(
        ("decode", "content"),
        [
            (aidon.decode_frame_content, KAMSTRUP_LIST_2),
            (aidon.decode_frame_content, KAIFA_LIST_1),
            (kaifa.decode_frame_content, AIDON_LIST_1),
            (kaifa.decode_frame_content, KAMSTRUP_LIST_2),
            (kamstrup.decode_frame_content, AIDON_LIST_1),
            (kamstrup.decode_frame_content, KAIFA_LIST_1),
        ],
    )
    def test_foreign_layouts_raise(self, decode: Any, content: bytes) -> None:
        with pytest.raises(DecodeError, match=r"expected .* found"):
            decode(content)

    def test_aidon_rejects_other_list_ids(self) -> None:
        body = enc.array([register("1.1.0.2.129.255", enc.visible_string("EMBRIQ_V1_1"))])
        with pytest.raises(DecodeError, match=r"expected an Aidon list id AIDON_\.\.\., found 'EMBRIQ_V1_1'"):
            aidon.decode_frame_content(enc.notification(body))
        decoded = AutoDecoder().decode_frame_content(enc.notification(body))
        assert decoded == {"list_ver_id": "EMBRIQ_V1_1"}

    def test_kaifa_rejects_unknown_counts_and_types(self) -> None:
        with pytest.raises(DecodeError, match="expected a Kaifa list of 1, 9, 13, 14 or 18 items, found 2"):
            kaifa.decode_frame_content(enc.notification(enc.structure([enc.double_long_unsigned(1)] * 2)))
        with pytest.raises(DecodeError, match="expected a number at Kaifa list position 0"):
            kaifa.decode_frame_content(enc.notification(enc.structure([enc.visible_string("x")])))

    @pytest.mark.parametrize("cut", [1, 5, 20])
    def test_truncated_frames_raise_decode_errors(self, cut: int) -> None:
        for content in (AIDON_LIST_1, KAIFA_LIST_1, KAMSTRUP_LIST_2):
            for decode in (
                aidon.decode_frame_content,
                kaifa.decode_frame_content,
                kamstrup.decode_frame_content,
            ):
                with pytest.raises(DecodeError):
                    decode(content[:-cut])

    def test_trailing_bytes_raise(self) -> None:
        with pytest.raises(DecodeError, match="expected the end of the message, found 1 more bytes"):
            aidon.decode_frame_content(AIDON_LIST_1 + b"\x00")


class TestObisMap:
    def test_old_constants_keep_their_values(self) -> None:
        assert obis_map.NEK_HAN_FIELD_METER_DATETIME == "meter_datetime"
        assert obis_map.NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_HOUR == "active_power_import_hour"
        assert obis_map.NEK_HAN_FIELD_OBIS_LIST_VER_ID == "list_ver_id"

    def test_old_mappings_are_kept(self) -> None:
        old = {  # amshan 2021.12.1 obis_map.name_obis_map, value by value
            "list_ver_id": ["1.1.0.2.129.255"],
            "meter_id": ["0.0.96.1.0.255", "1.1.0.0.5.255"],
            "meter_type": ["0.0.96.1.7.255", "1.1.96.1.1.255"],
            "meter_datetime": ["0.0.1.0.0.255", "0.1.1.0.0.255"],
            "current_l2": ["1.0.51.7.0.255", "1.1.51.7.0.255"],
            "reactive_power_export_hour": ["1.0.4.8.0.255", "1.1.4.8.0.255"],
        }
        for name, codes in old.items():
            assert set(codes) <= set(obis_map.name_obis_map[name])
            for code in codes:
                assert obis_map.obis_name_map[code] == name

    def test_new_names_and_both_forms(self) -> None:
        assert obis_map.obis_name_map["1.0.21.7.0.255"] == "active_power_import_l1"
        assert obis_map.obis_name_map["1.1.64.7.0.255"] == "reactive_power_export_l3"
        assert obis_map.obis_name_map["1.0.13.7.0.255"] == "power_factor"
        assert obis_map.obis_name_map["1.1.73.7.0.255"] == "power_factor_l3"
        assert obis_map.obis_name_map["1.0.0.2.129.255"] == "list_ver_id"  # Kaifa SE form

    def test_field_units(self) -> None:
        assert obis_map.FIELD_UNITS["active_power_import"] == "W"
        assert obis_map.FIELD_UNITS["reactive_power_export_l2"] == "var"
        assert obis_map.FIELD_UNITS["current_l3"] == "A"
        assert obis_map.FIELD_UNITS["voltage_l1"] == "V"
        assert obis_map.FIELD_UNITS["active_power_export_hour"] == "Wh"
        assert obis_map.FIELD_UNITS["reactive_power_import_hour"] == "varh"
        assert "meter_id" not in obis_map.FIELD_UNITS
        assert set(obis_map.FIELD_UNITS.values()) == {"W", "var", "A", "V", "Wh", "varh"}

    def test_obis_string_round_trip(self) -> None:
        assert obis_map.obis_to_str(bytes([1, 0, 1, 7, 0, 255])) == "1.0.1.7.0.255"
        assert obis_map.obis_from_str("1.0.1.7.0.255") == bytes([1, 0, 1, 7, 0, 255])
        with pytest.raises(ValueError, match="6 dotted groups"):
            obis_map.obis_from_str("1.0.1.7.0")


class TestCosem:
    def test_old_names_are_int_enums(self) -> None:
        assert CommonDataTypes.DOUBLE_LONG_UNSIGNED == 6 and CommonDataTypes.ENUM == 22
        assert PhysicalUnits.W == 27 and PhysicalUnits.varh == 32 and PhysicalUnits.V == 35

    def test_units_and_scalers(self) -> None:
        assert unit_symbol(30) == "Wh"
        assert unit_symbol(255) is None
        assert apply_scaler(2276, -1) == 227.6
        assert apply_scaler(7, 3) == 7000 and isinstance(apply_scaler(7, 3), int)
        assert apply_scaler(5, 0) == 5 and isinstance(apply_scaler(5, 0), int)


# --- the shape cache over many meters and layouts (issue 15) ---------------------------------------------


def with_meter_id(content: bytes, number: int) -> bytes:
    """The same list from another meter: the 16-digit meter id redrawn."""
    meter_id = str(AutoDecoder().decode_frame_content(content)["meter_id"]).encode()  # type: ignore[index]
    return content.replace(meter_id, f"{number:016d}".encode())


def with_longer_meter_type(content: bytes, extra: int) -> bytes:
    """The same list from another meter model: a meter type longer by extra characters (another layout)."""
    meter_type = str(AutoDecoder().decode_frame_content(content)["meter_type"]).encode()  # type: ignore[index]
    longer = meter_type + b"X" * extra
    return content.replace(
        b"\x0a" + bytes((len(meter_type),)) + meter_type, b"\x0a" + bytes((len(longer),)) + longer
    )


def test_all_meters_of_one_layout_share_one_shape() -> None:
    decoder = AutoDecoder()
    fleet = [with_meter_id(AIDON_LIST_3, 7359992890000000 + n) for n in range(200)]
    for content in fleet * 3:
        decoded = decoder.decode_frame_content(content)
        assert decoded is not None and decoded == AutoDecoder().decode_frame_content(content)
    assert decoder._shape_count == 1
    assert (
        decoder.shape_cache_hits == 3 * 200 - 201
    )  # each meter's first message goes through the full decoder


def test_a_shape_is_made_on_the_second_sighting_and_the_cache_stays_bounded() -> None:
    decoder = AutoDecoder(max_shapes=8)
    layouts = [with_longer_meter_type(AIDON_LIST_3, n) for n in range(40)]
    assert len({len(content) for content in layouts}) == 40
    for content in layouts:  # every layout seen once: no shape made
        assert decoder.decode_frame_content(content) is not None
    assert decoder._shape_count == 0
    for content in layouts * 2:
        assert decoder.decode_frame_content(content) == AutoDecoder().decode_frame_content(content)
    assert 0 < decoder._shape_count <= 8
    hits = decoder.shape_cache_hits
    for content in layouts[-8:]:  # the most recently used layouts are the ones kept
        decoder.decode_frame_content(content)
    assert decoder.shape_cache_hits == hits + 8


def test_max_shapes_0_turns_the_cache_off() -> None:
    decoder = AutoDecoder(max_shapes=0)
    for _ in range(5):
        assert decoder.decode_frame_content(AIDON_LIST_3) == AutoDecoder().decode_frame_content(AIDON_LIST_3)
    assert decoder.shape_cache_hits == 0


# The shape cache, deterministically: every decodable corpus message, then the same message with every
# number, every date-time and the invoke id changed, must give through the cache what the full decoder gives.

_NUMBER_SIZES = {0x05: 4, 0x06: 4, 0x0D: 1, 0x0F: 1, 0x10: 2, 0x11: 1, 0x12: 2, 0x14: 8, 0x15: 8, 0x16: 1,
                 0x17: 4, 0x18: 8}  # fmt: skip
_OTHER_MOMENT = enc.date_time_bytes(datetime(2023, 5, 6, 7, 8, 9), deviation=-60)


def _corpus_messages() -> list[bytes]:
    from amshan.hdlc import HdlcFrameReader, HdlcMessageAssembler

    found = []
    for vector in corpus_frames(valid=True):
        raw = bytes.fromhex(vector["hex"])
        if vector["layer"] in ("llc", "apdu"):
            contents = [raw]
        elif vector["layer"] == "hdlc":
            assembler = HdlcMessageAssembler()
            contents = [m for m in map(assembler.add, HdlcFrameReader().read(raw)) if m]
        else:
            continue
        found += [c for c in contents if AutoDecoder().decode_message(c) is not None]
    return found


def _with_new_values(content: bytes, decoder_name: str, salt: int) -> bytes:
    """Return content with each number's bytes, each 12-byte date-time and the invoke id replaced."""
    from amshan.dlms import apdu_offset, read_notification_header

    trace: list[tuple[int, bytes, int]] = []
    DECODERS[decoder_name](content, trace)
    variant = bytearray(content)
    for position, _, _ in trace:
        size = _NUMBER_SIZES.get(content[position])
        if size is not None and content[position] not in (0x17, 0x18):  # floats: keep them finite
            variant[position + 1 : position + 1 + size] = bytes((salt + 37 * k) & 0xFF for k in range(size))
        elif content[position] == 0x09 and content[position + 1] == 12:
            variant[position + 2 : position + 14] = _OTHER_MOMENT
    header = read_notification_header(content)
    if header.date_time_offset >= 0:
        variant[header.date_time_offset : header.date_time_offset + 12] = _OTHER_MOMENT
    invoke = apdu_offset(content) + 1
    variant[invoke : invoke + 4] = bytes((salt, 1, 2, 3))
    return bytes(variant)


@pytest.mark.parametrize("salt", [1, 0xA5])
def test_the_shape_cache_reads_new_values_as_the_full_decoder_does(salt: int) -> None:
    messages = _corpus_messages()
    assert len(messages) >= 100
    for content in messages:
        decoder = AutoDecoder()
        for _ in range(2):  # a skeleton becomes a shape on its second sighting
            assert decoder.decode_frame_content(content) is not None
        assert decoder.shape_cache_hits == 0
        name = decoder.previous_success_decoder
        assert name is not None
        variant = _with_new_values(content, name, salt)
        cached = decoder.decode_frame_content(variant)
        full = AutoDecoder().decode_message(variant)
        assert full is not None, content.hex()
        expected = item_model.message_to_dict(full)
        assert cached == expected, content.hex()
        assert cached is not None and list(cached) == list(expected)
        assert {k: type(v) for k, v in cached.items()} == {k: type(v) for k, v in expected.items()}
        assert decoder.shape_cache_hits == 1, content.hex()  # the variant went through the cached shape
        assert decoder.previous_success_decoder == name
