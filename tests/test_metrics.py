"""/metrics (app.metrics): what an operator watches moves with real traffic,
and only operators read it."""

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

API_KEY = "k" * 40


def scrape(url, **headers):
    """{(name, labels): value} of a process's metrics."""
    response = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


@pytest.fixture
def server(start_thread_server):
    return start_thread_server(CHAT_API_KEY=API_KEY, CHAT_RATE_LIMITS=True)


def test_metrics_move_with_messages_connections_and_refusals(server, open_tab):
    before = scrape(server.url)
    ann, bob = open_tab(server.url), open_tab(server.url)
    ann.join("lobby")
    bob.join("lobby")
    for number in range(3):
        assert ann.send("lobby", f"message {number}")["ok"] is True
    bob.texts(3)
    refused = ann.call("send_message", {"channel": "nowhere", "message": "x"})

    after = scrape(server.url)

    assert refused["code"] == "not_joined"
    assert value(after, "chat_connections") - value(before, "chat_connections") == 2
    stored = value(after, "chat_messages_stored_total")
    assert stored - value(before, "chat_messages_stored_total") == 3
    delivered = value(after, "chat_deliveries_total")
    assert delivered - value(before, "chat_deliveries_total") == 6  # 3 to each
    assert value(after, "chat_refusals_total", code="not_joined") == 1
    # Every send is timed to its ack, the refused one too.
    assert value(after, "chat_send_seconds_count") == 4
    assert value(after, "chat_send_seconds_bucket", le="+Inf") == 4
    assert value(after, "chat_send_seconds_sum") > 0


def test_metrics_have_the_process_metrics_and_their_types(server):
    response = requests.get(f"{server.url}/metrics", timeout=10)
    families = {f.name: f.type for f in text_string_to_metric_families(response.text)}

    assert families["chat_connections"] == "gauge"
    assert families["chat_messages_stored"] == "counter"
    assert families["chat_deliveries"] == "counter"
    assert families["chat_refusals"] == "counter"
    assert families["chat_repairs"] == "counter"
    assert families["chat_send_seconds"] == "histogram"
    assert families["process_resident_memory_bytes"] == "gauge"
    assert families["process_open_fds"] == "gauge"
    assert "process_cpu_seconds" in families


def test_http_refusals_are_counted_by_code(server):
    requests.post(f"{server.url}/api/channels/a%20b/messages", json={"message": "x"})

    assert value(scrape(server.url), "chat_refusals_total", code="invalid_channel") == 1


def test_redis_up_is_reported_with_redis(start_thread_server, redis_env):
    server = start_thread_server(REDIS_URL=redis_env["REDIS_URL"])

    assert value(scrape(server.url), "chat_redis_up") == 1


@pytest.mark.parametrize(
    "settings, headers, status",
    [
        ({}, {}, 200),  # the test's requests come from loopback
        ({"PROXY_COUNT": 1}, {"X-Forwarded-For": "203.0.113.9"}, 403),
        (
            {"PROXY_COUNT": 1, "CHAT_API_KEY": API_KEY},
            {"X-Forwarded-For": "203.0.113.9", "X-API-Key": API_KEY},
            200,
        ),
        (
            {"PROXY_COUNT": 1, "CHAT_API_KEY": API_KEY},
            {"X-Forwarded-For": "203.0.113.9", "X-API-Key": "wrong"},
            403,
        ),
        (
            {"PROXY_COUNT": 1, "CHAT_METRICS_ALLOW": "203.0.113.0/24"},
            {"X-Forwarded-For": "203.0.113.9"},
            200,
        ),
    ],
)
def test_only_operators_read_the_metrics(make_app, settings, headers, status):
    client = make_app(**settings).test_client()

    assert client.get("/metrics", headers=headers).status_code == status


def test_a_malformed_metrics_allow_refuses_to_start(make_app):
    with pytest.raises(RuntimeError, match="CHAT_METRICS_ALLOW"):
        make_app(CHAT_METRICS_ALLOW="not-a-network")
