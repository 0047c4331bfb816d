/* Small labelled form controls for the console pages (every control gets a <label for>), and a command runner
   that posts to the API with the version the page was showing (If-Match) and reports the answer. */
"use strict";

const F = (() => {
  const { el } = Z;
  let seq = 0;
  const id = name => `c-${name}-${++seq}`;

  function input(name, text, attrs = {}) {
    const key = id(name);
    return el("div", { class: "field" }, el("label", { for: key }, text),
      el("input", { id: key, name, type: "text", ...attrs }));
  }
  function area(name, text, attrs = {}) {
    const key = id(name);
    return el("div", { class: "field" }, el("label", { for: key }, text),
      el("textarea", { id: key, name, rows: 3, maxlength: 4000, ...attrs }));
  }
  function select(name, text, options, attrs = {}) {
    const key = id(name);
    return el("div", { class: "field" }, el("label", { for: key }, text),
      el("select", { id: key, name, ...attrs }, options.map(([value, label, selected]) =>
        el("option", { value, selected: !!selected }, label))));
  }
  function checks(name, legend, options) {
    return el("fieldset", { class: "field" }, el("legend", {}, legend), options.map(([value, label, checked]) =>
      el("label", { class: "check" }, el("input", { type: "checkbox", name, value, checked: !!checked }), " ", label)));
  }
  function options(kind, values, blank) {
    const table = Z.labels[kind] || {};
    const list = (values || Object.keys(table)).map(v => [v, table[v] || v]);
    return blank ? [["", blank], ...list] : list;
  }

  /* A form that runs `send(values)` (an API call) on submit and shows the problem, if any, inside itself. */
  function form(title, controls, submitText, send, attrs = {}) {
    const result = el("div", { class: "result", role: "alert" });
    const button = el("button", { type: "submit", class: attrs.danger ? "danger" : "primary" }, submitText);
    const node = el("form", { class: "command", novalidate: true, ...(attrs.name ? { "data-command": attrs.name } : {}) },
      title ? el("h3", {}, title) : null, controls, el("div", { class: "actions" }, button), result);
    node.addEventListener("submit", async event => {
      event.preventDefault();
      const values = {};
      for (const field of node.elements) {
        if (!field.name) continue;
        if (field.type === "checkbox") { (values[field.name] = values[field.name] || []); if (field.checked) values[field.name].push(field.value); }
        else values[field.name] = field.value.trim();
      }
      button.disabled = true;
      Z.fill(result);
      try {
        const answer = await send(values);
        if (answer && !answer.ok) Z.showProblem(answer, result);
      } finally { button.disabled = false; }
    });
    return node;
  }

  return { input, area, select, checks, options, form };
})();
