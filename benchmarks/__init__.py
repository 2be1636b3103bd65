"""On-demand benchmarks: each prints one JSON object on its last line (never run as tests)."""
