"""`python -m node.bench ledger|cluster ...` (what `scripts/bench` runs)."""

import sys

from node.bench.ledger import main

sys.exit(main())
