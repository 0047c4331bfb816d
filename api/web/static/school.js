/* The school aid office's console (and the class evaluation group's narrower one): review queues per step with
   counts, batch opening of a notice window, the notice board as the school sees it, objections awaiting
   resolution, the round dashboard, support plans, follow-up samples and the archive export. */
"use strict";

(async () => {
  const who = await Z.session(["school", "evaluator"]);
  if (!who) return;
  const { el, label } = Z;
  const school = who.school;
  const STAGES = who.role === "evaluator" ? ["assessed", "evaluated", "rated", "in_publicity"]
    : ["applied", "verified", "assessed", "evaluated", "rated", "in_publicity", "confirmed"];
  document.querySelectorAll("[data-roles]").forEach(s => { s.hidden = !s.dataset.roles.split(" ").includes(who.role); });
  Z.fill(document.getElementById("school-heading"), `学校 ${school}${who.class_id ? " · 班级 " + who.class_id : ""}`);

  async function queue(stage, extra = "") {
    const r = await Z.api("GET", `/v1/schools/${school}/queue?stage=${stage}&limit=100${extra}`);
    return r.ok ? r.data : { items: [], next_cursor: null, problem: r };
  }
  const waited = seconds => (seconds >= 86400 ? `${Math.floor(seconds / 86400)} 天` : seconds >= 3600 ? `${Math.floor(seconds / 3600)} 小时` : "不足1小时");
  const caseLink = c => el("a", { href: `/cases/${c.id}` }, c.student_name || c.id);

  let selected = STAGES[0];
  const queues = {};
  async function loadQueues() {
    await Promise.all(STAGES.map(async s => { queues[s] = await queue(s); }));
    Z.fill(document.getElementById("queue-counts"), el("ul", { class: "count-list" }, STAGES.map(s => {
      const q = queues[s];
      const count = q.items.length + (q.next_cursor ? "+" : "");
      return el("li", {}, el("button", { type: "button", class: s === selected ? "count current" : "count",
        "aria-pressed": s === selected ? "true" : "false", "data-stage": s,
        onclick: () => { selected = s; loadQueues(); } }, el("span", { class: "n" }, count), " ", label("status", s)));
    })));
    const q = queues[selected];
    Z.fill(document.getElementById("queue-table"), el("h3", {}, `${label("status", selected)}（${q.items.length}）`),
      q.problem ? el("p", { class: "error" }, Z.problemText(q.problem)) :
      Z.table(["学生", "班级", "建议等级", "认定等级", "异议", "已等待"], q.items.map(c => [caseLink(c), c.class_id,
        label("level", c.suggested_level), label("level", c.level), c.open_objections ? `${c.open_objections} 条待处理` : "—",
        waited(c.waited_seconds)])));
    if (who.role === "school") { renderBatch(queues.rated); renderObjections(queues.in_publicity); renderPlans(queues.confirmed); }
  }

  function renderBatch(q) {
    Z.fill(document.getElementById("batch-list"), q.items.length ? el("fieldset", {}, el("legend", {}, "已认定、待公示的案件"),
      q.items.map(c => el("label", { class: "check" }, el("input", { type: "checkbox", name: "case_ids", value: c.id }),
        ` ${c.student_name} · ${c.class_id} · ${label("level", c.level)}`))) : el("p", {}, "没有待公示的案件"));
  }
  document.getElementById("batch-form").addEventListener("submit", async event => {
    event.preventDefault();
    const form = event.target;
    const ids = [...form.querySelectorAll("input[name=case_ids]:checked")].map(i => i.value);
    const box = document.getElementById("batch-result");
    if (!ids.length) { Z.fill(box, el("p", { class: "error" }, "请至少勾选一个案件")); return; }
    const starts = form.elements.starts_on.value;
    const r = await Z.api("POST", `/v1/schools/${school}/publicity`, { body: { case_ids: ids, ...(starts ? { starts_on: starts } : {}) } });
    if (!r.ok) { Z.showProblem(r, box); return; }
    Z.fill(box, el("p", { class: "flash ok" }, `已为 ${r.data.case_ids.length} 个案件开启公示：${r.data.starts_on} 至 ${r.data.ends_on}（${r.data.working_days} 个工作日）`));
    await Promise.all([loadQueues(), loadBoard()]);
  });

  async function loadBoard() {
    const r = await Z.api("GET", `/v1/schools/${school}/publicity`);
    const box = document.getElementById("board-list");
    if (!r.ok) { Z.showProblem(r, box); return; }
    if (r.data.school) Z.fill(document.getElementById("school-heading"), `${r.data.school}（${school}）${who.class_id ? " · 班级 " + who.class_id : ""}`);
    Z.fill(box, el("p", {}, `${r.data.school || school} · ${r.data.on}`),
      Z.table(["姓名", "年级班级", "认定等级", "公示期"], r.data.entries.map(e => [e.name, e.grade_class, label("level", e.level),
        `${e.starts_on} 至 ${e.ends_on}`]), "正在公示的认定结果"));
  }

  function renderObjections(q) {
    const open = q.items.filter(c => c.open_objections > 0);
    Z.fill(document.getElementById("objection-list"), Z.table(["学生", "班级", "待处理异议", ""], open.map(c => [c.student_name, c.class_id,
      String(c.open_objections), el("a", { href: `/cases/${c.id}#actions-h` }, "处理")])));
  }

  async function renderPlans(q) {
    const archived = await queue("archived");
    const all = [...q.items, ...archived.items];
    Z.fill(document.getElementById("plan-list"), el("p", {}, "认定确认的学生，一人一案：资助清单与学工、教务、心理、就业、共青团等部门的帮扶措施。"),
      Z.table(["学生", "班级", "认定等级", ""], all.map(c => [c.student_name, c.class_id, label("level", c.level),
        el("a", { href: `/cases/${c.id}#plan-h` }, "帮扶计划")])));
  }

  async function loadRounds() {
    const box = document.getElementById("round-dashboard");
    const r = await Z.api("GET", `/v1/schools/${school}/rounds`);
    if (!r.ok) { Z.showProblem(r, box); return; }
    const rounds = r.data.rounds || [];
    const kind = k => (k === "spring_adjustment" ? "春季动态调整" : "秋季认定");
    const parts = [Z.table(["学年", "类型", "开始", "结束", "状态"], rounds.map(x => [x.academic_year, kind(x.kind), Z.date(x.opens_on), Z.date(x.closes_on), x.state || "—"]))];
    const current = rounds.find(x => x.state === "open") || rounds[rounds.length - 1];
    if (current) {
      const d = await Z.api("GET", `/v1/schools/${school}/rounds/${current.id}/dashboard`);
      if (d.ok) {
        const totals = d.data.totals || {};
        parts.push(el("h3", {}, `${current.academic_year} ${kind(current.kind)}进度`),
          Z.bars("各环节案件数", Object.keys(totals).map(s => ({ label: label("status", s), value: totals[s] }))),
          Z.table(["班级", "未完成", "超期"], (d.data.classes || []).map(c => [c.class_id, String(c.unfinished), String(c.overdue)])),
          el("p", {}, d.data.can_close ? "全部案件已办结，可以结束本轮。" : `尚有 ${Object.values(d.data.unfinished || {}).reduce((a, b) => a + b, 0)} 个案件未办结。`));
      }
    }
    parts.push(F.form("开启认定工作轮次", [
      F.select("academic_year", "学年", [...document.getElementById("export-year").options].map(o => [o.value, o.value])),
      F.select("kind", "类型", [["identification", "秋季认定"], ["spring_adjustment", "春季动态调整"]]),
      F.input("opens_on", "开始日期", { type: "date", required: true }), F.input("closes_on", "结束日期", { type: "date", required: true }),
    ], "开启并发布通知", async v => {
      const res = await Z.api("POST", `/v1/schools/${school}/rounds`, { body: v });
      if (res.ok) { Z.flash("认定工作轮次已开启，通知已发布。"); loadRounds(); }
      return res;
    }, { name: "open-round" }));
    Z.fill(box, parts);
  }

  async function loadFollowUps() {
    const r = await Z.api("GET", `/v1/schools/${school}/follow-ups`);
    const box = document.getElementById("followup-status");
    if (!r.ok) { Z.showProblem(r, box); return; }
    const d = r.data;
    Z.fill(box, Z.dl([["学期", d.semester], ["截止日期", Z.date(d.deadline)], ["样本", d.drawn ? "已抽取" : "尚未抽取"],
      ["是否超期", d.overdue ? "已超期" : "未超期"]]),
    Z.table(["认定等级", "应查", "已查"], (d.levels || []).map(l => [label("level", l.level), String(l.required ?? "—"), String(l.completed ?? "—")])));
  }
  document.getElementById("draw-sample").addEventListener("click", async () => {
    const box = document.getElementById("sample-result");
    const r = await Z.api("POST", `/v1/schools/${school}/follow-ups/sample`, { body: {} });
    if (!r.ok) { Z.showProblem(r, box); return; }
    Z.fill(box, el("p", { class: "flash ok" }, `${r.data.drawn_now ? "已抽取" : "本学期样本已抽取过"}：${r.data.levels.map(l => `${label("level", l.level)} ${l.drawn}/${l.population}`).join("，") || "无"}`));
    loadFollowUps();
  });

  async function exportList(accept, extension) {
    const year = document.getElementById("export-year").value;
    const result = await Z.download(`/v1/exports/national?school_id=${school}&academic_year=${year}`, accept, `export.${extension}`);
    if (result) Z.fill(document.getElementById("export-result"), el("p", {}, `已下载 ${result.name}（新建档 ${result.headers.get("X-Archived") || 0} 件）`));
  }
  document.getElementById("export-xlsx").addEventListener("click", () => exportList("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"));
  document.getElementById("export-csv").addEventListener("click", () => exportList("text/csv", "csv"));

  const work = [loadQueues(), loadBoard()];
  if (who.role === "school") work.push(loadRounds(), loadFollowUps());
  await Promise.all(work);
  document.body.dataset.ready = "true";
})();
