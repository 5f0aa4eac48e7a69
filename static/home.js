// The channel picker: the last activity of each channel in the reader's own
// time zone, instead of the UTC time the server wrote.
import { localTime, readableTime } from "./times.js";

for (const time of document.querySelectorAll("time[datetime]")) {
  const readable = readableTime(time.dateTime);
  if (readable) {
    time.textContent = readable;
    time.title = localTime(time.dateTime).long;
  }
}
