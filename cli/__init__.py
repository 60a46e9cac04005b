"""The goldfish-prep command line (installed as ``goldfish_prep_cli``): a thin table over the library."""
