// Small DOM helpers for the page: elements made in code (no HTML strings, so
// nothing from the data is ever parsed as markup) and kept in step with data.

export const $ = (id) => document.getElementById(id);

/** An element: `class`, `data-*` attributes, other keys as properties; then its children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children);
  return e;
}

/** Sets the text only when it changed (no needless layout, selection kept). */
export function setText(e, text) {
  if (e.textContent !== text) e.textContent = text;
}

/**
 * The children of `parent` follow `items`: one element per key, made once by
 * `build(item)`, refreshed by `update(node, item)`, moved only when the order
 * changed, so focus and scroll survive the updates.
 */
export function sync(parent, items, key, build, update) {
  const old = new Map();
  for (const c of parent.children) old.set(c.dataset.key, c);
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let node = old.get(k);
    if (node) old.delete(k);
    else {
      node = build(item);
      node.dataset.key = k;
    }
    update(node, item);
    const want = prev ? prev.nextElementSibling : parent.firstElementChild;
    if (node !== want) parent.insertBefore(node, want);
    prev = node;
  }
  for (const n of old.values()) n.remove();
}
