-- max_output_rows: 4
-- px_pluck on a JSON column, with the engine's row limit.
SELECT px_pluck(req_headers, 'User-Agent') AS agent, count(*) AS n
FROM http_events
GROUP BY 1
ORDER BY n DESC, agent
