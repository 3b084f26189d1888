-- One PostgreSQL server for the stack, one database per service (run once, on an empty data
-- directory, as POSTGRES_USER).
CREATE DATABASE ingest;
CREATE DATABASE cartd;
CREATE DATABASE uniqueid;
CREATE DATABASE metadata;
