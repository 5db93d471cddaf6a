"""Identity rules without any server: sign-up validation, login input, passwords, tokens, throttling."""

from __future__ import annotations

import pytest

from services.identity import domain
from services.identity.domain import IdentityRules, LoginThrottle, LoginThrottled, Passwords
from services.kit.errors import InvalidArgument


def test_sign_up_names_each_bad_field():
    with pytest.raises(InvalidArgument) as err:
        domain.validate_sign_up("a!", "not-an-email", "short", "x" * 256)
    assert set(err.value.violations) == {"user_name", "email", "password", "bio"}


def test_password_may_not_be_the_user_name():
    with pytest.raises(InvalidArgument) as err:
        domain.validate_sign_up("alice_1234", "a@example.test", "ALICE_1234", "")
    assert set(err.value.violations) == {"password"}


def test_sign_up_keys_are_case_insensitive():
    new = domain.validate_sign_up("Alice", "Alice@Example.test", "long enough pw", "")
    assert (new.user_name_key, new.email_key) == ("alice", "alice@example.test")


def test_login_needs_exactly_one_identifier():
    with pytest.raises(InvalidArgument):
        domain.validate_login("", "", "pw")
    with pytest.raises(InvalidArgument):
        domain.validate_login("a@b.c", "alice", "pw")
    assert domain.validate_login("A@B.c", "", "pw") == ("email", "a@b.c")


def test_passwords_hash_with_argon2_and_verify():
    passwords = Passwords(IdentityRules())
    stored = passwords.hash("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert passwords.verify(stored, "correct horse")
    assert not passwords.verify(stored, "wrong horse")
    assert not passwords.verify("garbage", "correct horse")
    assert passwords.verify_nobody("anything") is False


def test_tokens_are_random_and_stored_as_sha256():
    a, b = domain.new_token(), domain.new_token()
    assert a != b and len(a) >= 43
    assert len(domain.token_digest(a)) == 64 and domain.token_digest(a) != a


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_throttle_the_account_until_the_window_passes():
    clock = Clock()
    throttle = LoginThrottle(IdentityRules(user_failures=3, user_window=60), clock)
    for _ in range(3):
        throttle.check_login("user_name:alice", "10.0.0.1")
        throttle.failed("user_name:alice")
    with pytest.raises(LoginThrottled) as err:
        throttle.check_login("user_name:alice", "10.0.0.2")
    assert 0 < err.value.retry_after <= 60 and err.value.details()
    throttle.check_login("user_name:bob", "10.0.0.1")  # other accounts are unaffected
    clock.now += 61
    throttle.check_login("user_name:alice", "10.0.0.1")


def test_one_address_is_throttled_across_accounts():
    clock = Clock()
    throttle = LoginThrottle(IdentityRules(address_attempts=2, address_window=60), clock)
    throttle.check_login("user_name:a", "10.0.0.9")
    throttle.check_login("user_name:b", "10.0.0.9")
    with pytest.raises(LoginThrottled):
        throttle.check_login("user_name:c", "10.0.0.9")
    throttle.check_login("user_name:c", "10.0.0.10")
