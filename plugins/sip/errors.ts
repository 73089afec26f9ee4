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
 * (it becomes the reason phrase of the `400 Bad Request` answer).
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

  /**
   * Creates the error.
   * @param reason short description of what is wrong
   * @param partial what could be recovered of a request
   */
  constructor(reason: string, partial?: PartialRequest) {
    super(reason);
    this.name = "SipParseError";
    this.reason = reason;
    this.partial = partial;
  }
}
