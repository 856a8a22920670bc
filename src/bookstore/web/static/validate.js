// Client-side checks that mirror the server's rules. They only help the customer:
// the server checks everything again and its answer decides.

export function digitsOnly(value) {
  return String(value || "").replace(/[\s-]/g, "");
}

export function luhnOk(number) {
  const digits = digitsOnly(number);
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i -= 1) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

export function cardBrand(number) {
  const d = digitsOnly(number);
  if (/^3[47]/.test(d)) return "amex";
  if (/^4/.test(d)) return "visa";
  if (/^(5[1-5]|2[2-7])/.test(d)) return "mastercard";
  return "other";
}

const LENGTHS = { amex: [15], visa: [13, 16, 19], mastercard: [16], other: [12, 13, 14, 15, 16, 17, 18, 19] };

export function cardNumberError(number) {
  const d = digitsOnly(number);
  if (!d) return "Enter the card number.";
  if (!/^\d+$/.test(d)) return "A card number has only digits.";
  if (!LENGTHS[cardBrand(d)].includes(d.length)) return "This card number has the wrong length.";
  if (!luhnOk(d)) return "This card number is not valid (check the digits).";
  return "";
}

// MM/YY, valid to the end of its month.
export function expiryError(value, now = new Date()) {
  const m = /^\s*(\d{2})\s*\/\s*(\d{2})\s*$/.exec(String(value || ""));
  if (!m) return "Use the form MM/YY.";
  const month = Number(m[1]);
  const year = 2000 + Number(m[2]);
  if (month < 1 || month > 12) return "The month must be 01 to 12.";
  const endOfMonth = new Date(year, month, 1); // first moment of the next month
  if (endOfMonth <= now) return "This card has expired.";
  return "";
}

export function cvvError(cvv, number) {
  const want = cardBrand(number) === "amex" ? 4 : 3;
  if (!new RegExp(`^\\d{${want}}$`).test(String(cvv || "").trim())) {
    return `The security code has ${want} digits.`;
  }
  return "";
}

export function requiredError(value, label) {
  return String(value || "").trim() ? "" : `Enter ${label}.`;
}
