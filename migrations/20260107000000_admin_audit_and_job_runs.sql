-- Admin audit log (issue 19): one row per admin action, kept for
-- AUDIT_RETENTION_DAYS by the scheduler's audit-cleanup job. No foreign keys:
-- entries must outlive the accounts, groups and reports they mention.
CREATE TABLE admin_audit (
    id          uuid PRIMARY KEY,           -- UUIDv7: newest first = id DESC
    admin_id    uuid NOT NULL,
    action      text NOT NULL,
    target_type text NOT NULL,
    target_id   uuid,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Keyset pages (id DESC) under each filter, and the retention sweep.
CREATE INDEX admin_audit_admin_idx ON admin_audit (admin_id, id DESC);
CREATE INDEX admin_audit_action_idx ON admin_audit (action, id DESC);
CREATE INDEX admin_audit_target_idx ON admin_audit (target_id, id DESC);
CREATE INDEX admin_audit_created_idx ON admin_audit (created_at);

-- The last run of each scheduler job, for `atoitalk status`.
CREATE TABLE scheduler_runs (
    job         text PRIMARY KEY,
    finished_at timestamptz NOT NULL,
    duration_ms bigint NOT NULL,
    ok          boolean NOT NULL,
    deleted     bigint NOT NULL DEFAULT 0,
    failed      bigint NOT NULL DEFAULT 0,
    error       text
);
