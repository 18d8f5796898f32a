"""Malformed frames over TCP against a broker process (``riverbed serve``).

Each case opens a connection, sends one hostile frame and then, where the frame is complete,
a valid ApiVersions v0 request (the "probe"). Kafka's reaction to a request it cannot serve is
either an answer with the request's correlation id or closing the connection; so the test
reads until the probe's answer (the connection survived, answers in order) or end-of-file
(the broker closed it). Anything else fails: a frame with a foreign correlation id, a probe
that is never answered on an open connection (a hang), the broker process exiting, a Python
exception in its log, or its resident memory growing without bound. Afterwards a real client
(confluent-kafka) produces and consumes through the same broker process.

Cases are drawn from a seeded RNG (reproducible; bounded count); no step is bounded by time
except generous deadlines that detect hangs.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from riverbed.broker.versions import SUPPORTED
from riverbed.protocol.messages import request_class
from riverbed.protocol.messages.api_versions import ApiVersionsResponse
from riverbed.protocol.messages.metadata import MetadataRequest
from riverbed.protocol.primitives import Reader, Writer
from riverbed.testing import BrokerProcess

pytestmark = pytest.mark.integration

SEED = 19
PROBE_CORR = 0x7E57
FUZZ_CORR = 4242
HANG_DEADLINE = 60.0  # seconds without any reaction before a case counts as a hang
# requests answered at once whatever their fields say (no long polls such as Fetch or
# JoinGroup, whose random wait times would be legitimate waits, not hangs)
PROMPT_KEYS = [k for k in (0, 2, 3, 8, 9, 10, 12, 13, 15, 16, 19, 29, 32, 35, 42, 50, 60, 61, 65, 66, 68, 69) if k in SUPPORTED]


@pytest.fixture(scope="module")
def proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    p = BrokerProcess(data, extra=["--log-level", "INFO"]).start()
    try:
        yield p
    finally:
        p.kill()


def header(api_key: int, version: int, corr: int, client_id: str | None = "fuzz", tags: bytes | None = None) -> bytes:
    """Request header v1 (v2 adds tagged fields: ``tags`` raw, default none)."""
    w = Writer()
    w.int16(api_key)
    w.int16(version)
    w.int32(corr)
    w.nullable_string(client_id, False)
    out = w.getvalue()
    flexible = api_key in SUPPORTED and version >= request_class(api_key).FLEXIBLE_VERSION
    if tags is not None:
        out += tags
    elif flexible:
        out += b"\x00"
    return out


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def probe() -> bytes:
    return framed(header(18, 0, PROBE_CORR))


def read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def reaction(sock: socket.socket) -> tuple[list[int], bool]:
    """Read until the probe's answer or EOF: (correlation ids answered, closed by broker)."""
    sock.settimeout(HANG_DEADLINE)
    seen: list[int] = []
    while True:
        try:
            size_bytes = read_exact(sock, 4)
        except TimeoutError:
            raise AssertionError(f"no reaction within {HANG_DEADLINE} s after {seen}") from None
        if size_bytes is None:
            return seen, True
        size = struct.unpack(">i", size_bytes)[0]
        assert 4 <= size < 1 << 24, f"implausible response size {size}"
        body = read_exact(sock, size)
        if body is None:
            return seen, True
        corr = struct.unpack_from(">i", body)[0]
        seen.append(corr)
        if corr == PROBE_CORR:
            resp = ApiVersionsResponse.read(Reader(body, 4), 0)
            assert resp.error_code == 0 and any(k.api_key == 18 for k in resp.api_keys)
            return seen, False


def send_case(bootstrap: str, data: bytes, *, with_probe: bool, half_close: bool = False) -> tuple[list[int], bool]:
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=HANG_DEADLINE) as sock:
        try:
            sock.sendall(data + (probe() if with_probe else b""))
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            return [], True
        return reaction(sock)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def random_tags(rng: random.Random) -> bytes:
    """A tagged-field section that lies: more tags than bytes, sizes past the end, huge tags."""
    choice = rng.randrange(4)
    if choice == 0:
        return bytes([rng.randrange(1, 127)])  # claims tags, has none
    if choice == 1:
        return b"\x01" + bytes([rng.randrange(0, 100)]) + b"\x7f" + rng.randbytes(3)  # size overruns
    if choice == 2:
        return b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"  # a varint too long
    return rng.randbytes(rng.randrange(1, 12))


def test_malformed_frames_get_kafkas_reaction_and_the_broker_survives(proc: BrokerProcess) -> None:
    rng = random.Random(SEED)
    assert proc.proc is not None
    pid = proc.proc.pid
    # warm up (imports, first connections), then take the baseline
    for _ in range(5):
        assert send_case(proc.bootstrap, b"", with_probe=True) == ([PROBE_CORR], False)
    baseline = rss_kib(pid)
    counts: dict[str, int] = {}

    def case(kind: str, data: bytes, *, expect: str, with_probe: bool = True, half_close: bool = False) -> None:
        """expect: "close" (EOF, no answer), "answer" (the request answered, connection kept),
        "either" (answered then kept, or closed; never a foreign correlation id)."""
        counts[kind] = counts.get(kind, 0) + 1
        seen, closed = send_case(proc.bootstrap, data, with_probe=with_probe, half_close=half_close)
        where = f"case {kind} #{counts[kind]} (seed {SEED}): {data[:48].hex()}"
        assert all(c in (FUZZ_CORR, PROBE_CORR) for c in seen), f"foreign correlation id in {seen}: {where}"
        assert seen.count(FUZZ_CORR) <= 1, where
        if expect == "close":
            assert closed and FUZZ_CORR not in seen and PROBE_CORR not in seen, f"expected a close, got {seen}: {where}"
        elif expect == "answer":
            assert seen == [FUZZ_CORR, PROBE_CORR] and not closed, f"expected an answer, got {seen} closed={closed}: {where}"
        else:
            assert closed or seen[-1] == PROBE_CORR, where
            if PROBE_CORR in seen:
                assert seen in ([FUZZ_CORR, PROBE_CORR], [PROBE_CORR]), where  # in order

    for _ in range(40):
        # a length prefix promising more than is ever sent, then end-of-stream
        body = header(3, 1, FUZZ_CORR) + rng.randbytes(rng.randrange(0, 20))
        claimed = len(body) + rng.randrange(1, 1000)
        case("truncated", struct.pack(">i", claimed) + body, expect="close", with_probe=False, half_close=True)
    for size in (-1, -(2**31), 100 * 1024 * 1024 + 1, 2**31 - 1):
        # over socket.request.max.bytes or negative: closed before anything is buffered
        case("bad-length", struct.pack(">i", size) + rng.randbytes(64), expect="close", with_probe=False)
    for key in (-1, 99, 999, 32767, *rng.sample(range(100, 30000), 10)):
        case("unknown-key", framed(header(key, 0, FUZZ_CORR)), expect="close")
    for key in rng.sample(sorted(SUPPORTED), 12):
        lo, hi = SUPPORTED[key]
        if key == 18:
            continue  # ApiVersions answers unknown versions itself (tested below)
        version = rng.choice([hi + 1, hi + 50, 32767, -1] + ([lo - 1] if lo > 0 else []))
        case("unknown-version", framed(header(key, version, FUZZ_CORR)), expect="close")
    for version in (5, 99, 32767):
        counts["api-versions-unknown-version"] = counts.get("api-versions-unknown-version", 0) + 1
        seen, closed = send_case(proc.bootstrap, framed(header(18, version, FUZZ_CORR)), with_probe=True)
        assert seen == [FUZZ_CORR, PROBE_CORR] and not closed  # a v0 UNSUPPORTED_VERSION answer
    for _ in range(400):
        # a valid header for a prompt API, then random bytes as the body
        key = rng.choice(PROMPT_KEYS)
        lo, hi = SUPPORTED[key]
        body = rng.randbytes(rng.randrange(0, 64))
        case("random-body", framed(header(key, rng.randrange(lo, hi + 1), FUZZ_CORR) + body), expect="either")
    metadata = MetadataRequest(topics=[MetadataRequest.MetadataRequestTopic(name="fuzz-topic")], allow_auto_topic_creation=False)
    for version in (1, 4, 9, 12):
        full = metadata.encode(version)
        for cut in sorted(rng.sample(range(1, len(full)), min(4, len(full) - 1))):
            # a complete frame whose message stops short
            case("short-message", framed(header(3, version, FUZZ_CORR) + full[: len(full) - cut]), expect="close")
    for _ in range(30):
        # flexible header (Metadata v12) whose tagged-field section is garbage
        tags = random_tags(rng)
        data = framed(header(3, 12, FUZZ_CORR, tags=tags) + metadata.encode(12))
        case("header-tags", data, expect="either")
    for _ in range(10):
        # unknown tags that are well formed are skipped, as Kafka does: the request is answered
        tag = rng.randrange(10, 1000)
        value = rng.randbytes(rng.randrange(0, 20))
        w = Writer()
        w.uvarint(1)
        w.uvarint(tag)
        w.uvarint(len(value))
        tags = w.getvalue() + value
        case("unknown-tags", framed(header(3, 12, FUZZ_CORR, tags=tags) + metadata.encode(12)[:-1] + tags), expect="answer")
    for _ in range(20):
        case("random-bytes", framed(rng.randbytes(rng.randrange(0, 200))), expect="either")
    # a length prefix just under the limit and a trickle of its bytes: the broker buffers it,
    # but only what arrived (checked by the memory bound below)
    case("big-claim", struct.pack(">i", 64 * 1024 * 1024) + header(0, 9, FUZZ_CORR) + rng.randbytes(1 << 20), expect="close", with_probe=False, half_close=True)

    assert proc.proc.poll() is None, "the broker process exited"
    assert sum(counts.values()) >= 500
    # memory: bounded growth over ~550 hostile connections (no frame was buffered whole)
    grown_mib = (rss_kib(pid) - baseline) / 1024
    assert grown_mib < 64, f"broker RSS grew by {grown_mib:.0f} MiB"
    log = proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "handler failed" not in log, log[-3000:]
    assert "unsupported API key" in log  # each refusal is logged

    # and a real client is served afterwards
    p = Producer({"bootstrap.servers": proc.bootstrap})
    p.produce("after-fuzz", value=b"still here")
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": proc.bootstrap, "group.id": "after-fuzz", "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition("after-fuzz", 0, 0)])
        got = None
        for _ in range(600):  # up to a minute
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got = m.value()
                break
        assert got == b"still here"
    finally:
        c.close()
