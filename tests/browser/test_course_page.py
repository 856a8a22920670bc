"""The course's own checkout page, served from another origin, still works."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import System
from pages import RecordedPage, future_expiry
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

# What the course page does: a JSON body posted with fetch and NO Content-Type
# header (so it goes as text/plain), then status and suggestedBooks rendered,
# or error.message on a non-2xx answer.
COURSE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Course checkout</title></head>
<body>
<button id="checkout">Checkout</button>
<p id="status"></p>
<ul id="suggested"></ul>
<script>
const api = new URLSearchParams(location.search).get("api");
document.getElementById("checkout").addEventListener("click", async () => {
  const data = {
    user: { name: "John Doe", contact: "john.doe@example.com" },
    creditCard: { number: "4111111111111111", expirationDate: "EXPIRY", cvv: "123" },
    userComment: "Please handle with care.",
    items: [{ name: "Book A", quantity: 1 }, { name: "Book B", quantity: 2 }],
    discountCode: "DISCOUNT2023",
    shippingMethod: "Standard",
    giftMessage: "Happy Birthday!",
    billingAddress: { street: "123 Main St", city: "Springfield", state: "IL",
                      zip: "62701", country: "USA" },
    giftWrapping: true,
    termsAccepted: true,
    notificationPreferences: ["email"],
    device: { type: "Smartphone", model: "Samsung Galaxy S10", os: "Android 10.0.0" },
    browser: { name: "Chrome", version: "85.0.4183.127" },
    appVersion: "3.0.0",
    screenResolution: "1440x3040",
    referrer: "https://www.google.com",
    deviceLanguage: "en-US",
  };
  const response = await fetch(api + "/checkout", { method: "POST", body: JSON.stringify(data) });
  const result = await response.json();
  const status = document.getElementById("status");
  if (response.ok) {
    status.textContent = result.status;
    const list = document.getElementById("suggested");
    list.replaceChildren(...result.suggestedBooks.map((b) => {
      const li = document.createElement("li");
      li.textContent = b.title + " by " + b.author;
      return li;
    }));
  } else {
    status.textContent = "Error: " + result.error.message;
  }
});
</script>
</body></html>
"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def course_site(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "index.html").write_text(COURSE_PAGE.replace("EXPIRY", future_expiry()))
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_course_page_from_another_origin_gets_and_renders_its_answer(
    recorded: RecordedPage, system: System, course_site: str
) -> None:
    page = recorded.page
    posts: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: posts.append(r.headers) if r.method == "POST" else None,
    )
    page.goto(f"{course_site}/index.html?api={system.base_url}")
    assert course_site.rsplit(":", 1)[1] != system.base_url.rsplit(":", 1)[1]
    page.locator("#checkout").click()
    expect(page.locator("#status")).to_have_text("Order Approved", timeout=20_000)
    titles = page.locator("#suggested li").all_inner_texts()
    assert titles, "no suggested books rendered"
    assert all(" by " in t and not t.startswith("undefined") for t in titles)
    assert len(posts) == 1
    assert posts[0].get("content-type", "").startswith("text/plain")
