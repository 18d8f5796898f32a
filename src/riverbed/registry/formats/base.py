"""What every schema format gives the registry: parse errors and compatibility findings."""

from __future__ import annotations

from dataclasses import dataclass


class InvalidSchema(Exception):
    """The schema text does not parse (HTTP 422, error code 42201)."""


@dataclass(frozen=True)
class Incompatibility:
    """One reason a schema is incompatible, in the shape Confluent's verbose answers use."""

    error_type: str
    path: str
    description: str
    additional_info: str = ""

    def message(self) -> str:
        return f"{{errorType:'{self.error_type}', description:'{self.description}', additionalInfo:'{self.additional_info}'}}"
