// Browser storage for the page. localStorage may be full or refused (private
// modes, policies): failures are reported, never thrown, so callers can keep
// what the person typed.

/** The JSON value stored under `key`, or `fallback` when there is none. */
export function readStored(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value === null ? fallback : value;
  } catch (error) {
    console.warn("Channel Chat: could not read", key, error);
    return fallback;
  }
}

/** Store `value` as JSON (null removes it); false when the browser refused. */
export function writeStored(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch (error) {
    console.warn("Channel Chat: could not store", key, error);
    return false;
  }
}

/** The array stored under `key` (empty when missing or not an array). */
export function storedList(key) {
  const list = readStored(key, []);
  return Array.isArray(list) ? list : [];
}

/**
 * A random identifier: a UUID where crypto.randomUUID exists (secure
 * contexts: https and localhost), else 128 random bits in hex.
 */
export function randomId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => (byte + 256).toString(16).slice(1)).join("");
}

/** The text stored under `key` as is (not JSON), or "" when there is none. */
export function readText(key) {
  try {
    return localStorage.getItem(key) ?? "";
  } catch (error) {
    console.warn("Channel Chat: could not read", key, error);
    return "";
  }
}

/** Store `text` as is under `key` ("" or null removes it); false if refused. */
export function writeText(key, text) {
  try {
    if (text) localStorage.setItem(key, text);
    else localStorage.removeItem(key);
    return true;
  } catch (error) {
    console.warn("Channel Chat: could not store", key, error);
    return false;
  }
}
