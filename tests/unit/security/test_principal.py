from __future__ import annotations

import pytest

from riverbed.security.principal import (
    NoMatchingRule,
    RuleSyntaxError,
    map_principal,
    parse_rules,
)

DN = "CN=kafka-client,OU=ServiceUsers,O=Example,L=Berlin,C=DE"


def test_default_is_the_whole_dn() -> None:
    assert map_principal(parse_rules("DEFAULT"), DN) == DN
    assert map_principal(parse_rules(""), DN) == DN


def test_rule_with_group_and_case() -> None:
    rules = parse_rules(r"RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/U, DEFAULT")
    assert map_principal(rules, DN) == "KAFKA-CLIENT"
    assert map_principal(rules, "CN=x,OU=Other") == "CN=x,OU=Other"


def test_first_matching_rule_wins_and_lowercase() -> None:
    rules = parse_rules(["RULE:^CN=([^,]*),OU=Nope.*$/nope/", r"RULE:^CN=([^,]*).*$/$1/L"])
    assert map_principal(rules, "CN=Alice,O=Example") == "alice"


def test_kafka_examples() -> None:
    # from Kafka's SslPrincipalMapperTest
    rules = parse_rules(
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,"
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,"
        "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U,"
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U,"
        "DEFAULT"
    )
    assert map_principal(rules, "CN=kafka-server1,OU=ServiceUsers,O=Org,L=City,ST=State,C=US") == "kafka-server1"
    assert map_principal(rules, "CN=Duke,OU=JavaSoft,O=Sun Microsystems,L=City,ST=State,C=US") == "duke@javasoft"
    assert map_principal(rules, "cn=duke,ou=javasoft,dc=sun,dc=com") == "DUKE@JAVASOFT"
    assert map_principal(rules, "OU=JavaSoft,O=Sun Microsystems,C=US") == "OU=JavaSoft,O=Sun Microsystems,C=US"


def test_escaped_slash_and_dollar() -> None:
    rules = parse_rules(r"RULE:^CN=([^,]*)\/x.*$/u\/$1\$/")
    assert map_principal(rules, "CN=a/x,O=b") == "u/a$"


def test_no_rule_matches() -> None:
    with pytest.raises(NoMatchingRule):
        map_principal(parse_rules("RULE:^CN=x$/y/"), DN)


@pytest.mark.parametrize("text", ["RULE:abc", "RULE:^a/b/X", "NOPE", "DEFAULT junk", "RULE:(/x/"])
def test_bad_rules(text: str) -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rules(text)
