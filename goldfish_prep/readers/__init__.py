"""Input readers: files, folders, globs and datasets in, ``Record`` objects out, in a stable order."""
