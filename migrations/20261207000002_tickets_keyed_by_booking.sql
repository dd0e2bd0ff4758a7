-- Tickets keyed by their booking, step 2 of 3: the index built in step 1 becomes the primary key
-- (a rename under a brief lock, no rebuild); the ticket id's own index goes with the old key.
-- Nothing refers to tickets by key, and no query of any release changes.
ALTER TABLE tickets DROP CONSTRAINT tickets_pkey;
ALTER TABLE tickets ADD CONSTRAINT tickets_pkey PRIMARY KEY USING INDEX tickets_booking_ticket_key;
