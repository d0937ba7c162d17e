"""Adds ``optimum-cli sparsity ...`` (es-plugins) through Optimum's documented extension point.

optimum-cli imports every module in the ``optimum.commands.register`` namespace at start-up
and registers what ``REGISTER_COMMANDS`` lists; keep this import cheap and never let it break
the rest of optimum-cli.
"""

try:
    from es_plugins.integrations.optimum import SparsityCommand
except ImportError as exc:  # es-plugins half-installed: optimum-cli must still work
    import warnings

    warnings.warn(f"es-plugins: optimum-cli sparsity commands unavailable ({exc})", stacklevel=1)
    REGISTER_COMMANDS = []
else:
    REGISTER_COMMANDS = [SparsityCommand]
