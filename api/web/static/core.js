/* The pages' small shared toolkit: the signed-in token, calls to the /v1 API, safe DOM building, zh-CN labels,
   inline SVG bar charts, and the navigation for the caller's role. No framework, no build step.
   Everything a page shows comes from the API with the caller's own token, so it is scoped and masked there. */
"use strict";

const Z = (() => {
  const TOKEN = "zizhu.token";
  const MIN_POSITION = "zizhu.minPosition";
  const labels = JSON.parse(document.getElementById("zz-labels").textContent);
  let mePromise = null;

  function token() { return sessionStorage.getItem(TOKEN); }
  function setToken(value) { sessionStorage.setItem(TOKEN, value.trim()); mePromise = null; }
  function signOut() { sessionStorage.removeItem(TOKEN); sessionStorage.removeItem(MIN_POSITION); location.href = "/"; }

  /* A new Idempotency-Key: 128 random bits (crypto.getRandomValues works on plain http too, randomUUID does not). */
  function newKey() {
    return "web-" + Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, "0")).join("");
  }
  const pause = ms => new Promise(resolve => setTimeout(resolve, ms));
  const RETRY_MS = [500, 1500, 4000];  // a command lost on the way or its answer lost: sent again after these

  /* A call to the API. Reads send the highest log position this tab's own commands were answered with, so a
     view read after a command shows that command (read-your-writes, X-Min-Position).
     A command (any POST) carries an Idempotency-Key of its own. When the network loses it or its answer, or the
     server says a copy of it is still running (409 with Retry-After), it is sent again with the same key, so it
     is applied once however many times it goes out, and the answer shown is the first one. */
  async function api(method, path, options = {}) {
    const headers = { "Accept": options.accept || "application/json" };
    const bearer = token();
    if (bearer) headers["Authorization"] = "Bearer " + bearer;
    if (options.ifMatch !== undefined && options.ifMatch !== null) headers["If-Match"] = '"' + options.ifMatch + '"';
    const seen = sessionStorage.getItem(MIN_POSITION);
    if (method === "GET" && seen && options.minPosition !== false) headers["X-Min-Position"] = seen;
    const command = method === "POST";
    if (command) headers["Idempotency-Key"] = options.key || newKey();
    let body;
    if (options.body !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(options.body); }
    let response;
    for (let attempt = 0; ; attempt++) {
      try {
        response = await fetch(path, { method, headers, body, credentials: "omit" });
      } catch (lost) {
        if (!command) throw lost;
        if (attempt >= RETRY_MS.length) {
          return { ok: false, status: 0, data: { title: "网络错误", code: "network_error",
                   detail: "未能连接服务器，请检查网络后再提交（重复提交同一操作只会记录一次）" }, etag: null, headers: new Headers() };
        }
        await pause(RETRY_MS[attempt]);
        continue;
      }
      const wait = Number(response.headers.get("Retry-After"));
      if (command && response.status === 409 && wait > 0 && attempt < RETRY_MS.length) {
        await pause(wait * 1000);
        continue;
      }
      break;
    }
    const position = response.headers.get("X-Min-Position");
    if (position && Number(position) > Number(seen || 0)) sessionStorage.setItem(MIN_POSITION, position);
    if (response.status === 401 && !options.noRedirect) { location.href = "/?expired=1"; throw new Error("signed out"); }
    if (options.raw) return response;
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json() : await response.text();
    return { ok: response.ok, status: response.status, data, etag: response.headers.get("ETag"), headers: response.headers };
  }

  function me() {
    if (!mePromise) mePromise = api("GET", "/v1/me", { minPosition: false, noRedirect: true }).then(r => (r.ok ? r.data : null));
    return mePromise;
  }

  /* el("p", {class: "x", onclick: f}, "text", child): text is always set as text, never parsed as HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }
  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function fill(node, ...children) { node.replaceChildren(); return append(node, children); }
  function $(selector, root) { return (root || document).querySelector(selector); }

  function label(kind, value) {
    if (value === null || value === undefined || value === "") return kind === "level" ? labels.level.none : "—";
    const table = labels[kind] || {};
    return table[value] || String(value);
  }
  function date(value) { return value ? String(value).slice(0, 10) : "—"; }
  function time(value) {
    if (!value) return "—";
    const d = new Date(value);
    if (isNaN(d)) return String(value);
    // Shown in China time whatever the browser's zone: deadlines and records are Chinese calendar dates.
    const china = new Date(d.getTime() + 8 * 3600 * 1000);
    return china.toISOString().slice(0, 19).replace("T", " ");
  }
  function money(value) { return (value === null || value === undefined) ? "—" : "¥" + value; }

  /* A problem+json answer as one sentence a person can act on. */
  function problemText(result) {
    const p = result && result.data;
    if (p && typeof p === "object") {
      const field = p.field ? `（${p.field}）` : "";
      if (!result.status) return `${p.title || "网络错误"}：${p.detail || ""}`;
      return `${p.title || "错误"} ${result.status}：${p.detail || p.code || ""}${field}`;
    }
    return `请求失败（${result ? result.status : "网络错误"}）`;
  }
  function flash(message, kind) {
    const box = document.getElementById("zz-flash");
    fill(box, el("p", { class: kind === "error" ? "flash error" : "flash ok" }, message));
  }
  function showProblem(result, where) {
    const text = problemText(result);
    if (where) fill(where, el("p", { class: "error", role: "alert" }, text));
    else flash(text, "error");
  }

  /* Wide tables scroll inside their own box, so a phone never scrolls the whole page sideways. */
  function table(headers, rows, caption) {
    return el("div", { class: "table-wrap" }, el("table", {},
      caption ? el("caption", {}, caption) : null,
      el("thead", {}, el("tr", {}, headers.map(h => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.length ? rows.map(r => el("tr", {}, r.map(c => el("td", {}, c))))
        : el("tr", {}, el("td", { colspan: headers.length, class: "empty" }, "暂无")))));
  }
  function dl(pairs) {
    return el("dl", { class: "kv" }, pairs.filter(p => p).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  /* A horizontal bar chart as inline SVG, named for screen readers and with each value written beside its bar. */
  function bars(title, items, options = {}) {
    const NS = "http://www.w3.org/2000/svg";
    const rowHeight = 26, labelWidth = options.labelWidth || 150, width = 560, barMax = width - labelWidth - 90;
    const max = Math.max(1, ...items.map(i => Number(i.value) || 0));
    const height = Math.max(1, items.length) * rowHeight + 8;
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title + "：" + (items.map(i => `${i.label} ${i.text || i.value}`).join("，") || "暂无数据"));
    svg.setAttribute("class", "chart");
    const t = document.createElementNS(NS, "title");
    t.textContent = title;
    svg.append(t);
    items.forEach((item, index) => {
      const y = index * rowHeight + 4;
      const name = document.createElementNS(NS, "text");
      name.setAttribute("x", labelWidth - 8); name.setAttribute("y", y + 16);
      name.setAttribute("text-anchor", "end"); name.setAttribute("class", "chart-label");
      name.textContent = item.label;
      const rect = document.createElementNS(NS, "rect");
      const w = Math.max(2, (Number(item.value) || 0) / max * barMax);
      rect.setAttribute("x", labelWidth); rect.setAttribute("y", y + 3);
      rect.setAttribute("width", w); rect.setAttribute("height", rowHeight - 8);
      rect.setAttribute("class", "bar " + (item.tone || ""));
      const value = document.createElementNS(NS, "text");
      value.setAttribute("x", labelWidth + w + 6); value.setAttribute("y", y + 16);
      value.setAttribute("class", "chart-value");
      value.textContent = item.text || String(item.value);
      svg.append(name, rect, value);
    });
    return el("figure", { class: "chart-box" }, svg, el("figcaption", {}, title));
  }

  /* Downloads an API answer (an export or a dossier) with the bearer token, which a plain link cannot send. */
  async function download(path, accept, fallbackName) {
    const response = await api("GET", path, { accept, raw: true, minPosition: false });
    if (!response.ok) {
      const data = (response.headers.get("Content-Type") || "").includes("json") ? await response.json() : null;
      showProblem({ status: response.status, data });
      return null;
    }
    const blob = await response.blob();
    const disposition = response.headers.get("Content-Disposition") || "";
    const utf8 = /filename\*=UTF-8''([^;]+)/.exec(disposition);
    const plain = /filename="([^"]+)"/.exec(disposition);
    const name = utf8 ? decodeURIComponent(utf8[1]) : plain ? plain[1] : fallbackName;
    const link = el("a", { href: URL.createObjectURL(blob), download: name, hidden: true }, name);
    document.body.append(link);
    link.click();
    setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
    return { name, headers: response.headers };
  }

  const HOME = { applicant: "/me", evaluator: "/school", school: "/school", bureau: "/bureau", auditor: "/audit" };
  const NAV = {
    applicant: [["/me", "我的申请"], ["/apply", "填写申请"]],
    evaluator: [["/school", "评议工作台"]],
    school: [["/school", "工作台"], ["/school#board", "公示栏"], ["/school#objections", "异议处理"], ["/school#rounds", "工作轮次"]],
    bureau: [["/bureau", "区域概览"], ["/bureau#spot-checks", "抽查"], ["/bureau#integrity", "诚信记录"]],
    auditor: [["/audit", "审计首页"]],
  };

  /* Every page but sign-in needs a token: without one, back to sign-in. Resolves to the caller (GET /v1/me). */
  async function session(allowedRoles) {
    if (!token()) { location.href = "/"; return null; }
    const who = await me();
    if (!who) { signOut(); return null; }
    const nav = document.getElementById("zz-nav");
    fill(nav, el("ul", {}, (NAV[who.role] || []).map(([href, text]) => el("li", {}, el("a", { href }, text))),
      el("li", {}, el("button", { type: "button", class: "link", onclick: signOut }, "退出"))));
    const scope = who.school || who.region || "";
    fill(document.getElementById("zz-who"), `${label("role", who.role)} ${who.sub}${scope ? " · " + scope : ""}${who.class_id ? " · " + who.class_id : ""}`);
    if (allowedRoles && !allowedRoles.includes(who.role)) {
      fill(document.getElementById("main"), el("h1", {}, "无权访问"),
        el("p", { class: "error", role: "alert" }, `${label("role", who.role)}不能使用此页面。`),
        el("p", {}, el("a", { href: HOME[who.role] || "/" }, "返回我的首页")));
      return null;
    }
    return who;
  }

  return { labels, token, setToken, signOut, api, me, el, append, fill, $, label, date, time, money, problemText,
           flash, showProblem, table, dl, bars, download, session, HOME };
})();
