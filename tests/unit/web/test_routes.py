from typing import Any

import httpx
from fastapi import FastAPI

from bookstore.web.routes import install

ORDER: dict[str, Any] = {
    "orderId": "o-1",
    "status": "Order Approved",
    "vectorClock": [1, 0, 0],
    "events": [
        {
            "event": "a",
            "name": "items",
            "service": "transaction-verification",
            "clock": [1, 0, 0],
            "ok": True,
            "reason": "",
            "at": 1.0,
        }
    ],
    "cancel": None,
}


async def _get_order(order_id: str) -> dict[str, Any] | None:
    return ORDER if order_id == "o-1" else None


def _client() -> httpx.AsyncClient:
    app = FastAPI()
    install(app, _get_order)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_pages_and_assets_are_served() -> None:
    async with _client() as client:
        shop = await client.get("/")
        cluster = await client.get("/cluster")
        css = await client.get("/static/style.css")
        js = await client.get("/static/shop.js")
    assert shop.status_code == 200 and "/static/shop.js" in shop.text
    assert cluster.status_code == 200 and "/static/cluster.js" in cluster.text
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


async def test_pages_reference_no_other_host() -> None:
    async with _client() as client:
        for path in ("/", "/cluster"):
            text = (await client.get(path)).text
            assert "http://" not in text.replace("http://www.w3.org", "")
            assert "https://" not in text
            assert "//" not in text.replace("http://www.w3.org", "").replace("://", "")


async def test_trace_of_a_known_order_is_plain_text() -> None:
    async with _client() as client:
        res = await client.get("/orders/o-1/trace")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    lines = res.text.splitlines()
    assert lines[2] == 'transaction-verification {"transaction-verification":1} a items: ok'


async def test_trace_of_an_unknown_order_is_a_json_404() -> None:
    async with _client() as client:
        res = await client.get("/orders/nope/trace")
    assert res.status_code == 404
    assert res.json()["error"]["code"] == "ORDER_NOT_FOUND"


async def test_pages_forbid_other_origins() -> None:
    async with _client() as client:
        for path in ("/", "/cluster"):
            csp = (await client.get(path)).headers["content-security-policy"]
            assert "default-src 'self'" in csp
            assert "connect-src 'self'" in csp
