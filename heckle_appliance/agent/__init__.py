"""The node agent in its two forms: flunky.py (Python) and flunky.sh (POSIX sh)."""
