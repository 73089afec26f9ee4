// The types of vendor/zod/zod.js: those of the npm package it is bundled from (scripts/vendor_zod.ts reads the
// version here; change it here to move voxpipe to another zod).
export * from "npm:zod@4.6.7";
export { default } from "npm:zod@4.6.7";
