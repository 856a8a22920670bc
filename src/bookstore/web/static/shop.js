// The shop: catalogue, cart, checkout form and the order's result.
import { errorMessage, executionText, getJSON, h, money } from "/static/dom.js";
import { cardNumberError, cvvError, digitsOnly, expiryError, requiredError } from "/static/validate.js";

const MAX_QUANTITY = 100;
const POLL_MS = 400;
const POLL_LIMIT_MS = 30000;

const $ = (id) => document.getElementById(id);
const books = new Map(); // bookId -> book, everything seen so far
const cart = new Map(); // bookId -> quantity
let searchSeq = 0;
let watchSeq = 0;

// ---- catalogue ----

async function search(q) {
  const seq = ++searchSeq;
  const { ok, status, body } = await getJSON(`/api/books?q=${encodeURIComponent(q)}`).catch(() => ({
    ok: false, status: 0, body: null,
  }));
  if (seq !== searchSeq) return; // a newer search answered first
  const list = $("books");
  list.replaceChildren();
  if (!ok || !Array.isArray(body)) {
    list.append(h("li", { class: "empty" }, status ? errorMessage(body, status) : "The shop is not reachable."));
    $("book-count").textContent = "";
    return;
  }
  for (const book of body) books.set(book.bookId, book);
  $("book-count").textContent = `${body.length} book${body.length === 1 ? "" : "s"}`;
  if (body.length === 0) list.append(h("li", { class: "empty" }, `No book matches “${q}”.`));
  for (const book of body) list.append(bookCard(book));
}

// The books database's available copies; "stock unknown" when it did not answer.
function stockText(book) {
  if (book.stockKnown === false || book.stock == null) return "stock unknown";
  return Number(book.stock) <= 0 ? "sold out" : `${book.stock} in stock`;
}

function bookCard(book) {
  const soldOut = book.stockKnown !== false && book.stock != null && Number(book.stock) <= 0;
  return h(
    "li",
    { class: "book", dataset: { bookId: book.bookId } },
    h("h3", {}, book.title),
    h("div", { class: "by" }, book.author),
    h("div", {}, h("span", { class: "tag" }, book.genre)),
    h(
      "div",
      { class: "meta" },
      h("span", { class: "price" }, money(book.price)),
      h("span", { class: "muted stock", style: "font-size:.8rem" }, stockText(book)),
      h(
        "button",
        {
          type: "button", class: "add", "aria-label": `Add ${book.title} to cart`, disabled: soldOut,
          onclick: () => addToCart(book),
        },
        "Add",
      ),
    ),
  );
}

// ---- cart ----

function addToCart(book) {
  books.set(book.bookId, { ...books.get(book.bookId), ...book });
  cart.set(book.bookId, Math.min(MAX_QUANTITY, (cart.get(book.bookId) || 0) + 1));
  renderCart();
}

function renderCart() {
  const list = $("cart");
  list.replaceChildren();
  let total = 0;
  let count = 0;
  for (const [bookId, qty] of cart) {
    const book = books.get(bookId) || { title: bookId };
    const price = Number(book.price);
    if (Number.isFinite(price)) total += price * qty;
    count += qty;
    const inputId = `qty-${bookId}`;
    list.append(
      h(
        "li",
        { class: "cart-line", dataset: { bookId } },
        h("label", { for: inputId }, book.title, book.author ? h("span", { class: "muted" }, ` — ${book.author}`) : null),
        h("input", {
          id: inputId, class: "qty", type: "number", min: 1, max: MAX_QUANTITY, value: qty,
          "aria-label": `Quantity of ${book.title}`,
          onchange: (ev) => {
            const n = Math.round(Number(ev.target.value));
            if (n >= 1) cart.set(bookId, Math.min(n, MAX_QUANTITY));
            renderCart();
          },
        }),
        h("button", {
          type: "button", class: "secondary", "aria-label": `Remove ${book.title}`,
          onclick: () => { cart.delete(bookId); renderCart(); },
        }, "✕"),
      ),
    );
  }
  $("cart-empty").hidden = cart.size > 0;
  $("cart-total").hidden = cart.size === 0;
  $("cart-sum").textContent = money(total);
  $("cart-count").textContent = count ? `${count} item${count === 1 ? "" : "s"}` : "";
  if (cart.size) $("cart-error").textContent = "";
}

// ---- checkout ----

const val = (id) => $(id).value.trim();

function fieldErrors() {
  const number = val("cardNumber");
  return {
    name: requiredError(val("name"), "your name"),
    contact: requiredError(val("contact"), "an email or phone number"),
    cardNumber: cardNumberError(number),
    expiry: expiryError(val("expiry")),
    cvv: cvvError(val("cvv"), number),
    street: requiredError(val("street"), "the street"),
    city: requiredError(val("city"), "the city"),
    zip: requiredError(val("zip"), "the postal code"),
    country: requiredError(val("country"), "the country"),
    terms: $("terms").checked ? "" : "Accept the terms to place the order.",
  };
}

function showErrors(errors) {
  let first = null;
  for (const [id, message] of Object.entries(errors)) {
    $(`${id}-error`).textContent = message;
    $(id).setAttribute("aria-invalid", message ? "true" : "false");
    if (message && !first) first = $(id);
  }
  return first;
}

function clientInfo() {
  const ua = navigator.userAgent;
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows"
    : /Mac OS/.test(ua) ? "macOS" : /Linux/.test(ua) ? "Linux" : "unknown";
  const m = /(Firefox|Edg|Chrome|Safari)\/([\d.]+)/.exec(ua);
  return {
    device: { type: window.innerWidth < 700 ? "Smartphone" : "Desktop", model: "unknown", os },
    browser: { name: m ? m[1] : "unknown", version: m ? m[2] : "unknown" },
    appVersion: "web-1",
    screenResolution: `${window.screen.width}x${window.screen.height}`,
    referrer: document.referrer,
    deviceLanguage: navigator.language,
  };
}

function orderBody() {
  return {
    user: { name: val("name"), contact: val("contact") },
    creditCard: { number: digitsOnly(val("cardNumber")), expirationDate: val("expiry"), cvv: val("cvv") },
    userComment: val("userComment"),
    items: [...cart].map(([bookId, quantity]) => ({ name: books.get(bookId)?.title || bookId, bookId, quantity })),
    billingAddress: {
      street: val("street"), city: val("city"), state: val("state"), zip: val("zip"), country: val("country"),
    },
    shippingMethod: $("shippingMethod").value,
    giftWrapping: $("giftWrapping").checked,
    giftMessage: val("giftMessage"),
    discountCode: val("discountCode"),
    termsAndConditionsAccepted: $("terms").checked,
    notificationPreferences: $("notifyEmail").checked ? ["email"] : [],
    ...clientInfo(),
  };
}

async function placeOrder(ev) {
  ev.preventDefault();
  const first = showErrors(fieldErrors());
  const emptyCart = cart.size === 0;
  $("cart-error").textContent = emptyCart ? "Your cart is empty." : "";
  if (first || emptyCart) {
    (first || $("search")).focus();
    return;
  }
  const button = $("place-order");
  button.disabled = true;
  button.textContent = "Placing order…";
  try {
    const res = await fetch("/checkout", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(orderBody()),
    });
    let body = null;
    try { body = await res.json(); } catch { body = null; }
    if (!res.ok || !body) showError(errorMessage(body, res.status));
    else if (body.status === "Order Approved") showApproved(body);
    else showRejected(body);
  } catch {
    showError("The shop could not be reached. Check your connection and try again.");
  } finally {
    button.disabled = false;
    button.textContent = "Place order";
  }
}

function setResult(kind, ...children) {
  const box = $("result");
  box.className = `result ${kind}`;
  box.dataset.kind = kind;
  box.replaceChildren(...children);
  box.focus({ preventScroll: true });
  box.scrollIntoView({ block: "nearest" });
}

function orderLinks(orderId) {
  return h(
    "div", { class: "links" },
    h("a", { href: `/cluster?order=${encodeURIComponent(orderId)}`, id: "diagram-link" }, "See this order's space-time diagram"),
    h("a", { href: `/orders/${encodeURIComponent(orderId)}/trace`, download: `order-${orderId}.shiviz.log` }, "ShiViz trace"),
  );
}

function orderedLine() {
  return [...cart].map(([bookId, qty]) => `${books.get(bookId)?.title || bookId} × ${qty}`).join(", ");
}

function showApproved(body) {
  const ordered = orderedLine();
  cart.clear();
  renderCart();
  const suggestions = Array.isArray(body.suggestedBooks) ? body.suggestedBooks : [];
  const execution = h("p", { class: "execution", id: "execution", "aria-live": "polite" });
  setResult(
    "approved",
    h("h2", { id: "result-status" }, body.status),
    h("div", {}, "Order ", h("span", { class: "mono", id: "order-id" }, body.orderId)),
    ordered ? h("div", { class: "muted", id: "ordered" }, ordered) : null,
    execution,
    suggestions.length ? h("h3", { style: "margin:10px 0 0;font-size:1rem" }, "You might also like") : null,
    h("ul", { class: "suggestions", id: "suggestions" }, suggestions.map(suggestionLine)),
    orderLinks(body.orderId),
  );
  renderExecution(body.execution || { state: "queued" });
  search(val("search")); // stock may have changed
  if (!body.execution || body.execution.state !== "executed") watchExecution(body.orderId);
}

function suggestionLine(book) {
  return h(
    "li", { dataset: { bookId: book.bookId } },
    h("span", {}, h("strong", {}, book.title), h("span", { class: "muted" }, ` — ${book.author}`)),
    h("button", {
      type: "button", class: "secondary", "aria-label": `Add ${book.title} to cart`,
      onclick: (ev) => { addToCart(book); ev.target.textContent = "Added ✓"; },
    }, "Add to cart"),
  );
}

function renderExecution(execution) {
  const el = $("execution");
  if (!el) return;
  const state = execution ? execution.state : "unknown";
  el.dataset.state = state;
  const text = executionText(execution) || "execution state unknown";
  el.replaceChildren(
    state === "executed" ? "✓" : h("span", { class: "spinner", "aria-hidden": "true" }),
    h("span", {}, text.charAt(0).toUpperCase() + text.slice(1)),
  );
}

async function watchExecution(orderId) {
  const seq = ++watchSeq;
  const deadline = Date.now() + POLL_LIMIT_MS;
  while (Date.now() < deadline && seq === watchSeq) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    const { ok, body } = await getJSON(`/orders/${encodeURIComponent(orderId)}`).catch(() => ({ ok: false }));
    if (seq !== watchSeq) return;
    if (ok && body && body.execution) {
      renderExecution(body.execution);
      if (body.execution.state === "executed") return;
    }
  }
  const el = $("execution");
  if (el && el.dataset.state !== "executed" && seq === watchSeq) {
    el.dataset.state = "waiting";
    el.replaceChildren("Still waiting for an executor; the order is safe in the queue.");
  }
}

function showRejected(body) {
  watchSeq += 1;
  setResult(
    "rejected",
    h("h2", { id: "result-status" }, body.status || "Order Rejected"),
    h("p", { id: "reason" }, body.reason || "The order was not accepted."),
    body.orderId ? h("div", {}, "Order ", h("span", { class: "mono", id: "order-id" }, body.orderId)) : null,
    body.orderId ? orderLinks(body.orderId) : null,
  );
}

function showError(message) {
  watchSeq += 1;
  setResult("error", h("h2", { id: "result-status" }, "Something went wrong"), h("p", { id: "error-message" }, message));
}

function fillSample() {
  const year = (new Date().getFullYear() + 2) % 100;
  const sample = {
    name: "Ada Lovelace", contact: "ada@example.org", cardNumber: "4508 7512 3456 7896",
    expiry: `12/${String(year).padStart(2, "0")}`, cvv: "123", street: "Narva mnt 18", city: "Tartu",
    state: "Tartumaa", zip: "51009", country: "Estonia",
  };
  for (const [id, value] of Object.entries(sample)) $(id).value = value;
  $("terms").checked = true;
  showErrors(Object.fromEntries(Object.keys(fieldErrors()).map((k) => [k, ""])));
}

// ---- start ----

let debounce = 0;
$("search").addEventListener("input", (ev) => {
  clearTimeout(debounce);
  debounce = setTimeout(() => search(ev.target.value.trim()), 150);
});
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  clearTimeout(debounce);
  search(val("search"));
});
$("checkout").addEventListener("submit", placeOrder);
$("sample").addEventListener("click", fillSample);
renderCart();
search("");
