/**
 * Private to the plugins: the options of a plugin that counts failed secrets per address with a `FailureLimiter`
 * (`core/net/failure_limit.ts`): the console, the WebSocket bridge and the SIP relay share them.
 *
 * @module
 */
import { z } from "zod";
/** The options {@linkcode failureLimitOptions} adds to a schema. */
export interface FailureLimitShape {
  /** Failures from one address within the window that get it refused. */
  auth_max_failures: z.ZodDefault<z.ZodNumber>;
  /** Seconds over which failures are counted. */
  auth_failure_window: z.ZodDefault<z.ZodNumber>;
  /** Seconds an address is refused. */
  auth_block_time: z.ZodDefault<z.ZodNumber>;
  /** Whether loopback addresses are counted too. */
  auth_limit_loopback: z.ZodDefault<z.ZodBoolean>;
}

/**
 * The options of a plugin that counts failed secrets per address (a `FailureLimiter` of `core/net`):
 * `auth_max_failures` (10), `auth_failure_window` (60 s), `auth_block_time` (300 s; 0 = never refused) and
 * `auth_limit_loopback` (false), described for `secrets` (e.g. "wrong tokens") and what a refused address gets
 * (`refused`, e.g. "its connections refused (HTTP 403)"). Spread it into the plugin's `z.object({...})`.
 *
 * @example
 * ```ts
 * const options = z.object({ token: z.string(), ...failureLimitOptions("wrong tokens", "its requests refused") });
 * ```
 */
export function failureLimitOptions(secrets: string, refused: string): FailureLimitShape {
  return {
    auth_max_failures: z.number().int().min(1).max(100000).default(10).describe(
      `${secrets} from one IP address within auth_failure_window that get ${refused} for auth_block_time`,
    ),
    auth_failure_window: z.number().int().min(1).max(86400).default(60).describe(
      `seconds over which an address's ${secrets} are counted`,
    ),
    auth_block_time: z.number().int().min(0).max(86400).default(300).describe(
      `seconds an address with auth_max_failures ${secrets} is refused (0 = never refused)`,
    ),
    auth_limit_loopback: z.boolean().default(false).describe(
      `count ${secrets} from loopback addresses too (default: a process on this host is never refused, so one ` +
        "retrying with an old secret cannot lock out the others)",
    ),
  };
}
