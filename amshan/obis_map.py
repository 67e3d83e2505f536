"""The one OBIS table: field names of the decoded dictionary, their OBIS codes (both forms) and units."""

from __future__ import annotations

from typing import Dict, List

NEK_HAN_FIELD_OBIS_LIST_VER_ID = "list_ver_id"
NEK_HAN_FIELD_METER_ID = "meter_id"
NEK_HAN_FIELD_METER_TYPE = "meter_type"
NEK_HAN_FIELD_METER_MANUFACTURER = "meter_manufacturer"
NEK_HAN_FIELD_METER_DATETIME = "meter_datetime"
NEK_HAN_FIELD_ACTIVE_POWER_IMPORT = "active_power_import"
NEK_HAN_FIELD_ACTIVE_POWER_EXPORT = "active_power_export"
NEK_HAN_FIELD_REACTIVE_POWER_IMPORT = "reactive_power_import"
NEK_HAN_FIELD_REACTIVE_POWER_EXPORT = "reactive_power_export"
NEK_HAN_FIELD_CURRENT_L1 = "current_l1"
NEK_HAN_FIELD_CURRENT_L2 = "current_l2"
NEK_HAN_FIELD_CURRENT_L3 = "current_l3"
NEK_HAN_FIELD_VOLTAGE_L1 = "voltage_l1"
NEK_HAN_FIELD_VOLTAGE_L2 = "voltage_l2"
NEK_HAN_FIELD_VOLTAGE_L3 = "voltage_l3"
NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_HOUR = "active_power_import_hour"
NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_HOUR = "active_power_export_hour"
NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_HOUR = "reactive_power_import_hour"
NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_HOUR = "reactive_power_export_hour"
NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_L1 = "active_power_import_l1"
NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_L2 = "active_power_import_l2"
NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_L3 = "active_power_import_l3"
NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_L1 = "active_power_export_l1"
NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_L2 = "active_power_export_l2"
NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_L3 = "active_power_export_l3"
NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_L1 = "reactive_power_import_l1"
NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_L2 = "reactive_power_import_l2"
NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_L3 = "reactive_power_import_l3"
NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_L1 = "reactive_power_export_l1"
NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_L2 = "reactive_power_export_l2"
NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_L3 = "reactive_power_export_l3"
NEK_HAN_FIELD_POWER_FACTOR = "power_factor"
NEK_HAN_FIELD_POWER_FACTOR_L1 = "power_factor_l1"
NEK_HAN_FIELD_POWER_FACTOR_L2 = "power_factor_l2"
NEK_HAN_FIELD_POWER_FACTOR_L3 = "power_factor_l3"

# (field, value groups C.D.E, value group A, unit); each code is published with B = 0 and B = 1
# (meters differ: Aidon/Kaifa send 1-0:x, Kamstrup 1-1:x; clock 0-0:1.0.0 or 0-1:1.0.0).
_TABLE: list[tuple[str, tuple[int, int, int], int, str | None]] = [
    (NEK_HAN_FIELD_OBIS_LIST_VER_ID, (0, 2, 129), 1, None),
    (NEK_HAN_FIELD_METER_ID, (96, 1, 0), 0, None),
    (NEK_HAN_FIELD_METER_ID, (0, 0, 5), 1, None),
    (NEK_HAN_FIELD_METER_TYPE, (96, 1, 7), 0, None),
    (NEK_HAN_FIELD_METER_TYPE, (96, 1, 1), 1, None),
    (NEK_HAN_FIELD_ACTIVE_POWER_IMPORT, (1, 7, 0), 1, "W"),
    (NEK_HAN_FIELD_ACTIVE_POWER_EXPORT, (2, 7, 0), 1, "W"),
    (NEK_HAN_FIELD_REACTIVE_POWER_IMPORT, (3, 7, 0), 1, "var"),
    (NEK_HAN_FIELD_REACTIVE_POWER_EXPORT, (4, 7, 0), 1, "var"),
    (NEK_HAN_FIELD_CURRENT_L1, (31, 7, 0), 1, "A"),
    (NEK_HAN_FIELD_CURRENT_L2, (51, 7, 0), 1, "A"),
    (NEK_HAN_FIELD_CURRENT_L3, (71, 7, 0), 1, "A"),
    (NEK_HAN_FIELD_VOLTAGE_L1, (32, 7, 0), 1, "V"),
    (NEK_HAN_FIELD_VOLTAGE_L2, (52, 7, 0), 1, "V"),
    (NEK_HAN_FIELD_VOLTAGE_L3, (72, 7, 0), 1, "V"),
    (NEK_HAN_FIELD_METER_DATETIME, (1, 0, 0), 0, None),
    (NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_HOUR, (1, 8, 0), 1, "Wh"),
    (NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_HOUR, (2, 8, 0), 1, "Wh"),
    (NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_HOUR, (3, 8, 0), 1, "varh"),
    (NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_HOUR, (4, 8, 0), 1, "varh"),
    (NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_L1, (21, 7, 0), 1, "W"),
    (NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_L2, (41, 7, 0), 1, "W"),
    (NEK_HAN_FIELD_ACTIVE_POWER_IMPORT_L3, (61, 7, 0), 1, "W"),
    (NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_L1, (22, 7, 0), 1, "W"),
    (NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_L2, (42, 7, 0), 1, "W"),
    (NEK_HAN_FIELD_ACTIVE_POWER_EXPORT_L3, (62, 7, 0), 1, "W"),
    (NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_L1, (23, 7, 0), 1, "var"),
    (NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_L2, (43, 7, 0), 1, "var"),
    (NEK_HAN_FIELD_REACTIVE_POWER_IMPORT_L3, (63, 7, 0), 1, "var"),
    (NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_L1, (24, 7, 0), 1, "var"),
    (NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_L2, (44, 7, 0), 1, "var"),
    (NEK_HAN_FIELD_REACTIVE_POWER_EXPORT_L3, (64, 7, 0), 1, "var"),
    (NEK_HAN_FIELD_POWER_FACTOR, (13, 7, 0), 1, None),
    (NEK_HAN_FIELD_POWER_FACTOR_L1, (33, 7, 0), 1, None),
    (NEK_HAN_FIELD_POWER_FACTOR_L2, (53, 7, 0), 1, None),
    (NEK_HAN_FIELD_POWER_FACTOR_L3, (73, 7, 0), 1, None),
]


def obis_to_str(code: bytes) -> str:
    """Render 6 OBIS bytes as the dotted form used as dictionary key ("1.0.1.7.0.255")."""
    return ".".join(map(str, code))


def obis_from_str(code: str) -> bytes:
    """Parse a dotted OBIS code ("1.0.1.7.0.255") into its 6 bytes."""
    parts = code.split(".")
    if len(parts) != 6:
        raise ValueError(f"expected an OBIS code of 6 dotted groups, found {code!r}")
    return bytes(int(part) for part in parts)


def _forms(cde: tuple[int, int, int], group_a: int) -> list[str]:
    """Return a code's two published forms: B = 0 and B = 1 (the B = 1 form first for list id)."""
    order = (1, 0) if cde == (0, 2, 129) else (0, 1)
    return [obis_to_str(bytes((group_a, b, *cde, 255))) for b in order]


name_obis_map: Dict[str, List[str]] = {}
for _name, _cde, _group_a, _unit in _TABLE:
    name_obis_map.setdefault(_name, []).extend(_forms(_cde, _group_a))

obis_name_map: Dict[str, str] = {
    obis: name for name, obis_codes in name_obis_map.items() for obis in obis_codes
}

FIELD_UNITS: Dict[str, str] = {name: unit for name, _cde, _a, unit in _TABLE if unit is not None}
"""The unit of each numeric field after scaling: "W", "var", "A", "V", "Wh" or "varh"."""

OBIS_BYTES_NAME: Dict[bytes, str] = {obis_from_str(obis): name for obis, name in obis_name_map.items()}
"""The field name of each OBIS code, keyed by its raw 6 bytes (what decoders look up)."""

CLOCK_CODES = frozenset(obis_from_str(obis) for obis in name_obis_map[NEK_HAN_FIELD_METER_DATETIME])
"""The raw OBIS codes of the clock object, whose octet-string value is a COSEM date-time."""
