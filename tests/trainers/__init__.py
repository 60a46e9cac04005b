"""Trainer integration helpers: venvs, runner scripts run inside them, and the label comparison."""
