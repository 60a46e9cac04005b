"""The bundled minimal trainer and the memorisation measurement (needs the ``train`` extra: torch)."""
