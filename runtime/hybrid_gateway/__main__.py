"""`python -m hybrid_gateway run ...`, same as the `hybrid-gateway` console script."""

import sys

from hybrid_gateway.cli import main

sys.exit(main())
