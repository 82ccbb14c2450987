"""Benchmarks and study generators (`python -m metasig.bench ...`, `make bench`): tools, never
imported by the workflow or the server."""
