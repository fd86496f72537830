// Test fixture: the real image worker (src/handlers/image-worker.ts) plus two requests that kill its thread, to
// test what the pool does when a worker dies. Imports evaluate in order, so the crash listener is attached
// before the real one and sees each message first.
import './crash-on-request.js';
import '../../src/handlers/image-worker.js';
