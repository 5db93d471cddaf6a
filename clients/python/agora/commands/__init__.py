"""The `agora` command's client verbs, one module per domain; `agora.cli` assembles them."""
