// Every call the page makes to the service goes through here, so the rules hold everywhere:
// same origin only, the session cookie, the CSRF header on every mutation, and the service's
// error body turned into one error type the pages can show as it is.

const CSRF_HEADER = 'X-Requested-With';
const CSRF_VALUE = 'sofiia-console';

/** An answer that is not a success: the service's own code and message, safe to show. */
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  /** The request may never have reached the service, or its answer never came back. */
  get isNetwork() {
    return this.status === 0;
  }
}

let onUnauthorized = () => {};

/** Called when a credential is no longer accepted (the session ended), to show the login. */
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

export function withQuery(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export async function request(method, path, { body, headers = {}, quietUnauthorized = false } = {}) {
  const sent = { Accept: 'application/json', ...headers };
  if (method !== 'GET') sent[CSRF_HEADER] = CSRF_VALUE;
  if (body !== undefined) sent['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'The service could not be reached. Check the connection and try again.');
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.ok) return data;
  const error = data?.error ?? {};
  if (response.status === 401 && !quietUnauthorized) onUnauthorized();
  throw new ApiError(
    response.status,
    error.code ?? `http_${response.status}`,
    error.message ?? `The service answered ${response.status}.`,
    error.request_id,
  );
}

export const get = (path, query) => request('GET', withQuery(path, query));
export const post = (path, body, options = {}) => request('POST', path, { ...options, body });
export const patch = (path, body) => request('PATCH', path, { body });
export const remove = (path) => request('DELETE', path);

/**
 * A server-sent event stream with a handler per event name. The browser reconnects on its own
 * and sends `Last-Event-ID`; the caller closes it when its page goes away.
 */
export function subscribe(path, handlers) {
  const source = new EventSource(path);
  for (const [name, handler] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      let data = null;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      handler(data, event);
    });
  }
  return source;
}

export const segment = encodeURIComponent;
