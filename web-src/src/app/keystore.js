// The browser's owner key: a non-extractable ECDSA P-256 CryptoKey kept in
// IndexedDB (structured clone keeps it non-extractable), with its raw
// public key.

const DB = "p2psip";
const STORE = "keys";
const ID = "owner";

function openDB() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
    req.onblocked = () => reject(new Error("IndexedDB is blocked by another tab"));
  });
}

function tx(db, mode, fn) {
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const req = fn(t.objectStore(STORE));
    t.oncomplete = () => resolve(req?.result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error ?? new Error("IndexedDB transaction aborted"));
  });
}

async function generate() {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  // The public key of a non-extractable pair is still exportable.
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { privateKey: pair.privateKey, publicRaw: pub, created: Date.now() };
}

/**
 * Returns {privateKey, publicRaw (65 bytes), persisted}. When IndexedDB is
 * unusable (some private modes) the key lives for this tab only.
 */
export async function ownerKey() {
  let db;
  try {
    db = await openDB();
    const found = await tx(db, "readonly", (s) => s.get(ID));
    if (found && found.privateKey && found.publicRaw) {
      return { privateKey: found.privateKey, publicRaw: new Uint8Array(found.publicRaw), persisted: true };
    }
  } catch {
    db = null;
  }
  const k = await generate();
  if (db) {
    try {
      await tx(db, "readwrite", (s) => s.put(k, ID));
      return { ...k, persisted: true };
    } catch {
      // fall through: tab-only key
    }
  }
  return { ...k, persisted: false };
}
