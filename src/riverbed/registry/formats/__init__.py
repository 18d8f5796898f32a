"""Schema formats: Avro, JSON Schema and Protobuf."""

from .base import Incompatibility, InvalidSchema

SUPPORTED_TYPES = ("AVRO", "JSON", "PROTOBUF")

__all__ = ["SUPPORTED_TYPES", "Incompatibility", "InvalidSchema"]
