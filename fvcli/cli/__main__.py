"""`python -m fvcli.cli ...` is `fv ...` (used by tests and scripts that start fv as a child process)."""
from .commands import main

main()
