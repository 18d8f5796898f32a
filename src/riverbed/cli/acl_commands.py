"""``riverbed acl add|list|remove`` through confluent-kafka's admin API (CreateAcls,
DescribeAcls, DeleteAcls), so they also work against Apache Kafka. Like ``kafka-acls.sh``:
one resource (``--topic``, ``--group``, ``--transactional-id`` or ``--cluster``), literal or
``--prefixed``, one or more ``--operation``, allow (default) or ``--deny``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

OPERATIONS = ["ALL", "READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE"]


def add_acl_parser(sub: Any, client: Any) -> None:
    a = sub.add_parser("acl", help="add, list or remove ACLs (needs authorizer.class.name on the broker)")
    asub = a.add_subparsers(dest="action", required=True)
    parsers = []
    for action in ("add", "list", "remove"):
        p = asub.add_parser(action)
        p.add_argument("--principal", help="e.g. User:billing (User:* for everyone)" + (" (required)" if action == "add" else ""))
        p.add_argument("--host", default=None, help="client address (default: any, *)")
        p.add_argument("--operation", action="append", choices=OPERATIONS, type=str.upper, help="repeat for several")
        p.add_argument("--deny", action="store_true", help="a DENY rule (default: ALLOW)")
        target = p.add_mutually_exclusive_group(required=action != "list")
        target.add_argument("--topic")
        target.add_argument("--group")
        target.add_argument("--transactional-id")
        target.add_argument("--cluster", action="store_true")
        p.add_argument("--prefixed", action="store_true", help="the name is a prefix (PREFIXED pattern)")
        p.add_argument("--command-config", type=Path, help="client settings (KEY=VALUE lines) to log in to a SASL or SSL listener")
        parsers.append(p)
    for p in parsers:
        client(p)


def _resource(args: argparse.Namespace) -> tuple[Any, str | None]:
    from confluent_kafka.admin import ResourceType  # type: ignore[attr-defined]

    if args.topic is not None:
        return ResourceType.TOPIC, args.topic
    if args.group is not None:
        return ResourceType.GROUP, args.group
    if args.transactional_id is not None:
        return ResourceType.TRANSACTIONAL_ID, args.transactional_id
    if args.cluster:
        return ResourceType.BROKER, "kafka-cluster"
    return ResourceType.ANY, None


def _result(fut: Any, what: str) -> Any:
    from confluent_kafka import KafkaException

    from .client_commands import CommandError

    try:
        return fut.result(timeout=30)
    except KafkaException as exc:
        raise CommandError(f"{what}: {exc.args[0].str()}") from exc


def _show(b: Any) -> str:
    kind = str(b.restype).split(".")[-1].replace("BROKER", "CLUSTER")
    pattern = str(b.resource_pattern_type).split(".")[-1]
    return f"{kind}:{pattern}:{b.name}\t{b.principal}\t{b.host}\t{str(b.operation).split('.')[-1]}\t{str(b.permission_type).split('.')[-1]}"


def _list(args: argparse.Namespace, conf: dict[str, Any]) -> int:
    """DescribeAcls over riverbed's own wire client: librdkafka reports a refused DescribeAcls
    (CLUSTER_AUTHORIZATION_FAILED) as an empty list, which would read as "no ACLs"."""
    from riverbed.protocol.errors import ErrorCode
    from riverbed.protocol.messages.describe_acls import DescribeAclsRequest, DescribeAclsResponse
    from riverbed.security import acl as k

    from .client_commands import CommandError
    from .wire_client import WireClient

    if args.topic is not None:
        restype, name = k.ResourceType.TOPIC, args.topic
    elif args.group is not None:
        restype, name = k.ResourceType.GROUP, args.group
    elif args.transactional_id is not None:
        restype, name = k.ResourceType.TRANSACTIONAL_ID, args.transactional_id
    elif args.cluster:
        restype, name = k.ResourceType.CLUSTER, "kafka-cluster"
    else:
        restype, name = k.ResourceType.ANY, None
    pattern = (k.PatternType.PREFIXED if args.prefixed else k.PatternType.LITERAL) if name is not None else k.PatternType.ANY
    permission = k.AclPermissionType.DENY if args.deny else k.AclPermissionType.ANY
    rows = set()
    with WireClient(args.bootstrap, security=conf) as client:
        for op in args.operation or ["ANY"]:
            req = DescribeAclsRequest(
                resource_type_filter=restype,
                resource_name_filter=name,
                pattern_type_filter=pattern,
                principal_filter=args.principal,
                host_filter=args.host,
                operation=k.AclOperation[op],
                permission_type=permission,
            )
            resp = client.request(req, 3)
            assert isinstance(resp, DescribeAclsResponse)
            if resp.error_code:
                raise CommandError(f"describe ACLs: {ErrorCode(resp.error_code).name}" + (f": {resp.error_message}" if resp.error_message else ""))
            for res in resp.resources:
                kind = k.ResourceType(res.resource_type).name
                for a in res.acls:
                    rows.add(
                        f"{kind}:{k.PatternType(res.pattern_type).name}:{res.resource_name}\t{a.principal}\t{a.host}"
                        f"\t{k.AclOperation(a.operation).name}\t{k.AclPermissionType(a.permission_type).name}"
                    )
    print("RESOURCE\tPRINCIPAL\tHOST\tOPERATION\tPERMISSION")
    for row in sorted(rows):
        print(row)
    return 0


def acl_command(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
    )

    from .client_commands import CommandError
    from .user_commands import read_properties

    conf: dict[str, Any] = {"bootstrap.servers": args.bootstrap}
    if args.command_config is not None:
        conf.update(read_properties(args.command_config))
    admin = AdminClient(conf)
    restype, name = _resource(args)
    permission = AclPermissionType.DENY if args.deny else AclPermissionType.ALLOW
    if args.action == "add":
        if not args.principal:
            raise CommandError("acl add needs --principal")
        if not args.operation:
            raise CommandError("acl add needs at least one --operation")
        pattern = ResourcePatternType.PREFIXED if args.prefixed else ResourcePatternType.LITERAL
        assert name is not None
        bindings = [AclBinding(restype, name, pattern, args.principal, args.host or "*", AclOperation[op], permission) for op in args.operation]
        for fut in admin.create_acls(bindings, request_timeout=30).values():
            _result(fut, "create ACL")
        for b in bindings:
            print(f"added {_show(b)}")
        return 0
    ops = [AclOperation[op] for op in args.operation] if args.operation else [AclOperation.ANY]
    pattern = (ResourcePatternType.PREFIXED if args.prefixed else ResourcePatternType.LITERAL) if name is not None else ResourcePatternType.ANY
    perm = permission if (args.deny or args.action == "remove") else AclPermissionType.ANY
    filters = [AclBindingFilter(restype, name, pattern, args.principal, args.host, op, perm) for op in ops]  # type: ignore[arg-type]
    if args.action == "list":
        return _list(args, conf)
    removed = 0
    for fut in admin.delete_acls(filters, request_timeout=30).values():
        for b in _result(fut, "delete ACLs"):
            removed += 1
            print(f"removed {_show(b)}")
    if removed == 0:
        raise CommandError("no ACL matched")
    return 0
