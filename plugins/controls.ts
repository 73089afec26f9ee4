/**
 * Every built-in control plugin.
 *
 * The `sip` control is registered from its declaration alone (options, variables,
 * description: sip/control_options.ts); the SIP stack is loaded when a
 * pipeline file asks for it, so a pipeline without calls (a transcode) never loads it. The same
 * for `sip-relay` (b2bua/options.ts) and the relay family's `relay` and `relay-client`
 * (relay/control_options.ts: the relay server, its protocol and TCP streams load on first use).
 * Their option schemas are built on first use too (`get options()`, by `lazySchema`): registering
 * them builds none; `--describe`, `--schema` and a file that uses one do.
 *
 * @module
 */
import { type AnyControlPlugin, defineControl } from "../core/control.ts";
import {
  RELAY_CLIENT_DESCRIPTION,
  RELAY_CLIENT_VARIABLES,
  RELAY_DESCRIPTION,
  relayClientOptionsSchema,
  relayOptionsSchema,
} from "./relay/control_options.ts";
import { SIP_RELAY_DESCRIPTION, sipRelayOptionsSchema } from "./b2bua/options.ts";
import {
  SIP_CONTROL_DESCRIPTION,
  SIP_VARIABLES,
  sipControlOptionsSchema,
  sipExampleCalls,
} from "./sip/control_options.ts";
import { lazyModule } from "../core/lazy.ts";

/** Modules loaded when first used (see `lazyModule`). */
const sipControlModule = lazyModule<typeof import("./sip/control.ts")>(new URL("./sip/control.ts", import.meta.url));
const b2buaControlModule = lazyModule<typeof import("./b2bua/control.ts")>(
  new URL("./b2bua/control.ts", import.meta.url),
);
const relayControlModule = lazyModule<typeof import("./relay/relay_control.ts")>(
  new URL("./relay/relay_control.ts", import.meta.url),
);
const clientControlModule = lazyModule<typeof import("./relay/client_control.ts")>(
  new URL("./relay/client_control.ts", import.meta.url),
);

/** The `sip` control plugin, loading its implementation (sip/control.ts) on first use. */
const sip = defineControl({
  name: "sip",
  kind: "control",
  description: SIP_CONTROL_DESCRIPTION,
  variables: SIP_VARIABLES,
  get options() {
    return sipControlOptionsSchema();
  },
  exampleVariables: (o, ctx) => sipExampleCalls(o, ctx.codecs),
  create: async (options, ctx) => (await sipControlModule()).sipControl.create(options, ctx),
});

/** The `sip-relay` control plugin (registrar + B2BUA), loading its implementation (b2bua/control.ts) on first use. */
const sipRelay = defineControl({
  name: "sip-relay",
  kind: "control",
  description: SIP_RELAY_DESCRIPTION,
  variables: {},
  get options() {
    return sipRelayOptionsSchema();
  },
  create: async (options, ctx) => (await b2buaControlModule()).sipRelayControl.create(options, ctx),
});

/** The `relay` control plugin (media relay), loading its implementation (relay/relay_control.ts) on first use. */
const relay = defineControl({
  name: "relay",
  kind: "control",
  description: RELAY_DESCRIPTION,
  variables: {},
  get options() {
    return relayOptionsSchema();
  },
  create: async (options, ctx) => (await relayControlModule()).relayControl.create(options, ctx),
});

/** The `relay-client` control plugin, loading its implementation (relay/client_control.ts) on first use. */
const relayClient = defineControl({
  name: "relay-client",
  kind: "control",
  description: RELAY_CLIENT_DESCRIPTION,
  variables: RELAY_CLIENT_VARIABLES,
  get options() {
    return relayClientOptionsSchema();
  },
  create: async (options, ctx) => (await clientControlModule()).relayClientControl.create(options, ctx),
});

/** All built-in control plugins. */
export const builtinControls: AnyControlPlugin[] = [sip, sipRelay, relay, relayClient];
