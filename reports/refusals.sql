-- Calls the gateway refused or answered with its own error, by reason: the outcome, the status
-- and the stable error code the caller got (README, "Errors"), per day and tenant.
SELECT
    strftime(started, '%Y-%m-%d')   AS day,
    coalesce(tenant, '-')           AS tenant,
    outcome,
    status,
    coalesce(error_code, '-')       AS error_code,
    count(*)                        AS calls
FROM audit
WHERE outcome LIKE 'refused_%' OR error_code IS NOT NULL
GROUP BY ALL
ORDER BY day, calls DESC, tenant, error_code;
