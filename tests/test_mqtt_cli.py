"""The MQTT commands as a user runs them, against a real mosquitto.

forward-mqtt, read --mqtt, mqtt:// sources, share groups, the last will, clear errors without tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import aiomqtt
import pytest
from _mqtt import Mosquitto, Recorder, kaifa_list1_frame, make_certificate, make_password_file
from _processes import free_tcp_port, run_bounded

from amshan.simulator import bundled_frames

AMSHAN = [sys.executable, "-m", "amshan"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path).running() as server:
        yield server


def start(*argv: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as output:
        return subprocess.Popen([*AMSHAN, *argv], stdout=output, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


async def wait_for_text(path: Path, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        assert time.monotonic() < deadline, f"{path.name} never showed {text!r}: {path.read_text()[-2000:]}"
        await asyncio.sleep(0.02)


async def test_forward_mqtt_from_a_capture(broker: Mosquitto, tmp_path: Path) -> None:
    capture = tmp_path / "kamstrup.bin"
    capture.write_bytes(b"".join(bundled_frames("kamstrup")))
    async with Recorder(broker.port) as recorder:
        code, _, stderr = await run_bounded(
            *AMSHAN, "forward-mqtt", str(capture), broker.url, "--qos", "1", "-v", timeout=30
        )
        assert code == 0, stderr
        assert "10 published" not in stderr and "0 dropped" in stderr
        await recorder.wait_for(
            lambda: len(recorder.messages["amshan/5706567202753025/state"]) == 10, "states"
        )
    configs = [t for t in recorder.messages if t.startswith("homeassistant/sensor/amshan_5706567202753025/")]
    assert "homeassistant/sensor/amshan_5706567202753025/active_power_import_hour/config" in configs
    assert recorder.messages["amshan/status"] == [b"online", b"offline"]


async def test_a_capture_waits_for_the_broker_instead_of_dropping(broker: Mosquitto, tmp_path: Path) -> None:
    capture = tmp_path / "kamstrup.bin"
    capture.write_bytes(b"".join(bundled_frames("kamstrup")) * 300)  # 3000 messages, read in a blink
    async with Recorder(broker.port, "amshan/+/state") as recorder:
        code, _, stderr = await run_bounded(
            *AMSHAN, "forward-mqtt", str(capture), broker.url, "--max-buffer", "50", "-v", timeout=120
        )
        assert code == 0, stderr
        assert "3000 messages queued" in stderr and " 0 not published, 0 dropped" in stderr, stderr
        await recorder.wait_for(lambda: recorder.count == 3000, "every state")


async def test_read_mqtt_source_and_publish_then_killed_leaves_the_last_will(
    broker: Mosquitto, tmp_path: Path
) -> None:
    log = tmp_path / "amshan.log"
    process = start(
        "read", f"{broker.url}/meters/+/raw", "--mqtt", broker.url, "--topic-prefix", "home", "-v", log=log
    )
    try:
        async with Recorder(broker.port) as recorder:
            await wait_for_text(log, "subscribed")
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                for frame in bundled_frames("aidon"):
                    await client.publish("meters/a/raw", frame, qos=1)
                for power in range(5):
                    await client.publish("meters/k/raw", kaifa_list1_frame(power).hex().encode(), qos=1)
            await recorder.wait_for(lambda: recorder.messages["home/status"] == [b"online"], "online")
            await recorder.wait_for(
                lambda: len(recorder.messages["home/7359992896379051/state"]) > 0, "aidon"
            )
            os.kill(process.pid, signal.SIGKILL)  # no goodbye: the broker sends the last will
            process.wait(timeout=10)
            await recorder.wait_for(
                lambda: recorder.messages["home/status"][-1:] == [b"offline"], "last will"
            )
        printed = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert [d["active_power_import"] for d in printed if d["meter_manufacturer"] == "Kaifa"] == [
            0,
            1,
            2,
            3,
            4,
        ]
    finally:
        stop(process)


async def test_mqtt_source_stamps_received_and_saves_stream_bytes(broker: Mosquitto, tmp_path: Path) -> None:
    out, err, capture = tmp_path / "out.jsonl", tmp_path / "err.log", tmp_path / "capture.bin"
    frames = [kaifa_list1_frame(power) for power in (7, 8, 9)]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [*AMSHAN, "read", f"{broker.url}/meters/k/raw", "--save", str(capture), "--count", "3", "-v"],
            stdout=stdout,
            stderr=stderr,
        )
    try:
        await wait_for_text(err, "subscribed")
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish("meters/k/raw", frames[0], qos=1)
            await client.publish("meters/k/raw", frames[1].hex(" ").encode(), qos=1)  # hex text
            await client.publish("meters/k/raw", frames[2][:10], qos=1)  # one frame in two payloads
            await client.publish("meters/k/raw", frames[2][10:], qos=1)
        assert process.wait(timeout=30) == 0, err.read_text()
    finally:
        stop(process)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["active_power_import"] for line in lines] == [7, 8, 9]
    for line in lines:  # the local time it arrived, with its UTC offset
        received = datetime.fromisoformat(line["received"])
        assert received.utcoffset() is not None
        assert abs((datetime.now(timezone.utc) - received).total_seconds()) < 60
    assert capture.read_bytes() == b"".join(frames)  # hex text saved as the bytes it spells
    code, replayed, _ = await run_bounded(*AMSHAN, "read", str(capture), timeout=30)
    assert code == 0
    assert [json.loads(line) for line in replayed.splitlines()] == [
        {key: value for key, value in line.items() if key != "received"} for line in lines
    ]


async def test_mqtt_source_that_decoded_nothing_says_what_it_saw(broker: Mosquitto, tmp_path: Path) -> None:
    err = tmp_path / "err.log"
    with open(err, "wb") as stderr:
        process = subprocess.Popen(
            [*AMSHAN, "read", f"{broker.url}/junk", "--duration", "3", "-v"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        await wait_for_text(err, "subscribed")
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.publish("junk", b"hello, no meter here", qos=1)
        assert process.wait(timeout=30) == 1
    finally:
        stop(process)
    assert err.read_text().splitlines()[-1] == (
        f"amshan: nothing decoded from mqtt://127.0.0.1:{broker.port}/junk within 3 s: 20 bytes in 1 payload,"
        " 0 decoded; it does not look like a meter capture (HDLC frames start and end with 7e)"
    )


async def test_share_group_of_two_processes_decodes_each_message_once(
    broker: Mosquitto, tmp_path: Path
) -> None:
    logs = [tmp_path / f"member{n}.jsonl" for n in range(2)]
    errors = [tmp_path / f"member{n}.err" for n in range(2)]
    processes = []
    for out, err in zip(logs, errors):
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            processes.append(
                subprocess.Popen(
                    [*AMSHAN, "read", f"{broker.url}/meters/+/raw", "--share-group", "decoders", "-v"],
                    stdout=stdout,
                    stderr=stderr,
                )
            )
    total = 10_000
    try:
        for err in errors:
            await wait_for_text(err, "subscribed")
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for power in range(total):
                await client.publish(f"meters/{power % 50}/raw", kaifa_list1_frame(power), qos=1)

        def decoded() -> list[int]:
            return [
                json.loads(line)["active_power_import"]
                for out in logs
                for line in out.read_text().splitlines()
                if line.startswith("{")
            ]

        deadline = time.monotonic() + 120
        while len(decoded()) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        # Stop both members cleanly before counting: their output is then final, so a duplicate delivered
        # at any moment up to the end is in it (no fixed wait to guess).
        for process in processes:
            stop(process)
        codes = [process.returncode for process in processes]
        assert codes == [0, 0], [err.read_text()[-2000:] for err in errors]
        shares = [sum(1 for line in out.read_text().splitlines() if line.startswith("{")) for out in logs]
        assert sorted(decoded()) == list(range(total)), shares
        assert all(share > 0 for share in shares), shares
    finally:
        for process in processes:
            stop(process)


async def test_wrong_credentials_are_a_clear_error(tmp_path: Path) -> None:
    server = Mosquitto(tmp_path, password_file=make_password_file(tmp_path, "meter", "right"))
    server.start()
    try:
        url = f"mqtt://meter@127.0.0.1:{server.port}"
        env = {**os.environ, "AMSHAN_MQTT_PASSWORD": "wrong"}
        process = await asyncio.create_subprocess_exec(
            *AMSHAN,
            "read",
            f"{url}/x",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 1
        assert (
            stderr.decode().strip().startswith("amshan: cannot use the MQTT broker mqtt://meter@127.0.0.1:")
        )
        assert "refused the login" in stderr.decode() and "Traceback" not in stderr.decode()
        assert "wrong" not in stderr.decode()  # never the password
    finally:
        server.stop()


async def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    capture = tmp_path / "aidon.bin"
    capture.write_bytes(b"".join(bundled_frames("aidon")))
    code, _, stderr = await run_bounded(
        *AMSHAN, "forward-mqtt", str(capture), f"mqtt://127.0.0.1:{free_tcp_port()}", timeout=30
    )
    assert code == 1 and "Traceback" not in stderr
    assert "cannot use the MQTT broker" in stderr and "refused" in stderr.lower()


async def test_tls_handshake_failure_is_a_clear_error_and_the_ca_file_fixes_it(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    server = Mosquitto(tmp_path, tls=(cert, key))
    server.start()
    try:
        url = f"mqtts://127.0.0.1:{server.port}/meters/#"
        code, _, stderr = await run_bounded(*AMSHAN, "read", url, "--duration", "1", timeout=30)
        assert code == 1 and "Traceback" not in stderr and "CERTIFICATE_VERIFY_FAILED" in stderr, stderr
        code, _, stderr = await run_bounded(
            *AMSHAN, "read", url, "--ca-file", str(cert), "--duration", "1", timeout=30
        )
        # connected (no error), but nothing was published within the second: exit 1, saying so
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" not in stderr, stderr
        assert stderr == (
            f"amshan: nothing decoded from mqtts://127.0.0.1:{server.port}/meters/# within 1 s: 0 bytes in 0"
            " payloads, 0 decoded; nothing was published there: check the topic (+ and # are wildcards)"
            " and the bridge\n"
        )
    finally:
        server.stop()


async def test_without_the_mqtt_extra_the_command_says_which_to_install() -> None:
    script = "import sys; sys.modules['aiomqtt'] = None; from amshan.cli import main; sys.exit(main())"
    code, _, stderr = await run_bounded(
        sys.executable, "-c", script, "read", "mqtt://127.0.0.1/x", timeout=30
    )
    assert (code, stderr) == (1, "amshan: MQTT needs the mqtt extra: pip install 'amshan[mqtt]'\n")


async def test_mqtt_usage_errors() -> None:
    for argv, message in [
        (["read", "mqtt://127.0.0.1"], "TOPIC"),
        (["read", "mqtt://127.0.0.1/x", "--format", "obis"], "--format obis"),
        (["read", "mqtt://127.0.0.1/x", "--share-group", "a/b"], "share group"),
        (["read", "mqtt://127.0.0.1/x", "--ca-file", "ca.pem"], "--ca-file is for mqtts://"),
        (["read", "mqtt://127.0.0.1:99999/x"], "TCP port 1..65535"),
        (["read", "mqtt://no.such.invalid/x"], "cannot resolve host 'no.such.invalid'"),
        (["forward-mqtt", "-", "mqtt://127.0.0.1/topic"], "without a topic"),
        (["probe", "mqtt://127.0.0.1/x"], "probe finds serial settings"),
        (["serve", "mqtt://u:secret@127.0.0.1/x"], "not mqtt://u@127.0.0.1:1883/x"),
    ]:
        code, _, stderr = await run_bounded(*AMSHAN, *argv, timeout=30)
        assert code == 2 and message in stderr and "Traceback" not in stderr, (argv, stderr)
