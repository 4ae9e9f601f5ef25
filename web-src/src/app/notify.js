// Desktop notifications for incoming calls while the tab is hidden: asking
// for permission on the first gesture, showing and closing the notification.

import { app } from "./state.js";

let askedNotify = false;
export function askNotificationPermission() {
  if (askedNotify) return;
  askedNotify = true;
  try {
    if ("Notification" in window && Notification.permission === "default") Notification.requestPermission().catch(() => {});
  } catch {
    // not allowed here (cross-origin frame): the ringtone and title still tell
  }
}

export function notifyIncoming(c) {
  if (!document.hidden) return;
  try {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const n = new Notification("Incoming call", { body: `${c.peerName} is calling`, tag: "p2psip-call", requireInteraction: true });
    n.onclick = () => { window.focus(); n.close(); };
    app.notification = n;
  } catch {
    // some browsers want a service worker for notifications: the title and ring still show it
  }
}

export function closeNotification() {
  try { app.notification?.close(); } catch { /* gone */ }
  app.notification = null;
}
