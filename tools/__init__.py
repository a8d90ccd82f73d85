"""Command-line tools: the ``tmq`` command and its subcommands."""
