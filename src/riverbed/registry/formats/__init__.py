"""Schema formats. Only Avro is implemented so far; JSON Schema and Protobuf are listed as
not supported (HTTP 422) until their parsers and compatibility rules are in."""

from .base import Incompatibility, InvalidSchema

SUPPORTED_TYPES = ("AVRO",)

__all__ = ["SUPPORTED_TYPES", "Incompatibility", "InvalidSchema"]
