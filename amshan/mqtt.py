"""MQTT at the asyncio edge (the ``mqtt`` extra: aiomqtt on paho-mqtt 2): publish and subscribe.

Publish readings with Home Assistant discovery, and read the meter streams that bridges publish.

``MqttPublisher`` sends what an ``Outbox`` holds and keeps reconnecting with back-off while the broker is
away; ``MqttSource`` subscribes to a topic (wildcards, shared subscriptions) and decodes each topic's payloads
with its own ``MeterReader``. Both raise ``BrokerError`` when the first connection fails (wrong address or
credentials, TLS handshake): a run that cannot start should say why at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Dict, Optional

import aiomqtt

from amshan._ratelimit import LogLimiter
from amshan.meter_connection import ExponentialBackOff
from amshan.mqtt_core import STATUS_OFFLINE, STATUS_ONLINE, BrokerUrl, Outbox, TopicReaders

__all__ = ["BrokerError", "MqttPublisher", "MqttSettings", "MqttSource"]

_LOGGER = logging.getLogger(__name__)
_PAHO_LOGGER = logging.getLogger(f"{__name__}.paho")  # the client's own records (every packet at debug)

DEFAULT_MAX_BACK_OFF = 30.0
DEFAULT_KEEPALIVE = 30
_CONNECT_TIMEOUT = 10.0
_BATCH = 100  # QoS 0 states handed to the client at once


class BrokerError(Exception):
    """The broker cannot be used: unreachable, credentials refused, TLS handshake failed."""


@dataclass(frozen=True)
class MqttSettings:
    """How to reach a broker: its URL, the CA file for ``mqtts://``, a client id, back-off and keep-alive."""

    broker: BrokerUrl
    ca_file: Optional[str] = None
    client_id: Optional[str] = None
    max_back_off: float = DEFAULT_MAX_BACK_OFF
    keepalive: int = DEFAULT_KEEPALIVE

    def client(self, will: Optional[aiomqtt.Will] = None) -> aiomqtt.Client:
        """Return a client for one connection (clean session, our own id so a restart replaces it)."""
        tls_context = None
        if self.broker.tls:
            tls_context = ssl.create_default_context(cafile=self.ca_file)
        client = aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=self.client_id or f"amshan-{uuid.uuid4().hex[:12]}",
            will=will,
            keepalive=self.keepalive,
            timeout=_CONNECT_TIMEOUT,
            tls_context=tls_context,
            logger=_PAHO_LOGGER,
        )
        client.pending_calls_threshold = _BATCH + 10  # a batch of QoS 0 states is no cause for a warning
        return client


def _describe(error: BaseException) -> str:
    """Return a connection failure as one readable line."""
    if isinstance(error, aiomqtt.MqttCodeError) and error.rc is not None:
        code = getattr(error.rc, "value", error.rc)
        if code in (4, 5, 134, 135):  # MQTT 3.1.1 and 5: bad user name or password, not authorized
            return f"the broker refused the login ({error}): check the user name and AMSHAN_MQTT_PASSWORD"
    return str(error) or type(error).__name__


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Wait until the event is set or the seconds have passed, whichever comes first."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def _sessions(
    settings: MqttSettings,
    session: Callable[[aiomqtt.Client], Awaitable[None]],
    stop: asyncio.Event,
    will: Optional[aiomqtt.Will] = None,
) -> None:
    """Run ``session`` on connection after connection until ``stop``, backing off between failures.

    The first connection failing raises BrokerError; later ones are logged (rate-limited) and retried after
    1, 2, 4 ... seconds, at most ``settings.max_back_off``.
    """
    back_off = ExponentialBackOff(max_delay_sec=settings.max_back_off)
    failure_log = LogLimiter()
    connected_once = False
    while not stop.is_set():
        try:
            async with settings.client(will) as client:
                if connected_once:
                    _LOGGER.info("MQTT broker %s: connected again", settings.broker)
                connected_once = True
                back_off.reset()
                await _until_stopped(session(client), stop)
                return
        except aiomqtt.MqttError as error:
            if not connected_once:
                reason = _describe(error)
                raise BrokerError(f"cannot use the MQTT broker {settings.broker}: {reason}") from None
            back_off.failure()
            if failure_log.ready():
                _LOGGER.warning(
                    "MQTT broker %s: %s; reconnecting in %.3g s",
                    settings.broker,
                    _describe(error),
                    back_off.current_delay_sec,
                )
        await _wait(stop, back_off.current_delay_sec)


async def _until_stopped(work: Awaitable[None], stop: asyncio.Event) -> None:
    """Await work until it ends (its exception raised) or ``stop`` is set (then cancel it)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.done() and not task.cancelled():
        task.result()


class MqttPublisher:
    """Publish what an Outbox holds to a broker: availability, discovery configs first, then the states.

    ``add()`` never blocks. ``run()`` connects (BrokerError if the first attempt fails), publishes ``online``
    retained on the outbox's status topic with a last will ``offline`` (and ``offline`` itself on a clean
    stop), every discovery config, then each state as it comes. A message leaves the outbox only once
    published (with QoS 1: once the broker has acknowledged it), so a broken connection loses nothing that
    the outbox still holds: the client reconnects with back-off, sends the discovery configs again, then the
    waiting states in order. With discovery on it also listens for Home Assistant's birth message
    (``online`` on ``<discovery_prefix>/status``) and sends the configs again then.
    """

    def __init__(
        self, settings: MqttSettings, outbox: Outbox, *, qos: int = 0, drain_timeout: float = 5.0
    ) -> None:
        """Publish the outbox with ``qos`` (0 or 1); after ``stop()`` try ``drain_timeout`` s more."""
        if qos not in (0, 1):
            raise ValueError(f"expected QoS 0 or 1, found {qos}")
        self._settings = settings
        self.outbox = outbox
        self._qos = qos
        self.drain_timeout = drain_timeout
        self._wake: Optional[asyncio.Event] = None
        self._stop: Optional[asyncio.Event] = None
        self._room: Optional[asyncio.Event] = None
        self._stopping = False
        self.published = 0
        self.connections = 0

    @property
    def broker(self) -> BrokerUrl:
        """Return the broker this publisher sends to (shown without its password)."""
        return self._settings.broker

    def add(self, message: Dict[str, Any], stream: str = "") -> None:
        """Queue a decoded message of a stream (configs for its new fields, then its state)."""
        self.outbox.add(message, stream)
        if self._wake is not None:
            self._wake.set()

    @property
    def backlogged(self) -> bool:
        """Return True when half the outbox's states wait: a source that can wait (a file) should."""
        return self.outbox.pending_states >= max(1, self.outbox.max_buffer // 2)

    async def drained(self) -> None:
        """Wait until the backlog is gone, so a capture replayed at full speed loses nothing to the bound."""
        while self.backlogged:
            self._room = asyncio.Event()
            await self._room.wait()

    def stop(self) -> None:
        """Ask ``run()`` to publish what waits and return, giving up after ``drain_timeout`` seconds."""
        self._stopping = True
        if self._wake is not None and self._stop is not None:
            self._wake.set()
            asyncio.get_running_loop().call_later(self.drain_timeout, self._stop.set)

    async def run(self) -> None:
        """Publish until ``stop()``; raise BrokerError when the broker cannot be used at all."""
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        if self._stopping:
            self._stop.set()
        status = self.outbox.status_topic
        will = aiomqtt.Will(status, STATUS_OFFLINE.encode(), qos=1, retain=True)
        await _sessions(self._settings, self._session, self._stop, will)

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish on one connection until stopped (outbox drained) or the connection breaks."""
        assert self._wake is not None and self._stop is not None
        self.connections += 1
        outbox = self.outbox
        await client.publish(outbox.status_topic, STATUS_ONLINE.encode(), qos=1, retain=True)
        if outbox.discovery_prefix is not None:
            outbox.announce_all()
            await client.subscribe(f"{outbox.discovery_prefix}/status")
        # The listener ends with an MqttError when the connection breaks, which also ends this session.
        listener = asyncio.ensure_future(self._listen(client))
        try:
            while True:
                item = outbox.peek()
                if item is None:
                    if self._stopping:  # a clean stop: nothing waits, and the readings end here
                        await client.publish(outbox.status_topic, STATUS_OFFLINE.encode(), qos=1, retain=True)
                        self._stop.set()
                        return
                    self._wake.clear()
                    await _first_of(self._wake.wait(), listener)
                    continue
                # QoS 0 states go to the client in batches (written in one go); a config, or a QoS 1 state,
                # alone: one in flight at a time, so a broken connection never sends one twice
                batch = outbox.next_states(_BATCH) if self._qos == 0 else []
                batch = batch or [item]
                await _first_of(
                    asyncio.gather(
                        *(
                            client.publish(
                                message.topic,
                                message.payload,
                                qos=1 if message.retain else self._qos,
                                retain=message.retain,
                            )
                            for _, message in batch
                        )
                    ),
                    listener,
                )
                for key, message in batch:
                    outbox.done(key, message)
                self.published += len(batch)
                if self._room is not None and not self.backlogged:
                    self._room.set()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await listener

    async def _listen(self, client: aiomqtt.Client) -> None:
        """Re-announce on Home Assistant's birth message; end (MqttError) when the connection breaks."""
        async for message in client.messages:
            if message.payload in (STATUS_ONLINE, STATUS_ONLINE.encode()):
                _LOGGER.info("Home Assistant is online: publishing the discovery configs again")
                self.outbox.announce_all()
                if self._wake is not None:
                    self._wake.set()
        raise aiomqtt.MqttError("the message stream ended")


async def _first_of(work: Awaitable[Any], guard: asyncio.Future[None]) -> None:
    """Await work; if ``guard`` (a connection's listener) ends first, raise its error instead."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, guard}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await task
    guard.result()
    raise aiomqtt.MqttError("the connection ended")


class MqttSource:
    """Subscribe to a topic (wildcards allowed) and decode each topic's payloads as one meter's byte stream.

    Payloads are binary or hex text, told apart per payload (``amshan.mqtt_core.payload_bytes``). With a
    ``share_group`` the subscription is ``$share/<group>/<topic>``: the broker gives each message to one
    member of the group, so several processes split the load; each payload must then hold whole messages.
    The subscription is made again after every reconnect.
    """

    def __init__(
        self,
        settings: MqttSettings,
        topic: str,
        *,
        share_group: Optional[str] = None,
        qos: int = 0,
        readers: Optional[TopicReaders] = None,
    ) -> None:
        """Read ``topic`` from the broker of ``settings``, joining ``share_group`` when given."""
        if not topic:
            raise ValueError("expected a topic to subscribe to (mqtt://HOST[:PORT]/TOPIC)")
        if share_group is not None and (not share_group or any(c in share_group for c in "/+#")):
            raise ValueError(f"expected a share group name without / + #, found {share_group!r}")
        self._settings = settings
        self.topic = topic
        self.subscription = f"$share/{share_group}/{topic}" if share_group else topic
        self._qos = qos
        self.readers = readers if readers is not None else TopicReaders()
        self._stop = asyncio.Event()
        self.decoded = 0
        self.connections = 0

    def stop(self) -> None:
        """Ask ``run()`` to return."""
        self._stop.set()

    async def run(self, deliver: Callable[[str, Dict[str, Any]], None]) -> None:
        """Call ``deliver(topic, dictionary)`` per decoded message until ``stop()``; BrokerError at start."""
        await _sessions(self._settings, lambda client: self._session(client, deliver), self._stop)

    async def _session(self, client: aiomqtt.Client, deliver: Callable[[str, Dict[str, Any]], None]) -> None:
        """Subscribe and decode on one connection until it breaks."""
        self.connections += 1
        await client.subscribe(self.subscription, qos=self._qos)
        _LOGGER.info("MQTT: subscribed to %s on %s", self.subscription, self._settings.broker)
        async for message in client.messages:
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, (bytes, bytearray)):
                continue
            topic = str(message.topic)
            for dictionary in self.readers.read(topic, bytes(payload)):
                self.decoded += 1
                deliver(topic, dictionary)
        raise aiomqtt.MqttError("the message stream ended")
