// The dashboard's one way to the service: every request (JSON, CSV, the event stream) goes
// through api(). Bearer key from sessionStorage; on 401 ask for one (once for concurrent calls).
import { $ } from "./util.js";

const KEY_STORE = "scarcity.apiKey";
let keyPrompt = null;

export function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

export function askForKey(message) {
  if (keyPrompt) return keyPrompt;
  const dialog = $("#key-dialog");
  $("#key-error").textContent = message || "";
  $("#key-input").value = apiKey();
  $("#key-button").hidden = false;
  keyPrompt = new Promise((resolve) => {
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      keyPrompt = null;
      if (dialog.returnValue === "ok" && $("#key-input").value.trim()) {
        sessionStorage.setItem(KEY_STORE, $("#key-input").value.trim());
        resolve(true);
      } else {
        if (dialog.returnValue === "forget") sessionStorage.removeItem(KEY_STORE);
        resolve(false);
      }
    });
    dialog.showModal();
  });
  return keyPrompt;
}

export async function api(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { ...(options.headers || {}) };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const sent = apiKey();
    if (sent) headers.Authorization = `Bearer ${sent}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401 || attempt >= 5) return response;
    // A refusal of a key that was replaced while this request was out says nothing about the
    // new one: try that instead of asking again (slow answers to concurrent calls did).
    if (apiKey() && apiKey() !== sent) continue;
    const again = await askForKey(apiKey() ? "That key was refused; try another." : "");
    if (!again) return response;
  }
}

export async function apiJSON(path, options) {
  const response = await api(path, options);
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

export async function errorText(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((d) => (d.field ? `${d.field}: ` : "") + d.message).join("; ");
  if (detail) return `${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
  return `${response.status} ${response.statusText}`;
}

// Server-sent events over fetch (EventSource cannot send the Authorization header): yields
// { event, data } with data parsed from JSON; returns when the server closes the stream.
export async function* eventStream(path, signal) {
  const response = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  if (!response.ok || !response.body) throw new Error(await errorText(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      let event = "message"; const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const [field, ...rest] = line.split(":");
        const v = rest.join(":").replace(/^ /, "");
        if (field === "event") event = v; else if (field === "data") data.push(v);
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}
