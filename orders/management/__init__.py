"""Django management commands of `orders` (Django finds them by this package path)."""
