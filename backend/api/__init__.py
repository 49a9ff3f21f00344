"""HTTP routes, one module per resource; every route lives under /api."""
