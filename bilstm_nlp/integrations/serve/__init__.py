"""`bilstm-nlp serve`: the models over HTTP with micro-batching, metrics and a web page.

`batching` gathers concurrent requests into one call of the annotation core, `metrics` counts,
`app` holds the FastAPI routes and limits, `static/` the page. Needs the `[serve]` extra.
"""
