"""What TLS and SASL cost: throughput over PLAINTEXT, SSL and SASL_SSL, and connection
set-up with SCRAM.

    .venv/bin/python benchmarks/security.py [--mb 200]

``riverbed serve`` runs in a child process with three listeners (PLAINTEXT, SSL, SASL_SSL)
and one more for SASL_PLAINTEXT, a test CA and server certificate made here with
``cryptography``, and one SCRAM user. Through each listener one confluent-kafka producer
writes ``--mb`` MB of 1 KiB records (acks=all, linger.ms=5) to its own topic and one
consumer reads them back from offset 0; reported in MB/s with the broker's CPU-seconds per
GB. Connection set-up: 20 times in a row, a new client connects and fetches metadata
(librdkafka's whole handshake: TCP, TLS, SASL, ApiVersions, Metadata); the median and p90
in ms per listener and mechanism.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from riverbed.testing import free_port

VALUE = b"s" * 1024
USER, PASSWORD = "bench", "bench-password"


def make_certs(d: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    server = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])).issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False).sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def client_conf(listener: str, port: int, certs: Path, mechanism: str = "SCRAM-SHA-512") -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": listener}
    if listener in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = str(certs / "ca.pem")
    if listener.startswith("SASL"):
        conf.update({"sasl.mechanism": mechanism, "sasl.username": USER, "sasl.password": PASSWORD})
    return conf


def throughput(conf: dict[str, Any], topic: str, n: int, pid: int) -> dict[str, Any]:
    proc = psutil.Process(pid)

    def cpu() -> float:
        t = proc.cpu_times()
        return float(t.user + t.system)

    p = Producer({**conf, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20})
    c0, t0 = cpu(), time.perf_counter()
    for _ in range(n):
        while True:
            try:
                p.produce(topic, value=VALUE)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(120) == 0
    produce_s, produce_cpu = time.perf_counter() - t0, cpu() - c0
    c = Consumer({**conf, "group.id": "bench", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = 0
    c0, t0 = cpu(), time.perf_counter()
    while got < n:
        got += sum(1 for m in c.consume(10_000, 1.0) if m.error() is None)
    consume_s, consume_cpu = time.perf_counter() - t0, cpu() - c0
    c.close()
    gb = n * len(VALUE) / 1e9
    return {
        "produce_mb_per_s": round(gb * 1000 / produce_s, 1),
        "produce_broker_cpu_s_per_gb": round(produce_cpu / gb, 2),
        "consume_mb_per_s": round(gb * 1000 / consume_s, 1),
        "consume_broker_cpu_s_per_gb": round(consume_cpu / gb, 2),
    }


def setup_ms(conf: dict[str, Any], runs: int = 20) -> dict[str, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        admin = AdminClient(conf)
        admin.list_topics(timeout=10)
        times.append((time.perf_counter() - t0) * 1000)
        del admin
    times.sort()
    return {"median_ms": round(statistics.median(times), 1), "p90_ms": round(times[int(runs * 0.9) - 1], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--out")
    args = ap.parse_args()
    n = args.mb * 1_000_000 // len(VALUE)
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        make_certs(certs)
        ports = {name: free_port() for name in ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")}
        listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
        extra = [
            "--set", f"listeners={listeners}",
            "--set", f"ssl.certificate.location={certs / 'server.pem'}",
            "--set", f"ssl.key.location={certs / 'server.key'}",
            "--set", f"ssl.ca.location={certs / 'ca.pem'}",
            "--log-level", "WARNING",
        ]  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-m", "riverbed", "serve", "--no-registry", "--no-metrics", "--no-console", "--data-dir", str(certs / "data"), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", ports["PLAINTEXT"]), timeout=0.2).close()
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, "the broker did not start"
                    time.sleep(0.05)
            pid = proc.pid
            plain = f"127.0.0.1:{ports['PLAINTEXT']}"
            subprocess.run([sys.executable, "-m", "riverbed", "user", "add", USER, "--password", PASSWORD, "-b", plain], check=True, capture_output=True)
            admin = AdminClient({"bootstrap.servers": plain})
            for f in admin.create_topics([NewTopic(f"t-{name}", 1, 1) for name in ("PLAINTEXT", "SSL", "SASL_SSL")]).values():
                f.result(10)
            doc: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M"), "mb": args.mb, "throughput": {}, "connection_setup": {}}
            for name in ("PLAINTEXT", "SSL", "SASL_SSL"):
                doc["throughput"][name] = throughput(client_conf(name, ports[name], certs), f"t-{name}", n, pid)
                print(name, doc["throughput"][name], flush=True)
            for name, mechanism in (("PLAINTEXT", ""), ("SSL", ""), ("SASL_PLAINTEXT", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("SASL_SSL", "SCRAM-SHA-512")):
                key = f"{name} {mechanism}".strip()
                doc["connection_setup"][key] = setup_ms(client_conf(name, ports[name], certs, mechanism or "PLAIN"))
                print(key, doc["connection_setup"][key], flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
