"""Plain HTTP requests to the service's operator endpoints (/metrics, /healthz, /readyz), as Prometheus
and Kubernetes make them, and /metrics read with prometheus_client's own parser."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.running import RunningServer

# No proxy from the environment between the tests and a service on loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_base(server: RunningServer) -> str:
    http = server.server.http
    assert http is not None, "the server runs without its HTTP listener"
    return f"http://127.0.0.1:{http.port}"


def get(url: str, timeout: float = 10) -> tuple[int, str, str]:
    """The status, the Content-Type and the body of a GET."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


class Scrape:
    """The samples of one /metrics answer."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels, or None when the answer has none."""
        return self.samples.get((name, frozenset(labels.items())))

    def label_names(self, prefix: str) -> set[str]:
        return {label for (name, labels) in self.samples if name.startswith(prefix) for label, _ in labels}


def scrape(base: str) -> Scrape:
    status, content_type, body = get(f"{base}/metrics")
    assert status == 200, body
    assert content_type.startswith("text/plain"), content_type
    return Scrape(body)
