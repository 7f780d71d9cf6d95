-- Provider health, over every upstream attempt: attempts, errors (an attempt with an error
-- class; one cancelled because the caller left has none), error rate, errors by class, and
-- nearest-rank p50/p95 latency to response headers. Same figures as `aigw-report providers`.
WITH by_class AS (
    SELECT provider, error_class, count(*) AS n
    FROM attempts
    WHERE error_class IS NOT NULL
    GROUP BY ALL
),
classes AS (
    SELECT provider, string_agg(error_class || '=' || n, ' ' ORDER BY error_class) AS errors_by_class
    FROM by_class
    GROUP BY provider
),
per AS (
    SELECT
        provider,
        count(*)                                        AS attempts,
        count(error_class)                              AS errors,
        list_sort(list(latency_ms) FILTER (WHERE latency_ms IS NOT NULL)) AS lat
    FROM attempts
    GROUP BY provider
)
SELECT
    per.provider,
    attempts,
    errors,
    round(100.0 * errors / attempts, 1)                 AS error_rate_pct,
    coalesce(errors_by_class, '')                       AS errors_by_class,
    lat[greatest(ceil(0.50 * len(lat))::BIGINT, 1)]     AS p50_ms,
    lat[greatest(ceil(0.95 * len(lat))::BIGINT, 1)]     AS p95_ms
FROM per
LEFT JOIN classes USING (provider)
ORDER BY per.provider;
