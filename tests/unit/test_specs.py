"""Every aggregate's spec agrees with the domain, the row folds and the gateway's types.

The checks that need the database (the migrations' columns, the gateway's queries) are in
`tests/integration/test_specs.py`; the graph's are in `tests/unit/test_graph_table.py`.
"""

from __future__ import annotations

import pytest
from strawberry.types.base import StrawberryObjectDefinition

from domain.aggregates import AGGREGATES
from domain.task import TRANSITIONS, SubtaskAttached
from gateway.schema import build_schema
from projections.aggregate_tables import AggregateTable, AggregateTableProjector
from projections.read_models import TABLES
from projections.task_rows import task_row_fold
from schemas.envelope import aggregate_subjects
from schemas.events import EVENTS, schema_version
from schemas.specs import BOOKKEEPING, SPECS, TASK, AggregateSpec, Column, ReadModel
from tests.unit.test_task_transitions import LIVES, _decided

SCHEMA = build_schema(max_depth=10, max_tokens=2_000, max_aliases_count=10)
WITH_TABLES = [spec for spec in SPECS.values() if spec.read_model is not None]


def _read_model(spec: AggregateSpec) -> ReadModel:
    assert spec.read_model is not None
    return spec.read_model


def _camel(name: str) -> str:
    """A Python field's GraphQL name, as Strawberry's default name converter spells it."""
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def test_every_aggregate_of_the_domain_has_one_spec() -> None:
    assert sorted(SPECS) == sorted(AGGREGATES)
    for name, spec in SPECS.items():
        assert spec.kind is AGGREGATES[name]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_spec_names_its_subject_events_and_commands(name: str) -> None:
    spec = SPECS[name]
    assert spec.subject == aggregate_subjects(name, "*")
    own = {kind: model for kind, (aggregate, model) in EVENTS.items() if aggregate == name}
    assert spec.events == {kind: schema_version(model) for kind, model in own.items()}
    assert spec.commands[0] is spec.kind.creation


@pytest.mark.parametrize("spec", WITH_TABLES, ids=lambda spec: spec.name)
def test_a_table_is_its_id_then_its_own_columns_then_the_bookkeeping(spec: AggregateSpec) -> None:
    read_model = _read_model(spec)
    names = [column.name for column in read_model.columns]
    assert read_model.id_column == spec.kind.id_field
    assert names[-len(BOOKKEEPING) :] == list(BOOKKEEPING)
    assert len(set(names)) == len(names)
    for column in read_model.own_columns:
        assert column.set_by, column.name
        assert column.set_by <= set(spec.events), column.name


@pytest.mark.parametrize("spec", WITH_TABLES, ids=lambda spec: spec.name)
def test_every_field_of_the_state_is_a_column_or_named_as_kept_in_the_state_only(
    spec: AggregateSpec,
) -> None:
    read_model = _read_model(spec)
    fields = set(spec.kind.state_type.model_fields)
    columns = {column.name for column in read_model.columns}
    assert fields - read_model.state_only == fields & columns
    assert read_model.state_only <= fields


def test_the_task_columns_are_set_by_the_events_whose_transitions_set_them() -> None:
    own = _read_model(TASK).own_columns
    for kind, transition in TRANSITIONS.items():
        if kind == "TaskSubmitted":
            assert all(kind in column.set_by for column in own)
            continue
        sets = {*transition.copies, *transition.sets}
        if transition.status is not None or transition.status_if_any is not None:
            sets.add("status")
        if kind == SubtaskAttached.__name__:
            sets.add("subtask_ids")  # the one change `evolve` writes out beside the transitions
        assert {column.name for column in own if kind in column.set_by} == sets, kind


@pytest.mark.parametrize("table", TABLES, ids=lambda table: table.table)
def test_every_projector_writes_the_columns_of_its_spec(
    table: AggregateTable,
) -> None:
    projector = AggregateTableProjector(table)
    spec = SPECS[projector.spec.kind.name]
    assert projector.name == _read_model(spec).table
    assert projector.subject_filter == spec.subject
    assert projector._names == [column.name for column in _read_model(spec).columns]


def test_both_task_folds_give_every_column_of_the_spec() -> None:
    fast = task_row_fold()
    assert fast is not None
    table = next(table for table in TABLES if table.kind.name == TASK.name)
    own = [column.name for column in _read_model(TASK).own_columns]
    for state in (task for life in LIVES.values() for _, task in _decided(life)):
        assert sorted(table.columns(state)) == sorted(own)
        assert sorted(fast.columns(state.model_dump(mode="json"))) == sorted(own)


SHOWN: dict[str, tuple[Column, ...]] = {
    **{_read_model(spec).graphql_type: _read_model(spec).shown for spec in WITH_TABLES},
    **{
        child.graphql_type: child.shown
        for spec in WITH_TABLES
        for child in _read_model(spec).children
    },
}
"""Every GraphQL type that shows a table's rows -> the columns it shows."""


@pytest.mark.parametrize("graphql_type", sorted(SHOWN))
def test_the_graphql_type_has_a_field_for_every_column_it_shows(graphql_type: str) -> None:
    definition = SCHEMA.get_type_by_name(graphql_type)
    assert isinstance(definition, StrawberryObjectDefinition), graphql_type
    converter = SCHEMA.config.name_converter
    fields = {converter.get_graphql_name(field) for field in definition.fields}
    shown = {_camel(column.field) for column in SHOWN[graphql_type] if column.field is not None}
    assert shown - fields == set()
