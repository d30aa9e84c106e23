"""Mining session logs: co-click pairs and graded listing labels with position-bias propensities."""
