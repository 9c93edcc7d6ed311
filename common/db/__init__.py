"""The shared Postgres schema and the SQL for each table family."""
