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
    out = done.stdout
    # Direct MX delivery, and failover within the attempt to the preference-20 host.
    assert "bob@example.test: delivered via mx1.mail.test" in out
    assert "dead.mail.test (127.0.0.4) failed" in out
    assert "dave@failover.test: delivered via mx2.mail.test" in out
    assert "bj\u00f6rk@failover.test: delivered via mx2.mail.test" in out
    # A null MX bounces without a connection; a 550 bounces one recipient of a delivered message.
    assert "eve@nomail.test: bounced - 5.1.10" in out
    assert "nobody@example.test: bounced via mx1.mail.test - 550 5.1.1" in out
    # Greylisting: 451 on the first attempt, delivered on the retry.
    assert "carol@example.test: delivered via mx1.mail.test" in out
    assert "(carol@example.test took 2 attempts)" in out
    assert "deferred" not in out.replace("0 deferred", "")
    assert "mx1.mail.test (127.0.0.2): 2 message(s)" in out
    assert "mx2.mail.test (127.0.0.3): 2 message(s)" in out


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
