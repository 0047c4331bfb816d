/* The discipline auditor's pages: find a case, check the whole log (verify-log), read who unmasked what; and for one
   case the timeline (every event: who, when, what changed), the case as it stood at any version (a slider and the
   timeline's own buttons), its chain check and the dossier download. Read-only: this page sends no command. */
"use strict";

(async () => {
  const who = await Z.session(["auditor"]);
  if (!who) return;
  const { el, label } = Z;
  const caseId = document.body.dataset.caseId;

  function verdict(report) {
    return report.clean
      ? el("p", { class: "flash ok" }, `日志完整：${report.cases} 个案件、${report.events} 个事件与哈希链及封存记录一致（截至日志位置 ${report.position}，封存 ${report.seals} 次）。`)
      : el("div", {}, el("p", { class: "flash error" }, "发现篡改："),
        Z.table(["案件", "版本", "问题"], (report.damaged_cases || []).flatMap(d => (d.damages || [d]).map(x => [d.case_id || x.case_id || "—", String(x.version ?? "—"), x.kind || "—"]))),
        (report.seal_problems || []).length ? el("p", {}, `封存问题 ${report.seal_problems.length} 处`) : null);
  }

  if (!caseId) {
    const form = document.getElementById("find-form");
    form.addEventListener("submit", e => {
      e.preventDefault();
      const value = form.elements.case_id.value.trim();
      const error = document.getElementById("case-id-error");
      const bad = !/^[0-9a-fA-F-]{32,36}$/.test(value);
      error.hidden = !bad;
      form.elements.case_id.setAttribute("aria-invalid", bad ? "true" : "false");
      Z.fill(error, bad ? "案件编号为 32 位十六进制（可带连字符）" : "");
      if (!bad) location.href = `/audit/cases/${value}`;
    });
    document.getElementById("verify-run").addEventListener("click", async () => {
      const r = await Z.api("GET", "/v1/audit/verify-log");
      const box = document.getElementById("verify-result");
      if (!r.ok) { Z.showProblem(r, box); return; }
      Z.fill(box, verdict(r.data));
    });
    const log = await Z.api("GET", "/v1/audit/access-log?limit=50");
    if (log.ok) {
      Z.fill(document.getElementById("access-log"), Z.table(["时间", "查阅人", "案件", "接口", "理由"],
        log.data.items.map(x => [Z.time(x.at), `${x.who.sub}（${label("role", x.who.role)}）`,
          x.case_id ? el("a", { href: `/audit/cases/${x.case_id}` }, x.case_id.slice(0, 8)) : "—", x.resource || "—", x.reason || "—"])));
    }
    document.body.dataset.ready = "true";
    return;
  }

  const dossier = await Z.api("GET", `/v1/cases/${caseId}/dossier`);
  if (!dossier.ok) {
    Z.fill(document.getElementById("audit-heading"), dossier.status === 404 ? "未找到此案件。" : Z.problemText(dossier));
    return;
  }
  const d = dossier.data;
  const events = d.events;
  const current = d.current || {};
  Z.fill(document.getElementById("audit-heading"), `案件 ${d.id} · ${current.academic_year || ""} · ${current.school_id || ""} · 当前${label("status", current.status)} · 共 ${events.length} 个事件`);
  const integrity = d.integrity;
  Z.fill(document.getElementById("case-integrity"), integrity.intact
    ? el("p", { class: "flash ok" }, "本案事件与哈希链一致，未被篡改。")
    : el("p", { class: "flash error" }, `本案日志被篡改：${integrity.damages.map(x => `版本 ${x.version} ${x.kind}`).join("；")}`));

  /* Every changed leaf between two states, as "path: before → after". */
  function flatten(value, prefix, out) {
    if (value && typeof value === "object") {
      const keys = Object.keys(value);
      if (!keys.length) out[prefix] = Array.isArray(value) ? "[]" : "{}";
      keys.forEach(k => flatten(value[k], prefix ? `${prefix}.${k}` : k, out));
    } else out[prefix] = value;
    return out;
  }
  function changes(before, after) {
    const a = flatten(before || {}, "", {}), b = flatten(after || {}, "", {});
    return [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .filter(k => k !== "version" && k !== "modified_at" && JSON.stringify(a[k]) !== JSON.stringify(b[k]))
      .map(k => [k, a[k] === undefined ? "—" : String(a[k]), b[k] === undefined ? "—" : String(b[k])]);
  }

  /* An objector is stored as a keyed hash, never by name (README: Objections): say so rather than show the hash. */
  function actorText(actor) {
    const sub = String(actor.sub || "");
    return sub.startsWith("hmac-sha256:") ? `异议人（身份保密，${label("role", actor.role)}）` : `${sub}（${label("role", actor.role)}）`;
  }

  const slider = document.getElementById("version");
  slider.max = String(events.length);
  Z.fill(document.getElementById("timeline"), events.map((e, i) => {
    const rows = changes(i ? events[i - 1].state_after : {}, e.state_after);
    return el("li", { id: `v${e.version}` },
      el("h3", {}, `版本 ${e.version} · ${label("event", e.type)}`),
      Z.dl([["时间", Z.time(e.occurred_at)], ["操作人", actorText(e.actor)], ["事件", e.type]]),
      el("details", { open: rows.length <= 12 }, el("summary", {}, `变化的字段（${rows.length}）`),
        Z.table(["字段", "之前", "之后"], rows.slice(0, 200))),
      el("button", { type: "button", class: "link", "data-version": e.version, onclick: () => showVersion(e.version) }, `查看此版本的案件状态`));
  }));

  async function showVersion(version) {
    slider.value = String(version);
    Z.fill(document.getElementById("version-text"), `版本 ${version} / ${events.length}`);
    const r = await Z.api("GET", `/v1/cases/${caseId}?version=${version}`);
    const box = document.getElementById("version-state");
    if (!r.ok) { Z.showProblem(r, box); return; }
    const c = r.data;
    const event = events[version - 1];
    Z.fill(box, el("h3", {}, `版本 ${version}：${label("event", event.type)}之后`),
      Z.dl([["状态", label("status", c.status)], ["认定等级", label("level", c.level)],
        ["定量评价", c.assessment ? `${c.assessment.score} 分，建议${label("level", c.assessment.suggested_level || "not_identified")}` : "—"],
        ["民主评议", c.evaluation ? `同意 ${c.evaluation.votes_for}，反对 ${c.evaluation.votes_against}` : "—"],
        ["学校认定理由", c.rating ? (c.rating.reason || "—") : "—"],
        ["公示期", c.publicity ? `${c.publicity.starts_on} 至 ${c.publicity.ends_on}` : "—"],
        ["异议", String((c.objections || []).length)], ["更新时间", Z.time(c.modified_at)]]));
    box.dataset.version = String(version);
  }
  slider.addEventListener("change", () => showVersion(Number(slider.value)));
  slider.addEventListener("input", () => Z.fill(document.getElementById("version-text"), `版本 ${slider.value} / ${events.length}`));

  document.getElementById("dossier-json").addEventListener("click", () => Z.download(`/v1/cases/${caseId}/dossier`, "application/json", `dossier-${caseId}.json`));
  document.getElementById("dossier-html").addEventListener("click", () => Z.download(`/v1/cases/${caseId}/dossier?format=html`, "text/html", `dossier-${caseId}.html`));

  await showVersion(events.length);
  document.body.dataset.ready = "true";
})();
