"""Decode any supported meter's data-notification into the common dictionary, never raising."""

from __future__ import annotations

import logging
import struct
from collections import OrderedDict
from itertools import count
from operator import itemgetter
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

from amshan import aidon, generic, iskra, kaifa, kamstrup, landisgyr
from amshan._errors import DecodeError
from amshan._ratelimit import LogLimiter
from amshan.axdr import decode_date_time
from amshan.cipher import CIPHERING_TAGS, CipherStats, Decipherer, parse_ciphered_apdu
from amshan.dlms import LLC_HEADER, apdu_offset, decode_data_notification, read_notification_header
from amshan.items import (
    TEXT_KIND,
    DecodedMessage,
    ItemValue,
    MeterItem,
    Trace,
    field_of,
    message_to_dict,
)
from amshan.obis_map import (
    CLOCK_CODES,
    FIELD_UNITS,
    NEK_HAN_FIELD_METER_DATETIME,
    NEK_HAN_FIELD_METER_MANUFACTURER,
    name_obis_map,
)
from amshan.p1 import telegram_dict, telegram_message

__all__ = ["DECODERS", "MAX_SHAPES", "AutoDecoder", "MeterItem"]

_LOGGER = logging.getLogger(__name__)

DECODERS: Dict[str, Callable[[bytes, Optional[Trace]], DecodedMessage]] = {
    aidon.NAME: aidon.decode_message,
    kaifa.NAME: kaifa.decode_message,
    kamstrup.NAME: kamstrup.decode_message,
    iskra.NAME: iskra.decode_message,
    landisgyr.NAME: landisgyr.decode_message,
    generic.NAME: generic.decode_message,
}
"""Every decoder by the name AutoDecoder reports for it."""

MAX_SHAPES = 64
"""How many message layouts an AutoDecoder remembers by default (least recently used out)."""
_MAX_SHAPES_PER_LENGTH = 4  # a miss tries at most this many shapes: ever-new layouts cost no more than that
_MAX_SIGHTINGS = 256  # skeletons seen once, waiting for their second sighting
_MAX_TEXTS = 256  # text values a shape remembers per text item (meter ids of a fleet), cleared when full

DecoderFunction = Callable[[bytes], Mapping[str, ItemValue]]
"""A decoder in AutoDecoder.decoder_functions: frame content in, dictionary out; raises if it does not fit."""

_BUILT_IN_FUNCTIONS: List[Tuple[str, DecoderFunction]] = [
    (aidon.NAME, aidon.decode_frame_content),
    (kaifa.NAME, kaifa.decode_frame_content),
    (kamstrup.NAME, kamstrup.decode_frame_content),
]

# A-XDR tags whose value bytes the shape cache reads with struct (all other bytes are the skeleton)
_NUMBER_FORMATS = {
    0x05: "i", 0x06: "I", 0x0D: "B", 0x0F: "b", 0x10: "h", 0x11: "B",
    0x12: "H", 0x14: "q", 0x15: "Q", 0x16: "B", 0x17: "f", 0x18: "d",
}  # fmt: skip
_TEXT_TAGS = (0x09, 0x0A)  # octet-string, visible-string: a named text field's fixed-length value
_Fields = Tuple[Any, ...]
_Signature = Tuple[str, int, Tuple[Tuple[int, bytes, int], ...]]
_T = TypeVar("_T")


def _getter(indices: List[int]) -> Callable[[_Fields], _Fields]:
    """Return a function picking the given fields as a tuple (itemgetter, also for a single index)."""
    if len(indices) == 1:
        index = indices[0]
        return lambda fields: (fields[index],)
    return itemgetter(*indices)


def _same(found: Optional[Dict[str, ItemValue]], full: Dict[str, ItemValue]) -> bool:
    """Tell whether two dictionaries are the same: keys in the same order, equal values of the same types."""
    return (
        found is not None
        and list(found.items()) == list(full.items())
        and all(type(found[key]) is type(value) for key, value in full.items())
    )


def _mask_of(size: int, spans: List[Tuple[int, int]]) -> int:
    """Return the mask (one integer) of a message of size bytes with the (offset, size) spans zeroed."""
    mask = bytearray(b"\xff" * size)
    for offset, length in spans:
        mask[offset : offset + length] = bytes(length)
    return int.from_bytes(mask, "big")  # pragma: no mutate (equivalent: "big" is 3.11's default)


class _Text(NamedTuple):
    """A named text field's fixed-length value in a shape: where its tag is, and what its bytes gave."""

    key: str
    tag_offset: int
    values: Dict[bytes, ItemValue]  # raw bytes -> item value, as the full decoder gave it in this layout


class _Shape:
    """A message layout seen before: its skeleton bytes and where its values sit, for one struct call.

    Every byte of the message that is not the value of a number item, a named text item (list id, meter id,
    meter type: same length, any content), a clock item's date-time, the header date-time in use or the
    invoke id belongs to the skeleton, which must equal the remembered one byte for byte (checked at once:
    the message as one integer, masked); the dictionary is then the remembered one with the new values put
    in.  Text the remembered message held is the common case (one meter) and costs nothing; other text
    (another meter) goes through the full decoder once and is remembered when the shape then gives exactly
    what the full decoder gave (learn_texts).  Anything unusual (a date-time that is no instant, text not
    checked so, a different skeleton) returns None and the full decoder runs.
    """

    __slots__ = (
        "_clocks",
        "_divided",
        "_floated",
        "_header",
        "_mask",
        "_multiplied",
        "_plain_get",
        "_plain_keys",
        "_skeleton",
        "_template",
        "_text_mask",
        "_text_skeleton",
        "_texts",
        "_unpack",
        "name",
        "signature",
        "used",
    )

    def __init__(self, name: str, content: bytes, message: DecodedMessage, trace: Trace, used: int) -> None:
        """Lay out the shape of a message the full decoder decoded; raise ValueError if it has none."""
        self.name = name
        self.signature: _Signature = (name, len(content), tuple(trace))
        self.used = used  # the AutoDecoder's clock tick of the last use (least recently used out)
        template = message_to_dict(message)
        values: List[Tuple[int, int, str, str, Any]] = []  # (offset, size, format, key, scaler or "clock")
        texts: List[_Text] = []
        keys = [item.name or item.obis for item in message.items]  # the header date-time is no item
        seen = set()
        for position, code, scaler in trace:
            field = field_of(code)
            key = field.name or field.obis
            if key in seen or keys.count(key) > 1:
                raise ValueError(f"{key} twice")
            seen.add(key)
            tag = content[position]
            number = _NUMBER_FORMATS.get(tag)
            if number is not None and code not in CLOCK_CODES and key in keys:
                values.append((position + 1, struct.calcsize(">" + number), number, key, scaler))
            elif tag == 0x09 and content[position + 1] == 12 and code in CLOCK_CODES and key in keys:
                values.append((position + 2, 12, "12s", key, "clock"))
            elif tag in _TEXT_TAGS and field.kind == TEXT_KIND:
                size = content[position + 1]
                if size < 0x80:  # pragma: no mutate (equivalent: 0x80 is no A-XDR length, refused before)
                    raw = content[position + 2 : position + 2 + size]
                    texts.append(_Text(key, position, {raw: template[key]}))
        header = read_notification_header(content)
        invoke = apdu_offset(content) + 1
        values.append((invoke, 4, "4x", "", None))  # pragma: no mutate (equivalent: key unread)
        at = header.date_time_offset
        if at >= 0:  # pragma: no mutate (equivalent: never 0, the tag and invoke id come first)
            if any(item.name == NEK_HAN_FIELD_METER_DATETIME for item in message.items):
                values.append((at, 12, "12x", "", None))  # pragma: no mutate (equivalent: key unread)
            elif message.date_time is not None:
                values.append((at, 12, "12s", NEK_HAN_FIELD_METER_DATETIME, "header"))
        values.sort()
        parts: List[str] = []
        plain: List[Tuple[int, str]] = []
        self._multiplied: List[Tuple[int, str, int]] = []
        self._divided: List[Tuple[int, str, int]] = []
        self._floated: List[Tuple[int, str, int]] = []  # multiplied, then a float as the full decoder gives
        self._clocks: List[Tuple[int, str]] = []
        self._header: Optional[int] = None
        cursor = index = 0
        for offset, size, number, key, scaler in values:
            parts.append(f"{offset - cursor}x")  # "0x" (no gap) packs nothing
            parts.append(number)
            cursor = offset + size
            if number.endswith("x"):
                continue
            if scaler == "header":
                self._header = index
            elif scaler == "clock":
                self._clocks.append((index, key))
            elif scaler < 0:
                self._divided.append((index, key, 10**-scaler))
            elif scaler:
                target = self._floated if type(template.get(key)) is float else self._multiplied
                target.append((index, key, 10**scaler))
            else:
                plain.append((index, key))
            index += 1
        parts.append(f"{len(content) - cursor}x")
        value_spans = [(offset, size) for offset, size, *_ in values]
        text_spans = [(text.tag_offset + 2, content[text.tag_offset + 1]) for text in texts]
        whole = int.from_bytes(content, "big")  # pragma: no mutate (equivalent: "big" is 3.11's default)
        self._unpack = struct.Struct(">" + "".join(parts)).unpack
        self._mask = _mask_of(len(content), value_spans)
        self._skeleton = whole & self._mask
        self._text_mask = _mask_of(len(content), value_spans + text_spans)
        self._text_skeleton = whole & self._text_mask
        self._texts = texts
        self._plain_keys = [key for _, key in plain]
        self._plain_get = _getter([i for i, _ in plain]) if plain else None
        self._template = template

    def decode(self, content: bytes, whole: int) -> Optional[Dict[str, ItemValue]]:
        """Return the dictionary of a message of this shape (whole: its bytes as one integer), or None."""
        if whole & self._mask == self._skeleton:
            result = self._template.copy()
        elif self._texts and whole & self._text_mask == self._text_skeleton:
            result = self._template.copy()
            if not self._put_texts(content, result):
                return None
        else:
            return None
        fields = self._unpack(content)
        if self._plain_get is not None:
            result.update(zip(self._plain_keys, self._plain_get(fields)))
        for index, key, factor in self._multiplied:
            result[key] = fields[index] * factor
        for index, key, divisor in self._divided:
            result[key] = fields[index] / divisor
        for index, key, factor in self._floated:
            result[key] = float(fields[index] * factor)
        for index, key in self._clocks:
            moment = decode_date_time(fields[index], 0)
            if moment is None:
                return None
            result[key] = moment
        if self._header is not None:
            moment = decode_date_time(fields[self._header], 0)
            if moment is None:
                return None
            result[NEK_HAN_FIELD_METER_DATETIME] = moment
        return result

    def _put_texts(self, content: bytes, result: Dict[str, ItemValue]) -> bool:
        """Put the text values in result; False when one was never checked against the full decoder."""
        for text in self._texts:
            offset = text.tag_offset
            value = text.values.get(content[offset + 2 : offset + 2 + content[offset + 1]])
            if value is None:
                return False
            result[text.key] = value
        return True

    def learn_texts(self, content: bytes, full: Dict[str, ItemValue]) -> None:
        """Remember the new text values of content when this shape then gives full (the full decoder's).

        A text can change how a decoder reads the rest (a list id naming another maker, a Kamstrup meter
        type of a current-transformer meter): such a text is never remembered in this layout's shape.
        """
        added = []
        for text in self._texts:
            offset = text.tag_offset
            raw = content[offset + 2 : offset + 2 + content[offset + 1]]
            if raw not in text.values and text.key in full:
                if len(text.values) >= _MAX_TEXTS:
                    text.values.clear()
                text.values[raw] = full[text.key]
                added.append((text, raw))
        whole = int.from_bytes(content, "big")  # pragma: no mutate (equivalent: "big" is 3.11's default)
        if added and not _same(self.decode(content, whole), full):
            for text, raw in added:
                del text.values[raw]


def _candidates(frame_content: bytes) -> tuple[str, ...]:
    """Pick the decoders that fit the body's shape (tag of the body and of its first element)."""
    pos = read_notification_header(frame_content).body_offset
    tag = frame_content[pos : pos + 1]
    if tag == b"\x01":
        return (aidon.NAME, generic.NAME)
    if tag == b"\x02":
        first = frame_content[pos + 2 : pos + 3]
        if first == b"\x0a":
            return (kamstrup.NAME, generic.NAME)
        if first in (b"\x09", b"\x06"):
            return (kaifa.NAME, iskra.NAME, generic.NAME)
        if first == b"\x12":
            return (landisgyr.NAME, generic.NAME)
        return (generic.NAME,)
    return ()


def _message_of(decoded: Mapping[str, ItemValue]) -> DecodedMessage:
    """Turn the dictionary of a decoder added to decoder_functions into a message (items by field name)."""
    manufacturer = decoded.get(NEK_HAN_FIELD_METER_MANUFACTURER)
    items = [
        MeterItem(name_obis_map[key][0], key, value, FIELD_UNITS.get(key))
        if key in name_obis_map
        else MeterItem(key, None, value, None)
        for key, value in decoded.items()
        if key != NEK_HAN_FIELD_METER_MANUFACTURER
    ]
    return DecodedMessage(None if manufacturer is None else str(manufacturer), None, items)


_CIPHERING_TAG_BYTES = tuple(bytes((tag,)) for tag in CIPHERING_TAGS)


def _ciphering_offset(frame_content: bytes) -> int:
    """Return where a ciphering APDU (0xdb/0xdc) starts in an information field, or -1 when there is none."""
    try:
        if frame_content[3:4] in _CIPHERING_TAG_BYTES and frame_content[:3] in (LLC_HEADER, b"\xe6\xe6\x00"):
            return 3
        if frame_content[:1] in _CIPHERING_TAG_BYTES:
            return 0
    except Exception:  # not bytes at all: the plain path reports it
        pass
    return -1  # pragma: no mutate (equivalent: callers only test the sign, -2 is as negative)


def _is_telegram(content: object) -> bool:
    """Return True when message content is a P1 telegram (text from '/'), False for anything else."""
    return isinstance(content, (bytes, bytearray, memoryview)) and content[:1] == b"/"


def _is_whole_apdu(plaintext: bytes) -> bool:
    """Return True when the plaintext parses as one whole data-notification."""
    try:
        decode_data_notification(plaintext)
    except DecodeError:
        return False
    return True


class AutoDecoder:
    """Decode frame content of any supported meter, the same way whatever was decoded before.

    With the meter's keys it also decrypts general-glo/ded-ciphering APDUs (see ``amshan.cipher``).
    """

    decoder_functions: ClassVar[List[Tuple[str, DecoderFunction]]] = list(_BUILT_IN_FUNCTIONS)
    """amshan 2021.12.1's extension point: (name, function) pairs, first the built-in Aidon, Kaifa, Kamstrup.

    A pair appended here is tried after the built-in meter decoders and before the generic one, in list order;
    its name becomes previous_success_decoder.  Removing a built-in pair turns that decoder off.
    """

    def __init__(
        self,
        *,
        encryption_key: Optional[bytes] = None,
        authentication_key: Optional[bytes] = None,
        max_shapes: int = MAX_SHAPES,
    ) -> None:
        """Start with the keys (16 bytes or None) and an empty cache of up to max_shapes layouts (0: none)."""
        self._previous: Optional[str] = None
        self._warnings = LogLimiter()
        self._decipherer = Decipherer(encryption_key, authentication_key)
        self._max_shapes = max(0, max_shapes)
        self._shapes: Dict[int, List[_Shape]] = {}  # by message length, the most recently used first
        self._clock = count()  # ticks of use: the least recently used shape has the smallest
        self._shape_count = 0
        self._sightings: OrderedDict[_Signature, bool] = OrderedDict()  # seen once; False: takes no shape
        self.shape_cache_hits = 0

    @property
    def decipherer(self) -> Decipherer:
        """Return the decipherer holding this decoder's keys and invocation counters."""
        return self._decipherer

    @property
    def cipher_stats(self) -> CipherStats:
        """Return the counts of ciphered messages decrypted and of those that gave no data (and why)."""
        return self._decipherer.stats

    @property
    def previous_success_decoder(self) -> Optional[str]:
        """Return the name of the decoder that last succeeded ("Aidon", "Kaifa", "Iskraemeco", "P1", ...)."""
        return self._previous

    def decode_message(self, frame_content: bytes) -> Optional[DecodedMessage]:
        """Decode an information field (LLC header optional) into manufacturer, date-time, items; or None."""
        if _is_telegram(frame_content):  # a P1 telegram cut from the stream (MeterReader.read_frames)
            return self._p1(telegram_message(frame_content))
        pos = _ciphering_offset(frame_content)
        if pos < 0:
            return self._decode(frame_content, None)
        return self._deciphered(
            frame_content, pos, lambda content: self._decode(content, None), telegram_message
        )

    def _p1(self, result: Optional[_T]) -> Optional[_T]:
        """Return a P1 telegram's decoding; remember "P1" as the decoder when it gives a result."""
        if result is not None:
            self._previous = "P1"
        return result

    def _deciphered(
        self,
        frame_content: bytes,
        pos: int,
        decode: Callable[[bytes], Optional[_T]],
        telegram: Callable[[bytes, bool], Optional[_T]],
    ) -> Optional[_T]:
        """Decode ciphered content (its APDU at pos) through its plaintext; None when that gives nothing.

        A plaintext that is a P1 telegram goes to ``telegram`` (with whether its tag was verified).

        An unauthenticated plaintext (no AK, or no tag) is accepted only when it decodes, so a wrong key
        gives no data; every ciphered message that gives none is counted in ``cipher_stats``.
        """
        frame_content = bytes(frame_content)  # the same object when bytes; plaintexts are bytes too
        try:
            apdu = parse_ciphered_apdu(frame_content, pos)
            if apdu.end != len(frame_content):
                raise DecodeError(
                    f"expected the ciphered APDU to end the message, found {len(frame_content) - apdu.end} "
                    "more bytes",
                    apdu.end,
                )
        except DecodeError as error:
            self._warn("ciphered content does not parse: %s", str(error))
            return None
        decipherer = self._decipherer
        try:
            candidates = decipherer.candidates(apdu)
            for plaintext, authenticated in candidates:
                if plaintext[:1] == b"/":  # a P1 telegram (Luxembourg Smarty, Austrian T210-D-R)
                    result = self._p1(telegram(plaintext, authenticated))
                else:
                    result = decode(plaintext) if authenticated or plaintext[:1] == b"\x0f" else None
                if result is not None or authenticated or _is_whole_apdu(plaintext):
                    decipherer.accepted(apdu)
                    return result
        except Exception:  # a bug must not take the caller down; report it (rate-limited), never the keys
            if self._warnings.ready():
                _LOGGER.exception("decryption failure, system title %s", apdu.system_title.hex())
            return None
        if candidates and decipherer.has_keys:  # none: counted already (no key, bad tag)
            decipherer.rejected(apdu)
        return None

    def _decode(self, frame_content: bytes, trace: Optional[Trace]) -> Optional[DecodedMessage]:
        """Run the decoders fitting the body: the meter's own, added ones, the generic last; never raises."""
        try:
            content = bytes(frame_content)  # the same object when it is bytes
            errors: List[str] = []
            listed = self.decoder_functions
            added: Sequence[Tuple[str, DecoderFunction]] = ()  # pragma: no mutate (equivalent: None is false)
            removed: Sequence[str] = ()
            if listed != _BUILT_IN_FUNCTIONS:
                added = [entry for entry in listed if entry not in _BUILT_IN_FUNCTIONS]
                removed = [entry[0] for entry in _BUILT_IN_FUNCTIONS if entry not in listed]
            try:
                names = _candidates(content)
            except DecodeError as error:  # no data-notification: only an added decoder may know the content
                if not added:
                    raise
                names = ()
                errors.append(str(error))
            for name in names:
                if name == generic.NAME and added:
                    message = self._try_added(content, added, errors)
                    if message is not None:
                        return message
                    added = ()  # pragma: no mutate (equivalent: only its truth is read, None is false too)
                if name in removed:
                    continue
                if trace is not None:
                    trace.clear()
                try:
                    message = DECODERS[name](content, trace)
                except DecodeError as error:
                    errors.append(f"{name}: {error}")
                    continue
                self._previous = name
                return message
            if added:
                message = self._try_added(content, added, errors)
                if message is not None:
                    return message
            self._warn("no decoder fits the frame content (%s)", "; ".join(errors) or "unknown body")
        except DecodeError as error:
            self._warn("frame content does not decode: %s", str(error))
        except Exception:  # a decoder bug must not take the caller down; report it (rate-limited)
            if self._warnings.ready():
                _LOGGER.exception("decoder failure on frame content %r", frame_content)
        return None

    def _try_added(
        self, content: bytes, added: Sequence[Tuple[str, DecoderFunction]], errors: List[str]
    ) -> Optional[DecodedMessage]:
        """Try the decoders added to decoder_functions in order; the first that returns a dictionary wins."""
        for name, function in added:
            try:
                decoded = function(content)
            except Exception as error:  # an added decoder says "not mine" by raising (2021.12.1: construct's)
                errors.append(f"{name}: {error!r}")
                continue
            if not isinstance(decoded, Mapping):
                errors.append(f"{name}: returned {type(decoded).__name__}, not a dictionary")
                continue
            self._previous = name
            return _message_of(decoded)
        return None

    def decode_items(self, frame_content: bytes) -> Optional[List[MeterItem]]:
        """Decode an information field into its items (OBIS code, name, scaled value, unit), or None."""
        message = self.decode_message(frame_content)
        return None if message is None else message.items

    def decode_frame_content(self, frame_content: bytes) -> Optional[Dict[str, ItemValue]]:
        """Decode an information field (LLC header optional, plain or ciphered) into the dictionary or None.

        A message with the skeleton of one decoded before is read through that shape (one struct call);
        a ciphered one is decoded through its plaintext; any other message goes through the full decoder,
        and a skeleton the full decoder has now seen twice becomes a shape. While decoder_functions differs
        from the built-in list, every message goes through the full decoders.
        """
        if _is_telegram(frame_content):  # a P1 telegram cut from the stream (MeterReader.read_frames)
            return self._p1(telegram_dict(frame_content))
        if self.decoder_functions != _BUILT_IN_FUNCTIONS and _ciphering_offset(frame_content) < 0:
            message = self._decode(frame_content, None)
            return None if message is None else message_to_dict(message)
        try:
            shapes = self._shapes.get(len(frame_content))
            if shapes is not None:
                whole = int.from_bytes(frame_content, "big")  # pragma: no mutate (equivalent: 3.11 default)
                for shape in shapes:
                    result = shape.decode(frame_content, whole)
                    if result is not None:
                        self._previous = shape.name
                        self.shape_cache_hits += 1
                        shape.used = next(self._clock)
                        if shapes[0] is not shape:
                            shapes.remove(shape)
                            shapes.insert(0, shape)
                        return result
        except Exception:  # not a bytes-like object, or a bug: the full path decides
            _LOGGER.debug("shape cache failed on %r", frame_content, exc_info=True)
        pos = _ciphering_offset(frame_content)
        if pos >= 0:  # never the skeleton of a plain message's shape
            return self._deciphered(frame_content, pos, self.decode_frame_content, telegram_dict)
        trace: Optional[Trace] = [] if self._max_shapes else None  # pragma: no mutate (equivalent: cost)
        message = self._decode(frame_content, trace)
        if message is None:
            return None
        if trace is not None and self._previous is not None:
            self._learn(self._previous, bytes(frame_content), message, trace)
        return message_to_dict(message)

    def _learn(self, name: str, content: bytes, message: DecodedMessage, trace: Trace) -> None:
        """Note a fully decoded message's skeleton; on its second sighting make it a shape.

        A message of a layout that has a shape but text it has not seen (another meter) teaches the shape
        that text, when the shape then gives what the full decoder gave.
        """
        signature = (name, len(content), tuple(trace))
        for shape in self._shapes.get(len(content), ()):
            if shape.signature == signature:
                shape.learn_texts(content, message_to_dict(message))
                return
        sightings = self._sightings
        takes_shape = sightings.pop(signature, None)
        if takes_shape is None:  # first sighting
            sightings[signature] = True
            if len(sightings) > _MAX_SIGHTINGS:
                del sightings[next(iter(sightings))]  # the oldest
            return
        if not takes_shape:
            sightings[signature] = False
            return
        try:
            shape = _Shape(name, content, message, trace, next(self._clock))
        except Exception as error:  # a layout the cache does not take (e.g. a key twice): full path only
            _LOGGER.debug("a %s layout of %d bytes takes no shape: %r", name, len(content), error)
            sightings[signature] = False
            return
        shapes = self._shapes.setdefault(len(content), [])
        shapes.insert(0, shape)
        self._shape_count += 1
        if len(shapes) > _MAX_SHAPES_PER_LENGTH:
            shapes.pop()
            self._shape_count -= 1
        if self._shape_count > self._max_shapes:  # the least recently used shape goes
            length, oldest = min(
                ((length, shapes[-1]) for length, shapes in self._shapes.items()),
                key=lambda pair: pair[1].used,
            )
            self._shapes[length].remove(oldest)
            self._shape_count -= 1
            if not self._shapes[length]:
                del self._shapes[length]

    def _warn(self, message: str, detail: str) -> None:
        """Log a rate-limited warning about frame content that garbage input can trigger."""
        if self._warnings.ready():
            _LOGGER.warning(
                message + "%s", detail, self._warnings.held_back_note("similar warnings suppressed")
            )
