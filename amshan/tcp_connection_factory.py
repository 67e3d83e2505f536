"""Open a meter connection over TCP (ser2net, an ESP reader or another serial-to-network bridge)."""

from __future__ import annotations

import asyncio
from typing import Any, Optional

from amshan.hdlc import HdlcFrame
from amshan.meter_connection import (
    MeterTransportProtocol,
    SmartMeterBaseProtocol,
    SmartMeterFrameContentProtocol,
    SmartMeterFrameProtocol,
)


async def _create_tcp_connection(
    loop: Optional[asyncio.AbstractEventLoop],
    protocol: SmartMeterBaseProtocol,
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
    default, or "oldest") is what a full bounded queue loses (SmartMeterBaseProtocol).
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
