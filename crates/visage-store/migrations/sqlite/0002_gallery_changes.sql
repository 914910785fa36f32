-- Every template added or removed, numbered in commit order (SQLite has one writer at a
-- time), so that another process sharing the file can bring its in-memory 1:N index up to
-- date. Only template ids are kept.
CREATE TABLE gallery_changes (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    template_id  BLOB NOT NULL,
    changed_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TRIGGER templates_added AFTER INSERT ON templates
BEGIN
    INSERT INTO gallery_changes (template_id) VALUES (NEW.id);
END;

CREATE TRIGGER templates_removed AFTER DELETE ON templates
BEGIN
    INSERT INTO gallery_changes (template_id) VALUES (OLD.id);
END;
