-- Why a projector stopped (or what it skipped), for `sutazai projections status`.
ALTER TABLE projection_checkpoints
    ADD COLUMN status text NOT NULL DEFAULT 'running',
    ADD COLUMN error text,
    ADD COLUMN error_sequence bigint;
