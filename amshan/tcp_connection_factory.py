"""Open a meter connection over TCP (ser2net, an ESP reader or another serial-to-network bridge)."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Optional

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


async def _create_tcp_connection(
    loop: Optional[asyncio.AbstractEventLoop],
    protocol: SmartMeterStreamProtocol,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> MeterTransportProtocol:
    transport, _ = await (loop if loop is not None else asyncio.get_running_loop()).create_connection(
        lambda: protocol, *args, **kwargs
    )
    return transport, protocol


async def create_tcp_frame_connection(
    queue: asyncio.Queue[HdlcFrame],
    loop: Optional[asyncio.AbstractEventLoop],
    *args: Any,
    drop: str = "newest",
    **kwargs: Any,
) -> MeterTransportProtocol:
    """Connect to a TCP stream that puts every frame on queue; args and kwargs go to loop.create_connection.

    For example `"192.168.1.10", 3001` (host, port). loop None means the running loop. drop ("newest", the
    default, or "oldest") is what a full bounded queue loses (SmartMeterStreamProtocol).
    """
    return await _create_tcp_connection(loop, SmartMeterFrameProtocol(queue, drop=drop), args, kwargs)


async def create_tcp_frame_content_connection(
    queue: asyncio.Queue[bytes],
    loop: Optional[asyncio.AbstractEventLoop],
    *args: Any,
    drop: str = "newest",
    **kwargs: Any,
) -> MeterTransportProtocol:
    """Connect to a TCP stream that puts each valid message's content on queue; arguments as for frames."""
    return await _create_tcp_connection(loop, SmartMeterFrameContentProtocol(queue, drop=drop), args, kwargs)


async def create_tcp_message_connection(
    queue: asyncio.Queue[Dict[str, ItemValue]],
    loop: Optional[asyncio.AbstractEventLoop],
    *args: Any,
    encryption_key: Optional[bytes] = None,
    authentication_key: Optional[bytes] = None,
    drop: str = "newest",
    **kwargs: Any,
) -> MeterTransportProtocol:
    """Connect to a TCP stream of any transport that puts each decoded message's dictionary on queue.

    The keys (16 bytes each, or None) decrypt ciphered meters; other arguments as for frames.
    """
    protocol = SmartMeterMessageProtocol(queue, encryption_key, authentication_key, drop=drop)
    return await _create_tcp_connection(loop, protocol, args, kwargs)


async def create_tcp_read_frame_connection(
    queue: asyncio.Queue[ReadFrame],
    loop: Optional[asyncio.AbstractEventLoop],
    *args: Any,
    encryption_key: Optional[bytes] = None,
    authentication_key: Optional[bytes] = None,
    drop: str = "newest",
    **kwargs: Any,
) -> MeterTransportProtocol:
    """Connect to a TCP stream of any transport that puts every frame (with its message) on queue."""
    protocol = SmartMeterReadFrameProtocol(queue, encryption_key, authentication_key, drop=drop)
    return await _create_tcp_connection(loop, protocol, args, kwargs)
