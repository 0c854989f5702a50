// Validates an OpenAPI document against the OpenAPI specification's own
// schema, with an implementation independent of vodpipe
// (@seriousme/openapi-schema-validator, pinned in package-lock.json). The
// JSON Schema documents it refers to by file name (docs/job.schema.json)
// are put in place first, as a bundler would (without their $id).
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
const read = (f) => JSON.parse(readFileSync(f, "utf8"));
const inline = (v) => {
  if (Array.isArray(v)) return v.map(inline);
  if (v === null || typeof v !== "object") return v;
  if (typeof v.$ref === "string" && !v.$ref.startsWith("#")) {
    const { $ref, ...rest } = v;
    // Its $id once would do; put in several places it is dropped, as
    // bundlers do, so the copies do not clash.
    const { $id, ...schema } = read(join(dir, $ref));
    return { ...inline(schema), ...rest };
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, inline(x)]));
};
const validator = new Validator();
const res = await validator.validate(inline(read(main)));
if (!res.valid) {
  console.error(JSON.stringify(res.errors, null, 2));
  process.exit(1);
}
console.log(`${main}: valid OpenAPI ${validator.version}`);
