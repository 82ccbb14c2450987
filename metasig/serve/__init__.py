"""One HTTP endpoint for every registered model (V2 / Open Inference Protocol).

app.py         routes, middleware (auth, access log, metrics)
protocol.py    V2 request parsing and validation, responses (JSON and binary tensors), CSV
repository.py  index.json: re-read on change, name + version resolution, path containment
cache.py       LRU of loaded models within a count and memory budget, single-flight loads
model.py       a verified, loaded artifact and its V2 metadata; memory estimate
metrics.py     Prometheus metrics
server.py      run it with uvicorn
"""

from metasig.serve.app import Settings, create_app

__all__ = ["Settings", "create_app"]
