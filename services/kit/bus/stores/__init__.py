"""The bus's own tables (transactional outbox, consumer inbox), one module per SQL backend: \
all the bus's SQL."""
