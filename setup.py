"""Package discovery that pyproject.toml cannot express alone: every ``goldfish_prep`` subpackage, found
by ``find_packages``, plus the top-level ``cli/`` folder installed as ``goldfish_prep_cli``
(``package-dir`` in pyproject.toml). Everything else lives in pyproject.toml."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["goldfish_prep", "goldfish_prep.*"]), "goldfish_prep_cli"])
