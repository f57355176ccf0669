-- One row per aggregate, folded with the domain's evolve; `state` keeps the whole folded state
-- so a batch can continue from it, `events_applied` proves exactly-once.
CREATE TABLE users (
    user_id         uuid PRIMARY KEY,
    email           text NOT NULL UNIQUE,
    username        text NOT NULL UNIQUE,
    role            text NOT NULL,
    active          boolean NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         integer NOT NULL,
    last_sequence   bigint NOT NULL,
    events_applied  integer NOT NULL,
    state           jsonb NOT NULL
);

CREATE TABLE agents (
    agent_id        uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    kind            text NOT NULL,
    capabilities    text[] NOT NULL,
    model           text NOT NULL,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         integer NOT NULL,
    last_sequence   bigint NOT NULL,
    events_applied  integer NOT NULL,
    state           jsonb NOT NULL
);
CREATE INDEX agents_status ON agents (status);

CREATE TABLE agent_messages (
    message_id       uuid PRIMARY KEY,
    source_agent_id  uuid NOT NULL,
    target_agent_id  uuid NOT NULL,
    task_id          uuid,
    message_type     text NOT NULL,
    payload          jsonb NOT NULL,
    acknowledged     boolean NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          integer NOT NULL,
    last_sequence    bigint NOT NULL,
    events_applied   integer NOT NULL,
    state            jsonb NOT NULL
);
CREATE INDEX agent_messages_task ON agent_messages (task_id) WHERE task_id IS NOT NULL;
CREATE INDEX agent_messages_target ON agent_messages (target_agent_id, created_at);

CREATE TABLE documents (
    document_id      uuid PRIMARY KEY,
    owner_id         uuid NOT NULL,
    title            text NOT NULL,
    content_hash     text NOT NULL,
    content_size     integer NOT NULL,
    inline_content   boolean NOT NULL,
    metadata         jsonb NOT NULL,
    status           text NOT NULL,
    chunk_count      integer NOT NULL,
    embedding_model  text,
    error            jsonb,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          integer NOT NULL,
    last_sequence    bigint NOT NULL,
    events_applied   integer NOT NULL,
    state            jsonb NOT NULL
);
CREATE INDEX documents_owner ON documents (owner_id, created_at);

CREATE TABLE conversations (
    conversation_id  uuid PRIMARY KEY,
    owner_id         uuid NOT NULL,
    title            text NOT NULL,
    model            text NOT NULL,
    closed           boolean NOT NULL,
    message_count    integer NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          integer NOT NULL,
    last_sequence    bigint NOT NULL,
    events_applied   integer NOT NULL,
    state            jsonb NOT NULL
);
CREATE INDEX conversations_owner ON conversations (owner_id, created_at);

CREATE TABLE conversation_messages (
    conversation_id  uuid NOT NULL REFERENCES conversations ON DELETE CASCADE,
    position         integer NOT NULL,
    message_id       uuid NOT NULL UNIQUE,
    role             text NOT NULL,
    content          text NOT NULL,
    model            text,
    in_reply_to      uuid,
    citations        jsonb NOT NULL,
    PRIMARY KEY (conversation_id, position)
);
