"""Issue 13, Low: password guessing is throttled per username and per client address."""


def login(client, username: str, password: str, ip: str = "10.0.0.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_after_five_wrong_passwords_the_account_is_locked_for_a_while_even_with_the_right_one(client, bob, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_USER):
        assert login(client, "bob", "wrong").status_code == 200
    refused = login(client, "bob", "pw-bob")
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.content.decode() and "Try again in 5 minutes" in refused.content.decode()
    assert login(client, "BOB ", "pw-bob", ip="10.0.0.2").status_code == 429, "per username, from any address"


def test_one_address_trying_many_usernames_is_throttled_too(client, bob, charlie, settings):
    settings.LOGIN_FAILURES_PER_IP = 3
    for name in ("x1", "x2", "x3"):
        assert login(client, name, "guess").status_code == 200
    assert login(client, "charlie", "pw-charlie").status_code == 429
    assert login(client, "charlie", "pw-charlie", ip="10.0.0.9").status_code == 302


def test_a_successful_sign_in_clears_the_username_count(client, bob, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_USER - 1):
        login(client, "bob", "wrong")
    assert login(client, "bob", "pw-bob").status_code == 302
    client.logout()
    for _ in range(settings.LOGIN_FAILURES_PER_USER - 1):
        login(client, "bob", "wrong")
    assert login(client, "bob", "pw-bob").status_code == 302
