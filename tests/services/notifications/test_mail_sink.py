"""The embedded mail sink: one maildir file per notification, a resend replaces it, and the settings
choose it with embedded backends only."""

from __future__ import annotations

from pathlib import Path

from services.kit.config import Settings
from services.notifications.senders import MaildirSender, read_mail


async def test_each_notification_is_one_file_and_a_resend_replaces_it(tmp_path: Path):
    sink = MaildirSender(tmp_path / "mail")
    await sink.send("n-1", "ada@example.com", "Order paid", "Your order o-1 is paid.")
    await sink.send("n-2", "bo@example.com", "Order failed", "Your order o-2 failed.")
    await sink.send("n-1", "ada@example.com", "Order paid", "Your order o-1 is paid.")  # a redelivery
    mail = read_mail(tmp_path / "mail")
    assert sorted(nid for nid, _ in mail) == ["n-1", "n-2"]  # one each: the redelivery replaced n-1
    message = dict(mail)["n-1"]
    assert message["To"] == "ada@example.com" and message["Message-ID"] == "<n-1@agora.local>"
    assert message.get_content().strip() == "Your order o-1 is paid."
    assert sorted(p.name for p in (tmp_path / "mail" / "cur").iterdir()) == ["n-1:2,", "n-2:2,"]
    assert not list((tmp_path / "mail" / "tmp").iterdir())


def test_an_empty_or_missing_sink_reads_as_no_mail(tmp_path: Path):
    assert read_mail(tmp_path / "nothing-here") == []


def test_the_sink_is_the_embedded_default_and_smtp_the_real_one(tmp_path: Path):
    assert Settings.from_env(backends="embedded", data_dir=tmp_path,
                             mail_sink="auto").mail_dir == tmp_path / "mail"
    assert Settings.from_env(backends="real", data_dir=tmp_path, mail_sink="auto").mail_dir is None
    assert Settings.from_env(backends="real", data_dir=tmp_path,
                             mail_sink="maildir").mail_dir == tmp_path / "mail"
    assert Settings.from_env(backends="embedded", data_dir=tmp_path, mail_sink="smtp").mail_dir is None
