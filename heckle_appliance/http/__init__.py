"""HTTP adapter: the flunkymaster API (node side and admin side) on twisted.web."""
