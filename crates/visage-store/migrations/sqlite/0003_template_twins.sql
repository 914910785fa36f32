-- Re-embedding after a model change (`visage reembed`): a template made from the stored image
-- of another template names it here. One face is the original template (NULL here) and its
-- twins, one per recognizer. Deleting the original (pruning the old model) turns its twins into
-- originals; a twin cannot be stored for a template that no longer exists.
ALTER TABLE templates ADD COLUMN source_template_id BLOB REFERENCES templates (id) ON DELETE SET NULL;
CREATE UNIQUE INDEX templates_twin ON templates (source_template_id, model);
CREATE INDEX templates_model ON templates (model);
