"""The MQTT row of bench.py: raw frames through a real mosquitto and one amshan process, against the broker.

Raw frames go into ``amshan read mqtt://... --mqtt ...`` and come back out as states; the same frames also go
straight through the broker (publish -> receive) in the same run: the ratio of the two rates is the figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import aiomqtt

from amshan.simulator import bundled_frames

TOPICS = 10


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _through(port: int, frames: List[bytes], publish_prefix: str, receive_topic: str) -> Dict[str, Any]:
    """Publish the frames (QoS 0, as fast as the client goes) and time until a subscriber got as many."""
    received = 0
    done = asyncio.Event()
    async with aiomqtt.Client("127.0.0.1", port) as subscriber:
        await subscriber.subscribe(receive_topic)

        async def count() -> None:
            nonlocal received
            async for _ in subscriber.messages:
                received += 1
                if received >= len(frames):
                    done.set()
                    return

        counter = asyncio.ensure_future(count())
        async with aiomqtt.Client("127.0.0.1", port) as publisher:
            started = time.perf_counter()
            for number, frame in enumerate(frames):
                await publisher.publish(f"{publish_prefix}/{number % TOPICS}", frame)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), 120)
            elapsed = time.perf_counter() - started
        counter.cancel()
    rate = received / elapsed
    return {"messages": len(frames), "received": received, "seconds": elapsed, "msgs_per_s": rate}


def run_mqtt(count: int, rounds: int) -> Dict[str, Any]:
    """Time the broker alone and the amshan pipeline in turns, ``rounds`` passes each, on one mosquitto.

    On a shared machine the load moves between passes: taking turns and the medians keeps the ratio fair.
    """
    mosquitto = shutil.which("mosquitto")
    if mosquitto is None:
        raise SystemExit("mosquitto is not installed: apt-get install mosquitto")
    kamstrup = bundled_frames("kamstrup")
    frames = [kamstrup[n % len(kamstrup)] for n in range(count)]
    passes: Dict[str, List[Dict[str, Any]]] = {"broker": [], "amshan": []}
    with tempfile.TemporaryDirectory() as folder:
        port = _free_port()
        config = Path(folder) / "mosquitto.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
            + ("user root\n" if os.geteuid() == 0 else ""),
            encoding="ascii",
        )
        broker = subprocess.Popen([mosquitto, "-c", str(config)], stderr=subprocess.DEVNULL)
        amshan = None
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.01)
            log = Path(folder) / "amshan.log"
            with open(log, "wb") as err:
                amshan = subprocess.Popen(
                    [
                        *(sys.executable, "-m", "amshan", "read", f"mqtt://127.0.0.1:{port}/bench/in/+"),
                        *("--source-qos", "0", "--mqtt", f"mqtt://127.0.0.1:{port}", "--no-discovery", "-v"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            deadline = time.monotonic() + 20
            while "subscribed" not in log.read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.02)
            for _ in range(rounds):
                passes["broker"].append(asyncio.run(_through(port, frames, "bench/raw", "bench/raw/#")))
                passes["amshan"].append(asyncio.run(_through(port, frames, "bench/in", "amshan/+/state")))
        finally:
            for process in (amshan, broker):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
    result: Dict[str, Any] = {"passes": passes, "rounds": rounds, "messages": count}
    for key, runs in passes.items():
        result[key] = {
            "msgs_per_s": statistics.median(run["msgs_per_s"] for run in runs),
            "received": min(run["received"] for run in runs),
            "messages": count,
        }
    result["ratio"] = result["amshan"]["msgs_per_s"] / result["broker"]["msgs_per_s"]
    return result


def print_mqtt(result: Dict[str, Any]) -> None:
    """Print the MQTT row: both rates, what arrived, and the ratio against the 0.5 target."""
    print(
        f"\n(f) MQTT end to end, messages/s (one mosquitto; {result['messages']} raw frames in, QoS 0;"
        f" median of {result['rounds']} passes, taking turns)"
    )
    for label, key in (("broker publish -> receive", "broker"), ("amshan read mqtt:// --mqtt", "amshan")):
        row = result[key]
        received = f"at least {row['received']}/{row['messages']} received"
        print(f"  {label:<28} {row['msgs_per_s']:>10,.0f}  ({received})")
    verdict = "ok" if result["ratio"] >= 0.5 else "BELOW TARGET"
    print(f"  ratio amshan / broker        {result['ratio']:>10.2f}  (target >= 0.5: {verdict})")
