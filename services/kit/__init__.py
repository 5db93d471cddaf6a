"""What every Agora service stands on: server bootstrap, config, bus, stores, telemetry."""
