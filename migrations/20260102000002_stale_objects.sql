-- Object keys that must not outlive their presigned upload URL (issue 15 B7).
-- With S3 a presigned PUT can replace an object until the URL expires, so a
-- completed upload is copied to a fresh key and the key the URL was issued
-- for is recorded here; the pending-upload sweep deletes it once the URL has
-- expired (again, in case it was re-uploaded meanwhile). A key that a media
-- row references is never deleted by this table.
CREATE TABLE storage_stale_objects (
    bucket       varchar(16)  NOT NULL CHECK (bucket IN ('public', 'private')),
    key          varchar(255) NOT NULL,
    delete_after timestamptz  NOT NULL,
    PRIMARY KEY (bucket, key)
);

CREATE INDEX storage_stale_objects_due_idx ON storage_stale_objects (delete_after);
