// The README's TypeScript example, type-checked and run as written, against the real service.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, it } from "node:test";
import { promisify } from "node:util";

import ts from "typescript";

import { PACKAGE, type RunningService, startService } from "./support.js";

let service: RunningService;

before(async () => {
  service = await startService();
});

after(async () => {
  await service?.stop();
});

async function readmeExample(): Promise<string> {
  const readme = await readFile(join(PACKAGE, "..", "..", "README.md"), "utf8");
  const start = readme.indexOf("## TypeScript client");
  const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
  const found = /```ts\n([\s\S]*?)```/.exec(section);
  assert.ok(start >= 0 && found, "the README has a TypeScript client section with a ts example");
  return found[1];
}

it("runs as written", async () => {
  // Inside the package, where `webhooks-client` names the package itself, as it does for its users.
  const folder = join(PACKAGE, "dist", "readme");
  const source = join(folder, "example.ts");
  await mkdir(folder, { recursive: true });
  await writeFile(source, (await readmeExample()).replace("http://127.0.0.1:50051", service.url));
  const program = ts.createProgram([source], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    types: ["node"],
    skipLibCheck: true,
  });
  const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  assert.deepEqual(problems, []);
  program.emit();

  const { stdout } = await promisify(execFile)(process.execPath, [join(folder, "example.js")], {
    env: { ...process.env, WEBHOOKS_TOKEN: service.token },
  });

  const [created, ...violations] = stdout.trim().split("\n");
  assert.match(created, /^organizations\/acme\/webhooks\/[0-9a-f]+ [0-9a-f]+$/);
  assert.deepEqual(violations, ["webhook.display_name FIELD_REQUIRED", "webhook.payload_url INVALID_URL"]);
});
