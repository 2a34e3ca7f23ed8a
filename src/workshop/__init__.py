"""The learner's toolkit: the `workshop` command and the pytest plugin every step's tests use.

One package per concern, layered (the contracts in pyproject.toml, checked by `lint-imports`):
`commands` > `checks` > `postgres` > `course`, with `warm` and `testing` standing apart.
"""
