-- The queue-worker looks after the sales opening soon (and just opened) by a range of
-- `on_sale_at`, not by walking the catalog: this index makes that range a short scan whatever
-- the number of events.
CREATE INDEX events_by_on_sale ON events (on_sale_at);
