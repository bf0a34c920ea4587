"""Reports generated from results.json: markdown (markdown.py) and a PNG chart (chart.py)."""
