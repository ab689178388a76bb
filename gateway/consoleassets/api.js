// The WasmWiz public REST API as the console uses it: every call carries the API key as a
// bearer token, JSON in and out, and every answer of 400 or more becomes an ApiError with the
// problem+json's stable code.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.code = problem && problem.code ? problem.code : "";
    this.retryAfter = 0;
  }
}

export class API {
  constructor(key) {
    this.key = key;
  }

  headers(extra) {
    return Object.assign({ Authorization: `Bearer ${this.key}` }, extra || {});
  }

  async call(method, path, { json, body, contentType, signal } = {}) {
    const init = { method, headers: this.headers(), signal, cache: "no-store", credentials: "omit" };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
      init.body = body;
      init.headers["Content-Type"] = contentType;
    }
    const resp = await fetch(path, init);
    const text = await resp.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, data);
      err.retryAfter = Number(resp.headers.get("Retry-After") || 0);
      throw err;
    }
    return data;
  }

  listModules() { return this.call("GET", "/v1/modules"); }
  uploadModule(name, bytes) {
    return this.call("POST", `/v1/modules?name=${encodeURIComponent(name)}`, { body: bytes, contentType: "application/wasm" });
  }
  execute(req) { return this.call("POST", "/v1/executions", { json: req }); }
  getExecution(id) { return this.call("GET", `/v1/executions/${encodeURIComponent(id)}`); }
  listExecutions(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    return this.call("GET", `/v1/executions?${q}`);
  }
  listKeys() { return this.call("GET", "/v1/keys"); }
  createKey(req) { return this.call("POST", "/v1/keys", { json: req }); }
  rotateKey(id) { return this.call("POST", `/v1/keys/${encodeURIComponent(id)}/rotate`, { json: {} }); }
  revokeKey(id) { return this.call("DELETE", `/v1/keys/${encodeURIComponent(id)}`); }
  usage(from, to) { return this.call("GET", `/v1/usage?group_by=day&from=${from}&to=${to}`); }

  // events reads GET /v1/events (Server-Sent Events) with fetch, because EventSource cannot
  // send an Authorization header; onEvent gets {id, type, data}. It returns when the stream
  // ends or signal aborts.
  async events(signal, onEvent, onOpen) {
    const resp = await fetch("/v1/events", { headers: this.headers({ Accept: "text/event-stream" }), signal, cache: "no-store", credentials: "omit" });
    if (!resp.ok) {
      let problem = null;
      try { problem = await resp.json(); } catch { problem = null; }
      throw new ApiError(resp.status, problem);
    }
    if (onOpen) onOpen();
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const ev = { id: "", type: "message", data: "" };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "id") ev.id = val;
          else if (field === "event") ev.type = val;
          else if (field === "data") ev.data += (ev.data ? "\n" : "") + val;
        }
        if (ev.data) onEvent(ev);
      }
    }
  }
}
