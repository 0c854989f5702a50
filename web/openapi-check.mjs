// Validates an OpenAPI document against the OpenAPI specification's own
// schema, with an implementation independent of vodpipe
// (@seriousme/openapi-schema-validator, pinned in package-lock.json). The
// JSON Schema documents it refers to by file name (docs/job.schema.json,
// docs/events.schema.json) are bundled first, as a bundler would: each is
// embedded once under components.schemas with its own $id, and the
// references point at that $id, so the documents' internal and relative
// references resolve as they do on their own.
// Usage: node openapi-check.mjs <openapi.json>
// Exit 0 when valid; 1 with the validator's errors on stderr.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";

const main = process.argv[2];
if (!main) {
  console.error("usage: node openapi-check.mjs <openapi.json>");
  process.exit(2);
}
const dir = dirname(main);
const read = (f) => JSON.parse(readFileSync(join(dir, f), "utf8"));
const files = new Map(); // file name -> its document
const isFile = (r) => typeof r === "string" && !r.startsWith("#") && !r.includes("://");
const collect = (v) => {
  if (Array.isArray(v)) return v.forEach(collect);
  if (v === null || typeof v !== "object") return;
  if (isFile(v.$ref) && !files.has(v.$ref)) {
    const doc = read(v.$ref);
    if (!doc.$id) throw new Error(`${v.$ref} has no $id`);
    files.set(v.$ref, doc);
    collect(doc);
  }
  Object.values(v).forEach(collect);
};
const repoint = (v) => {
  if (Array.isArray(v)) return v.map(repoint);
  if (v === null || typeof v !== "object") return v;
  const out = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, repoint(x)]));
  if (isFile(v.$ref)) out.$ref = files.get(v.$ref).$id;
  return out;
};
const spec = read(main.slice(dir.length + 1) || main);
collect(spec);
const bundled = repoint(spec);
bundled.components ??= {};
bundled.components.schemas ??= {};
for (const [name, doc] of files) bundled.components.schemas[`file.${name}`] = repoint(doc);
const validator = new Validator();
const res = await validator.validate(bundled);
if (!res.valid) {
  console.error(JSON.stringify(res.errors, null, 2));
  process.exit(1);
}
console.log(`${main}: valid OpenAPI ${validator.version}`);
