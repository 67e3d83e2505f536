"""AutoDecoder, the item view and the OBIS table: the dictionary contract users code against."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import _cosem_encoder as enc
import pytest
from _cipher_encoder import cipher
from _cosem_encoder import LLC
from _support import corpus_frames, load_corpus

from amshan import DecodeError, _ratelimit, aidon, generic, kaifa, kamstrup, landisgyr, obis_map
from amshan import items as item_model
from amshan.autodecoder import DECODERS, AutoDecoder, MeterItem
from amshan.cipher import CipherStats
from amshan.cosem import CommonDataTypes, PhysicalUnits, apply_scaler, unit_symbol
from amshan.dlms import read_notification_header
from amshan.p1 import telegram_dict, telegram_message

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


# --- ciphered messages, P1 telegrams, added decoders and what AutoDecoder logs (issue 18) ---------------

EK = bytes(range(16))
AK = bytes(range(16, 32))
OTHER_KEY = b"\x55" * 16
AIDON_APDU = AIDON_LIST_1[3:]  # no LLC header
TITLE = "4b414d4501ac4d6e"  # the encoder's default system title (KAM...)
P1_TEXT = next(v for v in load_corpus("p1.jsonl") if v["id"] == "se-other-p1-amshan-ell-c")["text"]
P1_TELEGRAM = P1_TEXT.encode("ascii")  # ends with its CRC line
P1_BAD_CRC = P1_TELEGRAM[: P1_TELEGRAM.rindex(b"!") + 1] + b"0000\r\n"


def test_a_ciphered_message_decodes_as_its_plaintext_with_or_without_an_llc_header() -> None:
    expected = AutoDecoder().decode_frame_content(AIDON_APDU)
    expected_items = AutoDecoder().decode_items(AIDON_APDU)
    assert expected is not None and expected_items
    ciphered = cipher(AIDON_APDU, ek=EK, ak=AK)
    for content in (ciphered, LLC + ciphered, b"\xe6\xe6\x00" + ciphered, bytearray(LLC + ciphered)):
        decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
        assert decoder.decode_frame_content(content) == expected, bytes(content[:4]).hex()
        assert decoder.previous_success_decoder == "Aidon"
        assert decoder.cipher_stats == CipherStats(decrypted=1)
        decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
        assert decoder.decode_items(content) == expected_items
        message = decoder.decode_message(content)  # the same counter again: a replay, still decoded
        assert message is not None and message.items == expected_items
        assert decoder.cipher_stats == CipherStats(decrypted=2, replays=1)


def test_without_the_authentication_key_a_ciphered_message_decodes_when_its_plaintext_does() -> None:
    expected = AutoDecoder().decode_frame_content(AIDON_APDU)
    for security_control in (0x30, 0x20):  # authenticated and encrypted, encrypted only
        decoder = AutoDecoder(encryption_key=EK)
        assert decoder.decode_frame_content(cipher(AIDON_APDU, ek=EK, ak=AK, sc=security_control)) == expected
        assert decoder.cipher_stats == CipherStats(decrypted=1)


def test_a_wrong_key_gives_no_data_counted_once_and_no_decoder_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    decoder = AutoDecoder(encryption_key=OTHER_KEY)
    with caplog.at_level(logging.DEBUG, logger="amshan.autodecoder"):
        assert decoder.decode_frame_content(cipher(AIDON_APDU, ek=EK, ak=AK, sc=0x20)) is None
    assert decoder.cipher_stats == CipherStats(wrong_key=1)
    assert [r for r in caplog.records if r.name == "amshan.autodecoder"] == []  # garbage is not decoded


def test_the_authentication_key_is_used_a_bad_tag_gives_no_data() -> None:
    ciphered = bytearray(cipher(AIDON_APDU, ek=EK, ak=AK))
    ciphered[-1] ^= 1  # the tag's last byte
    decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
    assert decoder.decode_frame_content(bytes(ciphered)) is None
    assert decoder.cipher_stats == CipherStats(bad_tag=1)
    wrong = AutoDecoder(encryption_key=EK, authentication_key=OTHER_KEY)
    assert wrong.decode_frame_content(cipher(AIDON_APDU, ek=EK, ak=AK)) is None
    assert wrong.cipher_stats == CipherStats(bad_tag=1)


def test_bytes_after_the_ciphered_apdu_are_reported_with_their_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    content = LLC + cipher(AIDON_APDU, ek=EK, ak=AK) + b"\x00\x00"
    decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
    with caplog.at_level(logging.WARNING, logger="amshan.autodecoder"):
        assert decoder.decode_frame_content(content) is None
    assert [r.getMessage() for r in caplog.records] == [
        "ciphered content does not parse: expected the ciphered APDU to end the message, found 2 more bytes "
        f"at offset {len(content) - 2}"
    ]
    assert decoder.cipher_stats == CipherStats()


def test_an_authenticated_plaintext_no_decoder_reads_is_counted_decrypted_not_wrong_key() -> None:
    for plaintext in (b"\x0f\x00\x00", enc.notification(enc.double_long_unsigned(5), llc=False)):
        decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
        assert decoder.decode_frame_content(cipher(plaintext, ek=EK, ak=AK)) is None
        assert decoder.cipher_stats == CipherStats(decrypted=1)  # its tag verified: the key is right


def test_an_unauthenticated_whole_apdu_no_decoder_reads_is_counted_decrypted() -> None:
    plaintext = enc.notification(enc.double_long_unsigned(5), llc=False)  # a body no meter decoder takes
    decoder = AutoDecoder(encryption_key=EK)
    assert decoder.decode_frame_content(cipher(plaintext, ek=EK, ak=AK, sc=0x20)) is None
    assert decoder.cipher_stats == CipherStats(decrypted=1)
    garbage = AutoDecoder(encryption_key=EK)
    assert garbage.decode_frame_content(cipher(b"\x0f\x00\x00", ek=EK, ak=AK, sc=0x20)) is None
    assert garbage.cipher_stats == CipherStats(wrong_key=1)


def test_p1_telegrams_plain_and_ciphered() -> None:
    expected = telegram_dict(P1_TELEGRAM)
    assert expected is not None and telegram_dict(P1_BAD_CRC) is None
    decoder = AutoDecoder()
    assert decoder.decode_frame_content(P1_TELEGRAM) == expected
    assert decoder.previous_success_decoder == "P1"
    message = AutoDecoder().decode_message(P1_TELEGRAM)
    assert message is not None and message.items == telegram_message(P1_TELEGRAM).items  # type: ignore[union-attr]
    plain = AutoDecoder()
    assert plain.decode_frame_content(P1_BAD_CRC) is None and plain.decode_message(P1_BAD_CRC) is None
    assert plain.previous_success_decoder is None
    # the GCM tag verified every byte: a telegram whose CRC does not verify is taken (Luxembourg Smarty)
    for bad_crc in (False, True):
        text = P1_BAD_CRC if bad_crc else P1_TELEGRAM
        decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
        assert decoder.decode_frame_content(cipher(text, ek=EK, ak=AK)) == expected
        assert decoder.previous_success_decoder == "P1"
        assert decoder.cipher_stats == CipherStats(decrypted=1)
        decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
        message = decoder.decode_message(cipher(text, ek=EK, ak=AK))
        assert (
            message is not None and {item.name or item.obis: item.value for item in message.items} == expected
        )
    unauthenticated = AutoDecoder(encryption_key=EK)  # only the CRC vouches for the text
    assert unauthenticated.decode_frame_content(cipher(P1_TELEGRAM, ek=EK, ak=AK, sc=0x20)) == expected
    assert unauthenticated.previous_success_decoder == "P1"
    assert unauthenticated.cipher_stats == CipherStats(decrypted=1)
    assert unauthenticated.decode_frame_content(cipher(P1_BAD_CRC, ek=EK, ak=AK, sc=0x20, ic=2)) is None
    assert unauthenticated.cipher_stats == CipherStats(decrypted=1, wrong_key=1)


def test_a_decryption_bug_is_logged_rate_limited_naming_the_system_title(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)

    def broken(apdu: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(decoder.decipherer, "candidates", broken)
    with caplog.at_level(logging.WARNING, logger="amshan.autodecoder"):
        for _ in range(3):
            assert decoder.decode_frame_content(cipher(AIDON_APDU, ek=EK, ak=AK)) is None
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, f"decryption failure, system title {TITLE}")
    ]
    assert (
        caplog.records[0].exc_info is not None and EK.hex() not in caplog.text and AK.hex() not in caplog.text
    )


def _warnings_of(decoder: AutoDecoder, contents: list[Any], caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="amshan.autodecoder"):
        for content in contents:
            assert decoder.decode_frame_content(content) is None
    return [r.getMessage() for r in caplog.records]


def test_what_no_decoder_takes_is_warned_with_each_decoders_reason(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(DecodeError) as not_a_notification:
        read_notification_header(b"garbage")
    assert _warnings_of(AutoDecoder(), [b"garbage"], caplog) == [
        f"frame content does not decode: {not_a_notification.value}"
    ]
    unknown = enc.notification(enc.double_long_unsigned(5))
    assert _warnings_of(AutoDecoder(), [unknown], caplog) == [
        "no decoder fits the frame content (unknown body)"
    ]
    registers = enc.notification(enc.array([enc.double_long_unsigned(5)]))
    reasons = []
    for decode in (aidon.decode_message, generic.decode_message):
        with pytest.raises(DecodeError) as error:
            decode(registers)
        reasons.append(str(error.value))
    assert _warnings_of(AutoDecoder(), [registers], caplog) == [
        f"no decoder fits the frame content (Aidon: {reasons[0]}; Generic: {reasons[1]})"
    ]


def test_a_decoder_bug_is_logged_with_the_content(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(content: bytes, trace: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setitem(DECODERS, "Aidon", broken)
    assert _warnings_of(AutoDecoder(), [AIDON_LIST_1], caplog) == [
        f"decoder failure on frame content {AIDON_LIST_1!r}"
    ]
    assert caplog.records[0].levelno == logging.ERROR and caplog.records[0].exc_info is not None


def test_garbage_warnings_are_rate_limited_and_say_how_many_were_held_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_ratelimit.time, "monotonic", lambda: now[0])
    decoder = AutoDecoder()
    with pytest.raises(DecodeError) as error:
        read_notification_header(b"garbage")
    first = f"frame content does not decode: {error.value}"
    assert _warnings_of(decoder, [b"garbage", b"garbage", b"garbage"], caplog) == [first]
    now[0] += _ratelimit.DEFAULT_INTERVAL_SEC
    assert _warnings_of(decoder, [b"garbage"], caplog) == [first + " (2 similar warnings suppressed)"]


def test_added_decoders_come_after_the_meters_own_and_before_the_generic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def mine(content: bytes) -> dict[str, Any]:
        return {"mine": len(content)}

    monkeypatch.setattr(AutoDecoder, "decoder_functions", [*AutoDecoder.decoder_functions, ("Mine", mine)])
    decoder = AutoDecoder(encryption_key=EK, authentication_key=AK)
    expected = aidon.decode_frame_content(AIDON_LIST_1)
    assert decoder.decode_frame_content(AIDON_LIST_1) == expected
    assert decoder.previous_success_decoder == "Aidon"
    assert decoder.decode_frame_content(cipher(AIDON_APDU, ek=EK, ak=AK)) == expected  # deciphered first
    assert decoder.cipher_stats == CipherStats(decrypted=1)
    assert decoder.decode_frame_content(b"garbage") == {"mine": 7}
    assert decoder.previous_success_decoder == "Mine"


def test_an_added_decoder_that_refuses_is_named_in_the_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refusing(content: bytes) -> dict[str, Any]:
        raise ValueError("not mine")

    monkeypatch.setattr(
        AutoDecoder, "decoder_functions", [*AutoDecoder.decoder_functions, ("Mine", refusing)]
    )
    with pytest.raises(DecodeError) as error:
        read_notification_header(b"garbage")
    assert _warnings_of(AutoDecoder(), [b"garbage"], caplog) == [
        f"no decoder fits the frame content ({error.value}; Mine: ValueError('not mine'))"
    ]


def test_a_built_in_decoder_removed_leaves_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    without_aidon = [entry for entry in AutoDecoder.decoder_functions if entry[0] != "Aidon"]
    monkeypatch.setattr(AutoDecoder, "decoder_functions", without_aidon)
    decoder = AutoDecoder()
    decoded = decoder.decode_frame_content(AIDON_LIST_1)
    assert decoder.previous_success_decoder == "Generic"
    assert (
        decoded is not None
        and decoded["active_power_import"] == aidon.decode_frame_content(AIDON_LIST_1)["active_power_import"]
    )


def test_a_positional_list_of_long_unsigned_values_goes_to_the_landis_gyr_decoder() -> None:
    values = [enc.long_unsigned(236)] * 3 + [enc.long_unsigned(4)] * 3 + [enc.double_long_unsigned(1)] * 4
    content = enc.notification(
        enc.structure([*values, *[enc.long_unsigned(0)] * 3, enc.octet_string(b"30137181")])
    )
    decoder = AutoDecoder()
    decoded = decoder.decode_frame_content(content)
    assert decoder.previous_success_decoder == landisgyr.NAME
    assert decoded is not None and decoded["meter_manufacturer"] == "Landis+Gyr"


def test_a_bad_tag_or_a_missing_key_is_counted_once() -> None:
    """One message that gives no data is one undecryptable message, under the one reason that applies."""
    ciphered = cipher(AIDON_APDU, ek=EK, ak=AK)
    wrong = AutoDecoder(encryption_key=EK, authentication_key=OTHER_KEY)
    assert wrong.decode_frame_content(ciphered) is None
    assert wrong.cipher_stats == CipherStats(bad_tag=1) and wrong.cipher_stats.undecryptable == 1
    keyless = AutoDecoder()
    assert keyless.decode_frame_content(ciphered) is None
    assert keyless.cipher_stats == CipherStats(no_key=1)
    clear = cipher(b"\x0f\x00\x00", ek=EK, ak=AK, sc=0x00)  # no security at all: nothing to blame a key for
    assert keyless.decode_frame_content(clear) is None
    assert keyless.cipher_stats == CipherStats(no_key=1)


# --- the shape cache's bookkeeping: which layouts it keeps, and what it refuses (issue 18) --------------


def with_scalers(content: bytes, *scalers: int) -> bytes:
    """The same list with the first scaler-units' scalers changed: another layout of the same length."""
    variant = bytearray(content)
    position = 0
    for scaler in scalers:
        position = variant.index(b"\x02\x02\x0f", position) + 3
        variant[position] = scaler & 0xFF
    return bytes(variant)


def hits_of(decoder: AutoDecoder, content: bytes) -> int:
    """Decode content once (checking it against a fresh decoder); return 1 for a cache hit, else 0."""
    hits = decoder.shape_cache_hits
    assert decoder.decode_frame_content(content) == AutoDecoder().decode_frame_content(content)
    return decoder.shape_cache_hits - hits


def test_a_cache_hit_runs_no_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = DECODERS["Aidon"]

    def spy(content: bytes, trace: Any) -> Any:
        calls.append("Aidon")
        return original(content, trace)

    monkeypatch.setitem(DECODERS, "Aidon", spy)
    decoder = AutoDecoder()
    for _ in range(2):
        decoder.decode_frame_content(AIDON_LIST_3)
    assert calls == ["Aidon", "Aidon"]
    assert decoder.decode_frame_content(AIDON_LIST_3) is not None
    assert calls == ["Aidon", "Aidon"] and decoder.shape_cache_hits == 1


def test_layouts_of_one_length_keep_the_most_recently_used_four() -> None:
    a, b, c, d, e, f = (with_scalers(AIDON_LIST_3, -1 - n) for n in range(6))
    assert len({a, b, c, d, e, f}) == 6 and len({len(x) for x in (a, b, c, d, e, f)}) == 1
    decoder = AutoDecoder()
    for layout in (a, b, c, d, e):
        assert hits_of(decoder, layout) + hits_of(decoder, layout) == 0  # the second sighting makes a shape
    assert decoder._shape_count == 4  # five layouts of one length: the oldest went
    assert [hits_of(decoder, x) for x in (b, c, d, e)] == [1, 1, 1, 1]
    assert hits_of(decoder, a) == 0
    for layout in (b, c, d):  # e is now the least recently used
        assert hits_of(decoder, layout) == 1
    assert hits_of(decoder, f) + hits_of(decoder, f) == 0
    assert [hits_of(decoder, x) for x in (b, c, d, f)] == [1, 1, 1, 1]
    assert hits_of(decoder, e) == 0
    assert decoder._shape_count == 4


def test_across_lengths_the_least_recently_used_shape_goes() -> None:
    layouts = [with_longer_meter_type(AIDON_LIST_3, n) for n in range(6)]
    decoder = AutoDecoder(max_shapes=3)
    for layout in layouts[:3]:
        hits_of(decoder, layout)
        hits_of(decoder, layout)
    assert hits_of(decoder, layouts[0]) == 1  # the shortest is the most recently used now
    hits_of(decoder, layouts[3])
    hits_of(decoder, layouts[3])
    assert decoder._shape_count == 3
    assert [hits_of(decoder, x) for x in (layouts[0], layouts[2], layouts[3])] == [1, 1, 1]
    assert hits_of(decoder, layouts[1]) == 0
    for layout in layouts[4:]:  # the count stays exact, so the bound holds
        hits_of(decoder, layout)
        hits_of(decoder, layout)
    assert decoder._shape_count == 3 == sum(len(shapes) for shapes in decoder._shapes.values())


def test_the_per_length_bound_keeps_the_shape_count_exact() -> None:
    same_length = [with_scalers(AIDON_LIST_3, -1 - n) for n in range(5)]
    decoder = AutoDecoder(max_shapes=5)
    for layout in same_length:
        hits_of(decoder, layout)
        hits_of(decoder, layout)
    assert decoder._shape_count == 4 == sum(len(shapes) for shapes in decoder._shapes.values())
    assert [hits_of(decoder, x) for x in same_length[1:]] == [1, 1, 1, 1]
    for n in range(1, 4):
        longer = with_longer_meter_type(AIDON_LIST_3, n)
        hits_of(decoder, longer)
        hits_of(decoder, longer)
    assert decoder._shape_count == 5 == sum(len(shapes) for shapes in decoder._shapes.values())


def test_first_sightings_are_remembered_up_to_256() -> None:
    layouts = [with_scalers(AIDON_LIST_3, -1 - a, -1 - b) for a in range(20) for b in range(20)][:258]
    assert len(set(layouts)) == 258
    decoder = AutoDecoder()
    for layout in layouts[:256]:
        assert hits_of(decoder, layout) == 0
    assert hits_of(decoder, layouts[0]) == 0  # still remembered: this second sighting made its shape
    assert hits_of(decoder, layouts[0]) == 1
    for layout in layouts[256:]:  # 257 sightings waiting: the oldest (layouts[1]) is forgotten
        assert hits_of(decoder, layout) == 0
    assert hits_of(decoder, layouts[257]) == 0  # the newest is remembered: a shape now
    assert hits_of(decoder, layouts[257]) == 1
    assert hits_of(decoder, layouts[1]) == 0  # a first sighting again
    assert hits_of(decoder, layouts[1]) == 0  # its second: the shape is made now
    assert hits_of(decoder, layouts[1]) == 1


def test_a_layout_naming_a_field_twice_takes_no_shape_and_is_not_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    power = "1.0.1.7.0.255"
    twice = enc.notification(
        enc.array(
            [
                register(power, enc.double_long_unsigned(5), 0, W),
                register(power, enc.double_long_unsigned(6), 0, W),
            ]
        )
    )
    decoder = AutoDecoder()
    with caplog.at_level(logging.DEBUG, logger="amshan.autodecoder"):
        assert [hits_of(decoder, twice) for _ in range(6)] == [0] * 6
    name = decoder.previous_success_decoder
    assert [r.getMessage() for r in caplog.records] == [
        f"a {name} layout of {len(twice)} bytes takes no shape: ValueError('active_power_import twice')"
    ]


def test_a_layout_without_texts_or_unscaled_numbers_is_cached_and_checked_whole() -> None:
    voltage_l1 = enc.notification(enc.array([register("1.0.32.7.0.255", enc.long_unsigned(2301), -1, V)]))
    voltage_l2 = enc.notification(enc.array([register("1.0.52.7.0.255", enc.long_unsigned(2302), -1, V)]))
    decoder = AutoDecoder()
    assert [hits_of(decoder, voltage_l1) for _ in range(3)] == [0, 0, 1]
    assert hits_of(decoder, voltage_l2) == 0  # same length, another code: not this shape
    decoded = decoder.decode_frame_content(voltage_l2)
    assert decoded is not None and decoded["voltage_l2"] == 230.2 and "voltage_l1" not in decoded


@pytest.mark.parametrize("scaler", [2, 3, -3])
def test_a_shape_scales_as_the_full_decoder_does(scaler: int) -> None:
    layout = with_scalers(AIDON_LIST_3, scaler)
    decoder = AutoDecoder()
    for _ in range(2):
        decoder.decode_frame_content(layout)
    for salt in (1, 0xA5):
        assert hits_of(decoder, _with_new_values(layout, "Aidon", salt)) == 1


def test_a_text_that_changes_the_dictionary_is_not_learned_by_the_shape() -> None:
    """A list id naming another maker changes the manufacturer: that text goes through the full decoder."""
    voltage = AIDON_LIST_3.index(bytes.fromhex("0906 0100200700ff")) + 8
    generic_list = (
        AIDON_LIST_3[:voltage] + b"\x0a\x03230" + AIDON_LIST_3[voltage + 3 :]
    )  # only Generic takes it
    kaifa_id = generic_list.replace(b"AIDON_V0001", b"KFM_0010001")
    assert len(kaifa_id) == len(generic_list) != len(AIDON_LIST_3)
    assert AutoDecoder().decode_frame_content(kaifa_id)["meter_manufacturer"] == "Kaifa"  # type: ignore[index]
    decoder = AutoDecoder()
    assert [hits_of(decoder, generic_list) for _ in range(3)] == [0, 0, 1]
    assert decoder.previous_success_decoder == "Generic"
    other_meter = with_meter_id(with_text(generic_list, 0x0A, b"6525", b"6534"), 7359992890000001)
    assert [hits_of(decoder, other_meter) for _ in range(2)] == [0, 1]
    for _ in range(3):
        assert hits_of(decoder, kaifa_id) == 0  # never from the shape: checked and refused each time
    assert hits_of(decoder, generic_list) == 1
    # the first meter's id and list id with the other meter's type: all three still known
    assert hits_of(decoder, with_text(generic_list, 0x0A, b"6525", b"6534")) == 1


def test_a_shape_remembers_at_most_256_texts_per_field() -> None:
    decoder = AutoDecoder()
    fleet = [with_meter_id(AIDON_LIST_3, 7359992890000000 + n) for n in range(300)]
    for content in fleet[:2]:
        hits_of(decoder, content)
    hits_of(decoder, fleet[0])
    for content in fleet:
        hits_of(decoder, content)
    (shape,) = decoder._shapes[len(AIDON_LIST_3)]
    sizes = [len(text.values) for text in shape._texts]
    assert max(sizes) <= 256 and sum(hits_of(decoder, content) for content in fleet[-44:]) == 44


def with_text(content: bytes, tag: int, old: bytes, new: bytes) -> bytes:
    """The same list with one text value (tag, old) replaced by new (another length: another layout)."""
    head = bytes((tag, len(old))) + old
    assert content.count(head) == 1
    return content.replace(head, bytes((tag, len(new))) + new)


def test_other_meters_texts_are_learned_field_by_field() -> None:
    """A meter's id and another meter's type together read from the shape: each text is known on its own."""
    meter_id, meter_type = b"7359992892587665", b"6525"
    other_meter = with_text(
        with_text(AIDON_LIST_3, 0x0A, meter_id, b"8" + meter_id[1:]), 0x0A, meter_type, b"6534"
    )
    mixed = with_text(AIDON_LIST_3, 0x0A, meter_type, b"6534")
    decoder = AutoDecoder()
    assert [hits_of(decoder, AIDON_LIST_3) for _ in range(2)] == [0, 0]
    assert [hits_of(decoder, other_meter) for _ in range(2)] == [0, 1]  # its id differs in the first digit
    assert hits_of(decoder, mixed) == 1  # the first meter's id, the second meter's type: both known


def test_a_12_byte_octet_string_text_is_a_text_not_a_date_time() -> None:
    kaifa = with_text(
        bytes.fromhex(vector("no-kaifa-list2-amshan-llc")["hex"]), 0x09, b"MA304H3E", b"MA304H3E-123"
    )
    other = with_text(kaifa, 0x09, b"6970631402614476", b"6970631402614477")
    decoder = AutoDecoder()
    assert [hits_of(decoder, kaifa) for _ in range(3)] == [0, 0, 1]
    assert decoder.decode_frame_content(kaifa)["meter_type"] == "MA304H3E-123"  # type: ignore[index]
    assert [hits_of(decoder, other) for _ in range(2)] == [0, 1]


def test_a_field_read_twice_or_listed_twice_takes_no_shape(caplog: pytest.LogCaptureFixture) -> None:
    """The cache would put one value where the full decoder gives another: such a layout is never cached."""
    meter_id = "0.0.96.1.0.255"
    number_then_text = enc.notification(
        enc.array(
            [register(meter_id, enc.double_long_unsigned(5)), register(meter_id, enc.visible_string("1234"))]
        )
    )
    assert AutoDecoder().decode_frame_content(number_then_text) == {"meter_id": "1234"}
    body = read_notification_header(KAMSTRUP_LIST_2).body_offset
    list_id = KAMSTRUP_LIST_2[body + 2 : body + 18]
    assert list_id == b"\x0a\x0eKamstrup_V0001"
    labelled_too = (  # the list id unlabelled first (as Kamstrup sends it) and again under its OBIS code
        KAMSTRUP_LIST_2[: body + 1]
        + bytes((KAMSTRUP_LIST_2[body + 1] + 2,))
        + list_id
        + bytes.fromhex("0906 0101000281ff")
        + list_id
        + KAMSTRUP_LIST_2[body + 18 :]
    )
    for content, key in ((number_then_text, "meter_id"), (labelled_too, "list_ver_id")):
        decoder = AutoDecoder()
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="amshan.autodecoder"):
            assert [hits_of(decoder, content) for _ in range(4)] == [0] * 4
        name = decoder.previous_success_decoder
        assert [r.getMessage() for r in caplog.records] == [
            f"a {name} layout of {len(content)} bytes takes no shape: ValueError('{key} twice')"
        ]


def test_content_that_is_no_bytes_is_logged_and_gives_none(caplog: pytest.LogCaptureFixture) -> None:
    decoder = AutoDecoder()
    with caplog.at_level(logging.DEBUG, logger="amshan.autodecoder"):
        assert decoder.decode_frame_content(1.5) is None  # type: ignore[arg-type]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "shape cache failed on 1.5"),  # len(1.5): the cache cannot read it
        (logging.ERROR, "decoder failure on frame content 1.5"),
    ]
    assert all(r.exc_info is not None and r.exc_info[0] is TypeError for r in caplog.records)
