"""What a full bounded queue loses: drop="newest" (the default: the item that does not fit) or "oldest"
(the item waiting longest), on the protocols, the serial and TCP factories (real pty, real loopback TCP) and
the CLI's --drop (issue 15, part 3)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, List

import pytest
from _hdlc_builder import build_frame

from amshan.cli import build_parser
from amshan.hdlc import HdlcFrame
from amshan.meter_connection import (
    SmartMeterFrameContentProtocol,
    SmartMeterFrameProtocol,
    SmartMeterMessageProtocol,
    SmartMeterReadFrameProtocol,
)
from amshan.reader import ReadFrame
from amshan.serial_connection_factory import (
    create_serial_frame_content_connection,
    create_serial_read_frame_connection,
)
from amshan.tcp_connection_factory import (
    create_tcp_frame_connection,
    create_tcp_frame_content_connection,
    create_tcp_message_connection,
    create_tcp_read_frame_connection,
)

# Ten distinct single-frame messages (a data-notification whose invoke id counts), in the order sent
MESSAGES = [
    bytes.fromhex("e6e7000f") + n.to_bytes(4, "big") + bytes.fromhex("0002011200") + bytes((n,))
    for n in range(10)
]
FRAMES = [build_frame(message) for message in MESSAGES]


async def wait_for(condition: Any, timeout: float = 10) -> None:
    """Poll until condition() holds, failing at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def drained(queue: asyncio.Queue[Any]) -> List[Any]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


def contents(items: List[Any]) -> List[bytes]:
    """The message content of each queued item: content bytes, an HdlcFrame or a ReadFrame."""
    found = []
    for item in items:
        if isinstance(item, ReadFrame):
            assert item.message is not None
            found.append(item.message)
        else:
            found.append(item if isinstance(item, bytes) else item.information)
    return found


async def test_by_default_a_full_queue_keeps_the_oldest_and_drops_the_newest() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=3)
    protocol = SmartMeterFrameContentProtocol(queue)
    assert protocol.drop == "newest"
    protocol.data_received(b"".join(FRAMES))
    assert drained(queue) == MESSAGES[:3]
    assert protocol.queue_full_drops == 7


async def test_drop_oldest_keeps_the_latest_messages_counted_the_same_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=3)
    protocol = SmartMeterFrameContentProtocol(queue, drop="oldest")
    with caplog.at_level(logging.WARNING, logger="amshan.meter_connection"):
        for frame in FRAMES:
            protocol.data_received(frame)
    assert drained(queue) == MESSAGES[-3:]
    assert protocol.queue_full_drops == 7
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1


async def test_drop_oldest_on_the_frame_protocol() -> None:
    queue: asyncio.Queue[HdlcFrame] = asyncio.Queue(maxsize=2)
    protocol = SmartMeterFrameProtocol(queue, drop="oldest")
    protocol.data_received(b"".join(FRAMES))
    assert [frame.information for frame in drained(queue)] == MESSAGES[-2:]
    assert protocol.queue_full_drops == 8


async def test_dropped_items_leave_join_working() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=2)
    protocol = SmartMeterFrameContentProtocol(queue, drop="oldest")
    protocol.data_received(b"".join(FRAMES))
    for _ in range(queue.qsize()):
        queue.get_nowait()
        queue.task_done()
    await asyncio.wait_for(queue.join(), 1)  # the dropped items count as done


async def test_drop_oldest_on_the_read_frame_protocol_of_any_transport() -> None:
    queue: asyncio.Queue[ReadFrame] = asyncio.Queue(maxsize=2)
    protocol = SmartMeterReadFrameProtocol(queue, drop="oldest")
    protocol.data_received(b"".join(FRAMES))
    assert contents(drained(queue)) == MESSAGES[-2:]
    assert protocol.queue_full_drops == 8


def test_every_protocol_takes_the_policy() -> None:
    assert SmartMeterMessageProtocol(asyncio.Queue(), drop="oldest").drop == "oldest"
    assert SmartMeterMessageProtocol(asyncio.Queue()).drop == "newest"
    assert SmartMeterReadFrameProtocol(asyncio.Queue()).drop == "newest"


@pytest.mark.parametrize(
    "protocol_class",
    [
        SmartMeterFrameContentProtocol,
        SmartMeterFrameProtocol,
        SmartMeterMessageProtocol,
        SmartMeterReadFrameProtocol,
    ],
)
def test_an_unknown_policy_is_refused(protocol_class: Any) -> None:
    with pytest.raises(ValueError, match="newest, oldest"):
        protocol_class(asyncio.Queue(), drop="random")


@pytest.mark.parametrize(
    "factory",
    [create_tcp_frame_content_connection, create_tcp_frame_connection, create_tcp_read_frame_connection],
)
async def test_tcp_factories_pass_the_policy_on(factory: Any) -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(FRAMES))
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
        transport, protocol = await factory(queue, None, "127.0.0.1", port, drop="oldest")
        await wait_for(lambda: protocol.queue_full_drops == 8)
        assert contents(drained(queue)) == MESSAGES[-2:]
        transport.close()
        await asyncio.wait_for(protocol.done, 5)
    finally:
        server.close()
        await server.wait_closed()


async def test_the_message_factory_passes_the_policy_on() -> None:
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        transport, protocol = await create_tcp_message_connection(
            asyncio.Queue(), None, "127.0.0.1", port, drop="oldest"
        )
        assert protocol.drop == "oldest"
        transport.close()
        await asyncio.wait_for(protocol.done, 5)
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "factory", [create_serial_frame_content_connection, create_serial_read_frame_connection]
)
async def test_serial_factories_pass_the_policy_on(openpty: tuple[int, str], factory: Any) -> None:
    master, path = openpty
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
    transport, protocol = await factory(queue, None, url=path, baudrate=2400, drop="oldest")
    os.write(master, b"".join(FRAMES))
    await wait_for(lambda: protocol.queue_full_drops == 8)
    assert contents(drained(queue)) == MESSAGES[-2:]
    transport.close()
    await asyncio.wait_for(protocol.done, 5)


def test_cli_drop_option_parses() -> None:
    parser = build_parser()
    assert parser.parse_args(["read", "tcp://127.0.0.1:1"]).drop == "newest"
    assert parser.parse_args(["read", "tcp://127.0.0.1:1", "--drop", "oldest"]).drop == "oldest"
    with pytest.raises(SystemExit):
        parser.parse_args(["read", "tcp://127.0.0.1:1", "--drop", "middle"])
