// A SIP account in the page: one JsSIP UA over the peer's /sip WebSocket.
// Overlay accounts sign the device certificate and register themselves
// after every (re)connection; public accounts let JsSIP answer the
// provider's 401/407 with the password typed into the page.

import JsSIP from "jssip";
import { backoffDelay } from "../lib/backoff.js";

export const REGISTER_EXPIRES = 600;
export const RECOVERY_MIN = 2;
export const RECOVERY_MAX = 30;
// The peer accepts the owner proof for 10 minutes around its timestamp
// (PROOF_WINDOW_S): sign again well inside it, so JsSIP's refreshes and
// its un-REGISTER on close always carry a fresh one.
const RESIGN_MS = 4 * 60 * 1000;
const RETRY_REGISTER_MS = 15 * 1000;

/**
 * opts: {
 *   wsURL, uri, instanceId, userAgent,
 *   password?, authUser?,            public accounts
 *   contactURI?,                     public accounts: the overlay alias the
 *                                    public registrar sends calls to
 *   sign?: async () => headerLine,   overlay accounts: a fresh P-P2PSIP-Owner line
 *   on: {state(state, info), retry(atMs), incoming(session), error(err)}
 * }
 * state: "registering" | "registered" | "unregistered" | "failed"
 */
export class Account {
  constructor(opts) {
    this.opts = opts;
    this.on = opts.on ?? {};
    this.state = "unregistered";
    this.connected = false;
    this.stopped = false;
    this.resignTimer = null;
    this.wanted = true; // register when connected

    const socket = new JsSIP.WebSocketInterface(opts.wsURL);
    const cfg = {
      sockets: [socket],
      uri: opts.uri,
      register: false, // we register ourselves once the certificate is signed
      register_expires: REGISTER_EXPIRES,
      instance_id: opts.instanceId,
      connection_recovery_min_interval: RECOVERY_MIN,
      connection_recovery_max_interval: RECOVERY_MAX,
      session_timers: false,
      user_agent: opts.userAgent,
      no_answer_timeout: 90,
    };
    if (opts.password) cfg.password = opts.password;
    if (opts.contactURI) cfg.contact_uri = opts.contactURI;
    if (opts.authUser) cfg.authorization_user = opts.authUser;
    if (opts.displayName) cfg.display_name = opts.displayName;
    this.ua = new JsSIP.UA(cfg);
    this._patchRecovery();
    if (opts.contactURI) this._keepContact();

    const ua = this.ua;
    ua.on("connecting", () => {
      if (!this.connected && this.state !== "registered") this._set("registering", { phase: "connecting" });
    });
    ua.on("connected", () => {
      this.connected = true;
      if (this.wanted) this._register();
    });
    ua.on("disconnected", (e) => {
      const was = this.connected;
      this.connected = false;
      if (this.stopped) return;
      this._set("failed", { phase: "disconnected", cause: "Connection Error", wasConnected: was, code: e?.code, reason: e?.reason });
    });
    ua.on("registered", () => this._set("registered", {}));
    ua.on("unregistered", () => {
      // While we still want the registration, a lost connection is shown as
      // "failed" by the disconnected handler and fixed by reconnecting.
      if (!this.stopped && this.wanted) return;
      this._set("unregistered", {});
    });
    ua.on("registrationFailed", (e) => {
      const r = e.response;
      const status = r ? r.status_code : null;
      // Transient answers: ask again a little later on the same connection.
      if (status === 408 || status === 480 || status >= 500 || (status === null && e.cause === JsSIP.C.causes.REQUEST_TIMEOUT)) {
        clearTimeout(this.retryTimer);
        const at = Date.now() + RETRY_REGISTER_MS;
        this.retryTimer = setTimeout(() => {
          if (this.connected && this.wanted && !this.stopped) this._register();
        }, RETRY_REGISTER_MS);
        this.on.retry?.(at, 0);
      }
      this._set("failed", {
        phase: "register",
        status: r ? r.status_code : null,
        reason: r ? r.reason_phrase : "",
        cause: e.cause,
      });
    });
    ua.on("newRTCSession", (e) => {
      if (e.originator === "remote") this.on.incoming?.(e.session, e.request, this);
    });
    // JsSIP answers OPTIONS itself; unknown MESSAGEs are accepted and ignored.
    ua.on("newMessage", () => {});
  }

  /** Replaces JsSIP's reconnection timer with ours so the page can count down. */
  _patchRecovery() {
    const t = this.ua._transport;
    if (!t || typeof t._reconnect !== "function") return;
    const self = this;
    t._reconnect = function () {
      this.recover_attempts += 1;
      const k = backoffDelay(this.recover_attempts, RECOVERY_MIN, RECOVERY_MAX);
      self.on.retry?.(Date.now() + k * 1000, this.recover_attempts);
      this.recovery_timer = setTimeout(() => {
        if (!this.close_requested && !(this.isConnected() || this.isConnecting())) {
          this._getSocket();
          this.connect();
        }
      }, k * 1000);
    };
  }

  /**
   * Public accounts: the public registrar may answer with a GRUU of the
   * public AOR (RFC 5627), which JsSIP would then put in the Contact of
   * every dialog. Requests to it go to the public domain, whose route set
   * ends at the home peer, which cannot tell which page it means: only
   * the overlay alias routes back to this page. Ignore the GRUUs.
   */
  _keepContact() {
    const c = this.ua.contact;
    for (const k of ["pub_gruu", "temp_gruu"]) {
      Object.defineProperty(c, k, { get: () => null, set: () => {}, configurable: true });
    }
  }

  _set(state, info) {
    this.state = state;
    this.on.state?.(state, info, this);
  }

  async _register() {
    this._set("registering", { phase: "register" });
    if (this.opts.sign) {
      try {
        const line = await this.opts.sign();
        this.ua.registrator().setExtraHeaders([line]);
      } catch (err) {
        this._set("failed", { phase: "sign", status: null, reason: "", cause: "cannot sign the device certificate: " + (err?.message ?? err) });
        return;
      }
      this._scheduleResign();
    }
    if (this.stopped || !this.connected) return;
    // registrator().register() rather than ua.register(): JsSIP then does not
    // register on its own after a reconnection before we have re-signed.
    this.ua.registrator().register();
  }

  _scheduleResign() {
    clearInterval(this.resignTimer);
    this.resignTimer = setInterval(async () => {
      try {
        const line = await this.opts.sign();
        this.ua.registrator().setExtraHeaders([line]);
      } catch {
        // the next (re)connection tries again
      }
    }, RESIGN_MS);
  }

  start() {
    this.ua.start();
  }

  /** Unregisters and closes the WebSocket. */
  stop() {
    this.stopped = true;
    this.wanted = false;
    clearInterval(this.resignTimer);
    clearTimeout(this.retryTimer);
    try {
      this.ua.stop();
    } catch {
      // already stopped
    }
    this._set("unregistered", {});
  }

  isConnected() {
    return this.connected;
  }
}
