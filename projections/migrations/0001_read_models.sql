-- Where each projector got to: its last applied stream sequence, stored in the same
-- transaction as the effects of the events up to it.
CREATE TABLE projection_checkpoints (
    name        text PRIMARY KEY,
    version     integer NOT NULL,
    sequence    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every envelope, for audit search.
CREATE TABLE event_log (
    sequence           bigint PRIMARY KEY,
    event_id           uuid NOT NULL UNIQUE,
    event_type         text NOT NULL,
    schema_version     integer NOT NULL,
    aggregate_type     text NOT NULL,
    aggregate_id       uuid NOT NULL,
    aggregate_version  integer NOT NULL,
    occurred_at        timestamptz NOT NULL,
    actor_id           text NOT NULL,
    actor_kind         text NOT NULL,
    command_id         text NOT NULL,
    correlation_id     text NOT NULL,
    causation_id       text,
    reason             text,
    data               jsonb NOT NULL
);
CREATE INDEX event_log_aggregate ON event_log (aggregate_type, aggregate_id, aggregate_version);
CREATE INDEX event_log_type ON event_log (event_type, occurred_at);
CREATE INDEX event_log_actor ON event_log (actor_id, occurred_at);
CREATE INDEX event_log_correlation ON event_log (correlation_id);
CREATE INDEX event_log_time ON event_log (occurred_at);

-- Tasks as the gateway lists them. `events_applied` counts the events folded into each row:
-- it equals the task's events in the log exactly when none was applied twice or skipped.
CREATE TABLE tasks (
    task_id           uuid PRIMARY KEY,
    owner_id          uuid NOT NULL,
    task_type         text NOT NULL,
    priority          integer NOT NULL,
    status            text NOT NULL,
    payload           jsonb NOT NULL,
    attempts          integer NOT NULL,
    max_attempts      integer NOT NULL,
    agent_id          uuid,
    progress          integer NOT NULL,
    result            jsonb,
    error             jsonb,
    parent_id         uuid,
    subtask_ids       uuid[] NOT NULL,
    document_ids      uuid[] NOT NULL,
    deadline_seconds  double precision,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    version           integer NOT NULL,
    last_sequence     bigint NOT NULL,
    events_applied    integer NOT NULL,
    state             jsonb NOT NULL
);
CREATE INDEX tasks_status_priority ON tasks (status, priority, created_at);
CREATE INDEX tasks_owner ON tasks (owner_id, created_at);
CREATE INDEX tasks_agent ON tasks (agent_id) WHERE agent_id IS NOT NULL;
CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
