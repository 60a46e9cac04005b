"""``python -m goldfish_prep_cli``: the same as the ``goldfish-prep`` command."""

from goldfish_prep_cli.main import main

main()
