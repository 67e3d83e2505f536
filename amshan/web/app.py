"""The aiohttp application: the page, its static files, the JSON API, the event stream and /metrics.

Read-only (GET only), no keys anywhere in what it serves, static files from package data (no CDN: a meter's
Raspberry Pi is often offline). ``start_server`` binds it with aiohttp's AppRunner and TCPSite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from importlib import resources
from typing import Any, AsyncIterator, Dict, Tuple

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from amshan.obis_map import FIELD_UNITS
from amshan.web.history import ENERGY_FIELDS
from amshan.web.hub import MeterHub, TooManyClients
from amshan.web.metrics import HubCollector

__all__ = ["HUB", "create_app", "start_server"]

HUB = web.AppKey("hub", MeterHub)
_REGISTRY = web.AppKey("registry", CollectorRegistry)
_STATIC = web.AppKey("static", dict)
KEEPALIVE = 15.0  # seconds between comments on an idle event stream (keeps proxies from closing it)
FLUSH_INTERVAL = 1.0  # seconds between writes of the history file
EVENT_SEND_BUFFER = 64 * 1024  # kernel send buffer of an event stream: a stalled page fills it quickly
_CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".txt": "text/plain",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _load_static() -> Dict[str, Tuple[bytes, str]]:
    """Read the page and its vendored files from package data once: name -> (bytes, content type)."""
    files: Dict[str, Tuple[bytes, str]] = {}
    for entry in resources.files("amshan.web").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _CONTENT_TYPES:
            files[entry.name] = (entry.read_bytes(), _CONTENT_TYPES[suffix])
    return files


def _json(data: Any, status: int = 200) -> web.Response:
    """Return a JSON response that is never cached."""
    return web.Response(
        text=json.dumps(data),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _float_param(request: web.Request, name: str) -> float:
    """Return a query parameter as a finite number, minus infinity when absent; 400 when malformed."""
    text = request.query.get(name)
    if text is None or text == "":
        return -math.inf
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise web.HTTPBadRequest(
            text=f"expected a number of seconds since the epoch for {name}, found {text!r}"
        )
    return value


async def _page(request: web.Request) -> web.Response:
    """Serve the page."""
    return await _static_file(request, "index.html")


async def _static(request: web.Request) -> web.Response:
    """Serve one of the page's files."""
    return await _static_file(request, request.match_info["name"])


async def _static_file(request: web.Request, name: str) -> web.Response:
    """Serve a packaged file by name; 404 for anything else."""
    found = request.app[_STATIC].get(name)
    if found is None:
        raise web.HTTPNotFound()
    body, content_type = found
    return web.Response(
        body=body, content_type=content_type, charset="utf-8", headers={"Cache-Control": "no-cache"}
    )


async def _latest(request: web.Request) -> web.Response:
    """``/api/latest``: per meter its last dictionary, every field's latest value and its identity."""
    hub = request.app[HUB]
    meters = [
        {
            "meter": state.key,
            "t": state.updated,
            "dictionary": state.last,
            "values": state.values,
            "info": state.info(),
        }
        for state in sorted(hub.history.meters.values(), key=lambda state: state.key)
    ]
    return _json({"meters": meters, "seq": hub.sequence, "live": hub.live, "units": FIELD_UNITS})


async def _history(request: web.Request) -> web.Response:
    """``/api/history?field=F&since=T&meter=M``: the series of one field (or hourly energy) of one meter."""
    hub = request.app[HUB]
    name = request.query.get("field", "")
    if not name:
        raise web.HTTPBadRequest(
            text="expected ?field=NAME (a numeric field, energy_import or energy_export)"
        )
    since = _float_param(request, "since")
    state = hub.history.meter(request.query.get("meter") or None)
    if state is None:
        return _json({"error": f"no meter {request.query.get('meter')!r} has been heard"}, status=404)
    points = [[t, value] for t, value in state.series(name, since)]
    unit = "Wh" if name in ENERGY_FIELDS else FIELD_UNITS.get(name)
    return _json({"meter": state.key, "field": name, "unit": unit, "points": points})


async def _health(request: web.Request) -> web.Response:
    """``/api/health``: the source's health."""
    return _json(request.app[HUB].health())


async def _metrics(request: web.Request) -> web.Response:
    """``/metrics``: the Prometheus exposition of the hub."""
    body = generate_latest(request.app[_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _events(request: web.Request) -> web.StreamResponse:
    """``/api/events``: Server-Sent Events, one per decoded message; a client that falls behind is dropped."""
    hub = request.app[HUB]
    transport = request.transport
    if transport is None:
        raise web.HTTPServiceUnavailable()
    try:
        client = hub.subscribe(transport.abort)
    except TooManyClients as error:
        raise web.HTTPServiceUnavailable(text=str(error)) from None
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        raw = transport.get_extra_info("socket")
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, EVENT_SEND_BUFFER)
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        while True:
            try:
                data = await asyncio.wait_for(client.next_batch(), KEEPALIVE)
            except asyncio.TimeoutError:
                data = b": keep-alive\n\n"
            if client.ended:
                break
            await response.write(data)
    except ConnectionError:
        pass  # the page went away or was dropped
    finally:
        hub.unsubscribe(client)
    return response


async def _flush_history(app: web.Application) -> AsyncIterator[None]:
    """Write the history file once a second while the app runs, and close it when the app stops."""
    hub = app[HUB]

    async def loop() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            hub.flush()

    task = asyncio.ensure_future(loop())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    hub.close()


async def _end_streams(app: web.Application) -> None:
    """End the event streams when the server stops, so it need not wait for them."""
    app[HUB].end_streams()


@web.middleware
async def _secure(request: web.Request, handler: Any) -> web.StreamResponse:
    """Add the security headers to every response."""
    response: web.StreamResponse = await handler(request)
    if not response.prepared:
        response.headers.update(_SECURITY_HEADERS)
    return response


def create_app(hub: MeterHub) -> web.Application:
    """Return the web application serving ``hub``."""
    app = web.Application(middlewares=[_secure])
    app[HUB] = hub
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    app[_REGISTRY] = registry
    app[_STATIC] = _load_static()
    app.cleanup_ctx.append(_flush_history)
    app.on_shutdown.append(_end_streams)
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/api/latest", _latest)
    app.router.add_get("/api/history", _history)
    app.router.add_get("/api/health", _health)
    app.router.add_get("/api/events", _events)
    app.router.add_get("/metrics", _metrics)
    return app


async def start_server(
    app: web.Application, host: str = "127.0.0.1", port: int = 8080
) -> Tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0: any free port); return the runner (to ``cleanup()``) and the port."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
