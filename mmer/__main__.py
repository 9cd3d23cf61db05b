"""``python -m mmer`` runs the command line."""

import sys

from mmer.cli import main

sys.exit(main())
