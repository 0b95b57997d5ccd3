"""Django management commands of `checkout` (Django finds them by this package path)."""
