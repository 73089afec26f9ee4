/**
 * Which options of a plugin are file paths (resolved against the pipeline file's folder when given with `--set`),
 * read from its zod options schema; and the same read from the options' JSON Schema, which the tests hold the
 * first to. Internal to voxpipe (not exported from mod.ts); the runner uses the first.
 *
 * @module
 */
export { pathOptionKeys, pathOptionKeysFromJsonSchema } from "./_options_doc.ts";
