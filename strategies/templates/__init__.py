"""Files of a new strategy plugin package, rendered by strategies/scaffold.py (``string.Template``)."""
