-- The PxL UDFs are callable from SQL.
SELECT px_upid_to_service_name(upid) AS service,
       count(*) AS requests,
       get_field(px_quantiles(latency), 'p50') / 1e6 AS p50_ms
FROM http_events
GROUP BY px_upid_to_service_name(upid)
