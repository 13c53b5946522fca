-- What velt has acknowledged to each device: every batch up to acked_seq is stored.
-- Kept so that acknowledgements stay contiguous across restarts.
ALTER TABLE devices ADD COLUMN acked_seq BIGINT NOT NULL DEFAULT 0;
