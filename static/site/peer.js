// Shows the peer's overlay status; refreshes every 5 s.
"use strict";
async function refresh() {
  const err = document.getElementById("error");
  try {
    const r = await fetch("/api/overlay", { cache: "no-store" });
    if (!r.ok) throw new Error("the peer answered " + r.status);
    const s = await r.json();
    document.getElementById("overlay").textContent = s.overlay;
    document.getElementById("node").firstChild.textContent = s.node_id;
    document.getElementById("peers").textContent = String(s.peers.length);
    document.getElementById("records").textContent = String(s.records.stored);
    document.getElementById("join").textContent = "p2psip --overlay " + s.overlay + " --join " + location.origin + "/";
    err.hidden = true;
  } catch (e) {
    err.textContent = "Cannot reach this peer's status (" + e.message + "). Is the peer still running?";
    err.hidden = false;
  }
}
refresh();
setInterval(refresh, 5000);
