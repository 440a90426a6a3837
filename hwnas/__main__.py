"""``python -m hwnas ...`` runs the command-line interface (same as the ``hwnas`` script)."""

from .cli import main

main()
