-- The audit log (SPEC.md §4) on SQLite, the embedded default: same columns as on PostgreSQL.
-- Times are UTC RFC 3339 text with six fraction digits (YYYY-MM-DDTHH:MM:SS.ffffffZ), so text
-- order is time order; token_jtis and attributes are JSON text.

CREATE TABLE IF NOT EXISTS audit_events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    time               TEXT NOT NULL,
    recorded_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    service            TEXT NOT NULL,
    use_case           TEXT NOT NULL,
    direction          TEXT NOT NULL CHECK (direction IN
                           ('received_request', 'sent_request', 'received_response', 'returned_response')),
    trace_id           TEXT,
    initial_request_id TEXT,
    request_id         TEXT,
    peer               TEXT,
    status             TEXT,
    error_code         TEXT,
    client_id          TEXT,
    ura                TEXT,
    user_id            TEXT,
    user_role          TEXT,
    patient_bsn        TEXT,
    patient_ins        TEXT,
    scope              TEXT,
    token_jtis         TEXT NOT NULL DEFAULT '[]',
    attributes         TEXT
);

CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time);
CREATE INDEX IF NOT EXISTS audit_events_trace_id ON audit_events (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_initial_request_id ON audit_events (initial_request_id)
    WHERE initial_request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_request_id ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_patient_bsn ON audit_events (patient_bsn, time) WHERE patient_bsn IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_patient_ins ON audit_events (patient_ins, time) WHERE patient_ins IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_user_id ON audit_events (user_id, time) WHERE user_id IS NOT NULL;

CREATE TRIGGER IF NOT EXISTS audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: rows cannot be updated');
END;

CREATE TABLE IF NOT EXISTS audit_jti (
    issuer     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    first_seen TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX IF NOT EXISTS audit_jti_expires_at ON audit_jti (expires_at);
