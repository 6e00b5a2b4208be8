SELECT req_path, latncy
FROM http_events
