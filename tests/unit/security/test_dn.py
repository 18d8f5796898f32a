"""Certificate subjects as Java's X500Principal.getName() writes them (what Kafka's mapping
rules and ACLs see); certificates made with the cryptography package."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from riverbed.security.dn import DerError, dn_from_certificate, dn_from_name

KEY = ec.generate_private_key(ec.SECP256R1())


def cert_der(subject: x509.Name) -> bytes:
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")]))
        .public_key(KEY.public_key())
        .serial_number(12345)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(KEY, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def attr(oid: x509.ObjectIdentifier, value: str, asn1: _ASN1Type | None = None) -> x509.NameAttribute:
    return x509.NameAttribute(oid, value, asn1) if asn1 is not None else x509.NameAttribute(oid, value)


def test_common_subject_last_rdn_first() -> None:
    name = x509.Name(
        [
            attr(NameOID.COUNTRY_NAME, "DE"),
            attr(NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
            attr(NameOID.LOCALITY_NAME, "Berlin"),
            attr(NameOID.ORGANIZATION_NAME, "Riverbed"),
            attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "ServiceUsers"),
            attr(NameOID.COMMON_NAME, "alice"),
        ]
    )
    assert dn_from_certificate(cert_der(name)) == "CN=alice,OU=ServiceUsers,O=Riverbed,L=Berlin,ST=Berlin,C=DE"


def test_attributes_without_an_rfc2253_keyword_are_oid_and_der_hex() -> None:
    email = "alice@example.com"
    name = x509.Name([attr(NameOID.COMMON_NAME, "alice"), attr(NameOID.EMAIL_ADDRESS, email), attr(NameOID.SERIAL_NUMBER, "42")])
    ia5 = "16" + f"{len(email):02x}" + email.encode().hex()
    printable = "13" + "02" + b"42".hex()
    assert dn_from_certificate(cert_der(name)) == f"2.5.4.5=#{printable},1.2.840.113549.1.9.1=#{ia5},CN=alice"


def test_dc_and_uid_keep_their_names() -> None:
    name = x509.Name([attr(NameOID.DOMAIN_COMPONENT, "com"), attr(NameOID.DOMAIN_COMPONENT, "example"), attr(NameOID.USER_ID, "u7")])
    assert dn_from_certificate(cert_der(name)) == "UID=u7,DC=example,DC=com"


def test_multi_valued_rdn_in_certificate_order() -> None:
    name = x509.Name([x509.RelativeDistinguishedName([attr(NameOID.COMMON_NAME, "a"), attr(NameOID.USER_ID, "7")]), x509.RelativeDistinguishedName([attr(NameOID.COUNTRY_NAME, "DE")])])
    # the last RDN first; inside an RDN the DER order (a SET OF sorted by encoding: CN's is shorter)
    assert dn_from_name(name.public_bytes()) == "C=DE,CN=a+UID=7"
    assert dn_from_certificate(cert_der(name)) == "C=DE,CN=a+UID=7"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("Ex, Inc", r"Ex\, Inc"),
        ("a=b", r"a\=b"),  # Java also escapes '=' and '#' anywhere
        ("#1 + more", r"\#1 \+ more"),
        ('q"uo<t>e;\\', r"q\"uo\<t\>e\;\\"),
        (" padded  ", r"\ padded\ \ "),
        ("nul\0byte", r"nul\00byte"),
        ("Müller", "Müller"),  # not escaped, as Java writes it
    ],
)
def test_escaping(value: str, written: str) -> None:
    name = x509.Name([attr(NameOID.COMMON_NAME, value, _ASN1Type.UTF8String)])
    assert dn_from_certificate(cert_der(name)) == f"CN={written}"


def test_bmp_string_bytes_are_read_as_utf8_like_java() -> None:
    name = x509.Name([attr(NameOID.COMMON_NAME, "A", _ASN1Type.BMPString)])
    assert dn_from_name(name.public_bytes()) == r"CN=\00A"


@given(st.text(alphabet=st.characters(min_codepoint=0x30, max_codepoint=0x7A).filter(lambda c: c.isalnum()), min_size=1, max_size=60))
def test_plain_values_are_written_as_is(value: str) -> None:
    name = x509.Name([attr(NameOID.ORGANIZATION_NAME, "O"), attr(NameOID.COMMON_NAME, value)])
    assert dn_from_name(name.public_bytes()) == f"CN={value},O=O"


@given(st.binary(max_size=200))
def test_garbage_is_refused_not_crashed(data: bytes) -> None:
    try:
        dn_from_name(data)
        dn_from_certificate(data)
    except DerError:
        pass


def test_truncated_certificate_is_refused() -> None:
    der = cert_der(x509.Name([attr(NameOID.COMMON_NAME, "a")]))
    for cut in (1, 10, len(der) // 2):
        with pytest.raises(DerError):
            dn_from_certificate(der[:cut])
