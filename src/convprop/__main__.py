"""``python -m convprop`` runs the command-line tool."""

import sys

from convprop.cli import main

sys.exit(main())
