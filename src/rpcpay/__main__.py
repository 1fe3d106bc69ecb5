"""``python -m rpcpay`` runs the ``rpcpay`` command."""

import sys

from rpcpay.cli import main

sys.exit(main())
