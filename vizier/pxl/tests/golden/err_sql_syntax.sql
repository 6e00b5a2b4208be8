SELECT req_path
FROM http_events
WHERE resp_status >=
