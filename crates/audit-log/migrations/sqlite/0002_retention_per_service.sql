-- Retention is per service (each service purges only its own events) and exports are per
-- service: both read by (service, time).
CREATE INDEX IF NOT EXISTS audit_events_service_time ON audit_events (service, time);
