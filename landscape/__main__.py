"""`python -m landscape` is the `landscape` command."""
import sys

from .cli import main

sys.exit(main())
