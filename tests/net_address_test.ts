/**
 * `ipVersion` (core/net/address.ts) gives the same answers as Node's `net.isIP`, which it
 * replaces so that start-up does not load `node:net`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { isIP } from "node:net";
import { ipVersion, neverADestination, resolveHost } from "../core/net/address.ts";

const CASES = [
  ...[
    "1.2.3.4",
    "255.255.255.255",
    "0.0.0.0",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3.04",
    "1.2.3",
    "1.2.3.4.5",
    "a.b.c.d",
    "",
    // The IPv4 scanner's edges: empty, over-long and signed parts, a trailing or leading dot, bounds.
    "1..2.3",
    "1.2.3.4.",
    ".1.2.3.4",
    "1.2.3.",
    "1234.1.1.1",
    "00.0.0.0",
    "0.0.0.00",
    "1.2.3.-1",
    "1.2.3.+1",
    "1.2.3.4 ",
    "1.2.3.4:5",
    "199.249.250.255",
    "255.255.255.256",
    "1.2.3.4/24",
  ],
  ...["::", "::1", "1::", "0::0", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7::"],
  ...[
    "1:2:3:4:5:6:7:8::",
    "::1:2:3:4:5:6:7",
    "::1:2:3:4:5:6:7:8",
    ":::",
    "1:::2",
    "1::2::3",
    ":1:2:3:4:5:6:7",
    ":1::2",
  ],
  ...["1::2:", "12345::", "g::1", "ABCD::EF", "2001:db8::ff00:42:8329", "2001:0db8:0000:0000:0000:ff00:0042:8329"],
  ...["::ffff:1.2.3.4", "::1.2.3.4", "1.2.3.4::", "::ffff:256.1.1.1", "::ffff:1.2.3", "1:2:3:4:5:6:1.2.3.4"],
  ...["1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5::1.2.3.4", "1:2:3:4:5:6::1.2.3.4", "1::1.2.3.4:5"],
  ...["fe80::1%eth0", "fe80::1%", "fe80::1%eth 0", "fe80::1%en-0.1:2", "1.2.3.4%eth0", "localhost", "example.com"],
];

Deno.test("ipVersion answers as node:net isIP does", () => {
  for (const c of CASES) assert.equal(ipVersion(c), isIP(c), JSON.stringify(c));
  assert.equal(ipVersion("[::1]"), 6, "brackets are stripped");
});

Deno.test("resolveHost returns literals unchanged and resolves localhost", async () => {
  assert.equal(await resolveHost("[::1]"), "::1");
  assert.equal(await resolveHost("10.1.2.3"), "10.1.2.3");
  assert.equal(await resolveHost("localhost", 4), "127.0.0.1");
});

Deno.test("neverADestination: unspecified, multicast, broadcast and reserved addresses, IPv4-mapped too; others pass", () => {
  for (const a of ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0", "224.0.0.1", "239.255.255.255", "ff02::1"]) {
    assert.ok(neverADestination(a), a);
  }
  assert.equal(neverADestination("255.255.255.255"), "the broadcast address");
  assert.equal(neverADestination("240.0.0.1"), "a reserved address (240.0.0.0/4)");
  for (const a of ["127.0.0.1", "10.0.0.1", "192.0.2.10", "223.255.255.255", "::1", "2001:db8::1", "fe80::1"]) {
    assert.equal(neverADestination(a), undefined, a);
  }
});
