"""`python -m fvcli ...` is `fv ...` (tests and scripts that start fv as a child process use this form)."""
from .entry import main

main()
