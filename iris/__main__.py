"""``python -m iris`` is the same as the ``iris`` command."""

from iris.cli import main

main(prog_name="iris")
