// The HTTP client of the agent app: JSON in and out, the bearer token, and
// the API's error shape turned into ApiError.

/** ApiError is a failed API call: status, code, message and field as the API sent them. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message || `request failed (${status})`);
    this.status = status;
    this.code = code || 'network';
    this.field = field;
  }
}

/** Client calls the /v1 API of one server with one token. */
export class Client {
  constructor(token, { base = '', onUnauthorized = () => {} } = {}) {
    this.token = token;
    this.base = base;
    this.onUnauthorized = onUnauthorized;
  }

  /**
   * request sends one call. A network failure is retried (retries times, with
   * a short back-off) only for requests that are safe to repeat: reads, and
   * writes the API deduplicates (a message post with its client_id).
   */
  async request(method, path, body, { retries = method === 'GET' ? 2 : 0 } = {}) {
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await fetch(this.base + path, {
          method,
          headers: {
            Authorization: `Bearer ${this.token}`,
            Accept: 'application/json',
            ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (err) {
        if (attempt < retries) {
          await sleep(300 * 2 ** attempt);
          continue;
        }
        throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection and try again.');
      }
      if (res.status >= 500 && res.status !== 501 && attempt < retries) {
        await sleep(300 * 2 ** attempt);
        continue;
      }
      const data = res.status === 204 ? null : await res.json().catch(() => null);
      if (!res.ok) {
        const e = data?.error ?? {};
        if (res.status === 401) this.onUnauthorized();
        throw new ApiError(res.status, e.code, e.message, e.field);
      }
      return data;
    }
  }

  get(path) { return this.request('GET', path); }
  post(path, body = {}, opts) { return this.request('POST', path, body, opts); }
  put(path, body) { return this.request('PUT', path, body); }
  patch(path, body) { return this.request('PATCH', path, body); }
  del(path) { return this.request('DELETE', path); }
}

/** qs renders query parameters, leaving out empty ones. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : '';
}

/** id makes a client_id: one per message the user sends, kept across retries. */
export function clientID() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
