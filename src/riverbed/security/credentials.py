"""The credential store: SCRAM credentials and PLAIN password hashes, durable in one JSON file.

Nothing here can recover a password. Per user and mechanism the file holds:

* SCRAM-SHA-256 / SCRAM-SHA-512: ``salt``, ``iterations``, ``stored_key``, ``server_key``
  (RFC 5802). The salted password itself is discarded after the keys are derived.
* PLAIN: ``salt``, ``iterations`` and ``hash`` = PBKDF2-HMAC-SHA512(password, salt, iterations);
  a login recomputes the hash and compares in constant time.

File format (``<directory>/credentials.json``, mode 0600, bytes in base64)::

    {"format": 1,
     "decoy_key": "<base64, 32 bytes>",
     "users": {"alice": {"SCRAM-SHA-256": {"salt": .., "iterations": 4096,
                                           "stored_key": .., "server_key": ..},
                         "PLAIN": {"algorithm": "PBKDF2-HMAC-SHA512", "salt": ..,
                                   "iterations": 4096, "hash": ..}}}}

``decoy_key`` is a random secret used to give unknown users a stable fake salt (see
:mod:`riverbed.security.scram`). Every change rewrites the whole file atomically: write a
temporary file in the same directory, fsync it, rename it over the old one, fsync the
directory. A file that cannot be read or parsed raises :class:`CorruptCredentialStoreError`;
the store never silently starts empty over a damaged file.

Thread-safety: every method takes an internal lock, so the store can be used from the event
loop and from executor threads alike. One process owns the directory.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riverbed.protocol.errors import ErrorCode
from riverbed.security.scram import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    SALT_BYTES,
    ScramCredential,
    ScramFormatter,
    ScramMechanism,
)

__all__ = [
    "FILE_NAME",
    "PLAIN",
    "AlterationPlan",
    "AlterationResult",
    "CorruptCredentialStoreError",
    "CredentialError",
    "CredentialStore",
    "DescribeResult",
    "LoginCredentials",
    "ScramDeletion",
    "ScramUpsertion",
    "plan_alterations",
]

FILE_NAME = "credentials.json"
FORMAT_VERSION = 1
PLAIN = "PLAIN"
PLAIN_ALGORITHM = "PBKDF2-HMAC-SHA512"


class CredentialError(Exception):
    """A request to the store that cannot be carried out (bad user name, iterations, ...).
    ``error_code`` is the Kafka error that a protocol answer should carry."""

    def __init__(self, message: str, error_code: ErrorCode = ErrorCode.UNACCEPTABLE_CREDENTIAL):
        super().__init__(message)
        self.error_code = error_code


class CorruptCredentialStoreError(Exception):
    """The credentials file exists but cannot be read as a credential store."""


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64d(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


def _check_user(user: str) -> None:
    if not user:
        raise CredentialError("Username must not be empty")
    if "\x00" in user:
        raise CredentialError("Username must not contain NUL")


def _check_iterations(iterations: int) -> None:
    if iterations < MIN_ITERATIONS:
        raise CredentialError("Too few iterations")
    if iterations > MAX_ITERATIONS:
        raise CredentialError("Too many iterations")


@dataclass(frozen=True, slots=True)
class _PlainHash:
    salt: bytes
    iterations: int
    hash: bytes


# -- AlterUserScramCredentials / DescribeUserScramCredentials, as pure functions ---------------


@dataclass(frozen=True, slots=True)
class ScramDeletion:
    name: str
    mechanism: int  # wire type id: 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512


@dataclass(frozen=True, slots=True)
class ScramUpsertion:
    name: str
    mechanism: int
    iterations: int
    salt: bytes
    salted_password: bytes


@dataclass(frozen=True, slots=True)
class AlterationResult:
    user: str
    error_code: ErrorCode
    error_message: str | None


@dataclass(frozen=True, slots=True)
class DescribeResult:
    user: str
    error_code: ErrorCode
    error_message: str | None
    credentials: tuple[tuple[int, int], ...]  # (mechanism type id, iterations)


@dataclass(frozen=True, slots=True)
class AlterationPlan:
    results: list[AlterationResult]
    deletions: list[tuple[str, ScramMechanism]]
    upsertions: list[tuple[str, ScramMechanism, ScramCredential]]


def plan_alterations(
    exists: Mapping[str, Iterable[ScramMechanism]],
    deletions: Sequence[ScramDeletion],
    upsertions: Sequence[ScramUpsertion],
) -> AlterationPlan:
    """Validate an AlterUserScramCredentials request against the current credentials
    (``exists``: user -> mechanisms it has) without touching anything.

    One result per user, in order of first appearance. A user's alterations apply all or not
    at all: the first error found for a user is its result and none of its changes apply
    (Kafka's rule). Errors, as Kafka sends them:

    * the same user and mechanism twice in one request: DUPLICATE_RESOURCE
    * an empty user name: UNACCEPTABLE_CREDENTIAL
    * an unknown mechanism: UNSUPPORTED_SASL_MECHANISM
    * iterations outside [4096, 16384], an empty salt or salted password: UNACCEPTABLE_CREDENTIAL
    * deleting a credential that does not exist: RESOURCE_NOT_FOUND
    """
    ops: list[tuple[str, int, ScramUpsertion | None]] = [
        (d.name, d.mechanism, None) for d in deletions
    ] + [(u.name, u.mechanism, u) for u in upsertions]
    order: list[str] = []
    errors: dict[str, tuple[ErrorCode, str]] = {}
    seen: dict[tuple[str, int], int] = {}
    for name, mech, _ in ops:
        if name not in order:
            order.append(name)
        seen[(name, mech)] = seen.get((name, mech), 0) + 1

    def fail(name: str, code: ErrorCode, message: str) -> None:
        errors.setdefault(name, (code, message))

    planned_del: list[tuple[str, ScramMechanism]] = []
    planned_up: list[tuple[str, ScramMechanism, ScramCredential]] = []
    for name, mech, upsertion in ops:
        if seen[(name, mech)] > 1:
            fail(
                name,
                ErrorCode.DUPLICATE_RESOURCE,
                "A user credential cannot be altered twice in the same request",
            )
            continue
        try:
            _check_user(name)
        except CredentialError as exc:
            fail(name, exc.error_code, str(exc))
            continue
        try:
            mechanism = ScramMechanism.from_type(mech)
        except ValueError:
            fail(name, ErrorCode.UNSUPPORTED_SASL_MECHANISM, "Unknown SCRAM mechanism")
            continue
        if upsertion is None:
            if mechanism not in set(exists.get(name, ())):
                fail(
                    name,
                    ErrorCode.RESOURCE_NOT_FOUND,
                    "Attempt to delete a user credential that does not exist",
                )
                continue
            planned_del.append((name, mechanism))
            continue
        try:
            _check_iterations(upsertion.iterations)
        except CredentialError as exc:
            fail(name, exc.error_code, str(exc))
            continue
        if not upsertion.salt or not upsertion.salted_password:
            fail(
                name,
                ErrorCode.UNACCEPTABLE_CREDENTIAL,
                "Salt and salted password must not be empty",
            )
            continue
        credential = ScramFormatter(mechanism).credential_from_salted(
            upsertion.salted_password, upsertion.salt, upsertion.iterations
        )
        planned_up.append((name, mechanism, credential))

    results = [
        AlterationResult(name, *errors[name])
        if name in errors
        else AlterationResult(name, ErrorCode.NONE, None)
        for name in order
    ]
    return AlterationPlan(
        results=results,
        deletions=[(n, m) for n, m in planned_del if n not in errors],
        upsertions=[(n, m, c) for n, m, c in planned_up if n not in errors],
    )


# -- the store ---------------------------------------------------------------------------------


class CredentialStore:
    """SCRAM credentials and PLAIN hashes for every user, durable in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self._lock = threading.RLock()
        self._scram: dict[str, dict[ScramMechanism, ScramCredential]] = {}
        self._plain: dict[str, _PlainHash] = {}
        self.decoy_key = secrets.token_bytes(32)
        self._load()

    # -- reading -------------------------------------------------------------------------------

    def lookup(self, user: str, mechanism: ScramMechanism | str) -> ScramCredential | None:
        mech = _mechanism(mechanism)
        with self._lock:
            return self._scram.get(user, {}).get(mech)

    def users(self) -> list[str]:
        with self._lock:
            return sorted(set(self._scram) | set(self._plain))

    def mechanisms(self, user: str) -> list[str]:
        """Every mechanism the user has a credential for, SCRAM first, then PLAIN."""
        with self._lock:
            names = [m.mechanism_name for m in ScramMechanism if m in self._scram.get(user, {})]
            if user in self._plain:
                names.append(PLAIN)
            return names

    def describe(self, users: Iterable[str] | None = None) -> dict[str, list[tuple[str, int]]]:
        """SCRAM credentials as ``{user: [(mechanism name, iterations)]}``; users without any
        are left out. ``None`` means every user."""
        with self._lock:
            wanted = sorted(self._scram) if users is None else list(dict.fromkeys(users))
            out: dict[str, list[tuple[str, int]]] = {}
            for user in wanted:
                creds = self._scram.get(user)
                if creds:
                    out[user] = [
                        (m.mechanism_name, creds[m].iterations)
                        for m in ScramMechanism
                        if m in creds
                    ]
            return out

    def describe_request(self, users: Sequence[str] | None) -> list[DescribeResult]:
        """DescribeUserScramCredentials: one result per requested user (every user with a
        credential when ``users`` is None). A user asked for twice: DUPLICATE_RESOURCE; a user
        without SCRAM credentials: RESOURCE_NOT_FOUND."""
        with self._lock:
            if users is None:
                users = sorted(self._scram)
            counts: dict[str, int] = {}
            for user in users:
                counts[user] = counts.get(user, 0) + 1
            results = []
            for user in dict.fromkeys(users):
                creds = self._scram.get(user)
                if counts[user] > 1:
                    results.append(
                        DescribeResult(
                            user,
                            ErrorCode.DUPLICATE_RESOURCE,
                            "Cannot describe SCRAM credentials for the same user twice in a "
                            "single request",
                            (),
                        )
                    )
                elif not creds:
                    results.append(
                        DescribeResult(
                            user,
                            ErrorCode.RESOURCE_NOT_FOUND,
                            "Attempt to describe a user credential that does not exist",
                            (),
                        )
                    )
                else:
                    results.append(
                        DescribeResult(
                            user,
                            ErrorCode.NONE,
                            None,
                            tuple(
                                (m.type_id, creds[m].iterations)
                                for m in ScramMechanism
                                if m in creds
                            ),
                        )
                    )
            return results

    def verify_plain(self, user: str, password: str) -> bool:
        """Check a PLAIN login. Takes the same time whether or not the user exists."""
        with self._lock:
            entry = self._plain.get(user)
        if entry is None:
            # Spend the same work on a decoy so timing does not reveal unknown users.
            salt = hmac.new(self.decoy_key, user.encode("utf-8", "replace"), "sha256").digest()
            _plain_hash(password, salt, DEFAULT_ITERATIONS)
            return False
        candidate = _plain_hash(password, entry.salt, entry.iterations)
        return hmac.compare_digest(candidate, entry.hash)

    # -- writing -------------------------------------------------------------------------------

    def upsert_scram(
        self,
        user: str,
        mechanism: ScramMechanism | str,
        password: str | None = None,
        *,
        salt: bytes | None = None,
        iterations: int = DEFAULT_ITERATIONS,
        salted_password: bytes | None = None,
    ) -> ScramCredential:
        """Create or replace a SCRAM credential, either from a password (the CLI) or from a
        salted password + salt + iterations (AlterUserScramCredentials). Exactly one of
        ``password`` and ``salted_password`` must be given."""
        mech = _mechanism(mechanism)
        _check_user(user)
        _check_iterations(iterations)
        formatter = ScramFormatter(mech)
        if (password is None) == (salted_password is None):
            raise CredentialError("Give exactly one of password and salted_password")
        if salt is None:
            if salted_password is not None:
                raise CredentialError("A salted password needs its salt")
            salt = secrets.token_bytes(SALT_BYTES)
        if not salt:
            raise CredentialError("Salt must not be empty")
        if password is not None:
            if not password:
                raise CredentialError("Password must not be empty")
            credential = formatter.credential(password, salt, iterations)
        else:
            assert salted_password is not None
            if not salted_password:
                raise CredentialError("Salted password must not be empty")
            credential = formatter.credential_from_salted(salted_password, salt, iterations)
        with self._lock:
            self._scram.setdefault(user, {})[mech] = credential
            self._save()
        return credential

    def set_plain(self, user: str, password: str, *, iterations: int = DEFAULT_ITERATIONS) -> None:
        """Create or replace the PLAIN credential: stored as a salted PBKDF2-HMAC-SHA512 hash."""
        _check_user(user)
        _check_iterations(iterations)
        if not password:
            raise CredentialError("Password must not be empty")
        salt = secrets.token_bytes(SALT_BYTES)
        entry = _PlainHash(salt, iterations, _plain_hash(password, salt, iterations))
        with self._lock:
            self._plain[user] = entry
            self._save()

    def add_user(
        self,
        user: str,
        password: str,
        mechanisms: Iterable[str] = ("SCRAM-SHA-256", "SCRAM-SHA-512", PLAIN),
        *,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        """What ``riverbed user add`` does: a credential for each mechanism, one write."""
        _check_user(user)
        _check_iterations(iterations)
        if not password:
            raise CredentialError("Password must not be empty")
        wanted = list(dict.fromkeys(mechanisms))
        scram = [_mechanism(m) for m in wanted if m != PLAIN]
        new_scram = {
            m: ScramFormatter(m).credential(password, secrets.token_bytes(SALT_BYTES), iterations)
            for m in scram
        }
        plain = None
        if PLAIN in wanted:
            salt = secrets.token_bytes(SALT_BYTES)
            plain = _PlainHash(salt, iterations, _plain_hash(password, salt, iterations))
        with self._lock:
            self._scram.setdefault(user, {}).update(new_scram)
            if plain is not None:
                self._plain[user] = plain
            self._save()

    def delete(self, user: str, mechanism: ScramMechanism | str) -> None:
        """Remove one credential (a SCRAM mechanism or ``"PLAIN"``). Raises
        :class:`CredentialError` with RESOURCE_NOT_FOUND when there is none."""
        with self._lock:
            if mechanism == PLAIN:
                if user not in self._plain:
                    raise CredentialError(
                        "Attempt to delete a user credential that does not exist",
                        ErrorCode.RESOURCE_NOT_FOUND,
                    )
                del self._plain[user]
            else:
                mech = _mechanism(mechanism)
                creds = self._scram.get(user, {})
                if mech not in creds:
                    raise CredentialError(
                        "Attempt to delete a user credential that does not exist",
                        ErrorCode.RESOURCE_NOT_FOUND,
                    )
                del creds[mech]
                if not creds:
                    del self._scram[user]
            self._save()

    def delete_user(self, user: str) -> bool:
        """Remove every credential of a user; False if there was none."""
        with self._lock:
            found = self._scram.pop(user, None) is not None
            found = self._plain.pop(user, None) is not None or found
            if found:
                self._save()
            return found

    def apply_alterations(
        self, deletions: Sequence[ScramDeletion], upsertions: Sequence[ScramUpsertion]
    ) -> list[AlterationResult]:
        """AlterUserScramCredentials: validate with :func:`plan_alterations`, apply what is
        valid in one durable write, and return one result per user."""
        with self._lock:
            plan = plan_alterations(
                {user: list(creds) for user, creds in self._scram.items()}, deletions, upsertions
            )
            for user, mech in plan.deletions:
                creds = self._scram.get(user, {})
                creds.pop(mech, None)
                if not creds:
                    self._scram.pop(user, None)
            for user, mech, credential in plan.upsertions:
                self._scram.setdefault(user, {})[mech] = credential
            if plan.deletions or plan.upsertions:
                self._save()
            return plan.results

    # -- persistence ---------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise CorruptCredentialStoreError(f"cannot read {self.path}: {exc}") from exc
        try:
            doc = json.loads(raw)
            self._scram, self._plain, self.decoy_key = _parse(doc)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CorruptCredentialStoreError(
                f"credential store {self.path} is corrupt ({exc}); refusing to start with an "
                "empty store: restore it from a backup or move it away"
            ) from exc

    def _save(self) -> None:
        doc: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "decoy_key": _b64e(self.decoy_key),
            "users": {},
        }
        for user in sorted(set(self._scram) | set(self._plain)):
            entry: dict[str, Any] = {}
            for mech, cred in sorted(self._scram.get(user, {}).items(), key=lambda i: i[0].type_id):
                entry[mech.mechanism_name] = {
                    "salt": _b64e(cred.salt),
                    "iterations": cred.iterations,
                    "stored_key": _b64e(cred.stored_key),
                    "server_key": _b64e(cred.server_key),
                }
            plain = self._plain.get(user)
            if plain is not None:
                entry[PLAIN] = {
                    "algorithm": PLAIN_ALGORITHM,
                    "salt": _b64e(plain.salt),
                    "iterations": plain.iterations,
                    "hash": _b64e(plain.hash),
                }
            doc["users"][user] = entry
        data = json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".credentials.", suffix=".tmp", dir=self.directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _mechanism(mechanism: ScramMechanism | str) -> ScramMechanism:
    if isinstance(mechanism, ScramMechanism):
        return mechanism
    try:
        return ScramMechanism.from_name(mechanism)
    except ValueError:
        raise CredentialError(
            f"Unsupported SCRAM mechanism {mechanism!r}", ErrorCode.UNSUPPORTED_SASL_MECHANISM
        ) from None


def _plain_hash(password: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} is not an integer")
    return value


def _parse(
    doc: object,
) -> tuple[dict[str, dict[ScramMechanism, ScramCredential]], dict[str, _PlainHash], bytes]:
    if not isinstance(doc, dict):
        raise ValueError("top level is not an object")
    if doc.get("format") != FORMAT_VERSION:
        raise ValueError(f"unknown format {doc.get('format')!r}")
    decoy_key = _b64d(doc["decoy_key"], "decoy_key")
    if len(decoy_key) < 16:
        raise ValueError("decoy_key is too short")
    users = doc["users"]
    if not isinstance(users, dict):
        raise ValueError("users is not an object")
    scram: dict[str, dict[ScramMechanism, ScramCredential]] = {}
    plain: dict[str, _PlainHash] = {}
    for user, entry in users.items():
        if not isinstance(entry, dict):
            raise ValueError(f"entry for user {user!r} is not an object")
        for name, fields in entry.items():
            if not isinstance(fields, dict):
                raise ValueError(f"{name} of user {user!r} is not an object")
            iterations = _int(fields["iterations"], "iterations")
            if iterations < MIN_ITERATIONS:
                raise ValueError(f"{name} of user {user!r} has too few iterations")
            if name == PLAIN:
                if fields.get("algorithm") != PLAIN_ALGORITHM:
                    raise ValueError(f"unknown PLAIN algorithm for user {user!r}")
                plain[user] = _PlainHash(
                    _b64d(fields["salt"], "salt"), iterations, _b64d(fields["hash"], "hash")
                )
                continue
            mech = ScramMechanism.from_name(name)
            scram.setdefault(user, {})[mech] = ScramCredential(
                salt=_b64d(fields["salt"], "salt"),
                stored_key=_b64d(fields["stored_key"], "stored_key"),
                server_key=_b64d(fields["server_key"], "server_key"),
                iterations=iterations,
            )
    return scram, plain, decoy_key


# -- what the SASL mechanisms see --------------------------------------------------------------


class LoginCredentials:
    """The store as the SASL mechanisms see it, with one addition: a PLAIN login is checked
    against the user's PLAIN hash when there is one (``riverbed user add --data-dir``), and
    otherwise against the user's SCRAM-SHA-512 (then SCRAM-SHA-256) credential -- the password
    is run through that credential's salt and iterations and the resulting stored key
    compared. So a user created over the wire with AlterUserScramCredentials (``riverbed user
    add``, Kafka's ``kafka-configs --alter --add-config SCRAM-SHA-512=[...]``) can log in with
    PLAIN too, and no extra secret is stored."""

    def __init__(self, store: CredentialStore) -> None:
        self.store = store

    @property
    def decoy_key(self) -> bytes:
        return self.store.decoy_key

    def lookup(self, user: str, mechanism: ScramMechanism | str) -> ScramCredential | None:
        return self.store.lookup(user, mechanism)

    def verify_plain(self, user: str, password: str) -> bool:
        if PLAIN in self.store.mechanisms(user):
            return self.store.verify_plain(user, password)
        for mech in (ScramMechanism.SCRAM_SHA_512, ScramMechanism.SCRAM_SHA_256):
            credential = self.store.lookup(user, mech)
            if credential is not None:
                formatter = ScramFormatter(mech)
                salted = formatter.salted_password(password, credential.salt, credential.iterations)
                candidate = formatter.stored_key(formatter.client_key(salted))
                return hmac.compare_digest(candidate, credential.stored_key)
        return self.store.verify_plain(user, password)  # unknown user: same work, False
