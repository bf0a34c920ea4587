"""The activity monitor and dashboard in the browser (``cdc serve``): a read-only JSON API
and two pages on the same store and queries as ``cdc activity`` and ``cdc stats``.

``params`` validates what a request asks, ``app`` answers it from :mod:`cdc.store`,
``models`` documents the answers (OpenAPI), ``auth`` decides who may ask, ``server`` runs it
all (pool, token, uvicorn). The pages and their scripts are in ``static/``, shipped in the
wheel, with the chart library (uPlot, MIT): nothing is loaded from elsewhere.
"""
