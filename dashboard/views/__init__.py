"""The dashboard's views: each module has ``layout()`` and ``register(app, client, ...)``."""
