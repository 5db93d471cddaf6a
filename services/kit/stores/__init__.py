"""Connections to the real and embedded databases, shared by every domain's store adapters.

The storage-port pattern (services/README.md), one domain at a time:

  services/<domain>/store.py       a typing.Protocol (the port) + `open_store(settings)`
                                   that picks an adapter: the real one when settings.real, else SQLite
  services/<domain>/stores/*.py    one adapter per backend, written against these connections
  tests/services/<domain>/test_store_contract.py
                                   one suite, parametrized over every adapter of the port

Each connection here keeps blocking drivers off the event loop (a thread pool, sized for the
driver) and offers `ping()`, which the server's health reporter probes.
"""
