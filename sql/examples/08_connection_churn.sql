-- Connection churn per minute: lifetimes opened and closed, a quick view of bursty behaviour.
WITH opened AS (SELECT date_trunc('minute', first_seen) AS minute, count(*) AS opened
                FROM connections WHERE direction <> 'listen' GROUP BY 1),
     closed AS (SELECT date_trunc('minute', closed_at) AS minute, count(*) AS closed
                FROM connections WHERE closed AND direction <> 'listen' GROUP BY 1)
SELECT minute, coalesce(opened, 0) AS opened, coalesce(closed, 0) AS closed
FROM opened FULL OUTER JOIN closed USING (minute)
ORDER BY minute;
