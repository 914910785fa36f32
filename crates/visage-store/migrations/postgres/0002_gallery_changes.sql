-- Every template added or removed, numbered in commit order, so that each replica can bring
-- its in-memory 1:N index up to date: it reads the changes after the last one it applied and
-- looks up the current state of each template. Only template ids are kept.
CREATE TABLE gallery_changes (
    seq          BIGSERIAL PRIMARY KEY,
    template_id  UUID NOT NULL,
    changed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION visage_gallery_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One writer at a time from here to commit: sequence numbers then follow commit order,
    -- so a replica that has seen change N has seen every committed change before it.
    PERFORM pg_advisory_xact_lock(7023001);
    IF TG_OP = 'DELETE' THEN
        INSERT INTO gallery_changes (template_id) VALUES (OLD.id);
    ELSE
        INSERT INTO gallery_changes (template_id) VALUES (NEW.id);
    END IF;
    -- Delivered at commit (and once per transaction); replicas also poll, so a lost
    -- notification only delays a change by the poll interval.
    PERFORM pg_notify('visage_gallery', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER templates_gallery_changes
    AFTER INSERT OR DELETE ON templates
    FOR EACH ROW EXECUTE FUNCTION visage_gallery_changed();
