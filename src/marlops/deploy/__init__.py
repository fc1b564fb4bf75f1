"""Deployment artifacts as data: obtain helm/kubectl, render the chart and the kustomize overlays, and check
every rendered object (schemas of core kinds and CRDs, the pod security posture).

A leaf of the package: it imports nothing else of marlops, so `marlops deploy check` and the tests can run
on a machine that only needs the binaries and the schemas (docs/deployment.md).
"""
