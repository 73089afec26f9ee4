/**
 * Reading environment variables without the `env` permission failing the caller.
 *
 * @module
 */

/**
 * The environment variable `name`, or undefined when it is unset or the process may not read it (no `--allow-env`):
 * a setting read from the environment then behaves as if unset.
 * @example
 * ```ts
 * const net = envVar("VOXPIPE_NET") ?? "deno";
 * ```
 */
export function envVar(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}
