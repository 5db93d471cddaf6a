"""orders: takes orders and follows them to a final state."""
