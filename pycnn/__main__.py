"""``python -m pycnn``: the command line (pycnn/cli.py)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
