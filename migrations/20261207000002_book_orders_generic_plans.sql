-- book_orders plans its statements once per connection, not once per call.
--
-- PL/pgSQL caches each statement's plan, but with plan_cache_mode `auto` a statement with
-- parameters is planned afresh for its first five runs and then whenever the generic plan's
-- estimate is worse than the custom plans' average. The batch insert's parameters are arrays, whose
-- length the generic plan cannot know, so it never won: a profile of the booking ceiling
-- (scripts/bench_split.sh) found 7 % of Postgres's CPU in GetCachedPlan -> pg_plan_query under
-- book_orders. Every plan here is index look-ups by key and scans of the arrays passed in, the
-- same whatever their length, so the generic plan is the plan.
--
-- A later CREATE OR REPLACE of book_orders drops this setting unless it repeats it.
ALTER FUNCTION book_orders(uuid[], uuid[], text[], uuid[], uuid[], text[], bytea[], bigint[],
                           bigint[], integer[], uuid[], integer[], integer[])
    SET plan_cache_mode = force_generic_plan;
