"""The examples run as a user would run them (subprocesses, loopback only)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

from smtprelay.testing import LocalMX
from support.network import loopback_address

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMTPRELAY_PASSWORD"}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_quickstart() -> None:
    done = run("quickstart.py")
    assert done.returncode == 0, done.stderr
    assert "bob@example.test: delivered" in done.stdout
    assert "nobody@example.test: bounced" in done.stdout and "550 5.1.1" in done.stdout
    assert "carol@example.test: deferred" in done.stdout
    assert "bj\u00f6rk@example.test: delivered" in done.stdout
    assert "The server received 2 message(s)" in done.stdout


def test_send_with_transport() -> None:
    with LocalMX(loopback_address()) as mx:
        done = run(
            "send_with_transport.py",
            "--host",
            mx.host,
            "--port",
            str(mx.port),
            "--tls",
            "opportunistic",
            "--from",
            "alice@example.com",
            "--to",
            "bob@example.test",
            "--subject",
            "From the example",
        )
        assert done.returncode == 0, done.stderr
        assert "bob@example.test: delivered" in done.stdout
        assert mx.wait_for(1)[0].message()["Subject"] == "From the example"


def test_send_with_transport_needs_the_password_in_the_environment() -> None:
    done = run(
        "send_with_transport.py",
        "--host",
        "127.0.0.1",
        "--user",
        "u",
        "--from",
        "a@example.com",
        "--to",
        "b@example.test",
    )
    assert done.returncode == 2
    assert "SMTPRELAY_PASSWORD" in done.stderr
