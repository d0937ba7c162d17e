"""Framework adapters (installed as ``es_plugins.integrations``).

Each adapter translates one framework's events into core calls and holds no algorithm.
Frameworks are imported lazily inside each adapter module, never here.
"""
