"""The catalog: categories, products and their stock.

Owns the catalog API, its services and selectors, and `inventory`, the one
place that locks products and takes or gives back stock. Imports `core` and
`resilience`; never checkout, orders or `ecommerce` (they import it).
"""
