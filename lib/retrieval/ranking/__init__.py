"""Learning to rank: losses, features and the rankers of the search path."""
