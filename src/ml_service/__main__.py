"""Entry point for `python -m ml_service`."""

import sys

from ml_service.cli import main

sys.exit(main())
