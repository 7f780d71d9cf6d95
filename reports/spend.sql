-- Spend by month, tenant, feature and agent: calls (every call, refused ones too), tokens and
-- exact cost (the records' decimal strings, summed as DECIMAL). `unpriced_calls`: calls with
-- tokens but no price, never counted as zero cost. Same figures as
-- `aigw-report spend --by tenant,feature --period month` (summed over agents).
SELECT
    strftime(started, '%Y-%m')                          AS period,
    coalesce(tenant, '-')                               AS tenant,
    coalesce(feature, '-')                              AS feature,
    coalesce(agent, '-')                                AS agent,
    count(*)                                            AS calls,
    coalesce(sum(tokens.input), 0)                      AS input_tokens,
    coalesce(sum(tokens.output), 0)                     AS output_tokens,
    coalesce(sum(cost), 0)::DECIMAL(38, 12)             AS cost_usd,
    count(*) FILTER (WHERE tokens IS NOT NULL AND cost IS NULL) AS unpriced_calls
FROM audit
GROUP BY ALL
ORDER BY period, tenant, feature, agent;
