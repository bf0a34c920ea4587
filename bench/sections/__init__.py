"""The benchmark parts, one module each; ``run(ctx)`` returns the part's JSON-ready results."""
