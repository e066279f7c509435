-- installation names this log, in its one row, with a random id made once:
-- what this installation shares with others (a NATS server's subjects) is
-- kept apart by it.
CREATE TABLE installation (
    only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
    id       TEXT    NOT NULL
) STRICT;

INSERT INTO installation (only_row, id) VALUES (1, lower(hex(randomblob(16))));
