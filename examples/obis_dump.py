"""Print every list a meter sends, item by item with its OBIS code, value and unit (like the Aidon seed).

Usage: python obis_dump.py /dev/ttyUSB0 [--parity E] [--count N]
       python obis_dump.py tcp://HOST:PORT [--count N]
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


async def dump(source: str, parity: str, count: int | None) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def connect() -> Awaitable[MeterTransportProtocol]:
        if source.startswith("tcp://"):
            host, port = source[len("tcp://") :].rsplit(":", 1)
            return create_tcp_frame_content_connection(queue, loop, host, int(port))
        return create_serial_frame_content_connection(queue, loop, url=source, baudrate=2400, parity=parity)

    manager = ConnectionManager(connect, idle_timeout=60)
    connection_task = asyncio.ensure_future(manager.connect_loop())
    decoder = AutoDecoder()
    lists = 0
    try:
        while count is None or lists < count:
            items = decoder.decode_items(await queue.get())
            if items is None:
                continue
            lists += 1
            print(f"--- list {lists} from a {decoder.previous_success_decoder} meter: {len(items)} items")
            for item in items:
                described = {"name": item.name, "value": item.value, "unit": item.unit}
                print(f"{item.obis:<16} : {described}")
            print(flush=True)
    finally:
        manager.close()
        await connection_task


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="serial device or tcp://HOST:PORT")
    parser.add_argument("--parity", choices=("N", "E"), default="N")
    parser.add_argument("--count", type=int, help="stop after this many lists")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(dump(args.source, args.parity, args.count))


if __name__ == "__main__":
    main()
