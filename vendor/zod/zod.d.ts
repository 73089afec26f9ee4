// The types of vendor/zod/zod.js: those of the npm package it is bundled from (scripts/vendor_zod.ts reads the
// version here; change it here to move voxpipe to another zod), but for what the bundle leaves out (zod_api.d.ts).
import "npm:zod@4.6.7";
export * from "./zod_api.d.ts";
import * as z from "./zod_api.d.ts";
export { z, z as default };
