"""`riverbed schema ...`: the schema registry's REST API from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

MEDIA = "application/vnd.schemaregistry.v1+json"


def add_schema_parser(sub: Any) -> None:
    s = sub.add_parser("schema", help="register, list, get, check and delete schemas in the schema registry")
    ssub = s.add_subparsers(dest="action", required=True)
    reg = ssub.add_parser("register", help="register a schema under a subject (prints its id)")
    reg.add_argument("subject")
    reg.add_argument("file", type=Path, help="the schema file ('-' for stdin)")
    reg.add_argument("--type", default="AVRO", choices=("AVRO", "JSON", "PROTOBUF"))
    reg.add_argument("--reference", action="append", default=[], metavar="NAME=SUBJECT:VERSION")
    reg.add_argument("--normalize", action="store_true")
    ls = ssub.add_parser("list", help="subjects")
    ls.add_argument("--deleted", action="store_true")
    ls.add_argument("--prefix", default="")
    get = ssub.add_parser("get", help="a subject's version (default latest), or a schema by --id")
    get.add_argument("subject", nargs="?")
    get.add_argument("--version", default="latest")
    get.add_argument("--id", type=int)
    ver = ssub.add_parser("versions", help="a subject's versions")
    ver.add_argument("subject")
    ver.add_argument("--deleted", action="store_true")
    chk = ssub.add_parser("check", help="is a schema compatible with a subject's versions?")
    chk.add_argument("subject")
    chk.add_argument("file", type=Path)
    chk.add_argument("--type", default="AVRO", choices=("AVRO", "JSON", "PROTOBUF"))
    chk.add_argument("--version", help="check against this version only (default: as the subject's level says)")
    dele = ssub.add_parser("delete", help="soft-delete a subject or one version (--permanent after a soft delete)")
    dele.add_argument("subject")
    dele.add_argument("--version")
    dele.add_argument("--permanent", action="store_true")
    cfg = ssub.add_parser("config", help="show or set the compatibility level (global without a subject)")
    cfg.add_argument("subject", nargs="?")
    cfg.add_argument("--set", dest="level", choices=("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"))
    mode = ssub.add_parser("mode", help="show or set the mode (global without a subject)")
    mode.add_argument("subject", nargs="?")
    mode.add_argument("--set", dest="mode", choices=("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT"))
    for p in (reg, ls, get, ver, chk, dele, cfg, mode):
        p.add_argument("--registry", default="http://127.0.0.1:8081", help="registry URL (default http://127.0.0.1:8081)")
        p.add_argument("--format", choices=("text", "json"), default="text")


class SchemaCommandError(Exception):
    pass


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None, params: dict[str, str] | None = None) -> Any:
    try:
        r = httpx.request(method, args.registry.rstrip("/") + path, json=body, params=params, headers={"Accept": MEDIA}, timeout=30)
    except httpx.HTTPError as exc:
        raise SchemaCommandError(f"cannot reach the registry at {args.registry}: {exc}") from None
    try:
        data = r.json()
    except ValueError:
        data = r.text
    if r.status_code >= 400:
        msg = data.get("message") if isinstance(data, dict) else data
        code = data.get("error_code") if isinstance(data, dict) else r.status_code
        raise SchemaCommandError(f"{msg} (HTTP {r.status_code}, error code {code})")
    return data


def _schema_body(file: Path, schema_type: str) -> dict[str, Any]:
    text = sys.stdin.read() if str(file) == "-" else file.read_text()
    body: dict[str, Any] = {"schema": text}
    if schema_type != "AVRO":
        body["schemaType"] = schema_type
    return body


def _enc(subject: str) -> str:
    return quote(subject, safe="")


def dispatch(args: argparse.Namespace) -> int:
    out: Any
    text: str
    if args.action == "register":
        body = _schema_body(args.file, args.type)
        refs = []
        for ref in args.reference:
            name, _, rest = ref.partition("=")
            subj, _, ver = rest.rpartition(":")
            if not name or not subj or not ver.isdigit():
                raise SchemaCommandError(f"--reference wants NAME=SUBJECT:VERSION, got {ref!r}")
            refs.append({"name": name, "subject": subj, "version": int(ver)})
        if refs:
            body["references"] = refs
        out = _call(args, "POST", f"/subjects/{_enc(args.subject)}/versions", body, {"normalize": "true"} if args.normalize else None)
        text = f"registered {args.subject}: id {out['id']}"
    elif args.action == "list":
        params = {"subjectPrefix": args.prefix}
        if args.deleted:
            params["deleted"] = "true"
        out = _call(args, "GET", "/subjects", params=params)
        text = "\n".join(out) if out else "(no subjects)"
    elif args.action == "get":
        if args.id is not None:
            out = _call(args, "GET", f"/schemas/ids/{args.id}")
            text = f"id {args.id} ({out.get('schemaType', 'AVRO')})\n{_pretty(out['schema'])}"
        elif args.subject:
            out = _call(args, "GET", f"/subjects/{_enc(args.subject)}/versions/{args.version}")
            text = f"{out['subject']} version {out['version']}, id {out['id']} ({out.get('schemaType', 'AVRO')})\n{_pretty(out['schema'])}"
        else:
            raise SchemaCommandError("give a subject or --id")
    elif args.action == "versions":
        out = _call(args, "GET", f"/subjects/{_enc(args.subject)}/versions", params={"deleted": "true"} if args.deleted else None)
        text = " ".join(str(v) for v in out)
    elif args.action == "check":
        path = f"/compatibility/subjects/{_enc(args.subject)}/versions" + (f"/{args.version}" if args.version else "")
        out = _call(args, "POST", path, _schema_body(args.file, args.type), {"verbose": "true"})
        text = "compatible" if out["is_compatible"] else "INCOMPATIBLE\n" + "\n".join(f"  {m}" for m in out.get("messages", []))
        _print(args, out, text)
        return 0 if out["is_compatible"] else 1
    elif args.action == "delete":
        dparams = {"permanent": "true"} if args.permanent else None
        if args.version:
            out = _call(args, "DELETE", f"/subjects/{_enc(args.subject)}/versions/{args.version}", params=dparams)
            text = f"deleted {args.subject} version {out}" + (" permanently" if args.permanent else "")
        else:
            out = _call(args, "DELETE", f"/subjects/{_enc(args.subject)}", params=dparams)
            text = f"deleted {args.subject} versions {out}" + (" permanently" if args.permanent else "")
    elif args.action == "config":
        path = "/config" + (f"/{_enc(args.subject)}" if args.subject else "")
        if args.level:
            out = _call(args, "PUT", path, {"compatibility": args.level})
            text = f"compatibility {'of ' + args.subject if args.subject else '(global)'}: {out['compatibility']}"
        else:
            out = _call(args, "GET", path, params={"defaultToGlobal": "true"})
            text = f"compatibility {'of ' + args.subject if args.subject else '(global)'}: {out['compatibilityLevel']}"
    else:  # mode
        path = "/mode" + (f"/{_enc(args.subject)}" if args.subject else "")
        out = _call(args, "PUT", path, {"mode": args.mode}) if args.mode else _call(args, "GET", path, params={"defaultToGlobal": "true"})
        text = f"mode {'of ' + args.subject if args.subject else '(global)'}: {out['mode']}"
    _print(args, out, text)
    return 0


def _pretty(schema: str) -> str:
    try:
        return json.dumps(json.loads(schema), indent=2)
    except ValueError:
        return schema


def _print(args: argparse.Namespace, out: Any, text: str) -> None:
    print(json.dumps(out, indent=2) if args.format == "json" else text)
