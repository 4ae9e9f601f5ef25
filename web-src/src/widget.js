// p2psip widget: put
//   <script src="https://<peer>/widget.js" data-call="sip:alice@overlay" data-mode="button" async></script>
// on a page and it inserts the peer's phone in an iframe right there.
// Events from the phone arrive as CustomEvent("p2psip", {detail}) on window,
// detail = {source: "p2psip", event, detail}.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) {
    var all = document.querySelectorAll("script[src*='widget.js']");
    script = all[all.length - 1];
  }
  if (!script || script.getAttribute("data-p2psip-done")) return;
  script.setAttribute("data-p2psip-done", "1");
  var peer;
  try {
    peer = new URL(script.src, location.href).origin;
  } catch (e) {
    return;
  }
  var mode = script.getAttribute("data-mode") === "phone" ? "phone" : "button";
  var call = script.getAttribute("data-call") || "";
  var q = "mode=" + encodeURIComponent(mode) +
    (call ? "&call=" + encodeURIComponent(call) : "") +
    "&origin=" + encodeURIComponent(location.origin);
  var frame = document.createElement("iframe");
  frame.src = peer + "/embed?" + q;
  frame.title = script.getAttribute("data-title") || (mode === "phone" ? "Phone" : "Call button");
  frame.setAttribute("allow", "microphone; autoplay");
  frame.setAttribute("loading", "eager");
  frame.setAttribute("referrerpolicy", "origin");
  var w = script.getAttribute("data-width");
  var h = script.getAttribute("data-height");
  var st = frame.style;
  st.border = "0";
  st.display = "block";
  st.colorScheme = "normal";
  st.maxWidth = "100%";
  st.width = w || (mode === "phone" ? "380px" : "280px");
  st.height = h || (mode === "phone" ? "640px" : "150px");
  script.parentNode.insertBefore(frame, script.nextSibling);
  window.addEventListener("message", function (ev) {
    if (ev.origin !== peer || ev.source !== frame.contentWindow) return;
    var d = ev.data;
    if (!d || d.source !== "p2psip" || typeof d.event !== "string") return;
    window.dispatchEvent(new CustomEvent("p2psip", { detail: d }));
  });
})();
