"""Running a step's checks and reading their verdicts: the pytest plugin and its fixtures
(PgBouncer's among them), blame, `workshop verify`, the catalogues of wrong answers tried,
progress, timings.

It may use `workshop.postgres` and `workshop.course` below it, and `workshop.warm` (to time
a warm check); never the commands above it.
"""
