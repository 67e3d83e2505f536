"""Open a meter connection on a serial port (an M-Bus USB dongle, /dev/ttyUSB0) with pyserial-asyncio."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional

import serial
import serial_asyncio  # type: ignore[import-untyped]

from amshan.hdlc import HdlcFrame
from amshan.items import ItemValue
from amshan.meter_connection import (
    MeterTransportProtocol,
    SmartMeterFrameContentProtocol,
    SmartMeterFrameProtocol,
    SmartMeterMessageProtocol,
    SmartMeterReadFrameProtocol,
    SmartMeterStreamProtocol,
)
from amshan.reader import ReadFrame


async def _create_serial_connection(
    loop: Optional[asyncio.AbstractEventLoop],
    protocol: SmartMeterStreamProtocol,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> MeterTransportProtocol:
    port = serial.serial_for_url(*args, **kwargs)
    try:
        transport, _ = await serial_asyncio.connection_for_serial(
            loop if loop is not None else asyncio.get_running_loop(), lambda: protocol, port
        )
    except BaseException:
        # pyserial-asyncio re-applies the settings (timeout 0) after open: when the port refuses them
        # (a pty and parity E: termios.error 22) the open port would stay behind until garbage collection.
        port.close()
        raise
    return transport, protocol


async def create_serial_frame_connection(
    queue: asyncio.Queue[HdlcFrame],
    loop: Optional[asyncio.AbstractEventLoop],
    *args: Any,
    drop: str = "newest",
    **kwargs: Any,
) -> MeterTransportProtocol:
    """Open a serial port that puts every frame on queue; args and kwargs go to serial.serial_for_url.

    For example `url="/dev/ttyUSB0", baudrate=2400, parity=serial.PARITY_EVEN` (Aidon, Kaifa) or
    `parity=serial.PARITY_NONE` (Kamstrup). loop None means the running loop. drop ("newest", the
    default, or "oldest") is what a full bounded queue loses (SmartMeterStreamProtocol).
    """
    return await _create_serial_connection(loop, SmartMeterFrameProtocol(queue, drop=drop), args, kwargs)


async def create_serial_frame_content_connection(
    queue: asyncio.Queue[bytes],
    loop: Optional[asyncio.AbstractEventLoop],
    *args: Any,
    drop: str = "newest",
    **kwargs: Any,
) -> MeterTransportProtocol:
    """Open a serial port that puts each valid message's content on queue; arguments as for frames."""
    return await _create_serial_connection(
        loop, SmartMeterFrameContentProtocol(queue, drop=drop), args, kwargs
    )


async def create_serial_message_connection(
    queue: asyncio.Queue[Dict[str, ItemValue]],
    loop: Optional[asyncio.AbstractEventLoop],
    *args: Any,
    encryption_key: Optional[bytes] = None,
    authentication_key: Optional[bytes] = None,
    drop: str = "newest",
    **kwargs: Any,
) -> MeterTransportProtocol:
    """Open a serial port of any transport that puts each decoded message's dictionary on queue.

    The keys (16 bytes each, or None) decrypt ciphered meters; other arguments as for frames.
    """
    protocol = SmartMeterMessageProtocol(queue, encryption_key, authentication_key, drop=drop)
    return await _create_serial_connection(loop, protocol, args, kwargs)


async def create_serial_read_frame_connection(
    queue: asyncio.Queue[ReadFrame],
    loop: Optional[asyncio.AbstractEventLoop],
    *args: Any,
    encryption_key: Optional[bytes] = None,
    authentication_key: Optional[bytes] = None,
    drop: str = "newest",
    **kwargs: Any,
) -> MeterTransportProtocol:
    """Open a serial port of any transport that puts every frame (with its message) on queue."""
    protocol = SmartMeterReadFrameProtocol(queue, encryption_key, authentication_key, drop=drop)
    return await _create_serial_connection(loop, protocol, args, kwargs)
