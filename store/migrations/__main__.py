"""``python -m toroid.store.migrations revision -m "..."`` and the other Alembic commands (see ``main``)."""

from toroid.store.migrations import main

main()
