"""The graph's table: every event of the domain is either drawn or named as not graphed."""

from __future__ import annotations

from domain.aggregates import AGGREGATES
from projections.graph.cypher import BUILDERS, GRAPH, NODE_LABELS
from schemas.events import EVENTS


def test_every_aggregate_of_the_domain_is_described_once() -> None:
    assert sorted(graphed.aggregate for graphed in GRAPH) == sorted(AGGREGATES)


def test_every_event_type_is_built_or_named_as_not_graphed_by_its_own_aggregate() -> None:
    decided = {
        kind: graphed.aggregate
        for graphed in GRAPH
        for kind in (*graphed.builders, *graphed.not_graphed)
    }
    assert decided == {kind: aggregate for kind, (aggregate, _) in EVENTS.items()}
    assert set(BUILDERS) == set(EVENTS)


def test_no_event_type_is_both_built_and_not_graphed() -> None:
    for graphed in GRAPH:
        assert not set(graphed.builders) & graphed.not_graphed, graphed.aggregate


def test_every_edge_joins_labels_the_graph_has() -> None:
    for graphed in GRAPH:
        for edge in graphed.edges:
            assert {edge.source, edge.target} <= set(NODE_LABELS), edge
