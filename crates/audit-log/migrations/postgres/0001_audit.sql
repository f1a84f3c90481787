-- The audit log (SPEC.md §4): one append-only table of events and the jti replay store.

CREATE TABLE IF NOT EXISTS audit_events (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time               TIMESTAMPTZ NOT NULL,
    recorded_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
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
    token_jtis         TEXT[] NOT NULL DEFAULT '{}',
    attributes         JSONB
);

-- What operators search by: time ranges, correlation ids, patient, professional.
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time);
CREATE INDEX IF NOT EXISTS audit_events_trace_id ON audit_events (trace_id) WHERE trace_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_initial_request_id ON audit_events (initial_request_id)
    WHERE initial_request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_request_id ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_patient_bsn ON audit_events (patient_bsn, time) WHERE patient_bsn IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_patient_ins ON audit_events (patient_ins, time) WHERE patient_ins IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_events_user_id ON audit_events (user_id, time) WHERE user_id IS NOT NULL;

-- Append-only: rows are never changed. (Deletion stays possible for the retention purge.)
CREATE OR REPLACE FUNCTION audit_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: rows cannot be updated';
END
$$;
DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_update();

-- jti replay store shared by every replica: a (issuer, jti) pair is accepted once until it expires.
CREATE TABLE IF NOT EXISTS audit_jti (
    issuer     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX IF NOT EXISTS audit_jti_expires_at ON audit_jti (expires_at);
