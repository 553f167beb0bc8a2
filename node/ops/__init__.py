"""Local operations: node homes, node processes and local clusters.

- `homes`: create cluster directories and node homes (genesis, keys, configs).
- `processes`: start a node process in the background, find it, stop it.
- `cluster`: `cluster_up` / `cluster_down` for a directory of nodes.
- `tls`: a cluster's private CA and the node certificates (`cluster init|up --tls`).
- `container`: the image's entry point — a node home rendered from the environment and the
  mounted genesis and key, then the daemon.

Talks to running nodes only through `node.client`; never imports the daemon.
"""
