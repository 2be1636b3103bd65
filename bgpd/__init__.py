"""bgpd: per-node BGP route distribution for Calico clusters, with ExaBGP as the BGP engine."""

__version__ = "0.1.0"
