// SIP responses and browser failures -> {code, message} for #error.
// Codes are the contract's: name-taken, mic-denied, unreachable, not-found,
// busy, failed.

/** A REGISTER failure. status null means no response (transport/timeout). */
export function registerError(status, reason, cause) {
  const r = String(reason ?? "");
  if (status === 403 && /name taken/i.test(r)) {
    return { code: "name-taken", message: "This name is taken by someone else" };
  }
  if (status === 403) return { code: "failed", message: "Registration refused: " + (r || "forbidden") };
  if (status === 401 || status === 407) {
    return { code: "failed", message: "Registration refused: wrong user name or password" };
  }
  if (status === 423) return { code: "failed", message: "Registration refused: interval too brief" };
  if (status === 408 || status === 503 || status === 504 || status === 480) {
    return { code: "unreachable", message: "The registrar did not answer (" + status + (r ? " " + r : "") + "), retrying" };
  }
  if (status) return { code: "failed", message: "Registration refused: " + status + (r ? " " + r : "") };
  if (/timeout/i.test(cause ?? "")) return { code: "unreachable", message: "The registrar did not answer in time" };
  return { code: "unreachable", message: "Peer unreachable" + (cause ? " (" + cause + ")" : "") };
}

/**
 * A failed call. status: the final response's code (null when none);
 * cause: JsSIP's cause string; who: the display name of the far end.
 */
export function callError(status, reason, cause, who = "The other party") {
  switch (status) {
    case 404:
    case 604:
      return { code: "not-found", message: `Nobody is registered as ${who}` };
    case 486:
    case 600:
      return { code: "busy", message: `${who} is busy` };
    case 603:
      return { code: "busy", message: `${who} declined the call` };
    case 480:
      return { code: "unreachable", message: `${who} is not reachable right now` };
    case 408:
      return { code: "unreachable", message: `${who} did not answer in time` };
    case 484:
    case 416:
      return { code: "not-found", message: "That address is incomplete or invalid" };
    case 487:
      return null; // we cancelled
    case 488:
    case 606:
      return { code: "failed", message: `${who} cannot take this kind of call (no common audio codec)` };
    case 401:
    case 407:
      return { code: "failed", message: "The call needs authentication the page cannot give" };
    case 403:
      return { code: "failed", message: "Call refused: " + (reason || "forbidden") };
    case 502:
    case 503:
    case 504:
      return { code: "unreachable", message: `Cannot reach ${who} (${status}${reason ? " " + reason : ""})` };
  }
  if (status) return { code: "failed", message: `Call failed: ${status}${reason ? " " + reason : ""}` };
  switch (cause) {
    case "Canceled":
    case "Terminated":
    case "Bye":
      return null;
    case "Busy":
      return { code: "busy", message: `${who} is busy` };
    case "Not Found":
      return { code: "not-found", message: `Nobody is registered as ${who}` };
    case "Unavailable":
    case "Request Timeout":
    case "No Answer":
      return { code: "unreachable", message: `${who} is not reachable right now` };
    case "Connection Error":
      return { code: "unreachable", message: "Peer unreachable: the connection dropped" };
    case "User Denied Media Access":
      return micError({ name: "NotAllowedError" });
    case "Incompatible SDP":
    case "Bad Media Description":
      return { code: "failed", message: "The call could not agree on audio (incompatible SDP)" };
    case "RTP Timeout":
      return { code: "failed", message: "The call's audio stopped" };
  }
  return { code: "failed", message: "Call failed" + (cause ? ": " + cause : "") };
}

/** getUserMedia failures. */
export function micError(err) {
  const name = err?.name ?? "";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return { code: "mic-denied", message: "Microphone access is blocked. Allow the microphone for this site in the browser and try again." };
  }
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
    return { code: "mic-denied", message: "No microphone found. Plug one in or choose another in Settings." };
  }
  if (name === "NotReadableError") {
    return { code: "mic-denied", message: "The microphone is in use by another application." };
  }
  return { code: "mic-denied", message: "Cannot open the microphone" + (err?.message ? ": " + err.message : "") };
}
