// Verified people, on a site that signs people in: the host site's token
// for the person using this browser, and the badge that marks the people a
// token verified.
//
// The token is a JWT the host site hands out (`{token}` from
// settings.tokenUrl, asked with the browser's cookies) before the page
// connects and again before it expires. The page only reads its claims,
// whom it names and when it expires; the chat server checks its signature.

const RENEW_SHARE = 0.8; // renewed at 80% of its lifetime ...
const RENEW_BEFORE_MS = 60 * 1000; // ... or a minute before exp when that is sooner
// Never sooner than this after receiving one: a token that looks expired
// on arrival (this browser's clock is ahead) must not start a loop.
const RENEW_AFTER_AT_LEAST_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";

/** The host site answered that nobody is signed in there (401 or 403). */
export class SignedOut extends Error {}

/** A JWT's claims: its payload, decoded and not verified. */
export function claimsOf(token) {
  const payload = token.split(".")[1];
  if (!payload) throw new Error("the token is not a JWT");
  // base64url; atob accepts it once the two letters are the usual ones.
  const binary = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(binary, (character) => character.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/**
 * When to replace a token received at `receivedAt` (ms since the epoch, by
 * this browser's clock): at 80% of its lifetime, or a minute before it
 * expires when that is sooner and still ahead. A token that says when it
 * was issued (`iat`) may live no longer than exp - iat, whatever this
 * browser's clock says.
 */
export function renewalTime(claims, receivedAt) {
  let lifetime = claims.exp * 1000 - receivedAt;
  if (Number.isFinite(claims.iat)) lifetime = Math.min(lifetime, (claims.exp - claims.iat) * 1000);
  const minuteBefore = lifetime - RENEW_BEFORE_MS;
  const share = RENEW_SHARE * lifetime;
  const delay = minuteBefore > 0 ? Math.min(share, minuteBefore) : share;
  return receivedAt + Math.max(delay, RENEW_AFTER_AT_LEAST_MS);
}

/** The token of the person signed in at the host site. */
export class SiteToken {
  constructor(url) {
    this.url = url;
    this.held = null; // {token, claims, renewAt}
    this.asking = null; // the request under way, shared by everyone who asks meanwhile
  }

  /** The held token while it is not yet due for renewal, else a new one. */
  current() {
    if (this.held && Date.now() < this.held.renewAt) return Promise.resolve(this.held);
    return this.renew();
  }

  /**
   * A new token: `{token, claims, renewAt}`. Rejects with SignedOut when
   * nobody is signed in, with another Error when the site cannot say.
   */
  renew() {
    if (!this.asking) {
      this.asking = this.ask().finally(() => {
        this.asking = null;
      });
    }
    return this.asking;
  }

  /** Drop the held token: the chat server refused it. */
  forget() {
    this.held = null;
  }

  async ask() {
    const response = await fetch(this.url, {
      credentials: "include",
      cache: "no-store",
      headers: { Accept: "application/json" },
    });
    if (response.status === 401 || response.status === 403) {
      throw new SignedOut(`the site answered ${response.status}`);
    }
    if (!response.ok) throw new Error(`the site answered ${response.status}`);
    const { token } = await response.json();
    if (typeof token !== "string") throw new Error("the site's answer holds no token");
    const claims = claimsOf(token);
    if (typeof claims.sub !== "string" || !Number.isFinite(claims.exp)) {
      throw new Error("the token names nobody, or no expiry");
    }
    this.held = { token, claims, renewAt: renewalTime(claims, Date.now()) };
    return this.held;
  }
}

/**
 * The mark of a verified author, a check in a disc, named "verified" for
 * screen readers: it follows the name, so that a guest who takes the same
 * name never looks like them.
 */
export function verifiedBadge() {
  const badge = document.createElement("span");
  badge.className = "verified-badge";
  badge.setAttribute("role", "img");
  badge.setAttribute("aria-label", "verified");
  badge.title = "Verified: signed in at the site";
  const drawing = document.createElementNS(SVG, "svg");
  drawing.setAttribute("viewBox", "0 0 16 16");
  drawing.setAttribute("aria-hidden", "true");
  drawing.append(svgElement("circle", { class: "disc", cx: 8, cy: 8, r: 8 }));
  drawing.append(svgElement("path", { class: "check", d: "M4.4 8.3l2.4 2.4 4.8-5" }));
  badge.append(drawing);
  return badge;
}

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) {
    element.setAttribute(attribute, String(value));
  }
  return element;
}
