-- Monthly partitions of {schema}.{records}. Months are UTC months: <records>_2025_06 holds
-- [2025-06-01 00:00 UTC, 2025-07-01 00:00 UTC). The DEFAULT partition <records>_default
-- catches any record without a month partition, so a write never fails for want of one.
--
-- `cdc partitions` (cdc/control/partitions.py) calls ensure_partitions to create months ahead and
-- detaches and drops months past the retention. The functions find the parent through a
-- dollar-quoted literal of its quoted name, so they work for any configured table name.

-- The partitions of the records table with their bounds (NULL bounds: the default partition).
CREATE FUNCTION {schema}.record_partitions()
RETURNS TABLE (partition_schema name, partition_name name, from_at timestamptz,
               to_at timestamptz, is_default boolean)
LANGUAGE sql STABLE
AS $fn$
SELECT n.nspname, c.relname, bounds.m[1]::timestamptz, bounds.m[2]::timestamptz,
       pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  -- the bound prints as FOR VALUES FROM ('2025-06-01 00:00:00+00') TO (...), with the
  -- session's time zone offset, so it reads back as the same instant
  LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                 $re$^FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)$re$)
         AS bounds(m) ON true
 WHERE i.inhparent = $name${schema}.{records}$name$::regclass
 ORDER BY 3 NULLS FIRST
$fn$;

-- One new partition (the default one when the bounds are NULL), with the TRUNCATE guard that
-- a statement trigger of the parent does not give it (see 0002).
CREATE FUNCTION {schema}.create_record_partition(rel text, from_at timestamptz,
                                                 to_at timestamptz)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    parent regclass := $name${schema}.{records}$name$::regclass;
    nsp name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = parent);
BEGIN
    IF from_at IS NULL THEN
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s DEFAULT', nsp, rel, parent);
    ELSE
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       nsp, rel, parent, from_at, to_at);
    END IF;
    EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %I.%I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION %I.refuse_record_change()',
                   nsp, rel, nsp);
    RETURN format('%I.%I', nsp, rel);
END
$fn$;

-- The default partition if missing, and one partition per UTC month from the current one to
-- months_ahead after it, unless a partition already covers the month. Returns what it created.
CREATE FUNCTION {schema}.ensure_partitions(months_ahead integer DEFAULT 3)
RETURNS SETOF text
LANGUAGE plpgsql
AS $fn$
DECLARE
    parent      regclass := $name${schema}.{records}$name$::regclass;
    nsp         name;
    prefix      text;    -- partition names are <prefix>_YYYY_MM, within 63 bytes
    default_nsp name;
    default_rel name;
    moving      text;
    column_list text;
    first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    month_start timestamp;  -- without time zone: month arithmetic in UTC, whatever TimeZone is
    lower_at    timestamptz;
    upper_at    timestamptz;
    strays      boolean;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 THEN
        RAISE EXCEPTION 'months_ahead must be 0 or more, not %', months_ahead;
    END IF;
    -- One maintainer at a time. This mode does not conflict with the sink's inserts or with
    -- readers; creating a partition takes the stronger lock below only for that moment.
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', parent);
    SELECT n.nspname, left(c.relname, 50) INTO nsp, prefix
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = parent;

    SELECT p.partition_schema, p.partition_name INTO default_nsp, default_rel
      FROM {schema}.record_partitions() p WHERE p.is_default;
    IF default_rel IS NULL THEN
        default_nsp := nsp;
        default_rel := prefix || '_default';
        RETURN NEXT {schema}.create_record_partition(default_rel, NULL, NULL);
    END IF;

    FOR i IN 0..months_ahead LOOP
        month_start := first_month + make_interval(months => i);
        lower_at := month_start AT TIME ZONE 'UTC';
        upper_at := (month_start + interval '1 month') AT TIME ZONE 'UTC';
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM {schema}.record_partitions() p
             WHERE NOT p.is_default AND p.from_at < upper_at AND p.to_at > lower_at);

        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I WHERE occurred_at >= $1 '
                       'AND occurred_at < $2)', default_nsp, default_rel)
           INTO strays USING lower_at, upper_at;
        IF NOT strays THEN
            RETURN NEXT {schema}.create_record_partition(
                prefix || to_char(month_start, '_YYYY_MM'), lower_at, upper_at);
            CONTINUE;
        END IF;

        -- Records of this month wait in the default partition (written while the month had
        -- no partition of its own). A partition cannot be created over rows of the default
        -- partition, and records are never deleted, so the default partition is replaced:
        -- detach it, create the month and a new default, route the old default's rows through
        -- the parent, drop the old one. DDL and INSERT only: the append-only triggers stay on.
        -- The parent is locked first, as the sink locks it, so that nobody deadlocks with us.
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', parent);
        moving := left(default_rel, 50) || '_moving';
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %I.%I', parent, default_nsp, default_rel);
        EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', default_nsp, default_rel, moving);
        PERFORM {schema}.create_record_partition(default_rel, NULL, NULL);
        RETURN NEXT {schema}.create_record_partition(
            prefix || to_char(month_start, '_YYYY_MM'), lower_at, upper_at);
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO column_list
          FROM pg_attribute a WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped;
        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %I.%I',
                       parent, column_list, column_list, default_nsp, moving);
        EXECUTE format('DROP TABLE %I.%I', default_nsp, moving);
    END LOOP;
END
$fn$;

SELECT {schema}.ensure_partitions(3);
