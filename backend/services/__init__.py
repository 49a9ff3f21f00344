"""Request services: the domain rules behind each route, over the store layer.

Routes (``toroid.backend.api``) only translate HTTP: they parse the request, call one function here, and shape the
answer. Everything that can go wrong raises a typed error of ``toroid.store.errors`` with a message that says what
is wrong and how to fix it; one exception handler (``toroid.backend.main``) maps it to its 4xx/503 status.
"""
