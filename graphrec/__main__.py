"""``python -m graphrec`` (and ``torchrun -m graphrec``) runs the command line."""

import sys

from graphrec.cli import main

sys.exit(main())
