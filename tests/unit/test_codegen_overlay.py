"""The generator takes the newer specs (../shared/kafka-message-specs-share) where they only
add versions, and keeps the older file where the newer one drops versions riverbed answers."""

from __future__ import annotations

import kafka_codegen as cg
import pytest

from riverbed.protocol.messages import request_class, response_class

needs_specs = pytest.mark.skipif(not (cg.DEFAULT_SPECS / "clients").is_dir() or not (cg.DEFAULT_OVERLAY / "clients").is_dir(), reason="Kafka specs not present")


@needs_specs
def test_newer_specs_win_where_they_add_versions() -> None:
    assert request_class(3).MAX_VERSION == response_class(3).MAX_VERSION == 13  # Metadata (trunk)
    assert request_class(15).MAX_VERSION == 6  # DescribeGroups
    assert request_class(18).MAX_VERSION >= 4  # ApiVersions


@needs_specs
def test_older_spec_kept_where_the_newer_drops_versions() -> None:
    # trunk's DescribeConfigs is 1-4; riverbed still reads v0
    assert request_class(32).MIN_VERSION == 0
    older = cg.DEFAULT_SPECS / "clients" / "DescribeConfigsRequest.json"
    newer = cg.DEFAULT_OVERLAY / "clients" / "DescribeConfigsRequest.json"
    assert not cg._keeps_versions((older, ""), newer)
    assert cg._keeps_versions((cg.DEFAULT_SPECS / "clients" / "MetadataRequest.json", ""), cg.DEFAULT_OVERLAY / "clients" / "MetadataRequest.json")
