-- velt schema, MySQL / MariaDB dialect (kept in step with migrations/sqlite/0001_initial.sql).
-- Every time is a BIGINT of microseconds since the Unix epoch, UTC: no 2038 limit,
-- microsecond precision, and identical arithmetic (ranges, buckets) on every backend.
-- Portable to MySQL-compatible distributed SQL: no ENUMs, no triggers, no stored code.

CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email         VARCHAR(254) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    username      VARCHAR(64)  NOT NULL,
    locale        VARCHAR(16)  NOT NULL DEFAULT 'en',
    units         VARCHAR(16)  NOT NULL DEFAULT 'metric',
    created_at    BIGINT       NOT NULL,
    last_login_at BIGINT       NULL,
    UNIQUE KEY users_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per issued refresh token; a family is one login's chain of rotations.
CREATE TABLE refresh_tokens (
    id         CHAR(32) NOT NULL PRIMARY KEY,
    family_id  CHAR(32) NOT NULL,
    user_id    BIGINT   NOT NULL,
    issued_at  BIGINT   NOT NULL,
    expires_at BIGINT   NOT NULL,
    used_at    BIGINT   NULL,
    revoked_at BIGINT   NULL,
    KEY refresh_tokens_family (family_id),
    KEY refresh_tokens_user (user_id),
    CONSTRAINT refresh_tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = ascii;

CREATE TABLE devices (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id          BIGINT       NOT NULL,
    hardware_id      CHAR(16)     NOT NULL,
    alias            VARCHAR(64)  NOT NULL,
    version          VARCHAR(32)  NULL,
    status           VARCHAR(16)  NOT NULL DEFAULT 'onboarding',
    battery_level    SMALLINT     NULL,
    last_seen_at     BIGINT       NULL,
    token_version    BIGINT       NOT NULL DEFAULT 1,
    presence_version BIGINT       NOT NULL DEFAULT 0,
    created_at       BIGINT       NOT NULL,
    UNIQUE KEY devices_hardware_id (hardware_id),
    KEY devices_user (user_id),
    CONSTRAINT devices_status_check CHECK (status IN ('onboarding', 'online', 'offline')),
    CONSTRAINT devices_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE sessions (
    id         BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id    BIGINT NOT NULL,
    device_id  BIGINT NULL,
    start_time BIGINT NOT NULL,
    end_time   BIGINT NULL,
    created_at BIGINT NOT NULL,
    KEY sessions_user (user_id, start_time),
    KEY sessions_device (device_id, end_time),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    CONSTRAINT sessions_device_fk FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE SET NULL
) ENGINE = InnoDB;

-- The hot table. The clustered key (device, sample time) makes a re-sent sample a no-op
-- and a device's range read one key range; no foreign keys, so ingest pays for no parent
-- lookups (deletes of devices and sessions clean up explicitly). FLOAT as in the original.
CREATE TABLE telemetry (
    device_id  BIGINT NOT NULL,
    ts         BIGINT NOT NULL,
    session_id BIGINT NULL,
    ax FLOAT NOT NULL, ay FLOAT NOT NULL, az FLOAT NOT NULL,
    gx FLOAT NOT NULL, gy FLOAT NOT NULL, gz FLOAT NOT NULL,
    PRIMARY KEY (device_id, ts),
    KEY telemetry_session (session_id, ts)
) ENGINE = InnoDB;

CREATE TABLE crashes (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    device_id  BIGINT      NOT NULL,
    session_id BIGINT      NULL,
    ts         BIGINT      NOT NULL,
    severity   VARCHAR(8)  NOT NULL,
    peak_accel FLOAT       NOT NULL,
    latitude   DOUBLE      NULL,
    longitude  DOUBLE      NULL,
    confirmed  VARCHAR(16) NOT NULL DEFAULT 'auto',
    created_at BIGINT      NOT NULL,
    UNIQUE KEY crashes_device_ts (device_id, ts),
    CONSTRAINT crashes_severity_check CHECK (severity IN ('low', 'medium', 'high')),
    CONSTRAINT crashes_confirmed_check CHECK (confirmed IN ('auto', 'user', 'false_positive')),
    CONSTRAINT crashes_device_fk FOREIGN KEY (device_id) REFERENCES devices (id) ON DELETE CASCADE,
    CONSTRAINT crashes_session_fk FOREIGN KEY (session_id) REFERENCES sessions (id) ON DELETE SET NULL
) ENGINE = InnoDB;
