// Lets queued messages (an abort, a model switch) in between two tokens. With the Atomics pool a
// whole token runs without ever returning to the event loop, so generation yields explicitly.
// setTimeout(0) is clamped to 1–4 ms; setImmediate (Node) and a MessageChannel (browsers) are not.

type Resolve = () => void;
const waiting: Resolve[] = [];
let channel: MessageChannel | null = null;

export function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => void };
  if (typeof g.setImmediate === 'function') return new Promise((r) => g.setImmediate!(r));
  if (channel === null) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => waiting.shift()?.();
  }
  return new Promise((r) => {
    waiting.push(r);
    channel!.port2.postMessage(0);
  });
}
