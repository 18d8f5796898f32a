"""The console's administration against real brokers: ACL bindings and SCRAM users created and
deleted from the console in Debian's chromium (Playwright) as the logged-in principal, a user
created there logging in, the broker's refusals shown, the read-only role refused (no buttons,
403 on the requests), and share groups reset (dry run first) and deleted over HTTP."""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from confluent_kafka import AcknowledgeType, ShareConsumer
from confluent_kafka.admin import (
    AclBindingFilter,
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

from .share_helpers import create_topic, produce, set_group_configs

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs"
USERS = {"alice": "alice-secret", "reader": "reader-secret", "mallory": "mallory-secret"}
DEADLINE = 20.0


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    listeners = [
        ListenerConfig("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 0),
        ListenerConfig("SASL_PLAINTEXT", "SASL_PLAINTEXT", "127.0.0.1", 0),
    ]
    with EmbeddedBroker(
        listeners=listeners,
        authorizer_enabled=True,
        super_users=("User:ANONYMOUS", "User:alice"),
        **FIXTURE_DEFAULTS,
    ) as b:
        plain = b.bootstrap_for("PLAINTEXT")
        for user, password in USERS.items():
            assert riverbed_main(["user", "add", user, "--password", password, "-b", plain]) == 0
        admin = AdminClient({"bootstrap.servers": plain})
        for f in admin.create_topics([NewTopic("orders", 1, 1)]).values():
            f.result(10)
        yield b


@pytest.fixture(scope="module")
def console(broker: EmbeddedBroker) -> Iterator[ConsoleService]:
    settings = ClusterSettings(
        broker.bootstrap_for("SASL_PLAINTEXT"),
        {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256"},
    )
    config = ConsoleConfig(
        settings, refresh_s=0.5, login=True, admins=frozenset({"alice", "mallory"})
    )
    with ConsoleService(config) as svc:
        yield svc


def wait_for(check: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while not (value := check()):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@contextlib.contextmanager
def session(
    console: ConsoleService, user: str, password: str | None = None
) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.url, timeout=30) as c:
        c.get("/login")
        r = post(c, "/login", username=user, password=password or USERS[user])
        assert r.status_code == 303 and r.headers["location"] == "/", r.text[:300]
        yield c


def post(c: httpx.Client, path: str, **fields: str) -> httpx.Response:
    return c.post(path, data={"csrf_token": c.cookies["riverbed_csrf"], **fields})


def table(page: str, table_id: str) -> list[list[str]]:
    m = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert m, f"no table {table_id}"
    rows = re.findall(r"<tr>(.*?)</tr>", m.group(1), re.S)
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        ]
        for r in rows
    ]


def cluster_acls(broker: EmbeddedBroker, principal: str) -> list[Any]:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_for("PLAINTEXT")})
    flt: Any = AclBindingFilter
    found = admin.describe_acls(
        flt(
            ResourceType.ANY,
            None,
            ResourcePatternType.ANY,
            principal,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
    ).result(10)
    return list(found)


def scram_users(broker: EmbeddedBroker) -> set[str]:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_for("PLAINTEXT")})
    return set(admin.describe_user_scram_credentials().result(10))


ACL = {
    "resource_type": "TOPIC",
    "name": "orders",
    "pattern": "LITERAL",
    "principal": "User:eve",
    "host": "*",
    "operation": "READ",
    "permission": "ALLOW",
}


def test_read_only_role_sees_no_admin_forms_and_is_refused(
    console: ConsoleService, broker: EmbeddedBroker
) -> None:
    with session(console, "reader") as c:
        for path, form_id in (("/acls", "create-acl"), ("/users", "save-user")):
            page = c.get(path).text
            assert f'id="{form_id}"' not in page and "Delete…" not in page, path
        refused = [
            ("/acls", ACL),
            ("/acls/delete", {**ACL, "principal": ""}),
            ("/users", {"user": "eve", "password": "p", "password2": "p"}),
            ("/users/alice/delete", {"confirm": "alice"}),
            ("/share-groups/sg/reset", {"strategy": "earliest"}),
            ("/share-groups/sg/delete", {"confirm": "sg"}),
        ]
        for path, fields in refused:
            r = post(c, path, **fields)
            assert r.status_code == 403 and "read-only role" in r.text, (path, r.status_code)
        for path in (
            "/acls/delete?principal=User:eve",
            "/users/alice/delete",
            "/share-groups/sg/delete",
        ):
            r = c.get(path)  # the confirmation pages too
            assert r.status_code == 403 and "read-only role" in r.text, path
    assert cluster_acls(broker, "User:eve") == []
    assert "eve" not in scram_users(broker) and "alice" in scram_users(broker)


def test_bad_forms_csrf_and_the_brokers_refusals(
    console: ConsoleService, broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with session(console, "alice") as c:
        r = post(
            c,
            "/acls",
            **{
                **ACL,
                "operation": "WRITE",
                "resource_type": "GROUP",
                "principal": "eve",
                "host": "nowhere",
            },
        )
        assert r.status_code == 400
        text = html.unescape(r.text)
        assert "Operation WRITE does not apply to GROUP resources" in text
        assert (
            "Principal must be TYPE:NAME" in text
            and "Host must be * (any) or an IP address" in text
        )
        assert 'value="nowhere"' in r.text  # the form comes back as typed
        r = c.post("/acls", data=ACL)  # no CSRF token
        assert r.status_code == 403 and "CSRF" in r.text
        r = c.post("/acls/delete", data={**ACL})
        assert r.status_code == 403 and "CSRF" in r.text
        secret = "do-not-echo-9f3a"
        r = post(
            c,
            "/users",
            user="eve",
            mechanism="SCRAM-SHA-256",
            iterations="100",
            password=secret,
            password2=secret,
        )
        assert (
            r.status_code == 400
            and "Iterations must be a whole number from 4096 to 16384" in r.text
        )
        assert secret not in r.text and 'value="eve"' in r.text
        r = post(c, "/users", user="eve", password=secret, password2=secret + "x")
        assert (
            r.status_code == 400 and "The two passwords differ" in r.text and secret not in r.text
        )
        r = post(c, "/users/nobody/delete", confirm="nobody")
        assert r.status_code == 404 and "no such user: nobody" in r.text
        r = post(c, "/users/alice/delete", confirm="alic")  # a typo: nothing deleted
        assert r.status_code == 400 and "does not match" in r.text
        # hostile names come back escaped; the exact filter of that binding deletes it alone
        hostile = {**ACL, "name": '<img src=x onerror="alert(1)">', "principal": "User:<b>eve</b>"}
        assert post(c, "/acls", **hostile).status_code == 303
        page = c.get("/acls").text
        assert "<img src=x" not in page and "<b>eve" not in page
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
        confirm = c.get("/acls/delete", params=hostile)
        assert confirm.status_code == 200 and len(table(confirm.text, "acl-matches")) == 1
        r = post(c, "/acls/delete", **hostile)
        assert r.status_code == 303 and r.headers["location"] == "/acls?deleted=1"
        assert cluster_acls(broker, "User:<b>eve</b>") == []
    with session(console, "mallory") as c:  # admin in the console, but no ALTER on the cluster
        r = post(c, "/acls", **ACL)
        assert (
            r.status_code == 400
            and "The broker refused the ACL" in r.text
            and "CLUSTER_AUTHORIZATION_FAILED" in r.text
        )
        r = post(c, "/users", user="eve", password=secret, password2=secret)
        assert (
            r.status_code == 400
            and "CLUSTER_AUTHORIZATION_FAILED" in r.text
            and secret not in r.text
        )
        r = post(c, "/acls/delete", **{**ACL, "principal": "User:reader"})
        assert r.status_code == 400 and "CLUSTER_AUTHORIZATION_FAILED" in r.text
        assert "CLUSTER_AUTHORIZATION_FAILED" in c.get("/acls").text  # it cannot even describe them
        assert "CLUSTER_AUTHORIZATION_FAILED" in c.get("/users").text
        r = post(c, "/users/alice/delete", confirm="alice")
        assert r.status_code == 403 and "CLUSTER_AUTHORIZATION_FAILED" in r.text
        assert c.get("/acls/delete", params={"principal": "User:reader"}).status_code == 403
    assert cluster_acls(broker, "User:eve") == [] and "eve" not in scram_users(broker)
    assert "alice" in scram_users(broker)
    assert secret not in caplog.text


playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def page(console: ConsoleService) -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (scripts/setup dev installs it)")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=console.url)
        context.set_default_timeout(15_000)
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on(
            "console",
            lambda msg: (
                errors.append(msg.text) if msg.type == "error" and "401" not in msg.text else None
            ),
        )
        yield pg
        browser.close()
        assert errors == [], errors  # no script errors and no CSP violations


def shot(page: Any, name: str) -> None:
    if os.environ.get("RIVERBED_CONSOLE_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS / f"console-{name}.png"), full_page=True)


def login(page: Any, user: str, password: str) -> None:
    page.goto("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def logout(page: Any) -> None:
    page.click("#logout button")
    page.wait_for_url("**/login")


def test_acls_and_users_from_the_browser(page: Any, broker: EmbeddedBroker) -> None:
    expect = playwright_api.expect
    who = f"svc-{uuid.uuid4().hex[:6]}"
    login(page, "alice", USERS["alice"])
    expect(page.locator("#who")).to_have_text("alice (admin)")

    # create an ACL binding from the form and see it listed
    page.goto("/acls")
    form = page.locator("#create-acl")
    form.locator("select[name=resource_type]").select_option("TOPIC")
    form.locator("input[name=name]").fill("orders-")
    form.locator("select[name=pattern]").select_option("PREFIXED")
    form.locator("input[name=principal]").fill(f"User:{who}")
    form.locator("select[name=operation]").select_option("WRITE")
    form.locator("select[name=permission]").select_option("DENY")
    form.locator("button[type=submit]").click()
    expect(page.locator("#acl-done")).to_have_text("ACL binding created.")
    row = page.locator("#acls tbody tr", has_text=f"User:{who}")
    expect(row).to_have_count(1)
    expect(row.locator("td")).to_have_text(
        [f"User:{who}", "*", "TOPIC", "orders-", "PREFIXED", "WRITE", "DENY", "Delete…"]
    )
    shot(page, "acls")
    bindings = cluster_acls(broker, f"User:{who}")
    assert [
        (b.name, b.resource_pattern_type, b.operation, b.permission_type) for b in bindings
    ] == [("orders-", ResourcePatternType.PREFIXED, AclOperation.WRITE, AclPermissionType.DENY)]

    # delete it: the confirmation lists the matching binding, then it is gone
    row.locator("a", has_text="Delete…").click()
    expect(page.locator("h1")).to_have_text("Delete ACL bindings")
    expect(page.locator("#acl-matches tbody tr")).to_have_count(1)
    expect(page.locator("#acl-matches tbody tr td").nth(0)).to_have_text(f"User:{who}")
    assert cluster_acls(broker, f"User:{who}") != []  # nothing deleted before the confirmation
    page.click("#confirm-acl-delete button")
    expect(page.locator("#acl-done")).to_have_text("Deleted 1 ACL binding(s).")
    expect(page.locator("#acls tbody tr", has_text=f"User:{who}")).to_have_count(0)
    assert cluster_acls(broker, f"User:{who}") == []

    # create a SCRAM user, then log in as it (the read-only role)
    password = f"pw-{uuid.uuid4().hex}"
    page.goto("/users")
    form = page.locator("#save-user")
    form.locator("input[name=user]").fill(who)
    form.locator("select[name=mechanism]").select_option("SCRAM-SHA-256")
    form.locator("input[name=iterations]").fill("8192")
    form.locator("input[name=password]").fill(password)
    form.locator("input[name=password2]").fill(password)
    form.locator("button[type=submit]").click()
    expect(page.locator("#user-done")).to_have_text(f"Credential of {who} saved.")
    expect(page.locator("#users tbody tr", has_text=who).locator("td").nth(1)).to_have_text(
        "SCRAM-SHA-256 (8192 iterations)"
    )
    assert password not in page.content()
    logout(page)
    login(page, who, password)
    expect(page.locator("#who")).to_have_text(f"{who} (read-only)")
    page.goto("/users")
    expect(page.locator("#save-user")).to_have_count(0)
    logout(page)

    # delete it (type the name to confirm): its login is refused from then on
    login(page, "alice", USERS["alice"])
    expect(page.locator("#who")).to_have_text("alice (admin)")
    page.goto("/users")
    page.locator("#users tbody tr", has_text=who).locator("a", has_text="Delete…").click()
    page.fill("#confirm-form input[name=confirm]", who)
    page.click("#confirm-form button[type=submit]")
    expect(page.locator("#user-done")).to_have_text(f"User {who} deleted.")
    expect(page.locator("#users tbody tr", has_text=who)).to_have_count(0)
    assert who not in scram_users(broker)
    logout(page)
    login(page, who, password)
    expect(page.locator(".error")).to_contain_text("Login failed")


# -- share groups: reset and delete (a PLAINTEXT broker: the console's own client) -----------
@pytest.fixture(scope="module")
def plain() -> Iterator[tuple[EmbeddedBroker, httpx.Client]]:
    with EmbeddedBroker(**FIXTURE_DEFAULTS) as b:
        config = ConsoleConfig(ClusterSettings(b.bootstrap), refresh_s=0.5)
        with ConsoleService(config) as svc, httpx.Client(base_url=svc.url, timeout=30) as c:
            c.get("/")
            yield b, c


def test_share_group_reset_dry_run_execute_and_delete(
    plain: tuple[EmbeddedBroker, httpx.Client],
) -> None:
    broker, c = plain
    bs = broker.bootstrap
    topic, group = f"jobs-{uuid.uuid4().hex[:8]}", f"sg-{uuid.uuid4().hex[:6]}"
    create_topic(bs, topic, partitions=2)
    set_group_configs(bs, group, {"share.auto.offset.reset": "earliest"})
    produce(bs, topic, 10)
    detail = f"/share-groups/{quote(group, safe='')}"
    consumer = ShareConsumer(
        {
            "bootstrap.servers": bs,
            "group.id": group,
            "client.id": "worker-1",
            "share.acknowledgement.mode": "explicit",
        }
    )
    consumer.subscribe([topic])
    try:
        done = 0
        end = time.monotonic() + DEADLINE
        while done < 10 and time.monotonic() < end:
            batch = [m for m in consumer.poll(0.5) if not m.error()]
            for m in batch:
                consumer.acknowledge(m, AcknowledgeType.ACCEPT)
            if batch:
                consumer.commit_sync()
            done += len(batch)
        assert done == 10

        def starts() -> dict[int, str]:
            return {
                int(r[1]): r[2] for r in table(c.get(detail).text, "share-offsets") if r[0] == topic
            }

        ends = {
            int(r[1]): r[3] for r in table(c.get(detail).text, "share-offsets") if r[0] == topic
        }
        wait_for(lambda: (s := starts()) and s == ends, "every record acknowledged")
        # with a member: the dry run shows the plan but no Execute, and executing is refused
        r = post(c, f"{detail}/reset", topic=topic, strategy="earliest")
        assert r.status_code == 200 and 'id="reset-execute"' not in r.text
        assert "NON_EMPTY_GROUP" in r.text and "1 member(s)" in r.text
        r = post(c, f"{detail}/reset", topic=topic, strategy="earliest", execute="1")
        assert r.status_code == 200 and "stop its consumers" in r.text
        assert post(c, f"{detail}/delete", confirm=group).status_code == 400  # NON_EMPTY_GROUP
    finally:
        consumer.close()
    wait_for(lambda: "No active members." in c.get(detail).text, "the member gone")
    before = starts()

    # bad input: a strategy, an offset, a topic the group has nothing of
    for fields, reason in (
        ({"strategy": "sideways"}, "Choose earliest"),
        ({"strategy": "offset", "value": "-3"}, "whole number"),
        ({"strategy": "earliest", "topic": "other"}, "has no share-partitions of"),
    ):
        r = post(c, f"{detail}/reset", **fields)
        assert r.status_code == 400 and reason in r.text, fields

    # the dry run changes nothing; Execute applies exactly the plan shown
    r = post(c, f"{detail}/reset", topic=topic, strategy="offset", value="1")
    assert r.status_code == 200 and 'id="reset-execute"' in r.text
    plan = table(r.text, "reset-plan")
    assert {int(p[1]): (p[2], p[3]) for p in plan} == {
        p: (before[p], "1" if int(ends[p]) >= 1 else "0") for p in before
    }
    assert starts() == before
    r = post(c, f"{detail}/reset", topic=topic, strategy="offset", value="1", execute="1")
    assert r.status_code == 303 and r.headers["location"] == f"{detail}?reset=done"
    assert starts() == {p: "1" if int(ends[p]) >= 1 else "0" for p in before}
    assert 'id="reset-done"' in c.get(f"{detail}?reset=done").text
    r = post(c, f"{detail}/reset", strategy="earliest", execute="1")  # all the group's topics
    assert r.status_code == 303 and starts() == dict.fromkeys(before, "0")

    # delete: the confirmation first (a wrong id deletes nothing), then it is gone
    page = c.get(f"{detail}/delete")
    assert page.status_code == 200 and f"Type <code>{group}</code> to confirm" in page.text
    assert post(c, f"{detail}/delete", confirm="nope").status_code == 400
    assert c.get(detail).status_code == 200
    r = post(c, f"{detail}/delete", confirm=group)
    assert r.status_code == 303
    assert c.get(detail).status_code == 404
    assert group not in c.get("/share-groups").text
    r = post(c, f"{detail}/delete", confirm=group)
    assert r.status_code == 404 and "GROUP_ID_NOT_FOUND" in r.text
