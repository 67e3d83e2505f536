"""Forward a meter's readings to InfluxDB (1.x, or 2.x through its v1 /write API), like the Aidon seed.

Usage: python influxdb_forward.py /dev/ttyUSB0 http://localhost:8086 metering [--parity E] [--count N]
       python influxdb_forward.py tcp://HOST:PORT http://localhost:8086 metering
The database must exist (influx -execute 'CREATE DATABASE metering'). Points are batched; while InfluxDB is
down they are kept (up to 100 000) and written when it is back. `amshan forward-influxdb` does the same.
Exit status as `amshan`: 0 all written, 1 points not written, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Awaitable

from amshan.autodecoder import AutoDecoder
from amshan.influxdb import InfluxDbWriter, PointMaker
from amshan.meter_connection import ConnectionManager, MeterTransportProtocol
from amshan.serial_connection_factory import create_serial_frame_content_connection
from amshan.tcp_connection_factory import create_tcp_frame_content_connection


async def forward(
    source: str, url: str, database: str, parity: str, count: int | None, *, drain_timeout: float
) -> int:
    """Forward until ``count`` points (or Ctrl-C); return the exit status: 1 when points were not written."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def connect() -> Awaitable[MeterTransportProtocol]:
        if source.startswith("tcp://"):
            host, port = source[len("tcp://") :].rsplit(":", 1)
            return create_tcp_frame_content_connection(queue, loop, host, int(port))
        return create_serial_frame_content_connection(queue, loop, url=source, baudrate=2400, parity=parity)

    manager = ConnectionManager(connect, idle_timeout=60)
    connection_task = asyncio.ensure_future(manager.connect_loop())
    writer = InfluxDbWriter(url, database, flush_interval=1.0, drain_timeout=drain_timeout)
    writer_task = asyncio.ensure_future(writer.run())
    points = PointMaker()  # tags meter_id and manufacturer; the meter's clock as timestamp when it sends one
    decoder = AutoDecoder()
    forwarded = 0
    try:
        while count is None or forwarded < count:
            decoded = decoder.decode_frame_content(await queue.get())
            point = points.make(decoded) if decoded else None
            if point is not None:
                writer.add(point)
                forwarded += 1
    finally:
        manager.close()
        await connection_task
        writer.stop()  # write what is buffered (gives up after drain_timeout) and return
        await writer_task
        print(f"{writer.written} points written, {writer.pending} not written")
    return 1 if writer.pending or writer.dropped or writer.rejected else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="serial device or tcp://HOST:PORT")
    parser.add_argument("url", help="InfluxDB URL, e.g. http://localhost:8086")
    parser.add_argument("database")
    parser.add_argument("--parity", choices=("N", "E"), default="N")
    parser.add_argument("--count", type=int, help="stop after this many messages")
    parser.add_argument("--drain-timeout", type=float, default=10.0, help="seconds to write what is left")
    args = parser.parse_args()
    try:
        status = asyncio.run(
            forward(
                args.source,
                args.url,
                args.database,
                args.parity,
                args.count,
                drain_timeout=args.drain_timeout,
            )
        )
    except KeyboardInterrupt:  # interrupted (forward() has written what it could): 130, as `amshan` does
        status = 130
    sys.exit(status)


if __name__ == "__main__":
    main()
