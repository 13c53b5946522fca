-- velt schema, SQLite dialect (kept in step with migrations/mysql/0001_initial.sql).
-- Every time is a BIGINT of microseconds since the Unix epoch, UTC: no 2038 limit,
-- microsecond precision, and identical arithmetic (ranges, buckets) on every backend.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    username      TEXT    NOT NULL,
    locale        TEXT    NOT NULL DEFAULT 'en',
    units         TEXT    NOT NULL DEFAULT 'metric',
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER
);

-- One row per issued refresh token; a family is one login's chain of rotations.
CREATE TABLE refresh_tokens (
    id         TEXT    PRIMARY KEY,
    family_id  TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE devices (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hardware_id      TEXT    NOT NULL UNIQUE,
    alias            TEXT    NOT NULL,
    version          TEXT,
    status           TEXT    NOT NULL DEFAULT 'onboarding'
                     CHECK (status IN ('onboarding', 'online', 'offline')),
    battery_level    INTEGER,
    last_seen_at     INTEGER,
    token_version    INTEGER NOT NULL DEFAULT 1,
    presence_version INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id  INTEGER REFERENCES devices (id) ON DELETE SET NULL,
    start_time INTEGER NOT NULL,
    end_time   INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id, start_time);
CREATE INDEX sessions_device ON sessions (device_id, end_time);

-- The hot table. Keyed by (device, sample time) so a re-sent sample is a no-op and a
-- device's range read is one key range; no foreign keys, so ingest pays for no lookups
-- (deletes of devices and sessions clean up explicitly).
CREATE TABLE telemetry (
    device_id  INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    session_id INTEGER,
    ax REAL NOT NULL, ay REAL NOT NULL, az REAL NOT NULL,
    gx REAL NOT NULL, gy REAL NOT NULL, gz REAL NOT NULL,
    PRIMARY KEY (device_id, ts)
) WITHOUT ROWID;
CREATE INDEX telemetry_session ON telemetry (session_id, ts);

CREATE TABLE crashes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    session_id INTEGER REFERENCES sessions (id) ON DELETE SET NULL,
    ts         INTEGER NOT NULL,
    severity   TEXT    NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
    peak_accel REAL    NOT NULL,
    latitude   REAL,
    longitude  REAL,
    confirmed  TEXT    NOT NULL DEFAULT 'auto'
               CHECK (confirmed IN ('auto', 'user', 'false_positive')),
    created_at INTEGER NOT NULL,
    UNIQUE (device_id, ts)
);
