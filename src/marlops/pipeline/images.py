"""The one container image every pipeline step (and every server) runs: the package installed once."""

IMAGE = "ghcr.io/marlops/marlops:0.1.0"
