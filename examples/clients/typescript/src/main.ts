// Runs a WebAssembly module through WasmWiz with the TypeScript client (clients/typescript):
// uploads it, runs it with stdin and waits for the answer, runs it again asynchronously and
// polls until it ends, and lists the key's tenant's API keys.
//
//   WASMWIZ_URL=http://127.0.0.1:8080 WASMWIZ_KEY="$(cat wasmwiz-data/dev-api-key)" \
//     node dist/main.js module.wasm "some stdin"
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { createWasmWizClient, ok, uploadModule, waitForExecution, WasmWizError } from "@wasmwiz/client";

async function main(): Promise<void> {
  const [file, stdin = "hello from TypeScript"] = process.argv.slice(2);
  const baseUrl = process.env.WASMWIZ_URL ?? "http://127.0.0.1:8080";
  const apiKey = process.env.WASMWIZ_KEY;
  if (!file || !apiKey) {
    throw new Error("usage: WASMWIZ_URL=… WASMWIZ_KEY=… node dist/main.js <module.wasm> [stdin]");
  }
  const client = createWasmWizClient({ baseUrl, apiKey });

  const mod = await uploadModule(client, readFileSync(file), basename(file));
  console.log(`uploaded ${mod.name}: ${mod.id} (${mod.size} bytes, exports ${(mod.exports ?? []).join(",")})`);

  // A sync run answers 200 with the result; 202 when its wait ran out (then poll, as below).
  const run = await client.POST("/v1/executions", { body: { module_id: mod.id, stdin } });
  let ex = ok(run);
  if (run.response.status === 202) {
    ex = await waitForExecution(client, ex.id);
  }
  console.log(`sync ${ex.id}: ${ex.status}, exit ${ex.exit_code}, ${ex.duration_ms.toFixed(1)} ms, stdout ${JSON.stringify(ex.stdout)}`);

  // An async run answers 202 at once with the queued execution and where to poll it.
  const queued = await client.POST("/v1/executions", { body: { module_id: mod.id, stdin, async: true } });
  const accepted = ok(queued);
  console.log(`async ${accepted.id}: HTTP ${queued.response.status}, ${accepted.status}, Location ${queued.response.headers.get("Location")}`);
  const done = await waitForExecution(client, accepted.id, 60_000);
  console.log(`async ${done.id}: ${done.status}, exit ${done.exit_code}, stdout ${JSON.stringify(done.stdout)}`);

  const keys = ok(await client.GET("/v1/keys"));
  for (const k of keys.keys ?? []) {
    console.log(`key ${k.id}: ${k.prefix}…, tier ${k.tier}${k.name ? `, ${k.name}` : ""}`);
  }

  // Errors are problem+json with a stable code.
  try {
    ok(await client.GET("/v1/executions/{id}", { params: { path: { id: "ex_nosuch" } } }));
  } catch (e) {
    if (!(e instanceof WasmWizError)) {
      throw e;
    }
    console.log(`unknown execution: ${e.status} ${e.code}`);
  }
}

main().catch((e: unknown) => {
  console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
