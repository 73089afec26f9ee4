/**
 * Worker for `fast_udp_test.ts`: a MediaLoop on this worker's thread with one
 * socket that answers every datagram with its bytes plus one. Posts
 * `{ port }` when listening; on the message "close" closes its loop and
 * posts "closed".
 *
 * @module
 */
import { MediaLoop } from "../core/net/media_loop.ts";

const self = globalThis as unknown as {
  postMessage(m: unknown): void;
  onmessage: ((e: MessageEvent) => void) | null;
};

try {
  const loop = new MediaLoop();
  const sock = loop.network.bind("127.0.0.1", 0);
  sock.listen((data, from) => {
    sock.post(data.map((b) => b + 1), from);
  });
  self.onmessage = async () => {
    await loop.close();
    self.postMessage("closed");
  };
  self.postMessage({ port: sock.port });
} catch (e) {
  self.postMessage({ error: e instanceof Error ? e.message : String(e) });
}
