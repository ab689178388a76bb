// The WasmWiz REST API client: openapi-fetch over the types that openapi-typescript generated
// from the OpenAPI contract (schema.ts), with the API key, binary bodies and problem+json
// errors taken care of.
import createClient, { type Client } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, operations, paths } from "./schema.js";

type Schemas = components["schemas"];
export type Execution = Schemas["Execution"];
export type ExecutionRequest = Schemas["ExecutionRequest"];
export type Module = Schemas["Module"];
export type Bundle = Schemas["Bundle"];
export type Key = Schemas["Key"];
export type CreatedKey = Schemas["CreatedKey"];
export type UsageResponse = Schemas["UsageResponse"];
export type Problem = Schemas["Problem"];

/** A client of every REST operation: client.GET("/v1/executions/{id}", { params: { path: { id } } }). */
export type WasmWizClient = Client<paths>;

export interface ClientOptions {
  /** The gateway, e.g. http://127.0.0.1:8080 (what `wasmwiz dev` prints). */
  baseUrl: string;
  /** An API key, or a token from POST /v1/auth/token: both are sent as a bearer token. */
  apiKey: string;
  /** A fetch of your own (tests, proxies); the global fetch by default. */
  fetch?: (input: Request) => Promise<Response>;
}

/** Makes a client that authenticates every request with the key. */
export function createWasmWizClient(opts: ClientOptions): WasmWizClient {
  const client = createClient<paths>({
    baseUrl: opts.baseUrl.replace(/\/+$/, ""),
    bodySerializer: serializeBody,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
  });
  client.use({
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${opts.apiKey}`);
      return request;
    },
  });
  return client;
}

// Binary bodies (a module, a bundle) go as they are, JSON bodies as JSON.
function serializeBody(body: unknown): BodyInit {
  if (body instanceof Blob || body instanceof ArrayBuffer || ArrayBuffer.isView(body) || body instanceof FormData) {
    return body as BodyInit;
  }
  return JSON.stringify(body);
}

/** An answer of 400 or more: the problem+json body, with its stable code, and Retry-After. */
export class WasmWizError extends Error {
  readonly status: number;
  readonly code: string;
  readonly problem?: Problem;
  /** Seconds to wait before trying again (429, 503), when the server said. */
  readonly retryAfter?: number;

  constructor(response: Response, problem?: Problem) {
    const code = problem?.code ?? `http_${response.status}`;
    super(`${response.status} ${code}${problem?.detail ? `: ${problem.detail}` : ""}`);
    this.name = "WasmWizError";
    this.status = response.status;
    this.code = code;
    this.problem = problem;
    const retry = Number(response.headers.get("Retry-After"));
    if (retry > 0) {
      this.retryAfter = retry;
    }
  }
}

/**
 * The data of a call's answer, or a WasmWizError for an error answer:
 * const m = ok(await client.GET("/v1/modules/{id}", { params: { path: { id } } })).
 */
export function ok<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (!result.response.ok || result.data === undefined) {
    const e = result.error;
    const problem = e && typeof e === "object" && "code" in e ? (e as Problem) : undefined;
    throw new WasmWizError(result.response, problem);
  }
  return result.data;
}

/** Uploads a module (its .wasm bytes) and returns it, with its id (sha256:…). */
export async function uploadModule(client: WasmWizClient, wasm: Blob | Uint8Array, name?: string): Promise<Module> {
  const body = wasm instanceof Blob ? wasm : new Blob([new Uint8Array(wasm)]); // a copy: a Blob wants an ArrayBuffer's view
  return ok(
    await client.POST("/v1/modules", {
      params: { query: name ? { name } : {} },
      body,
      headers: { "Content-Type": "application/wasm" },
    }),
  );
}

/** The statuses an execution does not leave. */
export function isFinal(status: Execution["status"]): boolean {
  return status === "succeeded" || status === "failed" || status === "timed_out" || status === "killed";
}

/**
 * Polls GET /v1/executions/{id} until the execution has ended (an async run, or a sync run whose
 * wait ran out and came back 202), from every 100 ms to every 2 s, for at most timeoutMs.
 */
export async function waitForExecution(client: WasmWizClient, id: string, timeoutMs = 10 * 60_000): Promise<Execution> {
  const deadline = Date.now() + timeoutMs;
  let interval = 100;
  for (;;) {
    const ex = ok(await client.GET("/v1/executions/{id}", { params: { path: { id } } }));
    if (isFinal(ex.status)) {
      return ex;
    }
    if (Date.now() + interval > deadline) {
      throw new Error(`execution ${id} is still ${ex.status} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
    interval = Math.min(interval * 2, 2000);
  }
}
