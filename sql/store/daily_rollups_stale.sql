-- The UTC days before a time (before) whose per-day rollups (cdc/control/daily_rollups.py) differ
-- from their per-hour ones: never folded, counted late since the fold, or no longer in the
-- per-hour rollups (pruned past the retention). Totals per day suffice: counts only grow,
-- and a pruned day disappears whole.
SELECT day
  FROM (SELECT date_bin('1 day', bucket, '2000-01-01 00:00+00') AS day, sum(n) AS n
          FROM {schema}.activity_per_hour
         WHERE bucket < %(before)s
         GROUP BY 1) AS hourly
  FULL JOIN (SELECT bucket AS day, sum(n) AS n
               FROM {schema}.activity_per_day
              GROUP BY 1) AS daily USING (day)
 WHERE hourly.n IS DISTINCT FROM daily.n
 ORDER BY day
