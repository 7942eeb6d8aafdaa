"""What requests cost (inference/monitoring/cost.py): the process's CPU and memory between two charges shared among
the families and segments served meanwhile by their requests' time, priced; idle time charged to nobody; and the
counters a real server exports."""

import time

import httpx
import pytest

from inference.monitoring.cost import GIB, CostMeter, Prices
from tests.utils.prometheus import metric_total


class Counters:
    def __init__(self) -> None:
        self.cpu, self.now, self.rss = 100.0, 1000.0, 2 * GIB

    def meter(self, prices: Prices) -> CostMeter:
        return CostMeter(
            prices, cpu_seconds=lambda: self.cpu, resident_bytes=lambda: self.rss, clock=lambda: self.now, export=False
        )


def test_the_interval_s_cpu_and_memory_are_shared_by_request_time_and_priced():
    counters = Counters()
    meter = counters.meter(Prices(cpu_hour=3.6, gib_hour=0.36))  # 0.001 per CPU-second, 0.0001 per GiB-second
    for _ in range(3):
        meter.served("skills", "leadership", 0.002)
    meter.served("intent", "ensemble", 0.002)
    counters.cpu += 0.8  # CPU-seconds used in the interval
    counters.now += 2.0  # 2 s at 2 GiB: 4 GiB-seconds
    charges = {(charge.family, charge.segment): charge for charge in meter.charge()}
    skills, ensemble = charges["skills", "leadership"], charges["intent", "ensemble"]
    assert (skills.requests, ensemble.requests) == (3, 1)
    assert skills.cpu_s == pytest.approx(0.6) and ensemble.cpu_s == pytest.approx(0.2)
    assert skills.gib_s == pytest.approx(3.0) and ensemble.gib_s == pytest.approx(1.0)
    assert skills.dollars == pytest.approx(0.6 * 0.001 + 3.0 * 0.0001)
    assert ensemble.dollars == pytest.approx(0.2 * 0.001 + 1.0 * 0.0001)
    assert meter.charge() == []  # nothing served since: charged to nobody


def test_an_interval_without_requests_is_charged_to_nobody_and_the_next_one_only_for_its_own_time():
    counters = Counters()
    meter = counters.meter(Prices(cpu_hour=3.6, gib_hour=0.0))
    counters.cpu += 5.0
    counters.now += 60.0
    assert meter.charge() == []
    meter.served("textpair", "", 0.01)
    counters.cpu += 0.1
    counters.now += 1.0
    (charge,) = meter.charge()
    assert charge.cpu_s == pytest.approx(0.1) and charge.dollars == pytest.approx(0.1 * 0.001)


def test_a_server_exports_what_its_requests_cost(server):
    before = metric_total(server.url, "inference_cost_dollars_total", family="skills")
    requests_before = metric_total(server.url, "inference_cost_requests_total", family="skills")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for index in range(20):
            body = {"student_id": f"cost-{index}", "skill": "leadership", "features": {"help_given_per_week": index}}
            assert http.post("/api/v1/skills/infer", json=body).status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # charged on the monitoring timer, once a second
        requests = metric_total(server.url, "inference_cost_requests_total", family="skills")
        if requests >= requests_before + 20:
            break
        time.sleep(0.2)
    assert requests >= requests_before + 20
    assert metric_total(server.url, "inference_cost_dollars_total", family="skills") > before
    assert metric_total(server.url, "inference_cost_cpu_seconds_total", family="skills", segment="leadership") > 0
    assert metric_total(server.url, "inference_cost_memory_gib_seconds_total", family="skills") > 0
