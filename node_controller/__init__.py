"""node_controller: Calico resources (Kubernetes API or a folder of YAML) to this node's
desired BGP configuration."""
