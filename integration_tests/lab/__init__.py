"""The multi-node lab (see __main__)."""
