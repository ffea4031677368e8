"""The `cluster` profile's building blocks (issue 15): warehouse backends that accept concurrent writers from many
processes or machines, and the packaged DuckDB extensions they load offline."""
