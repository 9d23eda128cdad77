import sys

from kcs.cli import main

sys.exit(main())
