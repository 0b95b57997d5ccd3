// Parse and validate an AsyncAPI document with the official parser (@asyncapi/parser),
// resolving its relative $refs (the JSON Schemas beside it) and validating those too.
// Usage: node validate.mjs <document>. Prints one JSON line per diagnostic; exits 1 on any error.
import { Parser, fromFile } from '@asyncapi/parser';

const SEVERITY = ['error', 'warning', 'information', 'hint'];

const path = process.argv[2];
if (!path) {
  console.error('usage: node validate.mjs <asyncapi document>');
  process.exit(2);
}
const { document, diagnostics } = await fromFile(new Parser(), path).parse();
for (const diagnostic of diagnostics) {
  console.log(JSON.stringify({
    severity: SEVERITY[diagnostic.severity],
    code: diagnostic.code,
    message: diagnostic.message,
    path: diagnostic.path.join('.'),
  }));
}
const errors = diagnostics.filter((diagnostic) => diagnostic.severity === 0);
if (document === undefined || errors.length > 0) {
  process.exit(1);
}
console.log(JSON.stringify({ valid: true, asyncapi: document.version(), channels: document.channels().all().map((channel) => channel.address()) }));
