// A data helper (data-threads.ts) that starts 1.5 s late, as one slow to boot on a busy machine,
// then does what the real one does (the build's entry: it takes blocks until none is left).
const idle = new Int32Array(new SharedArrayBuffer(4));
Atomics.wait(idle, 0, 0, 1500);
await import('../../dist/data-thread-entry.js');
