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


def test_polls_tally_in_process_defaults_on_and_reads_the_usual_words():
    assert Settings.from_env({}).polls_tally_in_process is True
    for raw in ("false", "FALSE", "0", "no", "off", " Off "):
        assert Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": raw}).polls_tally_in_process is False, raw
    for raw in ("true", "True", "1", "yes", "on"):
        assert Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": raw}).polls_tally_in_process is True, raw
    # empty: default
    assert Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": ""}).polls_tally_in_process is True
    with pytest.raises(ValueError, match="AGORA_POLLS_TALLY_IN_PROCESS"):
        Settings.from_env({"AGORA_POLLS_TALLY_IN_PROCESS": "flase"})  # a typo is an error, not "false"
    assert "AGORA_POLLS_TALLY_IN_PROCESS" in describe()


DOMAIN_SETTINGS = {  # variable: (field, default)
    "AGORA_ORDERS_PAYMENT_TIMEOUT": ("orders_payment_timeout", 900.0),
    "AGORA_PAYMENTS_SCHEMA": ("payments_schema", "payments"),
    "AGORA_PAYMENTS_MAX_ATTEMPTS": ("payments_max_attempts", 4),
    "AGORA_PAYMENTS_RETRY_DELAY": ("payments_retry_delay", 0.5),
    "AGORA_PAYMENTS_ATTEMPT_TIMEOUT": ("payments_attempt_timeout", 5.0),
    "AGORA_NOTIFICATIONS_SCHEMA": ("notifications_schema", "notifications"),
    "AGORA_NOTIFICATIONS_MAX_ATTEMPTS": ("notifications_max_attempts", 6),
    "AGORA_NOTIFICATIONS_RETRY_DELAY": ("notifications_retry_delay", 2.0),
    "AGORA_SMTP_HOST": ("smtp_host", "127.0.0.1"),
    "AGORA_SMTP_PORT": ("smtp_port", 25),
    "AGORA_SMTP_FROM": ("smtp_from", "Agora <no-reply@agora.local>"),
    "AGORA_SMTP_TIMEOUT": ("smtp_timeout", 10.0),
}


def test_domain_settings_have_their_defaults_and_are_listed():
    s = Settings.from_env({})
    text = describe()
    for var, (name, default) in DOMAIN_SETTINGS.items():
        assert getattr(s, name) == default and type(getattr(s, name)) is type(default), var
        assert var in text, var
        assert Settings.from_env({var: ""}) == s, f"{var} empty means its default"


def test_domain_settings_are_read_and_typed():
    s = Settings.from_env({
        "AGORA_ORDERS_PAYMENT_TIMEOUT": "60", "AGORA_PAYMENTS_SCHEMA": "pay2",
        "AGORA_PAYMENTS_MAX_ATTEMPTS": "2",
        "AGORA_PAYMENTS_RETRY_DELAY": "0", "AGORA_PAYMENTS_ATTEMPT_TIMEOUT": "0.25",
        "AGORA_NOTIFICATIONS_SCHEMA": "n2", "AGORA_NOTIFICATIONS_MAX_ATTEMPTS": "30",
        "AGORA_NOTIFICATIONS_RETRY_DELAY": "0.2", "AGORA_SMTP_HOST": "mail.internal",
        "AGORA_SMTP_PORT": "2525",
        "AGORA_SMTP_FROM": "Shop <shop@example.com>", "AGORA_SMTP_TIMEOUT": "3",
    })
    assert (s.orders_payment_timeout, s.payments_schema, s.payments_max_attempts) == (60.0, "pay2", 2)
    assert (s.payments_retry_delay, s.payments_attempt_timeout) == (0.0, 0.25)
    assert (s.notifications_schema, s.notifications_max_attempts, s.notifications_retry_delay) \
        == ("n2", 30, 0.2)
    assert (s.smtp_host, s.smtp_port, s.smtp_from, s.smtp_timeout) \
        == ("mail.internal", 2525, "Shop <shop@example.com>", 3.0)


@pytest.mark.parametrize("var, raw", [
    ("AGORA_ORDERS_PAYMENT_TIMEOUT", "15m"), ("AGORA_ORDERS_PAYMENT_TIMEOUT", "0"),
    ("AGORA_PAYMENTS_MAX_ATTEMPTS", "2.5"), ("AGORA_PAYMENTS_MAX_ATTEMPTS", "0"),
    ("AGORA_PAYMENTS_RETRY_DELAY", "-1"), ("AGORA_PAYMENTS_ATTEMPT_TIMEOUT", "0"),
    ("AGORA_NOTIFICATIONS_MAX_ATTEMPTS", "six"), ("AGORA_NOTIFICATIONS_RETRY_DELAY", "soon"),
    ("AGORA_SMTP_PORT", "smtp"), ("AGORA_SMTP_PORT", "70000"), ("AGORA_SMTP_TIMEOUT", "nan"),
])
def test_invalid_domain_settings_fail_at_start_naming_the_variable(var, raw):
    with pytest.raises(ValueError, match=var):
        Settings.from_env({var: raw})


def test_the_domains_build_their_rules_from_settings_with_the_same_defaults():
    """The small per-domain dataclasses keep their own defaults (tests build them directly); the
    settings' defaults must be the same numbers."""
    from datetime import timedelta

    from services.notifications.domain import DeliveryRules
    from services.notifications.senders import SmtpSettings
    from services.orders.domain import PAYMENT_TIMEOUT
    from services.payments.domain import PaymentRules

    defaults = Settings.from_env({})
    assert PaymentRules.from_settings(defaults) == PaymentRules()
    assert DeliveryRules.from_settings(defaults) == DeliveryRules()
    assert SmtpSettings.from_settings(defaults) == SmtpSettings()
    assert timedelta(seconds=defaults.orders_payment_timeout) == PAYMENT_TIMEOUT

    s = Settings.from_env({"AGORA_PAYMENTS_MAX_ATTEMPTS": "2", "AGORA_PAYMENTS_RETRY_DELAY": "0.1",
                           "AGORA_PAYMENTS_ATTEMPT_TIMEOUT": "1", "AGORA_NOTIFICATIONS_MAX_ATTEMPTS": "3",
                           "AGORA_NOTIFICATIONS_RETRY_DELAY": "0.5", "AGORA_SMTP_HOST": "relay",
                           "AGORA_SMTP_PORT": "1025", "AGORA_SMTP_FROM": "x@y", "AGORA_SMTP_TIMEOUT": "2"})
    assert PaymentRules.from_settings(s) == PaymentRules(max_attempts=2, retry_delay=0.1, attempt_timeout=1.0)
    assert DeliveryRules.from_settings(s) == DeliveryRules(max_attempts=3, retry_delay=0.5)
    assert SmtpSettings.from_settings(s) == SmtpSettings(host="relay", port=1025, sender="x@y", timeout=2.0)


# Modules under services/ and gateway/ that may read the process environment, and why.
ENVIRONMENT_READERS = {
    "services/kit/config.py": "Settings.from_env: the one place AGORA_* variables are read",
    # prometheus-client's own variable (not a setting): the library reads it at import in each process.
    "gateway/workers.py": "PROMETHEUS_MULTIPROC_DIR, set for the spawned workers to inherit",
    "gateway/telemetry.py": "PROMETHEUS_MULTIPROC_DIR: /metrics merges every worker's files",
}


def _environment_reads(path: Path) -> list[str]:
    """Where a module touches os.environ / os.getenv (also through `import os as x` or `from os import`)."""
    import ast

    tree = ast.parse(path.read_text(), str(path))
    aliases = {"os"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"line {node.lineno}: from os import {a.name}" for a in node.names
                      if a.name in ("environ", "environb", "getenv", "getenvb")]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr in ("environ", "environb", "getenv", "getenvb")):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_only_the_kit_config_reads_the_environment():
    """Every setting is a typed Settings field (listed in --help, checked at start); a module that
    reads os.environ itself bypasses both. Add a Settings field instead."""
    root = Path(__file__).resolve().parents[3]
    offenders = {}
    for top in ("services", "gateway"):
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in ENVIRONMENT_READERS:
                continue
            reads = _environment_reads(path)
            if reads:
                offenders[rel] = reads
    assert not offenders, f"read the environment through services.kit.config.Settings instead: {offenders}"
    assert _environment_reads(root / "services/kit/config.py"), \
        "the allow-list names a module that no longer needs it"
