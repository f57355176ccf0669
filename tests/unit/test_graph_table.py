"""The graph's table: every event of every aggregate's spec is either drawn or not graphed."""

from __future__ import annotations

from projections.graph.cypher import BUILDERS, GRAPH, NODE_LABELS
from schemas.events import EVENTS
from schemas.specs import SPECS


def test_every_spec_is_described_once() -> None:
    assert sorted(graphed.aggregate for graphed in GRAPH) == sorted(SPECS)
    for graphed in GRAPH:
        assert graphed.spec is SPECS[graphed.aggregate]


def test_every_event_of_a_spec_is_built_or_named_as_not_graphed_by_its_own_aggregate() -> None:
    for graphed in GRAPH:
        decided = {*graphed.builders, *graphed.not_graphed}
        assert decided == set(graphed.spec.events), graphed.aggregate
    assert set(BUILDERS) == set(EVENTS)


def test_no_event_type_is_both_built_and_not_graphed() -> None:
    for graphed in GRAPH:
        assert not set(graphed.builders) & graphed.not_graphed, graphed.aggregate


def test_every_edge_joins_labels_the_graph_has() -> None:
    for graphed in GRAPH:
        for edge in graphed.edges:
            assert {edge.source, edge.target} <= set(NODE_LABELS), edge
