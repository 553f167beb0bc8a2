#!/bin/sh
# The image's entry point. Prepares the node home on the mounted volume from the environment
# and the mounted genesis/key (node/ops/container.py: the key is copied from its Secret on
# first start only, never over an existing key or signer state), then execs the daemon
# `python -m node.server --home $PROVLEDGER_HOME`. `entrypoint.sh render` only prepares.
set -eu
exec python -m node.ops.container "${1:-start}"
