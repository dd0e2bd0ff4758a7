-- The inventory-aware waiting room's settings (see ticketing::queue::WaitingRoom).
--
-- headroom_pct: admission is a ceiling per tier: the worker admits while the tickets the active
-- buyers want stay within what is left plus this share (10 = 10 % more wanted than left, since
-- some admitted buyers book nothing).
-- hold_on_admission: admission reserves the buyer's wish at once (held until the entry token
-- expires or the buyer leaves); booking claims that hold.
ALTER TABLE events
    ADD COLUMN headroom_pct integer NOT NULL DEFAULT 10 CHECK (headroom_pct BETWEEN 0 AND 1000),
    ADD COLUMN hold_on_admission boolean NOT NULL DEFAULT false;
