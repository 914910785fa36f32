-- An audit event may carry an id given by the service, so that writing it twice keeps it
-- once: an event spooled on a replica's disk while the database could not be reached, or one
-- whose first write failed without saying whether it committed, is replayed by that id.
ALTER TABLE audit_events ADD COLUMN event_id UUID;
CREATE UNIQUE INDEX audit_events_event_id ON audit_events (event_id);
