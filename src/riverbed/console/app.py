"""The console's pages: server-rendered HTML (Jinja2, autoescaped) on riverbed.web's Starlette
stack, a little vanilla JS for the live tail. See docs/console.md and docs/adr/0013-console-stack.md."""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from riverbed.client import ClusterSettings, producer
from riverbed.protocol.errors import ErrorCode
from riverbed.web import HttpMetrics

from . import browse, wire
from .admin import AdminPages, share_topics
from .cluster import REQUEST_TIMEOUT_S, ClusterView, committed_offsets, describe_error, watermarks
from .decode import SchemaRegistry
from .security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    FormError,
    SecurityHeaders,
    csrf_token,
    read_form,
)

log = logging.getLogger("riverbed.console")

HERE = Path(__file__).parent
TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
GROUP_NAME = re.compile(r"^[^\x00-\x1f]{1,255}$")
MAX_PARTITIONS = 10_000
MAX_TAILS = 8


@dataclass
class ConsoleConfig:
    cluster: ClusterSettings
    refresh_s: float = 5.0
    max_value_bytes: int = 64 * 1024  # larger values are truncated, with a download link
    read_only: bool = False
    request_timeout_s: float = REQUEST_TIMEOUT_S  # of each request to the cluster
    # login against the cluster's SASL users (docs/console.md, Authentication): each person's
    # requests go to the cluster as that principal; `admins` may change things, others read
    login: bool = False
    admins: frozenset[str] = frozenset()
    session_idle_s: float = 8 * 3600
    stale_after: float = 3.0  # a service is stale after this many of its heartbeat intervals without one


@dataclass
class Session:
    user: str
    role: str  # "admin" or "read-only"
    settings: ClusterSettings
    view: ClusterView
    last_seen: float = field(default_factory=time.monotonic)


_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar("riverbed_console_session", default=None)
PUBLIC = ("/login", "/health")


class NotFound(Exception):
    pass


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)  # pragma: no cover


def _fmt_ms(value: str | None) -> str:
    if value is None:
        return "-"
    try:
        ms = int(value)
    except ValueError:
        return value
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


SERVICE_KINDS = (("connect", "Connectors"), ("streams", "Streams apps"), ("sql", "SQL queries"))


def _figures(figures: dict[str, Any], limit: int = 12) -> list[tuple[str, str]]:
    """A status record's figures as short (name, text) pairs (nested ones flattened, long text cut)."""
    out: list[tuple[str, str]] = []
    for name, value in figures.items():
        if len(out) >= limit:
            out.append(("…", f"{len(figures) - limit} more"))
            break
        if isinstance(value, dict):
            text = ", ".join(f"{k}: {v}" for k, v in list(value.items())[:5]) + (" …" if len(value) > 5 else "")
        elif value is None:
            text = "-"
        else:
            text = str(value)
        out.append((str(name)[:60], text if len(text) <= 120 else text[:119] + "…"))
    return out


def _fmt_age(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _sparkline(points: list[tuple[float, int]], width: int = 240, height: int = 40) -> str:
    """An SVG polyline's points attribute for lag over time."""
    if len(points) < 2:
        return ""
    t0, t1 = points[0][0], points[-1][0]
    top = max(v for _, v in points) or 1
    span = (t1 - t0) or 1
    return " ".join(f"{(t - t0) / span * width:.1f},{height - v / top * (height - 2) - 1:.1f}" for t, v in points)


def _kafka_error(exc: BaseException) -> str:
    return describe_error(exc)


class Console:
    def __init__(self, config: ConsoleConfig, view: ClusterView | None = None) -> None:
        self.config = config
        if config.login and not str(config.cluster.client.get("security.protocol", "")).upper().startswith("SASL"):
            raise ValueError("login needs a SASL listener: set security.protocol=SASL_PLAINTEXT or SASL_SSL and sasl.mechanism in the client settings")
        self._view = view or ClusterView(config.cluster, config.refresh_s, config.request_timeout_s)
        self.sessions: dict[str, Session] = {}
        self._sessions_lock = threading.Lock()
        self.registry = SchemaRegistry(config.cluster.registry_url)
        self.tails = 0
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True), auto_reload=False)
        self.env.filters.update(bytes=_fmt_bytes, ms=_fmt_ms, time=_fmt_time, age=_fmt_age, q=lambda s: quote(str(s), safe=""))
        self.env.globals.update(urlencode=urlencode)
        self._producer: Any = None

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def view(self) -> ClusterView:
        """The cluster as the logged-in person sees it (with login), else the console's view."""
        sess = _session.get()
        return self._view if sess is None else sess.view

    @property
    def settings(self) -> ClusterSettings:
        sess = _session.get()
        return self.config.cluster if sess is None else sess.settings

    def start(self) -> None:
        if not self.config.login:
            self._view.start()

    def stop(self) -> None:
        self._view.stop()
        with self._sessions_lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for sess in sessions:
            sess.view.stop()
        if self._producer is not None:
            self._producer.flush(5)
        self.registry.close()

    def producer(self) -> Any:
        sess = _session.get()
        if sess is not None:  # as the logged-in principal
            return producer(sess.settings, **{"linger.ms": 0, "message.timeout.ms": 10_000, "enable.idempotence": False})
        if self._producer is None:
            self._producer = producer(self.settings, **{"linger.ms": 0, "message.timeout.ms": 10_000})
        return self._producer

    def read_only_for(self, sess: Session | None) -> bool:
        return self.config.read_only or (sess is not None and sess.role != "admin")

    def render(self, request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        token, new = csrf_token(request)
        snap = self.view.snapshot
        html = self.env.get_template(template).render(
            request=request, snap=snap, csrf_field=CSRF_FIELD, csrf=token, bootstrap=self.settings.bootstrap,
            registry_url=self.settings.registry_url, refresh_s=self.view.refresh_s, read_only=self.read_only_for(_session.get()),
            user=_session.get(), login=self.config.login,
            now=time.time(), **ctx,
        )
        resp = HTMLResponse(html, status)
        if new:
            resp.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
        return resp

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        log.info("%s %s -> %d %s", request.method, request.url.path, status, message)
        return self.render(request, "error.html", status, message=message)

    def topic_name(self, request: Request) -> str:
        name = str(request.path_params["name"])
        if not TOPIC_NAME.match(name) or name in (".", ".."):
            raise NotFound(f"no such topic: {name!r} is not a valid topic name")
        return name

    def guard_write(self) -> None:
        if self.config.read_only:
            raise FormError(403, "the console is read-only (--read-only)")
        sess = _session.get()
        if sess is not None and sess.role != "admin":
            raise FormError(403, f"{sess.user} has the read-only role: changes need the admin role")

    # -- login -----------------------------------------------------------------------------
    def _current(self, request: Request) -> Session | None:
        sid = request.cookies.get(SESSION_COOKIE, "")
        now = time.monotonic()
        expired: list[Session] = []
        with self._sessions_lock:
            for key, old in list(self.sessions.items()):
                if now - old.last_seen > self.config.session_idle_s:
                    expired.append(self.sessions.pop(key))
            sess = self.sessions.get(sid) if sid else None
            if sess is not None:
                sess.last_seen = now
        for old in expired:
            threading.Thread(target=old.view.stop, daemon=True).start()
        return sess

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", error=None, username="")

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        user, password = form.get("username", "").strip(), form.get("password", "")
        if not user or not password or len(user) > 256 or len(password) > 1024:
            return self.render(request, "login.html", 400, error="User name and password are required.", username=user[:256])
        base = self.config.cluster
        settings = replace(base, client={**base.client, "sasl.username": user, "sasl.password": password})

        def verify() -> None:  # the cluster checks the password: connect as that user
            refused: list[Any] = []
            conf = settings.client_config(**{"socket.timeout.ms": 5000, "reconnect.backoff.max.ms": 2000})
            conf["error_cb"] = refused.append  # (client_config would spell it error.cb)
            client = AdminClient(conf)
            deadline = time.monotonic() + self.config.request_timeout_s
            while True:
                try:
                    client.list_topics(timeout=0.25)
                    return
                except KafkaException:
                    client.poll(0)  # serves error_cb: an authentication failure ends the wait
                    auth = [e for e in refused if e.code() == KafkaError._AUTHENTICATION]
                    if auth:
                        raise KafkaException(auth[0]) from None
                    if time.monotonic() > deadline:
                        raise

        try:
            await run_in_threadpool(verify)
        except (KafkaException, TimeoutError) as exc:
            refused = isinstance(exc, KafkaException) and bool(exc.args) and getattr(exc.args[0], "code", lambda: None)() == KafkaError._AUTHENTICATION
            log.warning("console: login of %r %s: %s", user, "refused" if refused else "failed", _kafka_error(exc))
            if refused:
                return self.render(request, "login.html", 401, error="Login failed: the cluster refused these credentials.", username=user)
            return self.render(request, "login.html", 503, error=f"Cannot log in: the cluster at {base.bootstrap} did not answer ({_kafka_error(exc)}).", username=user)
        role = "admin" if user in self.config.admins else "read-only"
        view = ClusterView(settings, self.config.refresh_s, self.config.request_timeout_s)
        await run_in_threadpool(view.start)
        sid = secrets.token_urlsafe(32)
        with self._sessions_lock:
            self.sessions[sid] = Session(user, role, settings, view)
        log.info("console: %s logged in (%s)", user, role)
        resp = RedirectResponse("/", 303)
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", path="/", max_age=int(self.config.session_idle_s))
        return resp

    async def logout(self, request: Request) -> Response:
        await read_form(request)
        sid = request.cookies.get(SESSION_COOKIE, "")
        with self._sessions_lock:
            sess = self.sessions.pop(sid, None)
        if sess is not None:
            await run_in_threadpool(sess.view.stop)
            log.info("console: %s logged out", sess.user)
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- overview and topics -----------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        snap = self.view.snapshot
        topics = [t for t in snap.topics.values() if not t.internal]
        sizes = [t.size for t in topics]
        return self.render(request, "overview.html", topics=topics, partitions=sum(len(t.partitions) for t in topics),
                           total_size=None if any(s is None for s in sizes) else sum(s or 0 for s in sizes),
                           records=sum(t.records for t in topics), lagging=sum(1 for g in snap.groups.values() if g.lag > 0))

    async def topics(self, request: Request) -> Response:
        snap = self.view.snapshot
        needle = request.query_params.get("q", "")
        internal = request.query_params.get("internal") == "1"
        rows = [t for name, t in sorted(snap.topics.items()) if (internal or not t.internal) and needle.lower() in name.lower()]
        return self.render(request, "topics.html", rows=rows, needle=needle, internal=internal)

    async def topic_new(self, request: Request) -> Response:
        return self.render(request, "topic_new.html", form={"partitions": "1", "replication": "-1", "configs": ""}, errors=[])

    async def topic_create(self, request: Request) -> Response:
        self.guard_write()
        form = await read_form(request)
        errors: list[str] = []
        name = form.get("name", "").strip()
        if not TOPIC_NAME.match(name) or name in (".", ".."):
            errors.append("Topic names are 1-249 characters of letters, digits, '.', '_' and '-' (not '.' or '..').")
        partitions = _form_int(form, "partitions", 1, MAX_PARTITIONS, errors)
        replication = _form_int(form, "replication", -1, 1000, errors)
        if replication == 0:
            errors.append("Replication factor must be -1 (the broker's default) or at least 1.")
        configs = _parse_configs(form.get("configs", ""), errors)
        if errors:
            return self.render(request, "topic_new.html", 400, form=form, errors=errors)

        def create() -> None:
            futs = self.view.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication, config=configs)], request_timeout=self.view.timeout)
            for fut in futs.values():
                fut.result(self.view.timeout * 2)

        try:
            await run_in_threadpool(create)
        except (KafkaException, TimeoutError) as exc:
            return self.render(request, "topic_new.html", 400, form=form, errors=[f"The broker refused: {_kafka_error(exc)}"])
        log.info("console: created topic %s (%d partitions)", name, partitions)
        await run_in_threadpool(self.view.refresh_soon, self.view.timeout)
        return RedirectResponse(f"/topics/{quote(name, safe='')}", 303)

    async def topic(self, request: Request) -> Response:
        name = self.topic_name(request)

        def read() -> tuple[Any, dict[str, Any], dict[tuple[str, int], tuple[int, int]]]:
            md = self.view.admin.list_topics(timeout=self.view.timeout)  # never by name: that auto-creates it
            t = md.topics.get(name)
            if t is None or t.error is not None:
                raise NotFound(f"no such topic: {name}")
            futs = self.view.admin.describe_configs([ConfigResource(ResourceType.TOPIC, name)], request_timeout=self.view.timeout)
            configs = next(iter(futs.values())).result(self.view.timeout)
            return t, configs, watermarks(self.view.admin, [(name, p) for p in t.partitions], self.view.timeout)

        try:
            t, configs, marks = await run_in_threadpool(read)
        except (KafkaException, TimeoutError) as exc:
            return self.error(request, 503, f"Cannot read topic {name}: {_kafka_error(exc)}")
        info = self.view.snapshot.topics.get(name)
        sizes = {p.partition: p.size for p in info.partitions} if info else {}
        parts = [{"id": p.id, "leader": p.leader, "replicas": p.replicas, "isr": p.isrs, "low": marks[(name, p.id)][0], "high": marks[(name, p.id)][1], "size": sizes.get(p.id)} for p in sorted(t.partitions.values(), key=lambda p: p.id)]
        entries = sorted(configs.values(), key=lambda e: e.name)
        overrides = [e for e in entries if not e.is_default]
        return self.render(request, "topic.html", name=name, parts=parts, entries=entries, overrides=overrides, groups=info.group_lag if info else {}, errors=[])

    async def topic_alter(self, request: Request) -> Response:
        self.guard_write()
        name = self.topic_name(request)
        form = await read_form(request)
        errors: list[str] = []
        sets = _parse_configs(form.get("set", ""), errors)
        deletes = [k.strip() for k in form.get("delete", "").replace(",", " ").split() if k.strip()]
        partitions = _form_int(form, "partitions", 1, MAX_PARTITIONS, errors) if form.get("partitions", "").strip() else None
        if errors:
            return self.error(request, 400, " ".join(errors))

        def alter() -> None:
            if sets or deletes:
                entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sets.items()]
                entries += [ConfigEntry(k, None, incremental_operation=AlterConfigOpType.DELETE) for k in deletes]
                res = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
                for fut in self.view.admin.incremental_alter_configs([res], request_timeout=self.view.timeout).values():
                    fut.result(self.view.timeout * 2)
            if partitions is not None:
                for fut in self.view.admin.create_partitions([NewPartitions(name, partitions)], request_timeout=self.view.timeout).values():
                    fut.result(self.view.timeout * 2)

        try:
            await run_in_threadpool(alter)
        except (KafkaException, TimeoutError) as exc:
            return self.error(request, 400, f"The broker refused the change to {name}: {_kafka_error(exc)}")
        log.info("console: altered topic %s (set %s, deleted %s, partitions %s)", name, sorted(sets), deletes, partitions)
        await run_in_threadpool(self.view.refresh_soon, self.view.timeout)
        return RedirectResponse(f"/topics/{quote(name, safe='')}", 303)

    async def topic_delete_confirm(self, request: Request) -> Response:
        name = self.topic_name(request)
        return self.render(request, "confirm.html", title=f"Delete topic {name}", action=f"/topics/{quote(name, safe='')}/delete",
                           message=f"Deleting topic {name} removes all of its records. Type the topic's name to confirm.", expect=name, fields={})

    async def topic_delete(self, request: Request) -> Response:
        self.guard_write()
        name = self.topic_name(request)
        form = await read_form(request)
        if form.get("confirm") != name:
            return self.render(request, "confirm.html", 400, title=f"Delete topic {name}", action=f"/topics/{quote(name, safe='')}/delete",
                               message="The name typed does not match: nothing was deleted.", expect=name, fields={})

        def delete() -> None:
            for fut in self.view.admin.delete_topics([name], request_timeout=self.view.timeout).values():
                fut.result(self.view.timeout * 2)

        try:
            await run_in_threadpool(delete)
        except (KafkaException, TimeoutError) as exc:
            return self.error(request, 400, f"The broker refused to delete {name}: {_kafka_error(exc)}")
        log.info("console: deleted topic %s", name)
        await run_in_threadpool(self.view.refresh_soon, self.view.timeout)
        return RedirectResponse("/topics", 303)

    # -- messages ----------------------------------------------------------------------------
    async def _partitions(self, name: str) -> list[int]:
        def read() -> list[int]:
            md = self.view.admin.list_topics(timeout=self.view.timeout)  # never by name: that auto-creates it
            t = md.topics.get(name)
            if t is None or t.error is not None:
                raise NotFound(f"no such topic: {name}")
            return sorted(t.partitions)

        return await run_in_threadpool(read)

    async def messages(self, request: Request) -> Response:
        name = self.topic_name(request)
        params = dict(request.query_params)
        try:
            q = browse.Query.parse(params)
        except browse.BadQuery as exc:
            return self.render(request, "messages.html", 400, name=name, q=browse.Query(), params=params, page=None, error=str(exc), partitions=[])
        try:
            partitions = await self._partitions(name)
            page = await run_in_threadpool(browse.browse, self.settings, self.registry, name, partitions, q, self.config.max_value_bytes)
        except (KafkaException, TimeoutError) as exc:
            return self.error(request, 503, f"Cannot read topic {name}: {_kafka_error(exc)}")
        if params.get("format") == "json":
            return JSONResponse({"records": [r.as_json() for r in page.records], "scanned": page.scanned})
        return self.render(request, "messages.html", name=name, q=q, params=params, page=page, error=None, partitions=partitions)

    async def download(self, request: Request) -> Response:
        name = self.topic_name(request)
        try:
            partition, offset = int(request.path_params["partition"]), int(request.path_params["offset"])
        except ValueError:
            raise NotFound("no such record") from None
        part = request.query_params.get("part", "value")
        try:
            msg = await run_in_threadpool(browse.read_one, self.settings, name, partition, offset)
        except (KafkaException, TimeoutError) as exc:
            return self.error(request, 503, f"Cannot read {name}/{partition}@{offset}: {_kafka_error(exc)}")
        if msg is None:
            raise NotFound(f"no record at offset {offset} of {name}/{partition}")
        data = (msg.key() if part == "key" else msg.value()) or b""
        filename = f"{name}-{partition}-{offset}.{'key' if part == 'key' else 'value'}.bin"
        return Response(data, media_type="application/octet-stream", headers={"content-disposition": f'attachment; filename="{filename}"'})

    async def produce_form(self, request: Request) -> Response:
        name = self.topic_name(request)
        return self.render(request, "produce.html", name=name, form={}, errors=[], done=None)

    async def produce(self, request: Request) -> Response:
        self.guard_write()
        name = self.topic_name(request)
        form = await read_form(request)
        errors: list[str] = []
        partition = _form_int(form, "partition", 0, 1 << 31, errors) if form.get("partition", "").strip() else None
        headers: list[tuple[str, bytes]] = []
        for line in form.get("headers", "").splitlines():
            if not line.strip():
                continue
            hname, sep, hvalue = line.partition(":")
            if not sep or not hname.strip():
                errors.append(f"Header lines are NAME: VALUE, got {line!r}.")
                continue
            headers.append((hname.strip(), hvalue.strip().encode()))
        if errors:
            return self.render(request, "produce.html", 400, name=name, form=form, errors=errors, done=None)
        key = form.get("key", "")
        value = form.get("value", "")
        done: dict[str, Any] = {}

        def send() -> None:
            p = self.producer()

            def report(err: Any, msg: Any) -> None:
                done["error"] = err
                done["partition"], done["offset"] = (msg.partition(), msg.offset()) if err is None else (None, None)

            kwargs: dict[str, Any] = {"key": key.encode() if key else None, "value": value.encode(), "headers": headers, "on_delivery": report}
            if partition is not None:
                kwargs["partition"] = partition
            p.produce(name, **kwargs)
            p.flush(self.view.timeout * 2)

        try:
            await run_in_threadpool(send)
        except (KafkaException, BufferError, TimeoutError) as exc:
            return self.render(request, "produce.html", 400, name=name, form=form, errors=[f"Not produced: {_kafka_error(exc)}"], done=None)
        if done.get("error") is not None or "offset" not in done:
            return self.render(request, "produce.html", 400, name=name, form=form, errors=[f"Not produced: {done.get('error') or 'no delivery report in time'}"], done=None)
        log.info("console: produced to %s/%s@%s", name, done["partition"], done["offset"])
        return self.render(request, "produce.html", name=name, form={}, errors=[], done=done)

    async def tail_page(self, request: Request) -> Response:
        name = self.topic_name(request)
        return self.render(request, "tail.html", name=name)

    async def tail_stream(self, request: Request) -> Response:
        name = self.topic_name(request)
        if self.tails >= MAX_TAILS:
            return JSONResponse({"error_code": 429, "message": f"at most {MAX_TAILS} live tails at once"}, 429)
        try:
            partitions = await self._partitions(name)
        except (KafkaException, TimeoutError) as exc:
            return JSONResponse({"error_code": 503, "message": _kafka_error(exc)}, 503)
        settings, registry, max_bytes = self.settings, self.registry, self.config.max_value_bytes
        self.tails += 1

        async def events() -> AsyncIterator[str]:
            c = browse.reader(settings)
            try:

                def assign_at_end() -> None:  # the end offsets now, so that nothing produced after "ready" is missed
                    ends = [c.get_watermark_offsets(TopicPartition(name, p), self.view.timeout)[1] for p in partitions]
                    c.assign([TopicPartition(name, p, end) for p, end in zip(partitions, ends, strict=True)])

                await run_in_threadpool(assign_at_end)
                yield "event: ready\ndata: {}\n\n"
                idle = 0
                while not await request.is_disconnected():
                    msgs = await run_in_threadpool(c.consume, 100, 0.5)
                    for msg in msgs:
                        if msg.error() is None:
                            rec = browse.to_record(msg, registry, max_bytes)
                            yield f"data: {json.dumps(rec.as_json())}\n\n"
                    idle = 0 if msgs else idle + 1
                    if idle >= 30:  # a comment keeps proxies from closing an idle stream
                        idle = 0
                        yield ": keep-alive\n\n"
            finally:
                self.tails -= 1
                await run_in_threadpool(c.close)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    # -- consumer groups ---------------------------------------------------------------------
    async def groups(self, request: Request) -> Response:
        snap = self.view.snapshot
        needle = request.query_params.get("q", "")
        rows = [g for gid, g in sorted(snap.groups.items()) if needle.lower() in gid.lower()]
        return self.render(request, "groups.html", rows=rows, needle=needle)

    def _group_id(self, request: Request) -> str:
        gid = str(request.path_params["group"])
        if not GROUP_NAME.match(gid):
            raise NotFound("no such group")
        return gid

    def _read_group(self, gid: str) -> dict[str, Any]:
        admin = self.view.admin
        desc = next(iter(admin.describe_consumer_groups([gid], request_timeout=self.view.timeout).values())).result(self.view.timeout)
        offsets = committed_offsets(admin, [gid], self.view.timeout).get(gid, {})
        assigned: dict[tuple[str, int], str] = {}
        members = []
        for m in desc.members:
            tps = sorted((tp.topic, tp.partition) for tp in (m.assignment.topic_partitions if m.assignment else []))
            for tp in tps:
                assigned[tp] = m.client_id or m.member_id
            members.append({"member_id": m.member_id, "client_id": m.client_id, "host": m.host, "instance": m.group_instance_id, "assignment": tps})
        keys = sorted(set(offsets) | set(assigned))
        marks = watermarks(admin, keys, self.view.timeout)
        rows = []
        for tp in keys:
            low, high = marks.get(tp, (-1, -1))
            committed = offsets.get(tp)
            lag = max(0, high - committed) if committed is not None and high >= 0 else None
            rows.append({"topic": tp[0], "partition": tp[1], "committed": committed, "low": low, "high": high, "lag": lag, "owner": assigned.get(tp)})
        state = getattr(desc.state, "name", str(desc.state)).title().replace("_", "")
        return {"state": state, "assignor": desc.partition_assignor, "coordinator": desc.coordinator, "members": members, "rows": rows,
                "topics": sorted({r["topic"] for r in rows}), "simple": desc.is_simple_consumer_group}

    async def group(self, request: Request) -> Response:
        gid = self._group_id(request)
        try:
            info = await run_in_threadpool(self._read_group, gid)
        except (KafkaException, TimeoutError) as exc:
            return self.error(request, 503, f"Cannot describe group {gid}: {_kafka_error(exc)}")
        if info["state"] == "Dead" and not info["rows"]:
            return self.error(request, 404, f"no such group: {gid}")
        history = list(self.view.history.get(gid, ()))
        total = sum(r["lag"] or 0 for r in info["rows"])
        self.view.watch(gid)
        series = self.view.partition_history.get(gid, {})
        for r in info["rows"]:
            points = list(series.get((r["topic"], r["partition"]), ()))
            r["spark"] = _sparkline(points, 120, 18)
        return self.render(request, "group.html", gid=gid, info=info, total=total, history=history, spark=_sparkline(history), plan=None, form={}, errors=[])

    async def group_reset(self, request: Request) -> Response:
        """Dry run first: the plan (current -> new offset per partition) with an Execute button
        that posts the same choice with execute=1."""
        self.guard_write()
        gid = self._group_id(request)
        form = await read_form(request)
        errors: list[str] = []
        strategy = form.get("strategy", "")
        if strategy not in ("earliest", "latest", "offset", "datetime"):
            errors.append("Choose earliest, latest, offset or datetime.")
        target = 0
        if strategy == "offset":
            target = _form_int(form, "value", 0, 1 << 62, errors)
        elif strategy == "datetime":
            try:
                target = browse.Query(time=form.get("value", "")).timestamp_ms()
            except browse.BadQuery as exc:
                errors.append(str(exc))
        try:
            info = await run_in_threadpool(self._read_group, gid)
        except (KafkaException, TimeoutError) as exc:
            return self.error(request, 503, f"Cannot describe group {gid}: {_kafka_error(exc)}")
        topic = form.get("topic", "")
        if topic and topic not in info["topics"]:
            errors.append(f"The group has no offsets for topic {topic!r}.")
        rows = [r for r in info["rows"] if not topic or r["topic"] == topic]
        if not rows and not errors:
            errors.append("The group has no committed offsets to reset.")
        history = list(self.view.history.get(gid, ()))
        total = sum(r["lag"] or 0 for r in info["rows"])
        if errors:
            return self.render(request, "group.html", 400, gid=gid, info=info, total=total, history=history, spark=_sparkline(history), plan=None, form=form, errors=errors)

        def plan() -> list[dict[str, Any]]:
            tps = [(r["topic"], r["partition"]) for r in rows]
            if strategy == "datetime":
                futs = self.view.admin.list_offsets({TopicPartition(t, p): OffsetSpec.for_timestamp(target) for t, p in tps}, request_timeout=self.view.timeout)
                found = {(tp.topic, tp.partition): fut.result(self.view.timeout).offset for tp, fut in futs.items()}
            out = []
            for r in rows:
                if strategy == "earliest":
                    new = r["low"]
                elif strategy == "latest":
                    new = r["high"]
                elif strategy == "offset":
                    new = min(max(target, r["low"]), r["high"])
                else:
                    new = found.get((r["topic"], r["partition"]), -1)
                    if new < 0:
                        new = r["high"]
                out.append({**r, "new": new})
            return out

        try:
            steps = await run_in_threadpool(plan)
        except (KafkaException, TimeoutError) as exc:
            return self.error(request, 503, f"Cannot plan the reset: {_kafka_error(exc)}")
        active = info["state"] not in ("Empty", "Dead")
        if form.get("execute") == "1" and not active:
            def apply() -> None:
                req = ConsumerGroupTopicPartitions(gid, [TopicPartition(s["topic"], s["partition"], s["new"]) for s in steps])
                for fut in self.view.admin.alter_consumer_group_offsets([req], request_timeout=self.view.timeout).values():
                    fut.result(self.view.timeout * 2)

            try:
                await run_in_threadpool(apply)
            except (KafkaException, TimeoutError) as exc:
                return self.error(request, 400, f"The broker refused the reset of {gid}: {_kafka_error(exc)}")
            log.info("console: reset offsets of group %s (%s, %d partitions)", gid, strategy, len(steps))
            await run_in_threadpool(self.view.refresh_soon, self.view.timeout)
            return RedirectResponse(f"/groups/{quote(gid, safe='')}?reset=done", 303)
        if active:
            errors.append(f"The group is {info['state']} with {len(info['members'])} member(s): stop its consumers before resetting (Kafka refuses offset changes of an active group).")
        return self.render(request, "group.html", gid=gid, info=info, total=total, history=history, spark=_sparkline(history), plan=steps, form=form, errors=errors, can_execute=not active)

    # -- share groups (KIP-932); reset and delete: admin.py ----------------------------------
    def _brokers(self) -> list[str]:
        snap = self.view.snapshot
        return [self.settings.bootstrap.split(",")[0].strip(), *(f"{host}:{port}" for _, host, port in snap.brokers)]

    def _read_share_groups(self) -> list[dict[str, Any]]:
        sec, timeout = self.settings.client, self.view.timeout
        listed = wire.list_share_groups(self._brokers(), sec, timeout)
        views = wire.describe_share_groups(self.settings.bootstrap, [gid for gid, _ in listed], sec, timeout)
        keys = {(o.topic, o.partition) for v in views.values() if isinstance(v.offsets, list) for o in v.offsets}
        ends = {tp: high for tp, (_, high) in watermarks(self.view.admin, sorted(keys), timeout).items()}
        rows = []
        for gid, state in listed:
            view = views.get(gid)
            topics: set[str] = set()
            members = 0
            lag: int | None = None
            error: str | None = None
            if view is not None:
                if isinstance(view.group, wire.ShareGroup):
                    state, members = view.group.state, len(view.group.members)
                    topics.update(t for m in view.group.members for t in m.subscribed)
                else:
                    error = str(view.group)
                if isinstance(view.offsets, list):
                    topics.update(o.topic for o in view.offsets)
                    lags = [x for x in (_share_lag(o.start_offset, ends.get((o.topic, o.partition), -1)) for o in view.offsets) if x is not None]
                    lag = sum(lags) if lags else None
            rows.append({"group_id": gid, "state": state, "members": members, "topics": sorted(topics), "lag": lag, "error": error})
        return rows

    async def share_groups(self, request: Request) -> Response:
        needle = request.query_params.get("q", "")
        try:
            rows, error, status = await run_in_threadpool(self._read_share_groups), None, 200
        except wire.SharesUnavailable as exc:
            rows, error, status = [], str(exc), 200
        except (wire.WireError, OSError, KafkaException, TimeoutError) as exc:
            rows, error, status = [], _share_error(exc), 503
        if error:
            log.info("console: share groups not available: %s", error)
        rows = [r for r in rows if needle.lower() in r["group_id"].lower()]
        return self.render(request, "share_groups.html", status, rows=rows, needle=needle, error=error)

    def _read_share_group(self, gid: str) -> dict[str, Any]:
        sec, timeout = self.settings.client, self.view.timeout
        view = wire.describe_share_groups(self.settings.bootstrap, [gid], sec, timeout).get(gid)
        if view is None:
            raise wire.GroupError(gid, ErrorCode.GROUP_ID_NOT_FOUND, "the coordinator did not answer for it")
        desc, offs = view.group, view.offsets
        if isinstance(desc, wire.GroupError):
            raise desc
        if isinstance(offs, wire.GroupError):
            raise offs
        owners: dict[tuple[str, int], list[str]] = {}
        for m in desc.members:
            for tp in m.assignment:
                owners.setdefault(tp, []).append(m.client_id or m.member_id)
        by_tp = {(o.topic, o.partition): o for o in offs}
        keys = sorted(set(by_tp) | set(owners))
        marks = watermarks(self.view.admin, keys, timeout)
        rows: list[dict[str, Any]] = []
        for tp in keys:
            o = by_tp.get(tp)
            start = o.start_offset if o is not None else -1
            end = marks.get(tp, (-1, -1))[1]
            rows.append({"topic": tp[0], "partition": tp[1], "start": start if start >= 0 else None, "end": end if end >= 0 else None,
                         "lag": _share_lag(start, end), "broker_lag": o.lag if o is not None and o.lag >= 0 else None,
                         "error": o.error if o is not None else None, "owners": owners.get(tp, [])})
        total = sum(r["lag"] for r in rows if r["lag"] is not None)
        return {"group": desc, "rows": rows, "total": total}

    async def share_group(self, request: Request) -> Response:
        gid = self._group_id(request)
        try:
            info = await run_in_threadpool(self._read_share_group, gid)
        except wire.SharesUnavailable as exc:
            log.info("console: share groups not available: %s", exc)
            return self.render(request, "share_group.html", gid=gid, info=None, error=str(exc))
        except wire.GroupError as exc:
            if exc.code == ErrorCode.GROUP_ID_NOT_FOUND:
                return self.error(request, 404, f"no such share group: {gid} ({exc})")
            return self.error(request, 403 if "AUTHORIZATION" in str(exc) else 503, f"Cannot describe share group {gid}: {exc}")
        except (wire.WireError, OSError, KafkaException, TimeoutError) as exc:
            return self.error(request, 503, f"Cannot describe share group {gid}: {_share_error(exc)}")
        return self.render(request, "share_group.html", gid=gid, info=info, error=None, plan=None, form={}, errors=[], topics=share_topics(info))

    # -- schemas -----------------------------------------------------------------------------
    async def _registry(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if self.registry.url is None:
            raise FormError(404, "no schema registry configured (riverbed console --registry-url URL)")
        return await run_in_threadpool(lambda: self.registry.http.request(method, path, **kw))

    async def schemas(self, request: Request) -> Response:
        wanted = request.query_params.get("subject", "").strip()
        if wanted:
            return RedirectResponse(f"/schemas/{quote(wanted, safe='')}", 303)
        if self.registry.url is None:
            return self.render(request, "schemas.html", subjects=None, error="No schema registry configured (riverbed console --registry-url URL).")
        try:
            resp = await self._registry("GET", "/subjects")
        except httpx.HTTPError as exc:
            return self.render(request, "schemas.html", 503, subjects=None, error=f"Cannot reach the schema registry at {self.registry.url}: {exc}")
        return self.render(request, "schemas.html", subjects=sorted(resp.json()) if resp.status_code == 200 else [], error=None if resp.status_code == 200 else resp.text)

    def _subject(self, request: Request) -> str:
        subject = str(request.path_params["subject"])
        if not subject or len(subject) > 1000 or any(ord(c) < 32 for c in subject):
            raise NotFound("no such subject")
        return subject

    async def subject(self, request: Request, check: dict[str, Any] | None = None, status: int = 200, form: dict[str, str] | None = None) -> Response:
        subject = self._subject(request)
        qs = quote(subject, safe="")
        try:
            versions = await self._registry("GET", f"/subjects/{qs}/versions")
            numbers = versions.json() if versions.status_code == 200 else []
            v = request.query_params.get("version") or (str(numbers[-1]) if numbers else "")
            shown = None
            if v:
                if not v.isdigit():
                    return self.error(request, 400, "version must be a number")
                r = await self._registry("GET", f"/subjects/{qs}/versions/{v}")
                shown = r.json() if r.status_code == 200 else None
            diff = None
            a, b = request.query_params.get("from", ""), request.query_params.get("to", "")
            if a.isdigit() and b.isdigit():
                ra = await self._registry("GET", f"/subjects/{qs}/versions/{a}")
                rb = await self._registry("GET", f"/subjects/{qs}/versions/{b}")
                if ra.status_code == 200 and rb.status_code == 200:
                    diff = list(difflib.unified_diff(_pretty(ra.json()["schema"]).splitlines(), _pretty(rb.json()["schema"]).splitlines(), f"version {a}", f"version {b}", lineterm=""))
            cfg = await self._registry("GET", f"/config/{qs}", params={"defaultToGlobal": "true"})
        except httpx.HTTPError as exc:
            return self.error(request, 503, f"Cannot reach the schema registry at {self.registry.url}: {exc}")
        compat = cfg.json().get("compatibilityLevel") if cfg.status_code == 200 else None
        if shown is not None:
            shown["pretty"] = _pretty(shown.get("schema", ""))
        return self.render(request, "subject.html", status, subject=subject, versions=numbers, shown=shown, diff=diff, a=a, b=b, compat=compat, check=check, form=form or {})

    async def subject_post(self, request: Request) -> Response:
        subject = self._subject(request)
        form = await read_form(request)
        action = form.get("action", "check")
        schema_type = form.get("schemaType", "AVRO")
        if schema_type not in ("AVRO", "PROTOBUF", "JSON"):
            return self.error(request, 400, "schemaType must be AVRO, PROTOBUF or JSON")
        body: dict[str, Any] = {"schema": form.get("schema", "")}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        qs = quote(subject, safe="")
        try:
            if action == "register":
                self.guard_write()
                resp = await self._registry("POST", f"/subjects/{qs}/versions", json=body)
                if resp.status_code == 200:
                    log.info("console: registered a schema under %s (id %s)", subject, resp.json().get("id"))
                    return RedirectResponse(f"/schemas/{qs}", 303)
                return await self.subject(request, {"ok": False, "message": f"Not registered: {resp.json().get('message', resp.text)}"}, 400, form)
            resp = await self._registry("POST", f"/compatibility/subjects/{qs}/versions/latest", params={"verbose": "true"}, json=body)
        except httpx.HTTPError as exc:
            return self.error(request, 503, f"Cannot reach the schema registry at {self.registry.url}: {exc}")
        data = resp.json()
        if resp.status_code != 200:
            return await self.subject(request, {"ok": False, "message": data.get("message", resp.text)}, 400, form)
        ok = bool(data.get("is_compatible"))
        return await self.subject(request, {"ok": ok, "message": "Compatible with the latest version." if ok else "Not compatible: " + "; ".join(data.get("messages", []))}, 200, form)

    # -- transactions (ACLs and users: admin.py) ---------------------------------------------
    async def transactions(self, request: Request) -> Response:
        try:
            rows, error = await run_in_threadpool(wire.list_transactions, self.settings.bootstrap, self.settings.client), None
        except (wire.WireError, OSError) as exc:
            rows, error = [], str(exc)
        return self.render(request, "transactions.html", rows=rows, error=error)

    async def services(self, request: Request) -> Response:
        """The connectors, streams apps and SQL queries that report in (docs/adr/0015)."""
        snap = self.view.snapshot
        kind = request.query_params.get("kind", "")
        now_ms = int(time.time() * 1000)
        rows: list[dict[str, Any]] = [{"e": e, "age": e.age_s(now_ms), "stale": e.stale(self.config.stale_after, now_ms),
                 "figures": _figures(e.figures)}
                for _, e in sorted(snap.services.items()) if not kind or e.kind == kind]
        sections = [(k, title, [r for r in rows if r["e"].kind == k]) for k, title in SERVICE_KINDS]
        known = {k for k, _ in SERVICE_KINDS}
        other = [r for r in rows if r["e"].kind not in known]
        if other:
            sections.append(("other", "Other services", other))
        return self.render(request, "services.html", sections=sections, kind=kind, topic=self.view.services_topic,
                           topic_exists=self.view.services_topic in snap.topics, stale_after=self.config.stale_after)

    async def health(self, request: Request) -> Response:
        if self.config.login:  # no cluster view of its own: each session has one
            return JSONResponse({"cluster": None, "login": True, "sessions": len(self.sessions)})
        snap = self.view.snapshot
        return JSONResponse({"cluster": "up" if snap.ok else "down", "error": snap.error, "snapshot_age_s": round(time.time() - snap.taken_at, 1) if snap.taken_at else None})

    # -- the application ---------------------------------------------------------------------
    def app(self, lifespan: bool = False) -> Starlette:
        """The ASGI app; with `lifespan`, serving it starts and stops the refresher."""
        def page(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
            async def wrapped(request: Request) -> Response:
                token = None
                if self.config.login and request.url.path not in PUBLIC:
                    sess = self._current(request)
                    if sess is None:
                        if request.method == "GET" and not request.url.path.endswith("/stream"):
                            return RedirectResponse("/login", 303)
                        return self.error(request, 401, "Log in first.")
                    token = _session.set(sess)
                try:
                    return await fn(request)  # type: ignore[no-any-return]
                except NotFound as exc:
                    return self.error(request, 404, str(exc))
                except FormError as exc:
                    return self.error(request, exc.status, exc.message)
                except browse.BadQuery as exc:
                    return self.error(request, 400, str(exc))
                except Exception as exc:
                    log.exception("%s %s failed", request.method, request.url.path)
                    return self.error(request, 500, f"Internal error: {type(exc).__name__}")
                finally:
                    if token is not None:
                        _session.reset(token)

            return wrapped

        routes = [
            Route("/", page(self.overview)),
            Route("/health", self.health),
            Route("/login", page(self.login_page)),
            Route("/login", page(self.login), methods=["POST"]),
            Route("/logout", page(self.logout), methods=["POST"]),
            Route("/topics", page(self.topics)),
            Route("/topics/new", page(self.topic_new)),
            Route("/topics/new", page(self.topic_create), methods=["POST"]),
            Route("/topics/{name}", page(self.topic)),
            Route("/topics/{name}/alter", page(self.topic_alter), methods=["POST"]),
            Route("/topics/{name}/delete", page(self.topic_delete_confirm)),
            Route("/topics/{name}/delete", page(self.topic_delete), methods=["POST"]),
            Route("/topics/{name}/messages", page(self.messages)),
            Route("/topics/{name}/records/{partition}/{offset}", page(self.download)),
            Route("/topics/{name}/produce", page(self.produce_form)),
            Route("/topics/{name}/produce", page(self.produce), methods=["POST"]),
            Route("/topics/{name}/tail", page(self.tail_page)),
            Route("/topics/{name}/tail/stream", page(self.tail_stream)),
            Route("/groups", page(self.groups)),
            Route("/groups/{group}", page(self.group)),
            Route("/groups/{group}/reset", page(self.group_reset), methods=["POST"]),
            Route("/share-groups", page(self.share_groups)),
            Route("/share-groups/{group}", page(self.share_group)),
            Route("/schemas", page(self.schemas)),
            Route("/schemas/{subject}", page(lambda r: self.subject(r))),
            Route("/schemas/{subject}", page(self.subject_post), methods=["POST"]),
            *AdminPages(self).routes(page),  # /acls, /users, share-group reset and delete
            Route("/transactions", page(self.transactions)),
            Route("/services", page(self.services)),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

        async def not_found(request: Request, exc: Exception) -> Response:
            status = getattr(exc, "status_code", 404)
            return self.error(request, status, "Page not found" if status == 404 else f"HTTP {status}")

        @contextlib.asynccontextmanager
        async def run(app: Starlette) -> AsyncIterator[None]:
            await run_in_threadpool(self.start)
            try:
                yield
            finally:
                await run_in_threadpool(self.stop)

        app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found}, lifespan=run if lifespan else None)
        app.add_middleware(SecurityHeaders)
        HttpMetrics("console").install(app)  # GET /metrics, as every HTTP service has
        return app


def _form_int(form: dict[str, str], name: str, lo: int, hi: int, errors: list[str]) -> int:
    raw = form.get(name, "").strip()
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{name} must be a whole number, got {raw!r}.")
        return lo
    if not lo <= value <= hi:
        errors.append(f"{name} must be between {lo} and {hi}.")
    return value


def _share_lag(start: int, end: int) -> int | None:
    """A share-partition's lag as the console shows it: end offset - start offset (records
    after the start offset not yet acknowledged, plus any acknowledged out of order)."""
    if start < 0 or end < 0:
        return None
    return max(0, end - start)


def _share_error(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, wire.WireError | OSError) else _kafka_error(exc)


def _parse_configs(text: str, errors: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.match(r"^[a-z0-9.]+$", key.strip()):
            errors.append(f"Config lines are name=value with a Kafka config name, got {line!r}.")
            continue
        out[key.strip()] = value.strip()
    return out


def _pretty(schema: str) -> str:
    try:
        return json.dumps(json.loads(schema), indent=2, sort_keys=False)
    except ValueError:
        return schema


def create_console_app(config: ConsoleConfig) -> tuple[Console, Starlette]:
    console = Console(config)
    return console, console.app(lifespan=True)
