"""Read a live meter with asyncio: protocols turning a byte stream into frames, and a reconnecting manager."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from abc import ABCMeta, abstractmethod
from contextlib import suppress
from typing import Any, Awaitable, Callable, ClassVar, Dict, Optional, Tuple, TypeVar

from amshan._ratelimit import LogLimiter
from amshan.dlms import is_whole_apdu
from amshan.hdlc import HdlcFrame, HdlcFrameReader, HdlcMessageAssembler
from amshan.items import ItemValue
from amshan.reader import MeterReader, ReadFrame

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")


class BackOffStrategy(metaclass=ABCMeta):
    """How long to wait before the next connection attempt after failures; subclass to change the policy."""

    DEFAULT_MAX_DELAY_SEC: int = 60

    @abstractmethod
    def failure(self) -> None:
        """Record one failed attempt."""

    @abstractmethod
    def reset(self) -> None:
        """Record a success: the next failure starts the sequence again."""

    @property
    @abstractmethod
    def current_delay_sec(self) -> float:
        """Return the delay in seconds to wait before the next attempt (0 after a success)."""


class ExponentialBackOff(BackOffStrategy):
    """Double the delay on each failure (1, 2, 4 ... s) up to max_delay, back to 0 on success."""

    def __init__(
        self, initial_delay_sec: float = 1, max_delay_sec: float = BackOffStrategy.DEFAULT_MAX_DELAY_SEC
    ) -> None:
        """Start with no delay; the first failure waits initial_delay_sec, the next ones twice as long."""
        if initial_delay_sec <= 0 or max_delay_sec <= 0:
            raise ValueError(
                f"back-off delays must be positive, got initial {initial_delay_sec} and max {max_delay_sec}"
            )
        self.initial_delay: float = initial_delay_sec
        self.max_delay: float = max_delay_sec
        self._delay: float = 0

    def failure(self) -> None:
        """Double the delay (the first failure sets the initial delay)."""
        self._delay = min(self._delay * 2, self.max_delay) if self._delay else self.initial_delay

    def reset(self) -> None:
        """Forget earlier failures."""
        self._delay = 0

    @property
    def current_delay_sec(self) -> float:
        """Return the current delay, never more than max_delay."""
        return min(self._delay, self.max_delay)


DROP_POLICIES = ("newest", "oldest")
"""What a protocol's full bounded queue loses: the item that does not fit (default), or the oldest one."""


class SmartMeterStreamProtocol(asyncio.Protocol, metaclass=ABCMeta):
    """What every meter protocol shares: the connection's life, counters, a bounded queue, rare logs."""

    total_instance_counter: ClassVar[int] = 0
    # How often (seconds) a recurring warning or garbage summary may be logged.
    LOG_INTERVAL_SEC: ClassVar[float] = 60.0

    def __init__(self, *, drop: str = "newest") -> None:
        """Start unconnected, with zero counts.

        drop says what a full bounded queue loses: "newest" (the item that does not fit, the default) or
        "oldest" (the item waiting longest, so that a live meter's latest reading gets through).
        """
        super().__init__()
        if drop not in DROP_POLICIES:
            raise ValueError(f"drop must be one of {', '.join(DROP_POLICIES)}, not {drop!r}")
        self.drop = drop
        self.instance_id: int = SmartMeterStreamProtocol.total_instance_counter
        SmartMeterStreamProtocol.total_instance_counter += 1
        self._done: Optional[asyncio.Future[None]] = None
        with suppress(RuntimeError):  # created lazily when constructed outside a running loop
            self._done = asyncio.get_running_loop().create_future()
        self._transport: Optional[asyncio.BaseTransport] = None
        self._transport_info: str = "(not connected)"
        self._last_frame_time: Optional[float] = None
        self.frames_received: int = 0
        self.invalid_frames: int = 0
        self.queue_full_drops: int = 0
        self._reported_drops = 0
        self._queue_maxsize = 0
        self._summarised_invalid = 0
        self._summarised_discarded = 0
        self._queue_full_log = LogLimiter(self.LOG_INTERVAL_SEC)
        self._garbage_log = LogLimiter(self.LOG_INTERVAL_SEC)
        self._error_log = LogLimiter(self.LOG_INTERVAL_SEC)
        # Called with every chunk of bytes as received, before framing (e.g. to record a capture).
        self.on_data: Optional[Callable[[bytes], None]] = None

    @property
    def done(self) -> Awaitable[None]:
        """Return an awaitable that completes when the connection is lost or closed."""
        return self._done_future()

    @property
    def last_frame_time(self) -> Optional[float]:
        """Return time.monotonic() of the last valid frame (or of connection_made), else None."""
        return self._last_frame_time

    @property
    @abstractmethod
    def discarded_bytes(self) -> int:
        """Return the number of noise bytes skipped on this connection."""

    def _done_future(self) -> asyncio.Future[None]:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        return self._done

    def _name(self) -> str:
        return f"{self.__class__.__name__}[{self.instance_id}]"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport and start the idle clock."""
        self._transport = transport
        self._transport_info = _describe_transport(transport)
        self._last_frame_time = time.monotonic()
        _LOGGER.info("%s: smart meter connected to %s", self._name(), self._transport_info)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        """Complete done: the transport has closed (exc is None) or failed (exc says why)."""
        if exc is not None:
            _LOGGER.warning("%s: connection to %s lost: %s", self._name(), self._transport_info, exc)
        else:
            _LOGGER.info("%s: connection to %s closed", self._name(), self._transport_info)
        self._log_garbage_summary(force=True)
        self._log_queue_full_drops(force=True)
        self._transport = None
        done = self._done_future()
        if not done.done():
            done.set_result(None)

    def eof_received(self) -> bool:
        """Return False so that the transport closes when the peer stops sending."""
        _LOGGER.debug("%s: end of stream from %s", self._name(), self._transport_info)
        return False

    @abstractmethod
    def data_received(self, data: bytes) -> None:
        """Read the next bytes of the stream; never raises, whatever the bytes."""

    def _tell_listener(self, data: bytes) -> None:
        """Hand the received bytes to on_data, if set, before any framing; its failure is only logged."""
        if self.on_data is not None:
            try:
                self.on_data(data)
            except Exception:  # the listener's failure must not cost the meter's data
                if self._error_log.ready():
                    _LOGGER.exception("%s: the on_data listener failed", self._name())

    def _log_garbage_summary(self, force: bool = False) -> None:
        invalid = self.invalid_frames - self._summarised_invalid
        discarded = self.discarded_bytes - self._summarised_discarded
        if (invalid or discarded) and (self._garbage_log.ready() or force):
            _LOGGER.debug(
                "%s: skipped %d noise bytes and %d invalid frames from %s (totals %d and %d)",
                self._name(),
                discarded,
                invalid,
                self._transport_info,
                self.discarded_bytes,
                self.invalid_frames,
            )
            self._summarised_invalid = self.invalid_frames
            self._summarised_discarded = self.discarded_bytes

    def _put(self, queue: asyncio.Queue[_T], item: _T) -> None:
        """Put item on queue; when the bounded queue is full drop the newest or oldest item as self.drop says.

        Either way one item is lost and counted in queue_full_drops (reported rate-limited).
        """
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self.queue_full_drops += 1
            self._queue_maxsize = queue.maxsize
            self._log_queue_full_drops()
            if self.drop == "oldest":
                queue.get_nowait()
                queue.task_done()  # the dropped item will never be processed: keep join() working
                queue.put_nowait(item)
            return
        if self._reported_drops != self.queue_full_drops:  # room again: the drops not yet reported are due
            self._log_queue_full_drops()

    def _log_queue_full_drops(self, force: bool = False) -> None:
        dropped = self.queue_full_drops - self._reported_drops
        if dropped and (self._queue_full_log.ready() or force):
            _LOGGER.warning(
                "%s: queue full (maxsize %d), nobody reads it fast enough: dropped %d items (%d in total)",
                self._name(),
                self._queue_maxsize,
                dropped,
                self.queue_full_drops,
            )
            self._reported_drops = self.queue_full_drops


class SmartMeterBaseProtocol(SmartMeterStreamProtocol):
    """An asyncio protocol cutting the meter's byte stream into HDLC frames; subclasses handle the frames."""

    def __init__(self, frame_reader: Optional[HdlcFrameReader] = None, *, drop: str = "newest") -> None:
        """Use frame_reader, or a reader without octet stuffing (the meters' setting) when None.

        See SmartMeterStreamProtocol for drop.
        """
        super().__init__(drop=drop)
        self._frame_reader = frame_reader if frame_reader is not None else HdlcFrameReader()

    @property
    def discarded_bytes(self) -> int:
        """Return the number of noise bytes the frame reader skipped on this connection."""
        return self._frame_reader.discarded_bytes

    def data_received(self, data: bytes) -> None:
        """Cut data into frames and hand each to frame_received; never raises, whatever the bytes."""
        self._tell_listener(data)
        try:
            frames = self._frame_reader.read(data)
        except Exception:  # a reader bug must not kill the connection: report it and go on
            if self._error_log.ready():
                _LOGGER.exception("%s: frame reader failed on %d bytes", self._name(), len(data))
            return
        valid = 0
        for frame in frames:
            try:
                if frame.is_valid:
                    valid += 1
                else:
                    self.invalid_frames += 1
                self.frame_received(frame)
            except Exception:
                if self._error_log.ready():
                    _LOGGER.exception("%s: handling a received frame failed", self._name())
        if valid:
            self.frames_received += valid
            self._last_frame_time = time.monotonic()
        self._log_garbage_summary()

    @abstractmethod
    def frame_received(self, frame: HdlcFrame) -> None:
        """Handle one frame (valid or not) cut from the stream."""


class SmartMeterFrameProtocol(SmartMeterBaseProtocol):
    """Put every frame read from the stream, valid or not, on a queue (e.g. for logging raw frames)."""

    def __init__(
        self,
        destination_queue: asyncio.Queue[HdlcFrame],
        frame_reader: Optional[HdlcFrameReader] = None,
        *,
        drop: str = "newest",
    ) -> None:
        """Send frames to destination_queue; see SmartMeterBaseProtocol for frame_reader and drop."""
        super().__init__(frame_reader, drop=drop)
        self.queue: asyncio.Queue[HdlcFrame] = destination_queue

    def frame_received(self, frame: HdlcFrame) -> None:
        """Queue the frame (dropped and counted when the queue is full)."""
        self._put(self.queue, frame)


class SmartMeterFrameContentProtocol(SmartMeterBaseProtocol):
    """Put the content of each valid, non-empty message on a queue, HDLC segments reassembled first."""

    def __init__(
        self,
        destination_queue: asyncio.Queue[bytes],
        frame_reader: Optional[HdlcFrameReader] = None,
        *,
        drop: str = "newest",
    ) -> None:
        """Send message contents (information field including the LLC header) to destination_queue.

        See SmartMeterBaseProtocol for frame_reader and drop.
        """
        super().__init__(frame_reader, drop=drop)
        self.queue: asyncio.Queue[bytes] = destination_queue
        self._assembler = HdlcMessageAssembler(is_whole_apdu)

    @property
    def broken_messages(self) -> int:
        """Return how many partial (segmented) messages were dropped because a frame was bad or missing."""
        return self._assembler.dropped_messages

    def frame_received(self, frame: HdlcFrame) -> None:
        """Feed the frame to the reassembler and queue the message it completes, if any."""
        content = self._assembler.add(frame)
        if content:
            self._put(self.queue, content)


class _MeterReaderProtocol(SmartMeterStreamProtocol):
    """A protocol reading any transport (HDLC, M-Bus, bare ciphered APDUs) with a MeterReader and the keys."""

    def __init__(
        self,
        encryption_key: Optional[bytes] = None,
        authentication_key: Optional[bytes] = None,
        *,
        drop: str = "newest",
    ) -> None:
        """Read with a MeterReader holding the meter's keys (16 bytes each, or None); drop as for the base."""
        super().__init__(drop=drop)
        self.reader = MeterReader(encryption_key, authentication_key)

    @property
    def discarded_bytes(self) -> int:
        """Return the number of bytes outside every frame on this connection."""
        return self.reader.discarded_bytes

    def data_received(self, data: bytes) -> None:
        """Read data with the MeterReader and deliver what it completes; never raises, whatever the bytes."""
        self._tell_listener(data)
        stats = self.reader.stats
        valid, invalid = stats.valid_frames, stats.invalid_frames
        try:
            self._deliver(data)
        except Exception:  # a consumer's queue or a bug must not kill the connection: report it, go on
            if self._error_log.ready():
                _LOGGER.exception("%s: handling %d received bytes failed", self._name(), len(data))
        self.invalid_frames += stats.invalid_frames - invalid
        if stats.valid_frames > valid:
            self.frames_received += stats.valid_frames - valid
            self._last_frame_time = time.monotonic()
        self._log_garbage_summary()

    @abstractmethod
    def _deliver(self, data: bytes) -> None:
        """Feed data to the reader and queue what it completes."""


class SmartMeterMessageProtocol(_MeterReaderProtocol):
    """Put the dictionary of each decoded message on a queue: any transport, decrypted with the keys."""

    def __init__(
        self,
        destination_queue: asyncio.Queue[Dict[str, ItemValue]],
        encryption_key: Optional[bytes] = None,
        authentication_key: Optional[bytes] = None,
        *,
        drop: str = "newest",
    ) -> None:
        """Send decoded dictionaries to destination_queue; the keys are the meter's (16 bytes, or None)."""
        super().__init__(encryption_key, authentication_key, drop=drop)
        self.queue: asyncio.Queue[Dict[str, ItemValue]] = destination_queue

    def _deliver(self, data: bytes) -> None:
        """Queue the dictionary of every message the data completes."""
        for message in self.reader.read(data):
            self._put(self.queue, message)


class SmartMeterReadFrameProtocol(_MeterReaderProtocol):
    """Put every frame of any transport, with the message it completes, on a queue (diagnosis, decoding)."""

    def __init__(
        self,
        destination_queue: asyncio.Queue[ReadFrame],
        encryption_key: Optional[bytes] = None,
        authentication_key: Optional[bytes] = None,
        *,
        drop: str = "newest",
    ) -> None:
        """Send ReadFrame items to destination_queue; the keys let bare ciphered APDUs be recognised."""
        super().__init__(encryption_key, authentication_key, drop=drop)
        self.queue: asyncio.Queue[ReadFrame] = destination_queue

    def _deliver(self, data: bytes) -> None:
        """Queue every frame the data completes."""
        for frame in self.reader.read_frames(data):
            self._put(self.queue, frame)


MeterTransportProtocol = Tuple[asyncio.BaseTransport, SmartMeterStreamProtocol]

AsyncConnectionFactory = Callable[[], Awaitable[MeterTransportProtocol]]


def _describe_transport(transport: asyncio.BaseTransport) -> str:
    serial = getattr(transport, "serial", None)
    if serial is not None:
        return f"serial port {getattr(serial, 'port', serial)}"
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"host {peer[0]} port {peer[1]}"
    return str(peer) if peer else repr(transport)


class ConnectionManager:
    """Keep a meter connection up: reconnect with back-off after errors, losses and (optionally) silence."""

    DEFAULT_CONNECTION_LOST_BACK_OFF_THRESHOLD: int = 5
    DEFAULT_CONNECTION_LOST_BACK_OFF_SLEEP_SEC: int = 5
    DEFAULT_CLOSE_TIMEOUT_SEC: float = 5.0

    def __init__(
        self,
        connection_factory: AsyncConnectionFactory,
        *,
        idle_timeout: Optional[float] = None,
        back_off_connect_error: Optional[BackOffStrategy] = None,
        connection_lost_back_off_threshold: float = DEFAULT_CONNECTION_LOST_BACK_OFF_THRESHOLD,
        connection_lost_back_off_sleep_sec: float = DEFAULT_CONNECTION_LOST_BACK_OFF_SLEEP_SEC,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_SEC,
    ) -> None:
        """Connect with connection_factory (a coroutine function or any callable returning an awaitable).

        idle_timeout: when no valid frame has arrived for this many seconds, reconnect (None: never).
        back_off_connect_error: delays after failed connection attempts (default: 1, 2, 4 ... 60 s).
        Two connection losses less than connection_lost_back_off_threshold seconds apart make the manager wait
        connection_lost_back_off_sleep_sec before reconnecting (a circuit breaker against a flapping link).
        close_timeout bounds the wait for a closing transport to report connection_lost.
        """
        if not callable(connection_factory):
            raise TypeError(f"connection_factory must be callable, got {connection_factory!r}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive or None, got {idle_timeout}")
        self._connection_factory = connection_factory
        self.idle_timeout: Optional[float] = idle_timeout
        self.back_off_connect_error: BackOffStrategy = (
            back_off_connect_error if back_off_connect_error is not None else ExponentialBackOff()
        )
        self.connection_lost_back_off_threshold: float = connection_lost_back_off_threshold
        self.connection_lost_back_off_sleep_sec: float = connection_lost_back_off_sleep_sec
        self.close_timeout: float = close_timeout
        self.connection_count: int = 0  # successful connections, for monitoring
        self.idle_disconnects: int = 0  # connections closed by the idle watchdog
        self._ended_queue_full_drops = 0
        self._connection: Optional[MeterTransportProtocol] = None
        self._is_closing = False
        self._closing: Optional[asyncio.Future[None]] = None
        self._running = False
        self._connection_lost_last_time: Optional[float] = None
        self._connection_lost_sleep_before_reconnect = False

    @property
    def connection(self) -> Optional[MeterTransportProtocol]:
        """Return the current (transport, protocol), or None while not connected."""
        return self._connection

    @property
    def queue_full_drops(self) -> int:
        """Return how many items all connections so far dropped because nobody emptied the queue in time."""
        current = self._connection[1].queue_full_drops if self._connection is not None else 0
        return self._ended_queue_full_drops + current

    def close(self) -> None:
        """Close the current connection, if any, and make connect_loop return (in the loop's thread)."""
        self._is_closing = True
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        if self._connection is not None:
            _LOGGER.info("Closing the meter connection and stopping the connect loop")
            self._connection[0].close()

    async def connect_loop(self) -> None:
        """Connect, and reconnect whenever the connection ends, until close() or cancellation."""
        if self._running:
            raise RuntimeError("connect_loop is already running for this ConnectionManager")
        self._running = True
        self._closing = asyncio.get_running_loop().create_future()
        try:
            while not self._is_closing:
                connection = await self._try_connect()
                if connection is not None:
                    await self._serve(connection)
        finally:
            connection = self._connection
            if connection is not None:  # only when cancelled while connected
                self._forget(connection)
                await self._close_connection(connection)
            self._closing = None
            self._is_closing = False
            self._running = False
            _LOGGER.info("Connect loop done")

    def _get_back_off_time(self) -> float:
        delay = self.back_off_connect_error.current_delay_sec
        if self._connection_lost_sleep_before_reconnect:
            delay = max(delay, self.connection_lost_back_off_sleep_sec)
        return delay

    def _update_connection_lost_circuit_breaker(self) -> None:
        now = time.monotonic()
        if self._connection_lost_last_time is not None:
            self._connection_lost_sleep_before_reconnect = (
                now - self._connection_lost_last_time < self.connection_lost_back_off_threshold
            )
        self._connection_lost_last_time = now

    async def _wait_closing(self, timeout: Optional[float]) -> bool:
        """Wait until close() is called or timeout passes; return True when closing."""
        assert self._closing is not None
        await asyncio.wait({self._closing}, timeout=timeout)
        return self._is_closing

    async def _try_connect(self) -> Optional[MeterTransportProtocol]:
        """Make one connection attempt after the back-off delay; None when it failed or close() was called."""
        delay = self._get_back_off_time()
        if delay > 0:
            _LOGGER.info("Back-off for %.3g s before reconnecting", delay)
            if await self._wait_closing(delay):
                return None
        if self._is_closing:
            return None
        _LOGGER.debug("Trying to connect")
        try:
            awaitable = self._connection_factory()
        except Exception as ex:
            self._connect_failed(ex)
            return None
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"connection_factory returned {awaitable!r}, not an awaitable")
        attempt: asyncio.Future[MeterTransportProtocol] = asyncio.ensure_future(awaitable)
        assert self._closing is not None
        abandon = True  # cancelled or closing: the attempt's connection, if any, must not survive
        try:
            waiting: set[asyncio.Future[Any]] = {attempt, self._closing}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            abandon = self._is_closing
        finally:
            if abandon:
                await self._abandon_attempt(attempt)
        if abandon:
            return None
        if attempt.cancelled():  # cancelled from inside the factory: a failed attempt like any other
            self._connect_failed(asyncio.CancelledError("the connection attempt was cancelled"))
            return None
        error = attempt.exception()
        if error is not None:
            self._connect_failed(error)
            return None
        connection = attempt.result()
        self.back_off_connect_error.reset()
        self.connection_count += 1
        self._connection = connection
        return connection

    def _connect_failed(self, ex: BaseException) -> None:
        self.back_off_connect_error.failure()
        _LOGGER.warning("Error connecting to the meter: %s", ex or type(ex).__name__)

    async def _serve(self, connection: MeterTransportProtocol) -> None:
        """Wait until the connection ends (lost, idle or close()), then record why."""
        transport, protocol = connection
        done = asyncio.ensure_future(protocol.done)
        connected_at = time.monotonic()
        assert self._closing is not None
        try:
            while not done.done() and not self._is_closing:
                timeout: Optional[float] = None
                if self.idle_timeout is not None:
                    last = max(connected_at, getattr(protocol, "last_frame_time", None) or connected_at)
                    timeout = last + self.idle_timeout - time.monotonic()
                    if timeout <= 0:
                        self.idle_disconnects += 1
                        _LOGGER.warning(
                            "No valid frame from the meter for %.3g s: closing the connection to reconnect",
                            self.idle_timeout,
                        )
                        break
                await asyncio.wait(
                    {done, self._closing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            if done is not protocol.done and not done.done():
                done.cancel()
        self._forget(connection)
        lost = done.done() and not done.cancelled()
        if not lost:
            await self._close_connection((transport, protocol))
        if not self._is_closing:
            if lost:
                _LOGGER.warning("Connection to the meter lost")
            self._update_connection_lost_circuit_breaker()

    def _forget(self, connection: MeterTransportProtocol) -> None:
        """Drop the current connection, keeping its count of queue-full drops; it delivers nothing more."""
        self._connection = None
        self._ended_queue_full_drops += connection[1].queue_full_drops

    async def _abandon_attempt(self, attempt: asyncio.Future[MeterTransportProtocol]) -> None:
        """Cancel a connection attempt and close the connection it may have made all the same."""
        if not attempt.done():
            attempt.cancel()
            await asyncio.wait({attempt}, timeout=self.close_timeout)
        if not attempt.done():
            _LOGGER.warning("A connection attempt ignored cancellation for %.3g s", self.close_timeout)
        elif not attempt.cancelled() and attempt.exception() is None:
            await self._close_connection(attempt.result())

    async def _close_connection(self, connection: MeterTransportProtocol) -> None:
        """Close the transport, wait (bounded) for connection_lost, and abort if it never comes."""
        transport, protocol = connection
        done = asyncio.ensure_future(protocol.done)
        try:
            transport.close()
            await asyncio.wait({done}, timeout=self.close_timeout)
            if done.done():
                return
            _LOGGER.warning("The transport did not close within %.3g s: aborting it", self.close_timeout)
            abort: Any = getattr(transport, "abort", None)
            if callable(abort):
                abort()
                await asyncio.wait({done}, timeout=self.close_timeout)
        finally:
            if done is not protocol.done and not done.done():
                done.cancel()
