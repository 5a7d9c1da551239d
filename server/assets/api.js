// api.js - the service's public API as the page uses it: JSON requests, the error envelope,
// and each request as a curl command.

/** An answer with the service's error envelope {"error": {status, code, message, field}},
 *  or a request that never got an answer (status 0). */
export class ApiError extends Error {
  constructor(status, code, message, field = '') {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** The API's address: this page's origin (the explorer is served by the service itself). */
export const apiBase = () => location.origin;

async function readAnswer(res) {
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (res.ok && body !== null) return body;
  const e = body && body.error;
  if (e && typeof e.message === 'string')
    throw new ApiError(e.status ?? res.status, e.code ?? '', e.message, e.field ?? '');
  throw new ApiError(res.status, 'http_' + res.status,
    res.ok ? 'the answer is not JSON' : `HTTP ${res.status} ${res.statusText}`.trim());
}

/** POSTs body as JSON to path; resolves to the parsed answer, rejects with ApiError. */
export async function post(path, body, { signal } = {}) {
  let res;
  try {
    res = await fetch(apiBase() + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'the service cannot be reached: ' + err.message);
  }
  return readAnswer(res);
}

/** GETs path; resolves to the parsed answer, rejects with ApiError (404 included). */
export async function get(path) {
  let res;
  try {
    res = await fetch(apiBase() + path, { headers: { Accept: 'application/json' } });
  } catch (err) {
    throw new ApiError(0, 'network', 'the service cannot be reached: ' + err.message);
  }
  return readAnswer(res);
}

/** A shell-safe single-quoted word. */
const shq = (s) => "'" + String(s).replace(/'/g, `'\\''`) + "'";

/** The request as a curl command anyone can paste into a shell. */
export function curlCommand(path, body) {
  return `curl -s ${shq(apiBase() + path)} -H 'Content-Type: application/json' \\\n  -d ${shq(JSON.stringify(body))}`;
}
