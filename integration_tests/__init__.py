"""Integration tests and their harness: real kernel, real namespaces, real peers."""
