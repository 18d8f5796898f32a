"""The code generator: spec parsing helpers, and that the committed code is current."""

from __future__ import annotations

from pathlib import Path

import kafka_codegen as cg
import pytest

SPECS = cg.DEFAULT_SPECS
needs_specs = pytest.mark.skipif(not (SPECS / "clients").is_dir(), reason="Kafka specs not present")


def test_strip_comments_keeps_slashes_inside_strings() -> None:
    text = '{"a": "http://x", // comment\n "b": 1}'
    assert cg.strip_comments(text) == '{"a": "http://x", \n "b": 1}'


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [("0+", 0, None), ("3-7", 3, 7), ("5", 5, 5), ("none", 1, 0)],
)
def test_versions_parse(text: str, lo: int, hi: int | None) -> None:
    v = cg.Versions.parse(text)
    assert (v.lo, v.hi) == (lo, hi)


def test_versions_condition() -> None:
    valid = cg.Versions(0, 11)
    assert cg.Versions.parse("0+").condition("v", valid) is None
    assert cg.Versions.parse("3+").condition("v", valid) == "v >= 3"
    assert cg.Versions.parse("0-7").condition("v", valid) == "v <= 7"
    assert cg.Versions.parse("2-4").condition("v", valid) == "v >= 2 and v <= 4"
    assert cg.Versions.parse("none").condition("v", valid) == "False"
    assert cg.Versions.parse("12+").condition("v", valid) == "False"


def test_snake_case() -> None:
    assert cg.snake("TopicId") == "topic_id"
    assert cg.snake("ISRNodes") == "isr_nodes"
    assert cg.snake("ThrottleTimeMs") == "throttle_time_ms"


@needs_specs
def test_generated_code_is_current() -> None:
    assert cg.main(["--check"]) == 0


@needs_specs
def test_check_detects_stale_code(tmp_path: Path) -> None:
    assert cg.main(["--out", str(tmp_path)]) == 0
    (tmp_path / "messages" / "produce.py").write_text("# edited\n")
    assert cg.main(["--check", "--out", str(tmp_path)]) == 1
