"""``riverbed config describe|alter``: broker configs, like ``kafka-configs.sh --entity-type
brokers``. ``--broker 1`` is one broker's settings, ``--broker ""`` (or ``--broker-defaults``)
the cluster-wide dynamic defaults. Over riverbed's wire client (DescribeConfigs,
IncrementalAlterConfigs), because the Python clients cannot name the cluster-default
resource ("")."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from riverbed.protocol.errors import ErrorCode
from riverbed.protocol.messages.describe_configs import (
    DescribeConfigsRequest,
    DescribeConfigsResponse,
)
from riverbed.protocol.messages.incremental_alter_configs import (
    IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
)

from .client_commands import CommandError

BROKER = 4
SET, DELETE = 0, 1
SOURCES = {
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
    6: "DYNAMIC_BROKER_LOGGER_CONFIG",
}


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def add_config_parser(sub: Any, client: Any) -> None:
    c = sub.add_parser("config", help="describe or alter broker configs (dynamic broker configs, like kafka-configs.sh)")
    csub = c.add_subparsers(dest="action", required=True)
    for action in ("describe", "alter"):
        p = csub.add_parser(action)
        target = p.add_mutually_exclusive_group(required=True)
        target.add_argument("--broker", help='a broker id, or "" for the cluster-wide default')
        target.add_argument("--broker-defaults", action="store_true", help='the cluster-wide default (same as --broker "")')
        p.add_argument("--command-config", type=Path, help="client settings (KEY=VALUE lines): security.protocol, sasl.*, ssl.*")
        client(p)
        if action == "describe":
            p.add_argument("--all", action="store_true", help="every setting, defaults included (default: only those set)")
            p.add_argument("--synonyms", action="store_true", help="show each setting's synonyms in precedence order")
        else:
            p.add_argument("--set", dest="set_", action="append", type=_key_value, default=[], metavar="KEY=VALUE", help="repeat for several")
            p.add_argument("--delete", action="append", default=[], metavar="KEY", help="back to the next level's value; repeat for several")
            p.add_argument("--validate-only", action="store_true", help="check the change without applying it")


def _security(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def _error(code: int, message: str | None) -> str:
    name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
    return name + (f": {message}" if message else "")


def config_command(args: argparse.Namespace) -> int:
    from .wire_client import WireClient

    name = "" if args.broker_defaults else args.broker
    where = "the cluster-wide default" if name == "" else f"broker {name}"
    with WireClient(args.bootstrap, security=_security(args.command_config)) as client:
        if args.action == "alter":
            ops = [IncrementalAlterConfigsRequest.AlterableConfig(name=k, config_operation=SET, value=v) for k, v in args.set_]
            ops += [IncrementalAlterConfigsRequest.AlterableConfig(name=k, config_operation=DELETE, value=None) for k in args.delete]
            if not ops:
                raise CommandError("nothing to alter: give --set KEY=VALUE and/or --delete KEY")
            req = IncrementalAlterConfigsRequest(
                resources=[IncrementalAlterConfigsRequest.AlterConfigsResource(resource_type=BROKER, resource_name=name, configs=ops)],
                validate_only=args.validate_only,
            )
            resp = client.request(req, 1)
            assert isinstance(resp, IncrementalAlterConfigsResponse)
            r = resp.responses[0]
            if r.error_code:
                raise CommandError(f"alter configs of {where}: {_error(r.error_code, r.error_message)}")
            print(f"{'validated' if args.validate_only else 'altered'} configs of {where}")
            return 0
        dreq = DescribeConfigsRequest(
            resources=[DescribeConfigsRequest.DescribeConfigsResource(resource_type=BROKER, resource_name=name, configuration_keys=None)],
            include_synonyms=True,
        )
        dresp = client.request(dreq, 4)
        assert isinstance(dresp, DescribeConfigsResponse)
        result = dresp.results[0]
        if result.error_code:
            raise CommandError(f"describe configs of {where}: {_error(result.error_code, result.error_message)}")
        print(f"{'Dynamic default configs for the cluster' if name == '' else f'Configs for broker {name}'}:")
        for c in sorted(result.configs, key=lambda c: c.name):
            if not args.all and c.config_source == 5:
                continue
            value = "(sensitive)" if c.is_sensitive else c.value
            flags = [SOURCES.get(c.config_source, str(c.config_source))] + (["read-only"] if c.read_only else [])
            line = f"  {c.name}={value}\t{' '.join(flags)}"
            if args.synonyms and c.synonyms:
                line += "\tsynonyms={" + ", ".join(f"{SOURCES.get(s.source, s.source)}:{s.name}={s.value}" for s in c.synonyms) + "}"
            print(line)
    return 0
