"""`python -m workshop` is the `workshop` command."""

from .warm import main

main()
