SELECT count(*)
FROM http_eventz
