-- The gateway keys that cost the most, per month: calls, tokens, exact cost, and the share of
-- the month's spend. Keys are named by id and fingerprint (the key itself is never logged).
WITH per_key AS (
    SELECT
        strftime(started, '%Y-%m')              AS period,
        coalesce(key_id, '-')                   AS key_id,
        coalesce(key_fingerprint, '-')          AS key_fingerprint,
        any_value(tenant)                       AS tenant,
        count(*)                                AS calls,
        coalesce(sum(tokens.input + tokens.output), 0) AS tokens,
        coalesce(sum(cost), 0)::DECIMAL(38, 12) AS cost_usd
    FROM audit
    GROUP BY ALL
)
SELECT
    *,
    round(100 * cost_usd / nullif(sum(cost_usd) OVER (PARTITION BY period), 0), 1) AS share_pct
FROM per_key
QUALIFY row_number() OVER (PARTITION BY period ORDER BY cost_usd DESC, key_id) <= 20
ORDER BY period, cost_usd DESC, key_id;
