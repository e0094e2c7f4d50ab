"""`python -m gateway.cli`: the `consent-gateway` command."""

import sys

from gateway.cli.commands import main

sys.exit(main())
