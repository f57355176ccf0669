"""Aggregates and domain events: pure decide/evolve functions, no I/O and no imports of ours."""
