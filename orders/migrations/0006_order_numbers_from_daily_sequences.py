"""Number each day's orders from a PostgreSQL sequence of that day, not from a counter row.

The counter row (one per day, incremented by `INSERT ... ON CONFLICT DO
UPDATE`) stayed locked from the order's insert to its commit, so every
checkout of the day waited for the one before it to commit (its WAL flush
included): one queue for the whole platform, the limit of its checkout rate
(README, "Capacity"). `nextval` takes no lock that lasts beyond the call; a
value is never handed out twice, also after a crash (a sequence's WAL record
precedes any commit that used its value). A checkout that rolls back after
taking its number leaves a gap, as any sequence does: numbers are unique and
rise within a day, as the contract asks, not gapless.

`orders_number_next(day)` creates the next day's sequence a day ahead, in
the transaction of an order that finds it missing; a concurrent order that
finds it missing too goes on without it (an advisory lock tried, not
waited for), so no checkout waits for another's DDL. Sequences of days more
than a week old are dropped then: the schema keeps about nine. Only with no
order the day before (the platform's first day, a quiet day) does the day's
first order create the day's own sequence, and an order arriving meanwhile
waits for that one's commit (its CREATE finds the name taken, then the
sequence).
"""
from django.db import migrations

PREFIX = "orders_number_"

FUNCTION = f"""
CREATE FUNCTION orders_number_next(day date) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    name text := '{PREFIX}' || to_char(day, 'YYYYMMDD');
    next_name text := '{PREFIX}' || to_char(day + 1, 'YYYYMMDD');
    sequence regclass := to_regclass(name);
    old record;
BEGIN
    IF sequence IS NULL THEN
        BEGIN
            EXECUTE format('CREATE SEQUENCE %I', name);
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;  -- created by a concurrent first order of the day, committed meanwhile
        END;
        sequence := name::regclass;
    END IF;
    -- Tomorrow's, a day ahead, by one transaction at a time; the others go on without waiting for it.
    IF to_regclass(next_name) IS NULL AND pg_try_advisory_xact_lock(hashtext('{PREFIX}'), 0) THEN
        EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I', next_name);
        FOR old IN
            SELECT sequencename FROM pg_sequences
            WHERE schemaname = current_schema() AND sequencename LIKE '{PREFIX}%'
              AND sequencename < '{PREFIX}' || to_char(day - 7, 'YYYYMMDD')
        LOOP
            EXECUTE format('DROP SEQUENCE IF EXISTS %I', old.sequencename);
        END LOOP;
    END IF;
    RETURN nextval(sequence);
END
$$
"""

# Each day still counted in the table goes on from its last number.
FROM_TABLE = f"""
DO $$
DECLARE
    counted record;
BEGIN
    FOR counted IN SELECT day, last_value FROM orders_ordernumbersequence LOOP
        EXECUTE format('CREATE SEQUENCE %I START %s', '{PREFIX}' || to_char(counted.day, 'YYYYMMDD'), counted.last_value + 1);
    END LOOP;
END
$$
"""

# Backwards: the table (recreated empty by the reversed DeleteModel) takes each day's last number.
TO_TABLE = f"""
DO $$
DECLARE
    counted record;
BEGIN
    FOR counted IN
        -- A sequence not used yet has no last_value: the number before its first.
        SELECT sequencename, coalesce(last_value, start_value - 1) AS last_value FROM pg_sequences
        WHERE schemaname = current_schema() AND sequencename LIKE '{PREFIX}%'
    LOOP
        IF counted.last_value > 0 THEN
            INSERT INTO orders_ordernumbersequence (day, last_value)
            VALUES (to_date(substr(counted.sequencename, length('{PREFIX}') + 1), 'YYYYMMDD'), counted.last_value);
        END IF;
        EXECUTE format('DROP SEQUENCE %I', counted.sequencename);
    END LOOP;
END
$$
"""


class Migration(migrations.Migration):
    dependencies = [("orders", "0005_payment_audit_watermark")]

    operations = [
        migrations.RunSQL([FROM_TABLE, FUNCTION], ["DROP FUNCTION orders_number_next(date)", TO_TABLE]),
        migrations.DeleteModel(name="OrderNumberSequence"),
    ]
