"""The `spanwire` command."""
