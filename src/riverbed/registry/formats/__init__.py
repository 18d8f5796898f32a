"""Schema formats: Avro and JSON Schema. Protobuf is refused as not supported (HTTP 422,
42201) until its parser and compatibility rules are in."""

from .base import Incompatibility, InvalidSchema

SUPPORTED_TYPES = ("AVRO", "JSON")

__all__ = ["SUPPORTED_TYPES", "Incompatibility", "InvalidSchema"]
