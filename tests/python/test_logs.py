"""Warren's log (``--log-file``): connection open and close with the client's
connection_name, authentication failures, policy and queue lifecycle events."""
import pika
import pytest

from conftest import uniq, wait_for

pytestmark = pytest.mark.warren


def log_text(broker):
    """The --log-file of the broker: in cluster mode (WARREN_CLUSTER) every node's, as each
    node logs its own clients' connections and failed logins."""
    text = []
    for path in broker.log_files:
        with open(path, encoding="utf-8", errors="replace") as f:
            text.append(f.read())
    return "\n".join(text)


def test_connections_and_auth_failures_are_logged(broker):
    if not broker.log_files:
        pytest.skip("needs a Warren started by this suite")
    name = uniq("logged-conn")
    c = broker.connect(client_properties={"connection_name": name})
    c.channel().queue_declare(uniq("q"), exclusive=True)
    c.close()
    assert wait_for(lambda: log_text(broker).count(name) >= 2, timeout=5), log_text(broker)[-2000:]
    lines = [l for l in log_text(broker).splitlines() if name in l]
    assert any("connection opened" in l for l in lines), lines
    assert any("connection closed" in l for l in lines), lines
    assert "\x1b[" not in log_text(broker)  # no colour codes in the file
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        broker.connect(user="guest", password="wrong-" + uniq("pw"))
    assert wait_for(lambda: "authentication failed" in log_text(broker), timeout=5)
