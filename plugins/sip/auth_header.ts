/**
 * The authentication headers of SIP (RFC 3261 §20.27, §20.28, §20.44, §25.1;
 * RFC 7616 §3.3–§3.4 for the parameters): parses the challenges of
 * `WWW-Authenticate` / `Proxy-Authenticate` and the credentials of
 * `Authorization` / `Proxy-Authorization`, and formats credentials.
 *
 * A value is a scheme (`Digest`) followed by comma-separated `name=value`
 * parameters, where a value is a token or a quoted string with `\` escapes.
 * One header value may hold several challenges (`Digest realm="a", nonce="1",
 * Digest realm="b", nonce="2"`): a new one starts where a scheme token is
 * followed by a space instead of `=`.
 *
 * Layer: message (imports errors only).
 *
 * @module
 */
import { SipParseError } from "./errors.ts";

/** One challenge or credentials value: the scheme and its parameters. */
export interface AuthParams {
  /** The scheme as written, e.g. `Digest`. */
  scheme: string;
  /** Parameters by lower-case name, values unquoted (`realm`, `nonce`, `qop`, `algorithm`, ...). */
  params: Record<string, string>;
}

const TOKEN_CHAR = /[A-Za-z0-9\-.!%*_+`'~]/;

/** A token of the value as an error message shows it: at most 40 characters (tokens hold no control characters). */
function shown(token: string): string {
  return token.length > 40 ? `${token.slice(0, 40)}...` : token;
}

/** A reader over one header value. */
class Reader {
  pos = 0;
  constructor(readonly text: string, readonly what: string) {}

  skipSpace(): void {
    while (this.pos < this.text.length && /[ \t\r\n]/.test(this.text[this.pos])) this.pos++;
  }

  get done(): boolean {
    return this.pos >= this.text.length;
  }

  peek(): string {
    return this.text[this.pos] ?? "";
  }

  token(): string {
    const start = this.pos;
    while (this.pos < this.text.length && TOKEN_CHAR.test(this.text[this.pos])) this.pos++;
    return this.text.slice(start, this.pos);
  }

  quoted(): string {
    // At the opening quote.
    this.pos++;
    let out = "";
    while (this.pos < this.text.length) {
      const c = this.text[this.pos++];
      if (c === '"') return out;
      if (c === "\\") {
        if (this.pos >= this.text.length) break;
        out += this.text[this.pos++];
      } else out += c;
    }
    throw this.fail("unterminated quoted string");
  }

  fail(why: string): SipParseError {
    return new SipParseError(`malformed ${this.what}: ${why} at character ${this.pos + 1}`);
  }
}

/** Reads `name=value` parameters until the value ends or the next scheme starts; returns them. */
function readParams(r: Reader, what: string): Record<string, string> {
  const params: Record<string, string> = {};
  let first = true;
  for (;;) {
    r.skipSpace();
    if (r.done) break;
    const mark = r.pos;
    if (!first) {
      if (r.peek() !== ",") throw r.fail("expected a comma between parameters");
      r.pos++;
      r.skipSpace();
      // Empty list elements (`a=1,,b=2`) are allowed by the #rule.
      if (r.peek() === ",") continue;
      if (r.done) break;
    }
    const start = r.pos;
    const name = r.token();
    if (!name) throw r.fail("expected a parameter name");
    r.skipSpace();
    if (r.peek() !== "=") {
      // A scheme token followed by something else than `=`: the next challenge starts here.
      if (first) throw r.fail(`expected "=" after ${shown(name)}`);
      r.pos = mark;
      return params;
    }
    r.pos++;
    r.skipSpace();
    let value: string;
    if (r.peek() === '"') value = r.quoted();
    else {
      value = r.token();
      if (!value) throw r.fail(`expected a value for ${shown(name)}`);
    }
    const key = name.toLowerCase();
    if (key in params) {
      r.pos = start;
      throw r.fail(`parameter ${shown(name)} given twice in ${what}`);
    }
    params[key] = value;
    first = false;
  }
  return params;
}

/**
 * Parses a `WWW-Authenticate` / `Proxy-Authenticate` value into its
 * challenges (usually one). Throws `SipParseError` naming the position when
 * the value is malformed.
 *
 * @example
 * ```ts
 * parseChallenges('Digest realm="example.com", nonce="ab12", qop="auth", algorithm=SHA-256');
 * // [{ scheme: "Digest", params: { realm: "example.com", nonce: "ab12", qop: "auth", algorithm: "SHA-256" } }]
 * ```
 */
export function parseChallenges(value: string, what = "challenge"): AuthParams[] {
  const r = new Reader(value, what);
  const out: AuthParams[] = [];
  r.skipSpace();
  while (!r.done) {
    const scheme = r.token();
    if (!scheme) throw r.fail("expected an authentication scheme (e.g. Digest)");
    if (!/[ \t]/.test(r.peek()) && !r.done) throw r.fail(`expected a space after the scheme ${shown(scheme)}`);
    const params = readParams(r, what);
    out.push({ scheme, params });
    r.skipSpace();
    if (r.peek() === ",") {
      r.pos++;
      r.skipSpace();
    }
  }
  if (out.length === 0) throw r.fail("empty value");
  return out;
}

/**
 * Parses an `Authorization` / `Proxy-Authorization` value (one set of
 * credentials). Throws `SipParseError` when it is malformed.
 *
 * @example
 * ```ts
 * parseCredentials('Digest username="alice", realm="example.com", nonce="ab12", uri="sip:example.com", response="…"').params.realm;
 * // "example.com"
 * ```
 */
export function parseCredentials(value: string, what = "credentials"): AuthParams {
  const all = parseChallenges(value, what);
  if (all.length !== 1) throw new SipParseError(`malformed ${what}: more than one scheme in one value`);
  return all[0];
}

/** Quotes `s` as a quoted-string, escaping `"` and `\`. */
function quoteParam(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * Formats credentials: the scheme, then each parameter in order, quoted
 * unless its entry says `false` (RFC 3261 §25.1 leaves `algorithm`, `qop` and
 * `nc` unquoted). Throws a TypeError for a value that cannot be sent
 * (a line break, or an unquoted value that is not a token).
 *
 * @example
 * ```ts
 * formatCredentials("Digest", [["username", "alice"], ["qop", "auth", false], ["nc", "00000001", false]]);
 * // 'Digest username="alice", qop=auth, nc=00000001'
 * ```
 */
export function formatCredentials(scheme: string, params: [name: string, value: string, quoted?: boolean][]): string {
  const parts = params.map(([name, value, quoted]) => {
    if (/[\r\n]/.test(value)) throw new TypeError(`credentials parameter ${name} contains a line break`);
    if (quoted === false) {
      if (![...value].every((c) => TOKEN_CHAR.test(c)) || value === "") {
        throw new TypeError(`credentials parameter ${name} must be a token, got ${JSON.stringify(value)}`);
      }
      return `${name}=${value}`;
    }
    return `${name}=${quoteParam(value)}`;
  });
  return `${scheme} ${parts.join(", ")}`;
}
