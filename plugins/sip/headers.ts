/**
 * SIP headers as an ordered multi-map with case-insensitive names, compact
 * forms expanded (RFC 3261 §7.3.3) and comma-separated list values split.
 *
 * @module
 */
import { SipParseError } from "./errors.ts";
import { splitOutside } from "./syntax.ts";

/** Compact header forms (RFC 3261 §7.3.3 and later RFCs) → full names. */
export const COMPACT_FORMS: Readonly<Record<string, string>> = {
  a: "Accept-Contact",
  b: "Referred-By",
  c: "Content-Type",
  d: "Request-Disposition",
  e: "Content-Encoding",
  f: "From",
  i: "Call-ID",
  j: "Reject-Contact",
  k: "Supported",
  l: "Content-Length",
  m: "Contact",
  n: "Identity-Info",
  o: "Event",
  r: "Refer-To",
  s: "Subject",
  t: "To",
  u: "Allow-Events",
  v: "Via",
  x: "Session-Expires",
  y: "Identity",
};

const CANONICAL_LIST = [
  "Accept",
  "Accept-Contact",
  "Accept-Encoding",
  "Accept-Language",
  "Alert-Info",
  "Allow",
  "Allow-Events",
  "Authentication-Info",
  "Authorization",
  "Call-ID",
  "Call-Info",
  "Contact",
  "Content-Disposition",
  "Content-Encoding",
  "Content-Language",
  "Content-Length",
  "Content-Type",
  "CSeq",
  "Date",
  "Error-Info",
  "Event",
  "Expires",
  "From",
  "Identity",
  "Identity-Info",
  "In-Reply-To",
  "Max-Forwards",
  "MIME-Version",
  "Min-Expires",
  "Organization",
  "P-Asserted-Identity",
  "Path",
  "Priority",
  "Privacy",
  "Proxy-Authenticate",
  "Proxy-Authorization",
  "Proxy-Require",
  "RAck",
  "Reason",
  "Record-Route",
  "Refer-To",
  "Referred-By",
  "Reject-Contact",
  "Reply-To",
  "Request-Disposition",
  "Require",
  "Retry-After",
  "Route",
  "RSeq",
  "Server",
  "Service-Route",
  "Session-Expires",
  "Subject",
  "Supported",
  "Timestamp",
  "To",
  "Unsupported",
  "User-Agent",
  "Via",
  "Warning",
  "WWW-Authenticate",
];

const CANONICAL = new Map<string, string>(CANONICAL_LIST.map((n) => [n.toLowerCase(), n]));
for (const [k, v] of Object.entries(COMPACT_FORMS)) CANONICAL.set(k, v);

/**
 * Headers whose value is a comma-separated list (`#element` in the RFC 3261
 * grammar) and may therefore be split into one entry per element. Headers such
 * as WWW-Authenticate, Authorization or Date contain commas that are not list
 * separators and are never split; unknown headers are not split either.
 */
export const LIST_HEADERS: ReadonlySet<string> = new Set([
  "accept",
  "accept-contact",
  "accept-encoding",
  "accept-language",
  "alert-info",
  "allow",
  "allow-events",
  "call-info",
  "contact",
  "content-encoding",
  "content-language",
  "error-info",
  "in-reply-to",
  "p-asserted-identity",
  "path",
  "privacy",
  "proxy-require",
  "reason",
  "record-route",
  "reject-contact",
  "require",
  "route",
  "service-route",
  "supported",
  "unsupported",
  "via",
  "warning",
]);

/**
 * List headers whose elements are structured (Via values, name-addrs, `<uri>` values): an empty
 * element (`a,,b`) makes the header invalid. In the other list headers (option tags, methods,
 * media ranges) empty elements are dropped.
 */
const STRICT_LISTS: ReadonlySet<string> = new Set([
  "alert-info",
  "call-info",
  "contact",
  "error-info",
  "p-asserted-identity",
  "path",
  "record-route",
  "route",
  "service-route",
  "via",
]);

/**
 * Normalizes a header name: compact forms expand to full names, known names get
 * their canonical spelling (`call-id` → `Call-ID`), unknown names are kept as written.
 *
 * @example
 * ```ts
 * canonicalName("v"); // "Via"
 * canonicalName("cSeQ"); // "CSeq"
 * canonicalName("X-Custom"); // "X-Custom"
 * ```
 */
export function canonicalName(name: string): string {
  return namesOf(name).name;
}

/** The canonical name and lookup key of a header name as written; the same object each time for the same text. */
interface Names {
  /** {@linkcode canonicalName}. */
  name: string;
  /** The canonical name in lower case: what entries are matched by. */
  key: string;
}

/**
 * Names looked up so far, by the text given: the code asks for the same few names all the time (`Via`, `Call-ID`,
 * ...), and each lookup would otherwise lower-case the name twice. Bounded: names from the network pass here too, so
 * it is emptied when full.
 */
const NAMES = new Map<string, Names>();
const NAMES_MAX = 512;

function namesOf(text: string): Names {
  let n = NAMES.get(text);
  if (n === undefined) {
    const name = CANONICAL.get(text.toLowerCase()) ?? text;
    n = { name, key: name.toLowerCase() };
    if (NAMES.size >= NAMES_MAX) NAMES.clear();
    NAMES.set(text, n);
  }
  return n;
}

/**
 * Splits a header value into its list elements when the header is a list
 * header (see {@linkcode LIST_HEADERS}); commas inside quotes or `<>` do not
 * split. An empty element is an error in Via and address lists (`Via: a;;,,`,
 * RFC 4475 §3.1.2.1) and is dropped elsewhere (`Supported: timer,`). Throws
 * {@linkcode SipParseError} on an unterminated quoted string or an empty element.
 *
 * @example
 * ```ts
 * splitHeaderValue("Contact", '"Doe, J" <sip:j@x>, <sip:k@y>'); // ['"Doe, J" <sip:j@x>', "<sip:k@y>"]
 * splitHeaderValue("Date", "Sat, 13 Nov 2010 23:29:00 GMT"); // unchanged, one element
 * ```
 */
export function splitHeaderValue(name: string, value: string): string[] {
  const key = namesOf(name).key;
  if (!LIST_HEADERS.has(key) || value.indexOf(",") === -1) return [value];
  const parts = splitOutside(value, ",");
  if (STRICT_LISTS.has(key)) {
    if (parts.includes("")) throw new SipParseError(`empty element in ${canonicalName(name)} list`);
    return parts;
  }
  return parts.filter((v) => v !== "");
}

interface Entry {
  name: string;
  key: string;
  value: string;
}

/**
 * An ordered multi-map of headers with case-insensitive names. Names are stored
 * in canonical form ({@linkcode canonicalName}), so `get("v")`, `get("VIA")` and
 * `get("Via")` are the same.
 *
 * @example
 * ```ts
 * const h = new SipHeaders([["Via", "SIP/2.0/UDP a;branch=z9hG4bK1"], ["f", "<sip:a@b>;tag=1"]]);
 * h.get("from"); // "<sip:a@b>;tag=1"
 * h.prepend("Via", "SIP/2.0/UDP proxy;branch=z9hG4bK2");
 * h.getAll("via").length; // 2
 * ```
 */
export class SipHeaders {
  #entries: Entry[] = [];

  /**
   * Creates the headers.
   * @param init initial `[name, value]` pairs, in order (values are not split)
   */
  constructor(init: Iterable<readonly [string, string]> = []) {
    for (const [n, v] of init) this.append(n, v);
  }

  /** Number of header entries. */
  get size(): number {
    return this.#entries.length;
  }

  /** The first value of `name`, or undefined. */
  get(name: string): string | undefined {
    const key = namesOf(name).key;
    for (const e of this.#entries) if (e.key === key) return e.value;
    return undefined;
  }

  /** All values of `name`, in order. */
  getAll(name: string): string[] {
    const key = namesOf(name).key;
    const out: string[] = [];
    for (const e of this.#entries) if (e.key === key) out.push(e.value);
    return out;
  }

  /** How many `name` headers there are. */
  count(name: string): number {
    const key = namesOf(name).key;
    let n = 0;
    for (const e of this.#entries) if (e.key === key) n++;
    return n;
  }

  /** True when at least one `name` header exists. */
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }

  /** Adds a header after all others. */
  append(name: string, value: string): this {
    const n = namesOf(name);
    this.#entries.push({ name: n.name, key: n.key, value });
    return this;
  }

  /** Adds a header before the first header of the same name (or at the top). */
  prepend(name: string, value: string): this {
    const { name: n, key } = namesOf(name);
    const i = this.#entries.findIndex((e) => e.key === key);
    this.#entries.splice(i === -1 ? 0 : i, 0, { name: n, key, value });
    return this;
  }

  /** Replaces all `name` headers by one, kept at the position of the first (or appended). */
  set(name: string, value: string): this {
    const { name: n, key } = namesOf(name);
    const i = this.#entries.findIndex((e) => e.key === key);
    if (i === -1) return this.append(n, value);
    this.#entries[i] = { name: n, key, value };
    this.#entries = this.#entries.filter((e, j) => j <= i || e.key !== key);
    return this;
  }

  /** Replaces the first `name` header's value; appends when absent. */
  setFirst(name: string, value: string): this {
    const key = namesOf(name).key;
    const e = this.#entries.find((x) => x.key === key);
    if (e) e.value = value;
    else this.append(name, value);
    return this;
  }

  /** Removes every `name` header. Returns how many were removed. */
  delete(name: string): number {
    const key = namesOf(name).key;
    const before = this.#entries.length;
    this.#entries = this.#entries.filter((e) => e.key !== key);
    return before - this.#entries.length;
  }

  /** A deep copy. */
  clone(): SipHeaders {
    const h = new SipHeaders();
    for (const e of this.#entries) h.#entries.push({ ...e });
    return h;
  }

  /**
   * Calls `fn` with each `name, value` pair in order (what iterating does, without a pair array per header).
   *
   * @example
   * ```ts
   * new SipHeaders([["Via", "SIP/2.0/UDP a;branch=z9hG4bK1"]]).forEach((name, value) => console.log(`${name}: ${value}`));
   * ```
   */
  forEach(fn: (name: string, value: string) => void): void {
    for (const e of this.#entries) fn(e.name, e.value);
  }

  /** `[name, value]` pairs in order. */
  *[Symbol.iterator](): IterableIterator<[string, string]> {
    for (const e of this.#entries) yield [e.name, e.value];
  }

  /** `[name, value]` pairs in order, as an array. */
  toArray(): [string, string][] {
    return this.#entries.map((e) => [e.name, e.value]);
  }
}
