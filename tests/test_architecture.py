"""The layering rules of DESIGN.md, checked on the source."""

from __future__ import annotations

import ast
import pathlib

import smtprelay

SRC = pathlib.Path(smtprelay.__file__).parent
FORBIDDEN_IN_CORE = {"socket", "ssl", "asyncio", "selectors", "time", "dns", "threading", "logging"}


def imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
            names.add("smtprelay." + node.module)
    return names


def test_protocol_core_does_no_io() -> None:
    for path in (SRC / "_protocol").glob("*.py"):
        found = {name for name in imports(path) if name.split(".")[0] in FORBIDDEN_IN_CORE}
        assert not found, f"{path.name} imports {found}: the protocol core must stay sans-I/O"


def test_protocol_core_imports_nothing_above_it() -> None:
    allowed = {"smtprelay._errors", "smtprelay._results"}
    for path in (SRC / "_protocol").glob("*.py"):
        upward = {name for name in imports(path) if name.startswith("smtprelay.") and name not in allowed}
        assert not upward, f"{path.name} reaches up to {upward}"


def test_public_names_are_exported() -> None:
    for name in smtprelay.__all__:
        assert hasattr(smtprelay, name), name


def test_import_needs_only_the_runtime_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for blocked in ('aiosmtpd', 'django', 'flask', 'trustme', 'hypothesis', 'pytest'):\n"
        "    sys.modules[blocked] = None\n"
        "import smtprelay\n"
        "from smtprelay import Message, Relay, Transport\n"
        "Relay(local_hostname='client.test').close()\n"
        "loaded = {m.split('.')[0] for m, module in sys.modules.items() if module is not None}\n"
        "third_party = sorted(loaded & "
        "{'dns', 'email_validator', 'tenacity', 'typing_extensions', 'idna', 'aiosmtpd'})\n"
        "print(' '.join(third_party))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "aiosmtpd" not in done.stdout.split()
    assert {"dns", "email_validator", "tenacity"} <= set(done.stdout.split())
