"""`python -m kube_test_apiserver`: run the test API server until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from .app import main

if __name__ == "__main__":
    sys.exit(main())
