"""`python -m fvcli.cli ...` is `fv ...` too. `python -m fvcli` is preferred: it installs fv's signal handling before
the command line's imports (fvcli/entry.py); this form can only install it after them."""
from .. import signals
from .commands import main

signals.install()
main()
