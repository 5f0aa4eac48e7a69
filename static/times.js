// Times shown in the reader's own time zone and language.

const MINUTE = 60 * 1000;
const HOUR = 60 * MINUTE;

/** `{short, long}` texts of an ISO time: "09:30" and the full date and time. */
export function localTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return { short: "", long: "" };
  return {
    short: when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
    long: when.toLocaleString([], { dateStyle: "full", timeStyle: "short" }),
  };
}

/**
 * How long ago an ISO time was, as people say it: "just now", "5
 * minutes ago", the time of day for today, a date and time before.
 */
export function readableTime(iso, now = new Date()) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return null;
  const ago = now - when;
  // The page is in English; "0 seconds ago" reads worse than "just now".
  if (ago >= -MINUTE && ago < MINUTE) return "just now";
  const relative = new Intl.RelativeTimeFormat([], { numeric: "auto" });
  if (ago >= 0 && ago < HOUR) return relative.format(-Math.floor(ago / MINUTE), "minute");
  if (when.toDateString() === now.toDateString()) {
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  return when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}
