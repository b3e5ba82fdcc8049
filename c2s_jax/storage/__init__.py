"""Where files go: writes that appear whole or not at all, on local disks and object stores
(atomic.py), JSON-lines files (json_lines.py), and the local cache of what can always be
rebuilt (cache.py)."""
