-- The privacy proof: every upstream attempt of a call whose privacy zone does not allow the
-- region of the provider it reached (zones and their regions: envoy/privacy-zones.json, or
-- --zones FILE). A zone missing from the file, or an attempt whose region is unknown, cannot be
-- proven compliant and is listed too. A compliant deployment returns ZERO ROWS.
-- (Seed 00's question, "did any customer data leave India last quarter?", is this query over
-- the quarter's logs: zone `in` allows only Indian regions.)
SELECT
    a.request_id,
    coalesce(a.tenant, '-')   AS tenant,
    a.privacy_zone            AS zone,
    a.provider,
    coalesce(a.region, '-')   AS region,
    CASE
        WHEN z.zone IS NULL THEN 'zone not in zones file'
        WHEN a.region IS NULL THEN 'region unknown'
        ELSE 'region outside zone'
    END                       AS why
FROM attempts a
LEFT JOIN zones z ON z.zone = a.privacy_zone
WHERE a.privacy_zone IS NOT NULL
  AND (z.zone IS NULL
       OR (NOT list_contains(z.regions, '*')
           AND (a.region IS NULL OR NOT list_contains(z.regions, a.region))))
ORDER BY a.started, a.request_id;
