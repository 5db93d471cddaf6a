"""payments: charges orders through a payment provider, exactly once per order, and refunds them."""
