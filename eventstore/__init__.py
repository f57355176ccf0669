"""The JetStream event store: streams, append with optimistic concurrency, reading
(one aggregate's events or the log), snapshots."""
