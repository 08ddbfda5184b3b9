// Markdown, rendered so that no text (the model's or anyone's) can inject HTML or script.
// Three layers: marked shows raw HTML as text and images as their words; DOMPurify keeps
// only the tags below; and links keep an href only when it is http(s), opening apart.

import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.js";

const TAGS = [
  "p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol", "li", "a",
  "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td",
];
const ATTRIBUTES = ["href", "title", "start", "align"];
const WEB_LINK = /^https?:\/\//i;

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escape = (text) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]);

const marked = new Marked({ gfm: true, breaks: true, async: false });
marked.use({
  renderer: {
    html({ text }) { return escape(text); }, // <script> in a reply is something to read
    image({ text, href }) { return escape(text || href || ""); }, // nothing is fetched
  },
});

const purify = DOMPurify(window); // an instance of our own: its hook is ours alone
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName !== "A") return;
  const href = node.getAttribute("href") || "";
  if (!WEB_LINK.test(href)) {
    node.removeAttribute("href");
    return;
  }
  node.setAttribute("target", "_blank");
  node.setAttribute("rel", "noopener noreferrer nofollow");
});

/** A DocumentFragment of `text` as Markdown, safe to append. */
export function markdown(text) {
  const html = marked.parse(text || "");
  return purify.sanitize(html, {
    ALLOWED_TAGS: TAGS,
    ALLOWED_ATTR: ATTRIBUTES,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
}

/** Replace `element`'s content with `text` rendered as Markdown. */
export function renderMarkdown(element, text) {
  element.replaceChildren(markdown(text));
}
