// What `z` holds in vendor/zod/zod.js (see zod.d.ts): the npm package's API but for what the bundle leaves out
// (scripts/vendor_zod.ts): `fromJSONSchema`, and the locales other than English. The one place that pins zod's version
// (scripts/vendor_zod.ts reads it here): change the version of both specifiers below together, then rerun that script.
import type * as zod from "npm:zod@4.6.7";
export * from "npm:zod@4.6.7";
/** Not in voxpipe's bundle of zod (JSON Schema to zod has no use in option schemas): import it from npm:zod. */
export declare const fromJSONSchema: undefined;
/** zod's message locales: English alone in voxpipe's bundle (the one zod uses unless configured otherwise). */
export declare const locales: { readonly en: typeof zod.locales.en };
/** The package's own `z` is not a member of its namespace. */
export declare const z: undefined;
