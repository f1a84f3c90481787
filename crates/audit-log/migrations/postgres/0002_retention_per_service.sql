-- Retention is per service (each service purges only its own events) and exports are per
-- service: both read by (service, time).
CREATE INDEX IF NOT EXISTS audit_events_service_time ON audit_events (service, time);

-- Append-only, continued: TRUNCATE skips row triggers, so it gets a statement trigger of its own.
-- (The services' role has no TRUNCATE privilege either; this also stops the owner by mistake.)
CREATE OR REPLACE FUNCTION audit_events_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: it cannot be truncated';
END
$$;
DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events;
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_truncate();
