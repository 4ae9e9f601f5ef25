// What the user dials -> a SIP URI; a SIP URI -> what we show.

const USER_RE = /^[A-Za-z0-9\-_.!~*'()&=+$,/%]+$/;
const HOST_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)(:\d{1,5})?$/;
const PHONE_RE = /^\+?[\d\s().-]*\d[\d\s().-]*$/;

/**
 * Turns a dial string into a SIP URI, or returns null when it is none.
 *   "alice"              -> sip:alice@<overlay>
 *   "+1 (555) 010-9999"  -> sip:+15550109999@<overlay>
 *   "bob@example.com"    -> sip:bob@example.com
 *   "sip:bob@example.com;transport=tcp" / "sips:..." pass through
 */
export function normalizeTarget(input, overlay) {
  let s = String(input ?? "").trim();
  if (!s) return null;
  if (s.startsWith("<") && s.endsWith(">")) s = s.slice(1, -1).trim();
  const m = /^(sips?):(.*)$/i.exec(s);
  if (m) {
    const rest = m[2];
    const at = rest.indexOf("@");
    const hostPart = (at >= 0 ? rest.slice(at + 1) : rest).split(/[;?]/)[0];
    if (at === 0 || !HOST_RE.test(hostPart)) return null;
    if (at > 0 && !USER_RE.test(rest.slice(0, at))) return null;
    return m[1].toLowerCase() + ":" + rest;
  }
  if (/\s/.test(s) && !PHONE_RE.test(s)) return null;
  const at = s.indexOf("@");
  if (at >= 0) {
    const user = s.slice(0, at);
    const host = s.slice(at + 1);
    if (!user || !USER_RE.test(user) || !HOST_RE.test(host)) return null;
    return "sip:" + user + "@" + host;
  }
  let user = s;
  if (PHONE_RE.test(s) && /[\s().-]/.test(s) && !/[a-z]/i.test(s)) user = s.replace(/[\s().-]/g, "");
  if (!USER_RE.test(user) || !overlay) return null;
  return "sip:" + user + "@" + String(overlay).toLowerCase();
}

/** Splits sip:user@host into {scheme,user,host}; null when not a SIP URI. */
export function parseURI(uri) {
  const m = /^(sips?):(?:([^@;?]+)@)?([^;?>]+)/i.exec(String(uri ?? "").trim().replace(/^<|>$/g, ""));
  if (!m) return null;
  return { scheme: m[1].toLowerCase(), user: m[2] ? decodeURIComponentSafe(m[2]) : "", host: m[3].toLowerCase() };
}

function decodeURIComponentSafe(s) {
  try { return decodeURIComponent(s); } catch { return s; }
}

/** What to show for a peer: "alice" inside the overlay, "bob@example.com" outside. */
export function displayName(uri, overlay) {
  const p = parseURI(uri);
  if (!p) return String(uri ?? "");
  if (overlay && p.host === String(overlay).toLowerCase() && p.user) return p.user;
  return p.user ? p.user + "@" + p.host : p.host;
}

/** Canonical form for comparing peers (history, contacts): scheme sip, host lower case, no params. */
export function peerKey(uri) {
  const p = parseURI(uri);
  if (!p) return String(uri ?? "");
  return "sip:" + (p.user ? p.user + "@" : "") + p.host;
}
