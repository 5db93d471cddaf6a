"""Settings: typed values from the environment, one place, and a readable --help."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.kit.config import Settings, describe
from services.kit.registry import DOMAINS


def test_defaults_are_the_embedded_mesh():
    s = Settings.from_env({})
    assert s.backends == "embedded" and not s.real
    assert s.target("polls") == "127.0.0.1:50052"
    assert s.http_port == 8080


def test_values_are_typed_and_targets_are_per_domain():
    s = Settings.from_env({
        "AGORA_BACKENDS": "real", "AGORA_GRPC_PORT": "6000", "AGORA_SHUTDOWN_GRACE": "2.5",
        "AGORA_DATA_DIR": "/tmp/x", "AGORA_ORDERS_TARGET": "orders:50057", "AGORA_PORT_OFFSET": "100",
    })
    assert s.real and s.grpc_port == 6000 and s.shutdown_grace == 2.5 and s.data_dir == Path("/tmp/x")
    assert s.target("orders") == "orders:50057"
    assert s.target("polls") == "127.0.0.1:50152"


def test_bad_values_name_the_variable():
    with pytest.raises(ValueError, match="AGORA_GRPC_PORT"):
        Settings.from_env({"AGORA_GRPC_PORT": "many"})
    with pytest.raises(ValueError, match="AGORA_BACKENDS"):
        Settings.from_env({"AGORA_BACKENDS": "cloud"})


def test_help_lists_every_setting():
    text = describe()
    for name in ("AGORA_BACKENDS", "AGORA_POSTGRES_URL", "AGORA_AMQP_URL", "AGORA_<DOMAIN>_TARGET"):
        assert name in text


def test_every_domain_has_a_distinct_port():
    ports = [d.port for d in DOMAINS.values()]
    assert len(set(ports)) == len(ports) == 10


def test_the_client_package_knows_the_same_ports():
    """agora-client installs without the server code, so it keeps its own copy of the port map."""
    from agora.cli import DOMAIN_PORTS

    assert DOMAIN_PORTS == {name: d.port for name, d in DOMAINS.items()}


def test_polls_tally_in_process_defaults_on_and_reads_the_usual_words():
    assert Settings.from_env({}).polls_tally_in_process is True
    for raw in ("false", "FALSE", "0", "no", "off", " Off "):
        assert Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": raw}).polls_tally_in_process is False, raw
    for raw in ("true", "True", "1", "yes", "on"):
        assert Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": raw}).polls_tally_in_process is True, raw
    assert Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": ""}).polls_tally_in_process is True  # empty: default
    with pytest.raises(ValueError, match="AGORA_POLLS_TALLY_IN_PROCESS"):
        Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": "flase"})  # a typo is an error, not "false"
    assert "AGORA_POLLS_TALLY_IN_PROCESS" in describe()
