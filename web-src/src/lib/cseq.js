/**
 * A new INVITE's CSeq, kept away from 0.
 *
 * JsSIP (3.13) numbers a new INVITE with a random CSeq from 0 to 9999, and
 * later reads a number of 0 as "none": the dialog it builds from the 2xx
 * then gives every ACK a fresh random CSeq instead of the INVITE's
 * (RFC 3261 §13.2.2.4). A callee that checks (baresip does) never takes
 * such an ACK for its 200, resends the 200 until it gives up, and never
 * counts the call as answered. One call in 10 000 drew the 0; renumbering
 * that one INVITE before it is sent (JsSIP's "sending" event, whose
 * request may still be changed) keeps the whole dialog consistent: the
 * CANCEL and the ACK take the request's number.
 *
 * @param {{cseq: number, method: string, setHeader: (name: string, value: string) => void}} request
 * @returns {boolean} whether the request was renumbered
 */
export function renumberZeroCSeq(request) {
  if (!request || request.cseq !== 0) return false;
  request.cseq = 1;
  request.setHeader("cseq", `1 ${request.method}`);
  return true;
}
