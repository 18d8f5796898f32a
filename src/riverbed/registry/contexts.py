"""Schema contexts (Confluent's): independent sub-registries, each with its own subjects, schema
ids, config and mode, in one registry. A subject qualified with a context is written
``:.ctx:subject``; an unqualified subject, or ``:.:subject``, lives in the default context ``.``.
"""

from __future__ import annotations

import re

DEFAULT = "."
WILDCARD = ":*:"  # a subjectPrefix that matches the subjects of every context
_NAME = re.compile(r"^\.[A-Za-z0-9_.\-+%]{0,254}$")


def split(subject: str) -> tuple[str, str]:
    """(context, unqualified name) of a subject."""
    if subject.startswith(":.") :
        end = subject.find(":", 1)
        if end > 0:
            return subject[1:end] or DEFAULT, subject[end + 1 :]
    return DEFAULT, subject


def qualify(context: str, name: str) -> str:
    """The subject `name` in `context`; a name that is already qualified keeps its own context."""
    if name.startswith(":."):
        return normalize(name)
    return name if context == DEFAULT else f":{context}:{name}"


def normalize(subject: str) -> str:
    """One spelling per subject: ``:.:name`` is ``name``."""
    context, name = split(subject)
    return qualify(context, name) if subject.startswith(":.") else subject


def context_of(subject: str) -> str:
    return split(subject)[0]


def valid_context(name: str) -> bool:
    return bool(_NAME.match(name))


def context_key(context: str) -> str | None:
    """Where a context's own config and mode are stored: the subject ``:.ctx:`` (Confluent's
    spelling), None (the global config) for the default context."""
    return None if context == DEFAULT else f":{context}:"
