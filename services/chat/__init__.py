"""Chat rooms: history with a gapless per-room sequence, presence, attachments, fan-out across replicas."""
