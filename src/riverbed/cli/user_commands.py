"""``riverbed user add|list|delete``: SASL/SCRAM users.

Over the wire (the default) with AlterUserScramCredentials / DescribeUserScramCredentials, so
the commands work against a running riverbed or Apache Kafka broker; the salted password is
computed here (PBKDF2) and only it, never the password, crosses the network. PLAIN logins on
riverbed are checked against the SCRAM-SHA-512 (else SCRAM-SHA-256) credential, so one
``user add`` serves all three mechanisms.

``--data-dir DIR`` edits ``DIR/credentials.json`` directly instead (the broker must be
stopped: it reads the file at start-up). That is how the first user of a broker that has only
SASL listeners is created.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from pathlib import Path

from riverbed.protocol.messages.alter_user_scram_credentials import (
    AlterUserScramCredentialsRequest,
    AlterUserScramCredentialsResponse,
)
from riverbed.protocol.messages.describe_user_scram_credentials import (
    DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
)
from riverbed.security.credentials import (
    CorruptCredentialStoreError,
    CredentialError,
    CredentialStore,
)
from riverbed.security.scram import SALT_BYTES, ScramFormatter, ScramMechanism

from .client_commands import CommandError
from .wire_client import WireClient

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
RESOURCE_NOT_FOUND = 91


def read_properties(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, sep, value = line.partition("=")
            if not sep:
                raise CommandError(f"{path}: expected KEY=VALUE, got {line!r}")
            out[key.strip()] = value.strip()
    return out


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        password = str(args.password)
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
    if not password:
        raise CommandError("the password must not be empty")
    return password


def _client(args: argparse.Namespace) -> WireClient:
    security = read_properties(args.command_config) if args.command_config else None
    return WireClient(args.bootstrap, security=security)


def user_command(args: argparse.Namespace) -> int:
    if args.data_dir is not None:
        return _offline(args)
    if args.action == "add":
        password = _password(args)
        upserts = []
        for name in args.mechanism or MECHANISMS:
            mech = ScramMechanism.from_name(name)
            salt = secrets.token_bytes(SALT_BYTES)
            salted = ScramFormatter(mech).salted_password(password, salt, args.iterations)
            upserts.append(
                AlterUserScramCredentialsRequest.ScramCredentialUpsertion(
                    name=args.name, mechanism=mech.type_id, iterations=args.iterations, salt=salt, salted_password=salted
                )
            )
        _alter(args, AlterUserScramCredentialsRequest(deletions=[], upsertions=upserts))
        print(f"user {args.name}: {', '.join(args.mechanism or MECHANISMS)} set")
        return 0
    if args.action == "list":
        with _client(args) as client:
            resp = client.request(DescribeUserScramCredentialsRequest(users=None), 0)
        assert isinstance(resp, DescribeUserScramCredentialsResponse)
        if resp.error_code:
            raise CommandError(f"cannot list users: error {resp.error_code} {resp.error_message or ''}".strip())
        for r in sorted(resp.results, key=lambda r: r.user):
            infos = ", ".join(f"{ScramMechanism.from_type(c.mechanism).mechanism_name} ({c.iterations} iterations)" for c in r.credential_infos)
            print(f"{r.user}\t{infos}")
        return 0
    if args.action == "delete":
        with _client(args) as client:
            resp = client.request(DescribeUserScramCredentialsRequest(users=[DescribeUserScramCredentialsRequest.UserName(name=args.name)]), 0)
        assert isinstance(resp, DescribeUserScramCredentialsResponse)
        if resp.error_code:
            raise CommandError(f"cannot read user {args.name}: error {resp.error_code} {resp.error_message or ''}".strip())
        result = resp.results[0] if resp.results else None
        if result is None or result.error_code == RESOURCE_NOT_FOUND:
            raise CommandError(f"no user {args.name}")
        if result.error_code:
            raise CommandError(f"cannot read user {args.name}: {result.error_message}")
        deletions = [AlterUserScramCredentialsRequest.ScramCredentialDeletion(name=args.name, mechanism=c.mechanism) for c in result.credential_infos]
        _alter(args, AlterUserScramCredentialsRequest(deletions=deletions, upsertions=[]))
        print(f"user {args.name} deleted")
        return 0
    raise CommandError(f"unknown action {args.action}")


def _alter(args: argparse.Namespace, request: AlterUserScramCredentialsRequest) -> None:
    with _client(args) as client:
        resp = client.request(request, 0)
    assert isinstance(resp, AlterUserScramCredentialsResponse)
    for r in resp.results:
        if r.error_code:
            raise CommandError(f"user {r.user}: error {r.error_code}: {r.error_message or ''}".strip())


def _offline(args: argparse.Namespace) -> int:
    try:
        store = CredentialStore(args.data_dir)
    except CorruptCredentialStoreError as exc:
        raise CommandError(str(exc)) from exc
    try:
        if args.action == "add":
            store.add_user(args.name, _password(args), [*(args.mechanism or MECHANISMS), "PLAIN"], iterations=args.iterations)
            print(f"user {args.name} written to {store.path} (restart the broker to use it)")
        elif args.action == "list":
            for user, creds in store.describe().items():
                print(f"{user}\t{', '.join(f'{m} ({i} iterations)' for m, i in creds)}")
        elif args.action == "delete":
            if not store.delete_user(args.name):
                raise CommandError(f"no user {args.name}")
            print(f"user {args.name} deleted from {store.path}")
    except CredentialError as exc:
        raise CommandError(str(exc)) from exc
    return 0
