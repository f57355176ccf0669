"""Neighbourhood questions the graph answers (the Cypher lives in `cypher.py`)."""

from __future__ import annotations

from uuid import UUID

from projections.graph.cypher import AGENTS_OF_TASK_TREE, TASKS_REFERENCING_DOCUMENT
from projections.graph.port import GraphPort


class GraphQueries:
    """Who worked on what, over whichever graph store the platform runs."""

    def __init__(self, graph: GraphPort) -> None:
        self._graph = graph

    async def agents_of_task_tree(self, task_id: UUID) -> list[UUID]:
        """Agents assigned to a task or to any task below it."""
        rows = await self._graph.read(AGENTS_OF_TASK_TREE, {"id": str(task_id)})
        return [UUID(str(row[0])) for row in rows if row and row[0]]

    async def tasks_referencing_document(self, document_id: UUID) -> list[UUID]:
        """Tasks that reference a document."""
        rows = await self._graph.read(TASKS_REFERENCING_DOCUMENT, {"id": str(document_id)})
        return [UUID(str(row[0])) for row in rows if row and row[0]]
