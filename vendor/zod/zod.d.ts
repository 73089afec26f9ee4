// The types of vendor/zod/zod.js: those of the npm package it is bundled from, but for what the bundle leaves out
// (zod_api.d.ts, which also pins the version: scripts/vendor_zod.ts reads it there).
export * from "./zod_api.d.ts";
import * as z from "./zod_api.d.ts";
export { z, z as default };
