/**
 * Every built-in control plugin.
 *
 * The `sip` control is registered from its declaration alone (options, variables,
 * description: sip/control_options.ts); the SIP stack, sdp-transform with it, is loaded when a
 * pipeline file asks for it, so a pipeline without calls (a transcode) never loads it.
 *
 * @module
 */
import { type AnyControlPlugin, defineControl } from "../core/control.ts";
import { controls as relay } from "./relay/mod.ts";
import { SIP_RELAY_DESCRIPTION, sipRelayOptions } from "./b2bua/options.ts";
import { SIP_CONTROL_DESCRIPTION, SIP_VARIABLES, sipControlOptions, sipExampleCalls } from "./sip/control_options.ts";

/** The `sip` control plugin, loading its implementation (sip/control.ts) on first use. */
const sip = defineControl({
  name: "sip",
  kind: "control",
  description: SIP_CONTROL_DESCRIPTION,
  variables: SIP_VARIABLES,
  options: sipControlOptions,
  exampleVariables: (o, ctx) => sipExampleCalls(o, ctx.codecs),
  create: async (options, ctx) => (await import("./sip/control.ts")).sipControl.create(options, ctx),
});

/** The `sip-relay` control plugin (registrar + B2BUA), loading its implementation (b2bua/control.ts) on first use. */
const sipRelay = defineControl({
  name: "sip-relay",
  kind: "control",
  description: SIP_RELAY_DESCRIPTION,
  variables: {},
  options: sipRelayOptions,
  create: async (options, ctx) => (await import("./b2bua/control.ts")).sipRelayControl.create(options, ctx),
});

/** All built-in control plugins. */
export const builtinControls: AnyControlPlugin[] = [sip, sipRelay, ...relay];
