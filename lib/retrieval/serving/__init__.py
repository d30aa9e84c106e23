"""The handoff to serving: carousels loaded into a key-value store that a marketplace reads online."""
