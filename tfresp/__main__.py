"""``python -m tfresp ...``: the same command line as the ``tfresp`` script."""
import sys

from tfresp.cli import main

if __name__ == "__main__":
    sys.exit(main())
