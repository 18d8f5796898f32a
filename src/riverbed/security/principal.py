"""The principal of a TLS client from its certificate: Kafka's ``ssl.principal.mapping.rules``.

Pure functions, no I/O. The server turns the verified client certificate's subject into an
RFC 2253 distinguished name (``riverbed.security.dn``: the form Java's
``X500Principal.getName()`` gives, which is what Kafka matches against), then applies the
rules (:func:`parse_rules` once at start-up, :func:`map_principal` per connection).

Rules, as in Kafka (``SslPrincipalMapper``), separated by commas and tried in order; the first
that matches wins:

* ``RULE:pattern/replacement/`` -- if the Java-style regex ``pattern`` matches the whole DN,
  the name is the DN with ``pattern`` replaced by ``replacement`` (``$1``, ``$2``... refer to
  groups; ``\\`` escapes). A trailing ``L`` or ``U`` (``RULE:p/r/L``) lower- or upper-cases
  the result. ``/`` inside the pattern or replacement is written ``\\/``.
* ``DEFAULT`` -- the whole DN is the name.

Example: ``RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=([^,]*).*$/$1/L,DEFAULT``.
No rule matching is an authentication failure (:class:`NoMatchingRule`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_RULES",
    "NoMatchingRule",
    "PrincipalRule",
    "RuleSyntaxError",
    "map_principal",
    "parse_rules",
]

DEFAULT_RULES = "DEFAULT"


class RuleSyntaxError(ValueError):
    """``ssl.principal.mapping.rules`` cannot be parsed."""


class NoMatchingRule(LookupError):
    """No rule maps this distinguished name."""


@dataclass(frozen=True, slots=True)
class PrincipalRule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str = ""
    case: str = ""  # "", "L" or "U"

    @property
    def is_default(self) -> bool:
        return self.pattern is None

    def apply(self, dn: str) -> str | None:
        """The mapped name, or None when the rule does not match ``dn``."""
        if self.pattern is None:
            return dn
        if self.pattern.fullmatch(dn) is None:
            return None
        result = self.pattern.sub(lambda m: _expand(m, self.replacement), dn)
        if self.case == "L":
            result = result.lower()
        elif self.case == "U":
            result = result.upper()
        return result


# Kafka's RULE_SPLITTER: one rule, optional blanks, then a comma or the end.
_RULE = re.compile(
    r"\s*(?:(?P<default>DEFAULT)|RULE:(?P<pattern>(?:\\.|[^\\/])*)/(?P<replacement>(?:\\.|[^\\/])*)/(?P<case>[LU]?))\s*(?:,\s*|$)"
)


def parse_rules(text: str | Iterable[str]) -> list[PrincipalRule]:
    """Parse ``ssl.principal.mapping.rules`` (a string, or a list of rule strings)."""
    if not isinstance(text, str):
        text = ",".join(text)
    text = text.strip()
    if not text:
        return [PrincipalRule(None)]
    rules: list[PrincipalRule] = []
    pos = 0
    while pos < len(text):
        m = _RULE.match(text, pos)
        if m is None or m.end() == pos:
            raise RuleSyntaxError(f"invalid ssl.principal.mapping.rules at {text[pos:pos + 40]!r}")
        if m.group("default"):
            rules.append(PrincipalRule(None))
        else:
            try:
                pattern = re.compile(_java_regex(m.group("pattern")))
            except re.error as exc:
                raise RuleSyntaxError(f"invalid pattern {m.group('pattern')!r}: {exc}") from exc
            rules.append(PrincipalRule(pattern, m.group("replacement"), m.group("case")))
        pos = m.end()
    return rules


def map_principal(rules: Sequence[PrincipalRule], dn: str) -> str:
    """The principal name for ``dn`` (without the ``User:`` prefix)."""
    for rule in rules:
        name = rule.apply(dn)
        if name is not None:
            return name
    raise NoMatchingRule(f"no ssl.principal.mapping.rules rule matches {dn!r}")


def _java_regex(pattern: str) -> str:
    # "\/" is how a rule writes "/"; Python's re accepts it too, but spell it plainly.
    return pattern.replace("\\/", "/")


def _expand(match: re.Match[str], replacement: str) -> str:
    """Java's Matcher replacement syntax: ``$n`` is group n, ``\\x`` is a literal x."""
    out: list[str] = []
    i = 0
    while i < len(replacement):
        c = replacement[i]
        if c == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1])
            i += 2
        elif c == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            j = i + 1
            # Java takes the longest group number that exists
            n = int(replacement[j])
            j += 1
            while j < len(replacement) and replacement[j].isdigit() and int(replacement[i + 1 : j + 1]) <= (match.re.groups):
                n = int(replacement[i + 1 : j + 1])
                j += 1
            if n > match.re.groups:
                raise NoMatchingRule(f"no group {n} in {match.re.pattern!r}")
            out.append(match.group(n) or "")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)
