"""``python -m vid_operator`` runs the operator (see :mod:`vid_operator.main`)."""

import sys

from vid_operator.main import main

sys.exit(main())
