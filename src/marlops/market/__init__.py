"""Market data: ticks → bars → indicators → matrices, events, synthetic and imported sources.

Imports nothing else of the package (see the import-linter contracts in pyproject.toml).
"""
