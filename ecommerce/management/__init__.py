"""Django management commands of `ecommerce` (Django finds them by this package path)."""
