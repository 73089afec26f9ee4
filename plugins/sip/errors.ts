/**
 * Errors shared by the SIP modules.
 *
 * @module
 */

/** What could be read of a request whose parsing failed, so that a `400 Bad Request` can still be sent. */
export interface PartialRequest {
  /** Request method from the request line. */
  method: string;
  /** Request-URI text from the request line. */
  uri: string;
  /** Header lines that could be read, in order, as `[name, value]` with full canonical names. */
  headers: [string, string][];
}

/**
 * A SIP message, URI or header could not be parsed. `reason` is short and precise
 * (it becomes the reason phrase of the answer: `400 Bad Request (<reason>)`, or
 * `505 Version Not Supported (<reason>)` when `status` is 505). It never holds
 * raw control characters from the input: quoted excerpts are escaped and cut.
 *
 * @example
 * ```ts
 * try {
 *   parseMessage("INVITE sip:bob@example.com SIP/2.0\r\n\r\n");
 * } catch (e) {
 *   if (e instanceof SipParseError) console.log(e.reason); // "missing Via header"
 * }
 * ```
 */
export class SipParseError extends Error {
  /** The precise reason, without any prefix. */
  readonly reason: string;
  /** For a request, the request line and headers that could be recovered. */
  partial?: PartialRequest;
  /** The status a reply to the request should carry: 400, or 505 for an unsupported SIP version. */
  readonly status: 400 | 505;

  /**
   * Creates the error.
   * @param reason short description of what is wrong
   * @param partial what could be recovered of a request
   * @param status 400 (default) or 505 (unsupported SIP version)
   */
  constructor(reason: string, partial?: PartialRequest, status: 400 | 505 = 400) {
    super(reason);
    this.name = "SipParseError";
    this.reason = reason;
    this.partial = partial;
    this.status = status;
  }
}
