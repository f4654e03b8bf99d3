// A live table: rows keyed and updated in place (dom.js sync), in a box that
// scrolls sideways on a phone; an operator's rows end with their action buttons.
import { canAct } from "./actions.js";
import { el, setText, sync } from "./dom.js";

/**
 * A table appended to `parent`; returns `(items) => void` to show items.
 * - `cols`: [heading, item → text, item → tone (optional: data-tone on the cell, for colour)]
 * - `key(item)`: the row's identity; `row(item)`: the row's attributes (the tests' hooks)
 * - `actions(item)`: the row's buttons, for operators and admins only; rebuilt when `actionsKey(item)` changes
 */
export function table(parent, { caption, cols, key, row, actions = null, actionsKey = () => "" }) {
  const tbody = el("tbody");
  const head = el("tr", {}, ...cols.map(([h]) => el("th", { scope: "col" }, h)));
  const empty = el("p", { class: "empty" }, "none");
  const box = el("table", {}, el("caption", { class: "sr" }, caption), el("thead", {}, head), tbody);
  parent.append(el("div", { class: "scroll" }, box), empty);
  let withActions = false;
  return (items) => {
    const act = actions !== null && canAct();
    if (act !== withActions) {
      withActions = act;
      tbody.replaceChildren();
      if (act) head.append(el("th", { scope: "col" }, "Actions"));
      else head.lastElementChild.remove();
    }
    empty.hidden = items.length > 0;
    const build = (item) =>
      el("tr", row(item), ...cols.map(() => el("td")), ...(act ? [el("td", { class: "actions" })] : []));
    sync(tbody, items, key, build, (tr, item) => {
      cols.forEach(([, text, tone], i) => {
        setText(tr.children[i], text(item));
        if (tone) tr.children[i].dataset.tone = tone(item);
      });
      if (!act) return;
      const k = actionsKey(item);
      if (tr.dataset.actions !== k || tr.lastElementChild.childElementCount === 0) {
        tr.dataset.actions = k;
        tr.lastElementChild.replaceChildren(...actions(item));
      }
    });
  };
}
