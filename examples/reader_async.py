"""Read a meter on a serial port or over TCP with asyncio and the ConnectionManager; print each message.

Usage: python reader_async.py /dev/ttyUSB0 [--parity E] [--count N]
       python reader_async.py tcp://192.168.1.10:3001 [--count N]
Aidon and Kaifa meters send 2400 baud 8E1 (--parity E), Kamstrup 2400 baud 8N1 (the default here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Awaitable

from amshan.autodecoder import AutoDecoder
from amshan.meter_connection import ConnectionManager, MeterTransportProtocol
from amshan.serial_connection_factory import create_serial_frame_content_connection
from amshan.tcp_connection_factory import create_tcp_frame_content_connection


async def read_meter(source: str, parity: str, count: int | None) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def connect() -> Awaitable[MeterTransportProtocol]:
        if source.startswith("tcp://"):
            host, port = source[len("tcp://") :].rsplit(":", 1)
            return create_tcp_frame_content_connection(queue, loop, host, int(port))
        return create_serial_frame_content_connection(queue, loop, url=source, baudrate=2400, parity=parity)

    # Reconnects with back-off when the link fails, and after 60 s without a valid frame (dead ser2net/ESP).
    manager = ConnectionManager(connect, idle_timeout=60)
    connection_task = asyncio.ensure_future(manager.connect_loop())
    decoder = AutoDecoder()
    received = 0
    try:
        while count is None or received < count:
            content = await queue.get()  # the content of one valid message (HDLC segments joined)
            decoded = decoder.decode_frame_content(content)
            if decoded is not None:
                print(decoded, flush=True)
                received += 1
    finally:
        manager.close()
        await connection_task


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="serial device or tcp://HOST:PORT")
    parser.add_argument("--parity", choices=("N", "E"), default="N")
    parser.add_argument("--count", type=int, help="stop after this many messages")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(read_meter(args.source, args.parity, args.count))


if __name__ == "__main__":
    main()
