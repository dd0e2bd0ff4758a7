-- Adaptive admission, off while the three are NULL: the worker moves the admission rate between
-- adaptive_floor_per_minute and admission_per_minute (the ceiling) to hold the booking p95 under
-- adaptive_target_p95_ms and the share of 503 answers under adaptive_max_503_pct.
-- Nullable columns without a default: a catalog change only, no table rewrite.
ALTER TABLE events
    ADD COLUMN adaptive_target_p95_ms integer
        CHECK (adaptive_target_p95_ms BETWEEN 1 AND 600000),
    ADD COLUMN adaptive_max_503_pct integer
        CHECK (adaptive_max_503_pct BETWEEN 0 AND 100),
    ADD COLUMN adaptive_floor_per_minute integer
        CHECK (adaptive_floor_per_minute BETWEEN 1 AND 1000000),
    ADD CONSTRAINT events_adaptive_all_or_none CHECK (
        (adaptive_target_p95_ms IS NULL) = (adaptive_max_503_pct IS NULL)
        AND (adaptive_max_503_pct IS NULL) = (adaptive_floor_per_minute IS NULL));
