"""Test TLS certificates: one private CA per session, server certificates on demand.

:class:`CertAuthority` wraps a ``trustme.CA``:

- :meth:`CertAuthority.issue` returns a (cached) ``trustme.LeafCert`` for a set of host names and IP
  addresses, e.g. ``ca.issue("mx.test", "localhost", "127.0.0.1")``.
- :meth:`CertAuthority.server_files` writes that certificate (leaf + chain) and its private key to PEM
  files, for servers that want paths (Postfix's ``smtpd_tls_cert_file``/``smtpd_tls_key_file``,
  NSD, ...).
- :meth:`CertAuthority.server_context` gives a server-side ``ssl.SSLContext`` (aiosmtpd and friends).
- :meth:`CertAuthority.client_context` gives a client ``ssl.SSLContext`` that trusts only this CA,
  verifies the chain and checks the host name -- what a strict SMTP client does.
- :attr:`CertAuthority.ca_file` is the CA certificate as a PEM file (for ``cafile=`` style APIs).

Gotchas:

- The files live in a directory the caller chooses. Postfix's smtpd reads its key while it still
  runs as root (before dropping to ``mail_owner``), so a 0600 root-owned key works; the certificate
  and the directory are world-readable anyway so any server user can read them.
- Do not name the class ``Test...``: pytest would try to collect it wherever it is imported into a
  test module, and collection warnings are errors in this suite.
- Host-name checking only works for names the certificate lists: connect to ``127.0.0.5`` and pass
  ``server_hostname="mx.test"`` (smtplib: ``SMTP(host=...)`` then ``starttls(context=...)`` uses
  the ``host`` given to the constructor/connect as the server name).
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["CertAuthority", "CertFiles"]


@dataclass(frozen=True)
class CertFiles:
    """A server certificate on disk."""

    #: The leaf certificate followed by the chain, PEM.
    cert: Path
    #: The private key, PEM (mode 0600).
    key: Path
    #: Host names and IP addresses the certificate is valid for.
    identities: tuple[str, ...]


class CertAuthority:
    """A private CA (``trustme``) that issues server certificates for test peers."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o755)
        self.ca = trustme.CA(organization_name="smtprelay tests", organization_unit_name="test CA")
        self.ca_file = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        os.chmod(self.ca_file, 0o644)
        self._lock = threading.Lock()
        self._leaves: dict[tuple[str, ...], trustme.LeafCert] = {}
        self._files: dict[tuple[str, ...], CertFiles] = {}

    def issue(self, *identities: str) -> trustme.LeafCert:
        """A server certificate valid for ``identities`` (host names and/or IP addresses), cached."""
        if not identities:
            raise ValueError("a certificate needs at least one host name or IP address")
        key = tuple(identities)
        with self._lock:
            leaf = self._leaves.get(key)
            if leaf is None:
                leaf = self.ca.issue_cert(*identities)
                self._leaves[key] = leaf
            return leaf

    def server_files(self, *identities: str) -> CertFiles:
        """Write the certificate for ``identities`` (and its key) to files, once; return the paths."""
        leaf = self.issue(*identities)
        key = tuple(identities)
        with self._lock:
            files = self._files.get(key)
            if files is None:
                stem = f"server-{len(self._files) + 1}"
                cert_path = self.directory / f"{stem}.crt"
                key_path = self.directory / f"{stem}.key"
                cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
                os.chmod(cert_path, 0o644)
                # Create the key file private from the start rather than chmod it afterwards.
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(leaf.private_key_pem.bytes())
                files = CertFiles(cert=cert_path, key=key_path, identities=key)
                self._files[key] = files
            return files

    def server_context(self, *identities: str) -> ssl.SSLContext:
        """A server-side context presenting the certificate for ``identities``."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.issue(*identities).configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA, verifies certificates and checks host names."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        return context
