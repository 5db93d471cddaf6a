# The two commands a newcomer needs are `make up` and `make test`; the rest are their parts.
.PHONY: up test bootstrap servers proto contracts lint bench clean

up: bootstrap            ## start every service and the bridge on embedded defaults (SQLite, in-process bus)
	.venv/bin/agora up

test: bootstrap lint servers contracts   ## lint (seconds), then the whole suite against real PostgreSQL, RabbitMQ, MongoDB, Cassandra
	.venv/bin/pytest

bootstrap:               ## venv with the mesh + dev tools, buf from npm, google/* protos for buf
	bash tools/bootstrap.sh

servers:                 ## install (if missing) and start the real servers the tests need, and the test tools
	bash deployments/local/services.sh start
	bash tools/install-test-tools.sh

proto: bootstrap         ## regenerate stubs, typing stubs and the descriptor set from protos/
	.venv/bin/python tools/genproto.py

contracts: bootstrap     ## buf lint, buf breaking against main, stubs in sync with protos
	bash tools/buf_check.sh

lint: bootstrap          ## ruff over all the Python (the generated stubs are excluded in pyproject.toml)
	.venv/bin/ruff check services gateway tests tools bench clients examples

bench: bootstrap servers ## benchmarks (not tests): figures go to bench/RESULTS.md
	for b in bench/*_bench.py; do .venv/bin/python $$b || exit 1; done

clean:
	rm -rf .venv node_modules .build data .pytest_cache
