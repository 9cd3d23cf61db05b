"""mmer."""
