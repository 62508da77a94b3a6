"""`python -m local_world`: the local world's command line."""

import sys

from local_world.cli import main

sys.exit(main())
