"""The JetStream event store: streams, append with optimistic concurrency, load, read, snapshots."""
