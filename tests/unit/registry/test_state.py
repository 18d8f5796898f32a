"""The registry state machine: ids, versions and deletes, and that replaying the records a
sequence of changes wrote rebuilds the same state (what a restart does)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riverbed.registry import contexts, errors
from riverbed.registry.state import Record, Reference, State, decode, encode


def schema(n: int) -> str:
    return json.dumps({"type": "record", "name": "R", "fields": [{"name": f"f{i}", "type": "int", "default": 0} for i in range(n)]})


class Log:
    """A state plus the records written, as the Kafka-backed store keeps them."""

    def __init__(self) -> None:
        self.state = State()
        self.records: list[Record] = []

    def change(self, plan):  # type: ignore[no-untyped-def]
        result, records = plan(self.state)
        for rec in records:
            key, value = encode(rec)
            decoded = decode(key, value)
            assert decoded is not None
            self.state.apply(*decoded)
            self.records.append(rec)
        return result

    def replay(self) -> State:
        fresh = State()
        for key, value in self.records:
            fresh.apply(key, value)
        return fresh


def test_same_schema_same_id_across_subjects_and_new_versions() -> None:
    log = Log()
    a = log.change(lambda s: s.plan_register("a", "AVRO", schema(1), (), False))
    b = log.change(lambda s: s.plan_register("b", "AVRO", schema(1), (), False))
    again = log.change(lambda s: s.plan_register("a", "AVRO", schema(1), (), False))
    assert a.id == b.id == again.id and a.version == 1 and b.version == 1 and again.version == 1
    c = log.change(lambda s: s.plan_register("a", "AVRO", schema(2), (), False))
    assert (c.id, c.version) == (a.id + 1, 2)


def test_delete_rules() -> None:
    log = Log()
    log.change(lambda s: s.plan_register("a", "AVRO", schema(1), (), False))
    log.change(lambda s: s.plan_register("a", "AVRO", schema(2), (), False))
    with pytest.raises(errors.RegistryError) as e:
        log.change(lambda s: s.plan_delete_subject("a", permanent=True))
    assert e.value.code == 40405
    with pytest.raises(errors.RegistryError) as e:
        log.change(lambda s: s.plan_soft_delete_version("a", 1, permanent=True))
    assert e.value.code == 40407
    assert log.change(lambda s: s.plan_soft_delete_version("a", 1, permanent=False)) == 1
    with pytest.raises(errors.RegistryError) as e:
        log.change(lambda s: s.plan_soft_delete_version("a", 1, permanent=False))
    assert e.value.code == 40406
    assert [v.version for v in log.state.live_versions("a")] == [2]
    assert log.change(lambda s: s.plan_delete_subject("a", permanent=False)) == [2]
    with pytest.raises(errors.RegistryError) as e:
        log.change(lambda s: s.plan_delete_subject("a", permanent=False))
    assert e.value.code == 40404
    assert log.state.subjects() == [] and log.state.subjects(deleted=True) == ["a"]
    # a schema registered again after a soft delete gets the next version number, same id
    again = log.change(lambda s: s.plan_register("a", "AVRO", schema(1), (), False))
    assert (again.version, again.id) == (3, 1)
    assert log.change(lambda s: s.plan_soft_delete_version("a", 3, permanent=False)) == 3
    assert log.change(lambda s: s.plan_delete_subject("a", permanent=True)) == [1, 2, 3]
    assert log.state.subjects(deleted=True) == []
    with pytest.raises(errors.RegistryError) as e:
        log.state.schema_by_id(1)
    assert e.value.code == 40403


def test_version_and_mode_errors() -> None:
    log = Log()
    log.change(lambda s: s.plan_register("a", "AVRO", schema(1), (), False))
    with pytest.raises(errors.RegistryError) as e:
        log.state.get_version("a", "0")
    assert e.value.code == 42202
    with pytest.raises(errors.RegistryError) as e:
        log.state.get_version("a", 7)
    assert e.value.code == 40402
    with pytest.raises(errors.RegistryError) as e:
        log.state.get_version("nope", 1)
    assert e.value.code == 40401
    from riverbed.registry.state import mode_record

    log.change(lambda s: (None, [mode_record(None, "READONLY")]))
    with pytest.raises(errors.RegistryError) as e:
        log.change(lambda s: s.plan_register("a", "AVRO", schema(3), (), False))
    assert e.value.code == 42205


def test_import_mode_keeps_given_ids_and_refuses_clashes() -> None:
    from riverbed.registry.state import mode_record

    log = Log()
    log.change(lambda s: (None, [mode_record(None, "IMPORT")]))
    row = log.change(lambda s: s.plan_register("a", "AVRO", schema(1), (), False, schema_id=100, version=5))
    assert (row.id, row.version) == (100, 5)
    with pytest.raises(errors.RegistryError):
        log.change(lambda s: s.plan_register("b", "AVRO", schema(2), (), False, schema_id=100))
    log.change(lambda s: (None, [mode_record(None, "READWRITE")]))
    assert log.change(lambda s: s.plan_register("b", "AVRO", schema(2), (), False)).id == 101


ops = st.lists(
    st.tuples(st.sampled_from(["reg", "soft", "hard", "soft_subject", "hard_subject"]), st.sampled_from(["a", "b", "c", ":.t1:a", ":.t1:d", ":.t2:a"]), st.integers(0, 4)),
    max_size=40,
)


@settings(deadline=None, max_examples=200)
@given(ops)
def test_replay_rebuilds_state_and_ids_stay_unique(steps: list[tuple[str, str, int]]) -> None:
    log = Log()
    from riverbed.registry.state import config_record

    log.change(lambda s: (None, [config_record(None, "NONE")]))
    for op, subject, n in steps:
        try:
            if op == "reg":
                log.change(lambda s, subject=subject, n=n: s.plan_register(subject, "AVRO", schema(n), (), False))
            elif op in ("soft", "hard"):
                log.change(lambda s, subject=subject, n=n, op=op: s.plan_soft_delete_version(subject, n + 1, permanent=op == "hard"))
            else:
                log.change(lambda s, subject=subject, op=op: s.plan_delete_subject(subject, permanent=op == "hard_subject"))
        except errors.RegistryError:
            pass
        # within each context: one id per schema text, one schema text per id
        content_of: dict[tuple[str, int], str] = {}
        for subject, rows in log.state.versions.items():
            ctx = contexts.context_of(subject)
            for v in rows.values():
                assert content_of.setdefault((ctx, v.id), v.schema) == v.schema
        for ctx in {c for c, _ in content_of}:
            texts = [t for (c, _), t in content_of.items() if c == ctx]
            assert len(set(texts)) == len(texts)
    replayed = log.replay()
    assert {s: {n: (v.id, v.schema, v.deleted) for n, v in r.items()} for s, r in replayed.versions.items()} == {
        s: {n: (v.id, v.schema, v.deleted) for n, v in r.items()} for s, r in log.state.versions.items()
    }
    assert replayed.max_ids == log.state.max_ids


def test_contexts_have_their_own_ids_config_and_references() -> None:
    log = Log()
    first = log.change(lambda s: s.plan_register("orders-value", "AVRO", schema(1), (), False))
    other = log.change(lambda s: s.plan_register(":.staging:orders-value", "AVRO", schema(2), (), False))
    assert (first.id, other.id) == (1, 1)  # each context counts its own ids
    assert len(json.loads(log.state.schema_by_id(1).schema)["fields"]) == 1
    assert len(json.loads(log.state.schema_by_id(1, ".staging").schema)["fields"]) == 2
    assert log.state.all_contexts() == [".", ".staging"]
    assert log.state.subjects() == [":.staging:orders-value", "orders-value"]
    assert log.state.subjects(prefix="") == ["orders-value"]
    assert log.state.subjects(prefix=":.staging:") == [":.staging:orders-value"]
    assert contexts.normalize(":.:orders-value") == "orders-value"
    assert contexts.split(":.staging:orders-value") == (".staging", "orders-value")
    # a context's own config applies to its subjects, before the global one
    from riverbed.registry.state import config_record

    log.change(lambda s: (None, [config_record(":.staging:", "NONE")]))
    assert log.state.compatibility(":.staging:orders-value") == "NONE"
    assert log.state.compatibility("orders-value") == "BACKWARD"
    # an unqualified reference resolves in the referrer's context
    ref = Reference("R", "orders-value", 1)
    wrapper = json.dumps({"type": "record", "name": "W", "fields": [{"name": "r", "type": "R"}]})
    row = log.change(lambda s: s.plan_register(":.staging:wrapper", "AVRO", wrapper, (ref,), False))
    assert row.id == 2
    assert log.state.referenced_by(":.staging:orders-value", 1) == [2]
    assert log.state.referenced_by("orders-value", 1) == []


def test_ids_of_permanently_deleted_schemas_are_not_reused_after_compaction() -> None:
    log = Log()
    for n, subject in enumerate(["a", "b", "c"]):
        log.change(lambda s, n=n, subject=subject: s.plan_register(subject, "AVRO", schema(n), (), False))
    log.change(lambda s: s.plan_delete_subject("c", permanent=False))
    log.change(lambda s: s.plan_delete_subject("c", permanent=True))
    # what compaction leaves once the tombstones are gone: the latest value of each key, no tombstones
    latest: dict[str, Record] = {}
    for key, value in log.records:
        latest[json.dumps(key, sort_keys=True)] = (key, value)
    compacted = State()
    for key, value in latest.values():
        if value is not None:
            compacted.apply(key, value)
    assert "c" not in compacted.versions
    row, _ = compacted.plan_register("d", "AVRO", schema(9), (), False)
    assert row.id == 4  # not 3, the deleted schema's id
