-- Plain SQL over the same tables.
SELECT req_method, req_path, resp_status
FROM http_events
WHERE resp_status >= 400 AND time_ >= now() - INTERVAL '5 minutes'
