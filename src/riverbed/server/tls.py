"""TLS for SSL and SASL_SSL listeners: the server's ssl.SSLContext from PEM files."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from riverbed.security.dn import DerError, dn_from_certificate

CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


class TlsConfigError(ValueError):
    pass


def server_context(
    certificate: str | None,
    key: str | None,
    *,
    key_password: str | None = None,
    ca: str | None = None,
    client_auth: str = "none",
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or later only, the certificate chain and key from PEM files,
    and (for ``client_auth`` requested/required, i.e. mTLS) client certificates verified
    against the CA certificates in ``ca``."""
    mode = CLIENT_AUTH.get(client_auth.strip().lower())
    if mode is None:
        raise TlsConfigError(f"ssl.client.auth must be none, requested or required, not {client_auth!r}")
    if not certificate:
        raise TlsConfigError("a TLS listener needs ssl.certificate.location (and ssl.key.location)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certificate, key or None, password=key_password)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load the TLS certificate {certificate} / key {key}: {exc}") from exc
    if mode != ssl.CERT_NONE:
        if not ca:
            raise TlsConfigError("ssl.client.auth requested/required needs ssl.ca.location")
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cannot load the CA certificates {ca}: {exc}") from exc
        ctx.verify_mode = mode
    return ctx


class ReloadableContext:
    """A listener's TLS context that can be replaced while it serves (dynamic broker configs:
    ``listener.name.<x>.ssl.*``). The server listens with ``front``; each new connection is
    switched to the current context as soon as its ClientHello arrives (the server-name
    callback runs for every handshake, with or without SNI), so new connections present the
    new certificate and verify clients against the new CAs; connections already open keep
    theirs."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.front = context
        self.current = context
        context.sni_callback = self._pick

    def _pick(self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        current = self.current
        if current is not self.front:
            ssl_object.context = current

    def replace(self, context: ssl.SSLContext) -> None:
        self.current = context


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """What a reloaded server certificate must keep (Kafka's SslFactory checks): the subject
    (as Java's X500Principal.getName() writes it) and the subject alternative names."""

    subject: str
    alt_names: frozenset[tuple[str, str]]


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def certificate_identity(path: str) -> CertificateIdentity:
    """The identity of the first (leaf) certificate of a PEM file; TlsConfigError when the
    file holds none."""
    try:
        data = Path(path).read_bytes()
        match = _PEM_CERT.search(data)
        if match is None:
            raise TlsConfigError(f"no certificate in {path}")
        subject = dn_from_certificate(ssl.PEM_cert_to_DER_cert(match.group(0).decode("ascii")))
        decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
        alt = decode(path).get("subjectAltName", ()) if decode is not None else ()
    except (OSError, ValueError, DerError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot read the certificate {path}: {exc}") from exc
    return CertificateIdentity(subject, frozenset((str(k), str(v)) for k, v in alt))


def check_compatible(old: CertificateIdentity, new: CertificateIdentity, *, allow_dn_changes: bool, allow_san_changes: bool) -> None:
    """Kafka's rule for a keystore update: the new certificate keeps the subject (unless
    ssl.allow.dn.changes) and at least every SAN of the old one (unless ssl.allow.san.changes)."""
    if not allow_dn_changes and old.subject.lower() != new.subject.lower():
        raise TlsConfigError(f"Keystore DistinguishedName does not match:  existing={{DN={old.subject}}}, new={{DN={new.subject}}}")
    if not allow_san_changes and not old.alt_names <= new.alt_names:
        raise TlsConfigError(f"Keystore SubjectAltNames do not match:  existing={{SAN={sorted(old.alt_names)}}}, new={{SAN={sorted(new.alt_names)}}}")
