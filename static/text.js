// A message's text as DOM nodes: text stays text (never markup), http and
// https URLs become links, and `@name` of a present member is marked. The
// nodes' textContent is always exactly the message.

// A URL runs to the next space or character that never ends one in prose;
// trailing punctuation is trimmed below.
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"]+/giu;
const TRAILING = /[.,;:!?'"”’)\]}>…]+$/u;
const CLOSERS = { ")": "(", "]": "[", "}": "{" };
const NAME_CHARACTER = /[\p{L}\p{M}\p{N}_]/u;

/**
 * A fragment showing `message`: links for URLs, `<span class="mention">`
 * for `@name` of one of `names`, `mention me` when that name is `me`.
 * Returns {fragment, mentionsMe}.
 */
export function renderText(message, { names = [], me = "" } = {}) {
  const fragment = document.createDocumentFragment();
  let mentionsMe = false;
  let at = 0;
  for (const link of findLinks(message)) {
    mentionsMe = appendMentions(fragment, message.slice(at, link.start), names, me) || mentionsMe;
    fragment.append(linkElement(link));
    at = link.end;
  }
  mentionsMe = appendMentions(fragment, message.slice(at), names, me) || mentionsMe;
  return { fragment, mentionsMe };
}

/** Whether `message` mentions `me` (`@me`, in any letter case). */
export function mentions(message, me) {
  if (!me) return false;
  return findMentions(message, [me]).length > 0;
}

/** The http(s) URLs in `text`: [{start, end, href, text}]. */
export function findLinks(text) {
  const links = [];
  for (const match of text.matchAll(URL_PATTERN)) {
    const candidate = trimUrl(match[0]);
    const href = safeHref(candidate);
    if (href) links.push({ start: match.index, end: match.index + candidate.length, href, text: candidate });
  }
  return links;
}

// "(see https://example.com/a_(b))." keeps the balanced ")" and drops ")." .
function trimUrl(url) {
  let trimmed = url;
  for (;;) {
    const tail = trimmed.match(TRAILING);
    if (!tail) return trimmed;
    let keep = trimmed.length - tail[0].length;
    // A closing bracket stays when the URL opened it.
    for (let index = keep; index < trimmed.length; index += 1) {
      const opener = CLOSERS[trimmed[index]];
      if (opener && count(trimmed.slice(0, index), opener) > count(trimmed.slice(0, index), trimmed[index])) {
        keep = index + 1;
      } else {
        break;
      }
    }
    if (keep === trimmed.length) return trimmed;
    trimmed = trimmed.slice(0, keep);
  }
}

function count(text, character) {
  return text.split(character).length - 1;
}

function safeHref(candidate) {
  try {
    const url = new URL(candidate);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function linkElement(link) {
  const anchor = document.createElement("a");
  anchor.href = link.href;
  anchor.target = "_blank";
  anchor.rel = "noopener noreferrer";
  anchor.textContent = link.text;
  return anchor;
}

// Mentions in a stretch of plain text: the longest name that follows an "@"
// (names may hold spaces) and is not followed by more of a word.
function findMentions(text, names) {
  const wanted = names
    .filter(Boolean)
    .map((name) => ({ name, folded: name.toLocaleLowerCase() }))
    .sort((a, b) => b.name.length - a.name.length);
  const found = [];
  const folded = text.toLocaleLowerCase();
  if (folded.length !== text.length) return found; // case folding moved letters: match nothing
  let from = 0;
  for (;;) {
    const at = text.indexOf("@", from);
    if (at === -1) return found;
    const before = at > 0 ? text[at - 1] : "";
    const match = before && NAME_CHARACTER.test(before)
      ? null // part of an address such as ann@example.com
      : wanted.find(({ folded: name }) => {
        const after = text.slice(at + 1 + name.length).match(/^./u)?.[0] ?? "";
        return folded.startsWith(name, at + 1) && !NAME_CHARACTER.test(after);
      });
    if (match) {
      found.push({ start: at, end: at + 1 + match.name.length, name: match.name });
      from = at + 1 + match.name.length;
    } else {
      from = at + 1;
    }
  }
}

function appendMentions(fragment, text, names, me) {
  let mentionsMe = false;
  let at = 0;
  const folded = me.toLocaleLowerCase();
  for (const mention of findMentions(text, me ? [...names, me] : names)) {
    fragment.append(text.slice(at, mention.start));
    const span = document.createElement("span");
    span.className = "mention";
    span.textContent = text.slice(mention.start, mention.end);
    if (me && mention.name.toLocaleLowerCase() === folded) {
      span.classList.add("me");
      mentionsMe = true;
    }
    fragment.append(span);
    at = mention.end;
  }
  fragment.append(text.slice(at));
  return mentionsMe;
}
