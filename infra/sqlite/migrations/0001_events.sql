-- The log: every event of every stream. position is the rowid, assigned in
-- commit order by SQLite's single writer, so the log has no gaps.
CREATE TABLE events (
    position   INTEGER PRIMARY KEY,
    stream     TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version >= 1),
    event_id   TEXT    NOT NULL UNIQUE,
    type       TEXT    NOT NULL,
    schema     INTEGER NOT NULL,
    at         TEXT    NOT NULL, -- RFC 3339, UTC, nanoseconds
    actor_kind TEXT    NOT NULL,
    actor_id   TEXT    NOT NULL,
    data       BLOB    NOT NULL, -- JSON of the event's own fields, see infra/codec
    UNIQUE (stream, version)
) STRICT;

-- Events are facts: once appended they never change.
CREATE TRIGGER events_immutable_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;

CREATE TRIGGER events_immutable_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are immutable');
END;
