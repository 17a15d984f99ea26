"""The browser examples in Chromium (playwright-core, the machine's /usr/bin/chromium) against a
live ``tailor demo``: the React storefront and the Vue widget. The assertions are in
examples/e2e/*.test.mjs; screenshots land in artifacts/clients/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.clients.conftest import ARTIFACTS, DemoGateway, assert_node_tests, free_port, run_node


@pytest.mark.slow
def test_react_storefront(
    examples_built: Path, demo_gateway: DemoGateway, sites: dict[str, str], chromium: str
) -> None:
    out = run_node(
        "storefront",
        ["--test", "--test-reporter=spec", "--test-concurrency=1", "storefront.test.mjs"],
        cwd=examples_built / "e2e",
        env={
            "CHROMIUM_PATH": chromium,
            "STOREFRONT_URL": sites["react-storefront"],
            "TAILOR_URL": demo_gateway.url,
            "TAILOR_SAMPLE_USER_TOKEN": demo_gateway.token(demo_gateway.users[4]),
            "TAILOR_NEW_USER_TOKEN": demo_gateway.token("web-shopper-new"),
        },
        timeout=240,
    )
    assert_node_tests(out, passed=4)
    for shot in ("signed-in", "item", "after-click", "merged", "anonymous"):
        assert (ARTIFACTS / f"storefront-{shot}.png").stat().st_size > 10_000


@pytest.mark.slow
def test_vue_widget(
    examples_built: Path, demo_gateway: DemoGateway, sites: dict[str, str], chromium: str
) -> None:
    out = run_node(
        "vue-widget",
        ["--test", "--test-reporter=spec", "widget.test.mjs"],
        cwd=examples_built / "e2e",
        env={
            "CHROMIUM_PATH": chromium,
            "WIDGET_URL": sites["vue-widget"],
            "TAILOR_URL": demo_gateway.url,
        },
        timeout=120,
    )
    assert_node_tests(out, passed=1)
    assert (ARTIFACTS / "vue-widget.png").stat().st_size > 5_000


@pytest.mark.slow
def test_storefront_through_edge_worker(
    examples_built: Path, demo_gateway: DemoGateway, sites: dict[str, str], chromium: str
) -> None:
    out = run_node(
        "storefront-edge",
        ["--test", "--test-reporter=spec", "storefront-edge.test.mjs"],
        cwd=examples_built / "e2e",
        env={
            "CHROMIUM_PATH": chromium,
            "STOREFRONT_URL": sites["react-storefront"],
            "TAILOR_URL": demo_gateway.url,
            "EDGE_BROWSER_PORT": str(free_port()),
        },
        timeout=120,
    )
    assert_node_tests(out, passed=1)
