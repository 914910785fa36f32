// The API as the console uses it. The key lives in sessionStorage: this tab only, gone when
// the tab closes, never in a cookie or a URL.

const KEY = 'visage.apiKey';
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, requestId, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
    this.details = details;
  }
}

export const session = {
  get key() {
    return sessionStorage.getItem(KEY);
  },
  /** The key's own record (GET /v1/keys/me): name, role, collections. */
  me: null,
  signIn(key, me) {
    sessionStorage.setItem(KEY, key);
    session.me = me;
  },
  signOut(reason) {
    sessionStorage.removeItem(KEY);
    session.me = null;
    for (const listener of listeners) listener(reason);
  },
  onSignOut(listener) {
    listeners.add(listener);
  },
};

const ROLES = ['read', 'verify', 'enrol', 'admin'];

/** Whether the signed-in key's role includes `role` (admin > enrol > verify > read). */
export function can(role) {
  return session.me !== null && ROLES.indexOf(session.me.role) >= ROLES.indexOf(role);
}

/**
 * Calls the API. `json` goes as a JSON body, `form` (a FormData) as multipart; `query` is
 * added to the URL without empty values. A 401 signs the tab out: the key was revoked.
 */
export async function api(method, path, { json, form, query, key, blob = false } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, value);
  }
  const headers = { Authorization: `Bearer ${key ?? session.key}` };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, credentials: 'omit', cache: 'no-store' });
  } catch (err) {
    throw new ApiError(0, 'network', err.message);
  }
  if (response.status === 204) return null;
  if (blob && response.ok) return response.blob();
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const e = answer?.error ?? {};
    const error = new ApiError(response.status, e.code ?? `http_${response.status}`, e.message ?? response.statusText,
      e.request_id, e.details);
    if (response.status === 401 && key === undefined && session.key) session.signOut('revoked');
    throw error;
  }
  return answer;
}

/** Multipart form data from an object; Blobs go as file parts. */
export function formData(fields) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null || value === '') continue;
    if (value instanceof Blob) form.append(name, value, value.name ?? `${name}.jpg`);
    else form.append(name, String(value));
  }
  return form;
}
