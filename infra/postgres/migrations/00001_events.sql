-- +goose Up

-- The log: every event of every stream. position numbers the events densely
-- (1, 2, 3, …) in commit order; see log_head. Stream names and event ids
-- compare byte by byte (COLLATE "C"), whatever the database's collation:
-- they are only ever compared for equality, and memcmp is the cheapest.
CREATE TABLE events (
    position   BIGINT      PRIMARY KEY CHECK (position >= 1),
    stream     TEXT        COLLATE "C" NOT NULL,
    version    BIGINT      NOT NULL CHECK (version >= 1),
    event_id   TEXT        COLLATE "C" NOT NULL UNIQUE,
    type       TEXT        NOT NULL,
    schema     INTEGER     NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    actor_kind TEXT        NOT NULL,
    actor_id   TEXT        NOT NULL,
    data       BYTEA       NOT NULL, -- the JSON of infra/codec, byte for byte
    UNIQUE (stream, version)
);

-- log_head holds the last position appended, in its one row. Every append
-- transaction locks that row before it reads or writes events and keeps the
-- lock until it has committed, so appends commit one after the other in
-- position order, whichever process makes them. The low fill factor leaves
-- room on the page for the row's new versions (HOT updates).
CREATE TABLE log_head (
    id       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    position BIGINT  NOT NULL CHECK (position >= 0)
) WITH (fillfactor = 10);

INSERT INTO log_head (position) VALUES (0);

-- Events are facts: once appended they never change.
-- +goose StatementBegin
CREATE FUNCTION events_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_immutable();

-- +goose Down
DROP TABLE log_head;
DROP TABLE events;
DROP FUNCTION events_immutable();
