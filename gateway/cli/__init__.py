"""The `consent-gateway` command: `main` parses the arguments and runs one command.

`commands.py` holds the parser and the commands; a command whose output has more to it
than a line (the decision log, webhook delivery state) keeps its formatting in a module
of its own here, so that printing and exit codes stay out of the modules that do the work.
"""

from gateway.cli.commands import main

__all__ = ["main"]
