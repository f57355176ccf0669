"""Projectors from the event log into Postgres read models and the graph; checkpoints, rebuild."""
