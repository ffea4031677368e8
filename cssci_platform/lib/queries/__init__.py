"""Named warehouse reads: every question asked of the warehouse has one function here, named for the question.

Convention: a query takes an open DuckDB connection (`WarehouseResource.connect()` or `warehouse.connect(path)`)
first, returns plain Python values or a polars frame, and holds its SQL as a module constant named like the
function. Writers stay in `lib/warehouse.py` and the domain writers (`lib/cohort_tables.py`).

- `catalog`: which tables and views the warehouse has, and their columns (both profiles).
- `eligibility`: which patients a stage may use, one explicit rule per stage.
- `modeling`: split roles, the study outcome's labels, champions.
- `prospective`: arrivals, predictions and recorded outcomes of the prospective loop.
- `summary`: what the command line prints about a home.
"""
