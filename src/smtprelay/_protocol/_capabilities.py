"""Server capabilities, parsed from the reply to EHLO (RFC 5321 §4.1.1.1)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType

from ._reply import Reply

__all__ = ["Capabilities"]

# RFC 5321 §4.1.1.1: ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


class Capabilities(Mapping[str, str]):
    """The extensions a server advertised: a case-insensitive, read-only mapping keyword -> parameters.

    ``caps["size"]`` gives the raw parameter string (``""`` when the keyword has none). The
    properties interpret the extensions this client uses. An empty Capabilities stands for a
    server that answered HELO (no extensions at all).
    """

    __slots__ = ("_items", "greeting")

    def __init__(self, items: Mapping[str, str] | None = None, *, greeting: str = "") -> None:
        self._items: Mapping[str, str] = MappingProxyType({k.upper(): v for k, v in (items or {}).items()})
        #: The first line of the EHLO reply (the server's domain and greeting text).
        self.greeting = greeting

    @classmethod
    def from_ehlo(cls, reply: Reply) -> Capabilities:
        """Parse a positive EHLO reply. Lines that are not valid extension keywords are ignored."""
        items: dict[str, str] = {}
        for line in reply.lines[1:]:
            keyword, _, params = line.strip().partition(" ")
            # Old servers advertise "AUTH=LOGIN PLAIN" beside (or instead of) "AUTH LOGIN PLAIN".
            if keyword.upper().startswith("AUTH="):
                params = f"{keyword[5:]} {params}".strip()
                keyword = "AUTH"
            if not _KEYWORD.fullmatch(keyword):
                continue
            keyword = keyword.upper()
            params = " ".join(params.split())
            if keyword == "AUTH" and keyword in items:
                params = " ".join(dict.fromkeys((items[keyword] + " " + params).split()))
            items[keyword] = params
        return cls(items, greeting=reply.lines[0] if reply.lines else "")

    # Mapping protocol, case-insensitive.
    def __getitem__(self, key: str) -> str:
        return self._items[key.upper()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.upper() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Capabilities({dict(self._items)!r})"

    # Interpreted extensions.
    @property
    def max_size(self) -> int | None:
        """SIZE limit in octets (RFC 1870), or None when there is none (absent, empty, 0 or unreadable)."""
        value = self._items.get("SIZE", "")
        if not value.isdigit():
            return None
        return int(value) or None

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self._items

    @property
    def eight_bit_mime(self) -> bool:
        return "8BITMIME" in self._items

    @property
    def smtputf8(self) -> bool:
        return "SMTPUTF8" in self._items

    @property
    def dsn(self) -> bool:
        return "DSN" in self._items

    @property
    def chunking(self) -> bool:
        return "CHUNKING" in self._items

    @property
    def starttls(self) -> bool:
        return "STARTTLS" in self._items

    @property
    def enhanced_status_codes(self) -> bool:
        return "ENHANCEDSTATUSCODES" in self._items

    @property
    def requiretls(self) -> bool:
        return "REQUIRETLS" in self._items

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        """SASL mechanisms offered with AUTH (RFC 4954), upper-cased."""
        return frozenset(self._items.get("AUTH", "").upper().split())

    @property
    def limits(self) -> Mapping[str, int]:
        """LIMITS (RFC 9422) as upper-cased name -> value, e.g. ``{"RCPTMAX": 100, "MAILMAX": 1000}``."""
        result: dict[str, int] = {}
        for item in self._items.get("LIMITS", "").split():
            name, _, value = item.partition("=")
            if value.isdigit():
                result[name.upper()] = int(value)
        return MappingProxyType(result)

    @property
    def rcpt_max(self) -> int | None:
        """Most recipients the server takes in one transaction (LIMITS RCPTMAX), or None."""
        return self.limits.get("RCPTMAX") or None

    @property
    def mail_max(self) -> int | None:
        """Most transactions the server takes on one connection (LIMITS MAILMAX), or None."""
        return self.limits.get("MAILMAX") or None
