"""The graph projection: who worked on what, kept in a Cypher graph store (FalkorDB or Neo4j)."""
