"""Login to the console against the cluster's SCRAM users: each person's requests reach the
cluster as that principal, so the broker's ACLs decide what they see and may do; the console's
roles (admin vs read-only) come on top. A real broker with a SASL_PLAINTEXT listener and ACLs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from riverbed.broker import ListenerConfig
from riverbed.cli.main import main as riverbed_main
from riverbed.client import ClusterSettings
from riverbed.console import ConsoleConfig, ConsoleService
from riverbed.testing import FIXTURE_DEFAULTS, EmbeddedBroker

pytestmark = pytest.mark.integration

USERS = {"alice": "alice-secret", "reader": "reader-secret", "mallory": "mallory-secret"}


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    listeners = [ListenerConfig("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 0), ListenerConfig("SASL_PLAINTEXT", "SASL_PLAINTEXT", "127.0.0.1", 0)]
    with EmbeddedBroker(listeners=listeners, authorizer_enabled=True, super_users=("User:ANONYMOUS", "User:alice"), **FIXTURE_DEFAULTS) as b:
        plain = b.bootstrap_for("PLAINTEXT")
        for user, password in USERS.items():
            assert riverbed_main(["user", "add", user, "--password", password, "-b", plain]) == 0
        admin = AdminClient({"bootstrap.servers": plain})
        for f in admin.create_topics([NewTopic("orders", 1, 1), NewTopic("payroll", 1, 1)]).values():
            f.result(10)
        acls = [AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:reader", "*", op, AclPermissionType.ALLOW) for op in (AclOperation.READ, AclOperation.DESCRIBE)]
        for f in admin.create_acls(acls).values():
            f.result(10)
        p = Producer({"bootstrap.servers": plain})
        p.produce("orders", value=b'{"order": 1}')
        p.produce("payroll", value=b'{"salary": 1}')
        assert p.flush(10) == 0
        yield b


@pytest.fixture(scope="module")
def console(broker: EmbeddedBroker) -> Iterator[ConsoleService]:
    settings = ClusterSettings(broker.bootstrap_for("SASL_PLAINTEXT"), {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256"})
    with ConsoleService(ConsoleConfig(settings, refresh_s=0.3, login=True, admins=frozenset({"alice", "mallory"}))) as svc:
        yield svc


def wait_for(check: Callable[[], Any], what: str, deadline: float = 20.0) -> Any:
    end = time.monotonic() + deadline
    while not (value := check()):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@contextlib.contextmanager
def session(console: ConsoleService, user: str | None = None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.url, timeout=30) as c:
        c.get("/login")
        if user is not None:
            r = c.post("/login", data={"csrf_token": c.cookies["riverbed_csrf"], "username": user, "password": USERS[user]})
            assert r.status_code == 303 and r.headers["location"] == "/", r.text[:300]
        yield c


def post(c: httpx.Client, path: str, **fields: str) -> httpx.Response:
    return c.post(path, data={"csrf_token": c.cookies["riverbed_csrf"], **fields})


def test_pages_need_a_login_and_a_wrong_password_is_refused(console: ConsoleService) -> None:
    with session(console) as c:
        for path in ("/", "/topics", "/groups", "/topics/orders/messages"):
            r = c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/login"
        assert post(c, "/topics/new", name="x", partitions="1", replication="-1").status_code == 401
        r = post(c, "/login", username="reader", password="wrong")
        assert r.status_code == 401 and "Login failed" in r.text
        r = post(c, "/login", username="nobody", password="x")
        assert r.status_code == 401
        assert c.get("/topics").status_code == 303


def test_read_only_principal_sees_only_what_its_acls_allow_and_changes_nothing(console: ConsoleService) -> None:
    with session(console, "reader") as c:
        page = wait_for(lambda: text if "orders" in (text := c.get("/topics").text) else None, "orders in the list")
        assert "payroll" not in page and 'id="who">reader (read-only)' in page and "Create topic" not in page
        assert c.get("/topics/payroll").status_code == 404
        assert c.get("/topics/payroll/messages").status_code == 404
        r = c.get("/topics/orders/messages", params={"mode": "earliest", "format": "json"})
        assert r.status_code == 200 and [x["value"] for x in r.json()["records"]] == ['{\n  "order": 1\n}']
        for path, fields in (("/topics/new", {"name": "evil", "partitions": "1", "replication": "-1"}), ("/topics/orders/produce", {"value": "x"}),
                             ("/topics/orders/delete", {"confirm": "orders"}), ("/topics/orders/alter", {"set": "retention.ms=1"}),
                             ("/groups/g/reset", {"strategy": "earliest"}), ("/schemas/orders-value", {"action": "register", "schema": '"string"'})):
            r = post(c, path, **fields)
            assert r.status_code == 403 and "read-only role" in r.text, (path, r.status_code)
        assert post(c, "/logout").status_code == 303
        assert c.get("/topics").status_code == 303


def test_admin_role_acts_as_its_principal(console: ConsoleService, broker: EmbeddedBroker) -> None:
    with session(console, "alice") as c:  # a super user
        page = wait_for(lambda: text if "payroll" in (text := c.get("/topics").text) else None, "payroll in the list")
        assert 'id="who">alice (admin)' in page
        r = post(c, "/topics/new", name="alice-topic", partitions="1", replication="-1", configs="")
        assert r.status_code == 303
    with session(console, "mallory") as c:  # admin in the console, but no ACL on the cluster
        r = post(c, "/topics/new", name="mallory-topic", partitions="1", replication="-1", configs="")
        assert r.status_code == 400 and "AUTHORIZATION_FAILED" in r.text
        assert c.get("/topics/orders").status_code == 404  # not even described
    md = AdminClient({"bootstrap.servers": broker.bootstrap_for("PLAINTEXT")}).list_topics(timeout=10)
    assert "alice-topic" in md.topics and "mallory-topic" not in md.topics


def test_the_consoles_own_requests_log_in_with_scram(console: ConsoleService) -> None:
    """Sizes and transactions come from requests the AdminClient lacks (riverbed.client.wire);
    over this SASL/SCRAM listener they log in as the person, with SCRAM too."""
    with session(console, "alice") as c:
        page = c.get("/transactions")
        assert page.status_code == 200 and "Not available" not in page.text, page.text[:500]
        overview = wait_for(lambda: text if "orders" in (text := c.get("/topics").text) else None, "orders in the list")
        assert "Sizes not available" not in overview
