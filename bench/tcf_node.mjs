// IAB's reference TC string decoder (@iabtechlabtcf/core, installed for the differential
// tests in tests/interop) timed on the strings bench/tcf.py gives it: a JSON array on
// stdin. Warms V8 up first, then decodes the whole list again and again for SECONDS and
// prints {"decodes": n, "seconds": s}. Used by bench/tcf.py only.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/interop/package.json', import.meta.url));
const { TCString } = require('@iabtechlabtcf/core');

const strings = JSON.parse(readFileSync(0, 'utf8'));
const seconds = Number(process.argv[2] || '2');
const run = (limit) => {
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(limit * 1e9));
  while (process.hrtime.bigint() < end) {
    for (const s of strings) {
      TCString.decode(s);
      n += 1;
    }
  }
  return [n, Number(process.hrtime.bigint() - start) / 1e9];
};
run(Math.min(1, seconds / 2)); // JIT warm-up, not reported
const [decodes, elapsed] = run(seconds);
process.stdout.write(JSON.stringify({ decodes, seconds: elapsed }) + '\n');
