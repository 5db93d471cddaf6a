"""Agora's domain services and the kit they stand on."""
