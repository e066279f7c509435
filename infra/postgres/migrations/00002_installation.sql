-- +goose Up

-- installation names this log, in its one row, with a random id made once:
-- what this installation shares with others (a NATS server's subjects) is
-- kept apart by it.
CREATE TABLE messenger_installation (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    id       TEXT    NOT NULL
);

INSERT INTO messenger_installation (id)
VALUES (md5(random()::text || clock_timestamp()::text || pg_backend_pid()::text || current_database()));

-- +goose Down
DROP TABLE messenger_installation;
