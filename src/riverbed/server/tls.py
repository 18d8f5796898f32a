"""TLS for SSL and SASL_SSL listeners: the server's ssl.SSLContext from PEM files."""

from __future__ import annotations

import ssl

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
