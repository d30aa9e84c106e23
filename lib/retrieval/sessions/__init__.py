"""Session-based next-item benchmarks (the SR-GNN protocol) on any folder with the two standard files."""
