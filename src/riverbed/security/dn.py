"""The subject of a client certificate as the distinguished name Kafka matches mapping rules
and ACLs against: the RFC 2253 string of Java's ``X500Principal.getName()``.

Pure functions over DER bytes, no I/O and no ASN.1 library. Java's form, which Kafka users'
rules are written for, differs from other RFC 2253 writers in details that matter here:

* RDNs last first (``CN=alice,OU=eng,O=Example,C=DE``); the attributes of a multi-valued RDN
  joined by ``+`` in certificate order;
* only CN, C, L, ST, O, OU, STREET, DC and UID are written by name; every other attribute
  (emailAddress, serialNumber, title, ...) as its dotted OID with the value as ``#`` and the
  lower-case hex of its whole DER encoding (``1.2.840.113549.1.9.1=#1611...``), as are values
  of a non-string ASN.1 type under a known name;
* in string values, each of ``, = + < > # ; " \\`` is escaped with a backslash wherever it
  occurs, a NUL character is written ``\\00``, and leading and trailing spaces are escaped;
  the value bytes are read as UTF-8 (also for BMPString, as Java does).
"""

from __future__ import annotations

__all__ = ["DerError", "dn_from_certificate", "dn_from_name"]

# the attribute names Java writes in RFC 2253 form
_KEYWORDS = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
# ASN.1 string types written as text: UTF8String, PrintableString, T61String, IA5String,
# GeneralString, BMPString
_STRING_TAGS = frozenset({0x0C, 0x13, 0x14, 0x16, 0x1B, 0x1E})
_ESCAPED = frozenset(',=+<>#;"\\')
_SEQUENCE, _SET, _OID = 0x30, 0x31, 0x06


class DerError(ValueError):
    """The bytes are not the DER this module reads (a certificate or an X.501 Name)."""


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the element at ``pos``."""
    if pos + 2 > end:
        raise DerError("truncated element")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used in names")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise DerError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise DerError("element runs past its parent")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, value start, value end) of each element in ``data[start:end]``."""
    out = []
    pos = start
    while pos < end:
        tag, vstart, vend = _tlv(data, pos, end)
        out.append((tag, pos, vstart, vend))
        pos = vend
    return out


def _oid(value: bytes) -> str:
    if not value:
        raise DerError("empty OID")
    arcs: list[int] = []
    n = 0
    for byte in value:
        n = (n << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(n)
            n = 0
    if value[-1] & 0x80:
        raise DerError("unterminated OID")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def _escape(text: str) -> str:
    chars = ["\\00" if c == "\0" else "\\" + c if c in _ESCAPED else c for c in text]
    lead = 0
    while lead < len(chars) and chars[lead] in (" ", "\r"):
        chars[lead] = "\\" + chars[lead]
        lead += 1
    trail = len(chars) - 1
    while trail >= lead and chars[trail] in (" ", "\r"):
        chars[trail] = "\\" + chars[trail]
        trail -= 1
    return "".join(chars)


def _attribute(data: bytes, start: int, end: int) -> str:
    """One AttributeTypeAndValue (SEQUENCE { OID, value }) as ``name=value``."""
    parts = _children(data, start, end)
    if len(parts) != 2 or parts[0][0] != _OID:
        raise DerError("attribute is not SEQUENCE { OID, value }")
    _, _, ostart, oend = parts[0]
    vtag, vpos, vstart, vend = parts[1]
    oid = _oid(data[ostart:oend])
    keyword = _KEYWORDS.get(oid)
    if keyword is None or vtag not in _STRING_TAGS:
        return f"{keyword or oid}=#{data[vpos:vend].hex()}"
    return f"{keyword}={_escape(data[vstart:vend].decode('utf-8', errors='replace'))}"


def _name(data: bytes, start: int, end: int) -> str:
    """The RDNSequence in ``data[start:end]`` (the value of a Name SEQUENCE) as RFC 2253."""
    rdns = []
    for tag, _, sstart, send in _children(data, start, end):
        if tag != _SET:
            raise DerError("RDN is not a SET")
        avas = []
        for atag, _, astart, aend in _children(data, sstart, send):
            if atag != _SEQUENCE:
                raise DerError("attribute is not a SEQUENCE")
            avas.append(_attribute(data, astart, aend))
        rdns.append("+".join(avas))
    return ",".join(reversed(rdns))


def dn_from_name(der: bytes) -> str:
    """RFC 2253 (Java's form) of a DER-encoded X.501 Name."""
    tag, start, end = _tlv(der, 0, len(der))
    if tag != _SEQUENCE or end != len(der):
        raise DerError("a Name is one SEQUENCE")
    return _name(der, start, end)


def dn_from_certificate(der: bytes) -> str:
    """RFC 2253 (Java's form) of the subject of a DER-encoded X.509 certificate (what
    ``SSLSocket.getpeercert(binary_form=True)`` returns)."""
    tag, start, end = _tlv(der, 0, len(der))
    if tag != _SEQUENCE:
        raise DerError("a certificate is a SEQUENCE")
    parts = _children(der, start, end)
    if not parts or parts[0][0] != _SEQUENCE:
        raise DerError("no tbsCertificate")
    tbs = _children(der, parts[0][2], parts[0][3])
    if tbs and tbs[0][0] == 0xA0:  # [0] EXPLICIT version
        tbs = tbs[1:]
    # serialNumber, signature, issuer, validity, subject
    if len(tbs) < 5 or tbs[4][0] != _SEQUENCE:
        raise DerError("no subject")
    return _name(der, tbs[4][2], tbs[4][3])
