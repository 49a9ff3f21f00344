"""The shared lower layer: settings, database, migrations, artifact store, job ledger, Celery app.

Both the API (toroid.backend) and the workers (toroid.worker) stand on it; it imports the science core and
nothing above it (docs/architecture.md)."""
