"""catalog: the products sellers list, their prices and their stock."""
