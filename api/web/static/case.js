/* One case, for whoever may read it: progress (step, what is awaited, deadlines), the application, each step's
   record (verification and discrepancies, the assessment's points per item, the class tally, the rating), the
   notice and objections, aid, the support plan, and the actions the caller's role may take at this status.
   The API decides scope and masking; this page only chooses which buttons to offer. */
"use strict";

(async () => {
  const who = await Z.session(["applicant", "evaluator", "school", "bureau", "auditor"]);
  if (!who) return;
  const { el, label } = Z;
  const caseId = document.body.dataset.caseId;
  const PRE_RATING = ["applied", "verified", "assessed", "evaluated"];
  let state = null;

  const params = new URLSearchParams(location.search);
  if (params.get("applied")) Z.flash("申请已提交。学校将核验身份，进度会在此页和消息中更新。");
  if (params.get("amended")) Z.flash("申请已修改。");

  async function load() {
    // An official who states why may read the personal fields; the API records that reading (api/masking.py).
    const reason = params.get("reason");
    const result = await Z.api("GET", `/v1/cases/${caseId}${reason ? "?reason=" + encodeURIComponent(reason) : ""}`);
    if (!result.ok) {
      Z.fill(document.getElementById("case-heading"), result.status === 404 ? "未找到此案件，或不在您的查看范围内。" : Z.problemText(result));
      document.querySelectorAll("main section").forEach(s => { s.hidden = true; });
      return;
    }
    await render(result.data);
  }

  /* Runs a case command on the version shown; a stale version (412) or a concurrent change (409 conflict) reloads. */
  async function command(path, body, done) {
    const result = await Z.api("POST", path, { body, ifMatch: state.version });
    if (result.ok) {
      Z.flash(done);
      if (result.data && result.data.status && result.data.id === caseId) await render(result.data); else await load();
    } else if (result.status === 412 || (result.data && result.data.code === "conflict")) {
      await load();
      Z.flash("案件已被他人更新，已显示最新状态，请核对后重试。", "error");
      return { ok: true };
    }
    return result;
  }

  async function render(c) {
    state = c;
    const f = c.application || {};
    const s = f.student || {};
    Z.fill(document.getElementById("case-heading"),
      `${s.name || ""} · ${c.academic_year} 学年 · ${c.school_id} ${c.class_id} · `, el("strong", {}, label("status", c.status)),
      c.level ? ` · ${label("level", c.level)}` : "");
    renderProgress(c);
    renderActions(c);
    renderApplication(f);
    renderVerification(c.verification);
    renderAssessment(c.assessment);
    renderEvaluation(c.evaluation);
    renderRating(c.rating);
    renderPublicity(c);
    renderAid(c.aid);
    await Promise.all([renderPlan(c), renderMessages()]);
  }

  function renderProgress(c) {
    const order = Z.labels.steps.map(([key]) => key);
    const at = order.indexOf(c.status);
    const deadlines = [];
    if (c.publicity && c.status === "in_publicity") deadlines.push(["公示期", `${Z.date(c.publicity.starts_on)} 至 ${Z.date(c.publicity.ends_on)}（${c.publicity.working_days} 个工作日），期间可提出异议`]);
    if (c.follow_up && c.follow_up.deadline) deadlines.push(["跟踪抽查截止", Z.date(c.follow_up.deadline)]);
    Z.fill(document.getElementById("progress"),
      el("ol", { class: "progress", "aria-label": "认定流程" }, Z.labels.steps.map(([key, text], index) => {
        const cls = at < 0 ? "" : index < at ? "done" : index === at ? "current" : "";
        return el("li", { class: cls, "aria-current": index === at ? "step" : null }, text,
          index < at ? el("span", { class: "sr" }, "（已完成）") : index === at ? el("span", { class: "sr" }, "（当前）") : null);
      })),
      Z.dl([["当前状态", label("status", c.status)], ["正在等待", label("awaiting", c.status)],
        ...deadlines, ["案件版本", String(c.version)], ["最近更新", Z.time(c.modified_at)]]));
  }

  function levelOptions(blank, withNone) {
    const levels = ["especially_difficult", "difficult", "generally_difficult"];
    return F.options("level", withNone ? [...levels, "not_identified"] : levels, blank);
  }

  function renderActions(c) {
    const box = document.getElementById("actions");
    const forms = [];
    const base = `/v1/cases/${caseId}`;
    const role = who.role;
    const openObjections = (c.objections || []).filter(o => o.status === "open");
    if (role === "applicant" && PRE_RATING.includes(c.status)) {
      forms.push(el("p", {}, el("a", { class: "button", href: `/apply?amend=${caseId}` }, "修改申请"), " 学校作出认定前可修改申请。"));
    }
    if ((role === "applicant" || role === "school") && PRE_RATING.includes(c.status)) {
      forms.push(F.form("撤回申请", [F.area("reason", "撤回原因（选填）")], "撤回申请",
        v => command(`${base}/withdraw`, { reason: v.reason }, "申请已撤回。"), { danger: true, name: "withdraw" }));
    }
    if (["applicant", "evaluator", "school"].includes(role) && c.status === "in_publicity") {
      forms.push(F.form("对公示结果提出异议", [F.area("grounds", "异议理由（异议人身份保密）", { required: true })], "提交异议",
        v => command(`${base}/object`, { grounds: v.grounds }, "异议已提交，学校将复核。"), { name: "object" }));
    }
    if (role === "evaluator" && c.status === "assessed") {
      forms.push(F.form("民主评议结果", [
        F.input("votes_for", "同意票数", { type: "number", min: 0, inputmode: "numeric", required: true }),
        F.input("votes_against", "反对票数", { type: "number", min: 0, inputmode: "numeric", required: true }),
        F.select("recommended_level", "建议认定等级", levelOptions("不建议认定")),
      ], "提交评议结果", v => command(`${base}/evaluate`, {
        votes_for: Number(v.votes_for || 0), votes_against: Number(v.votes_against || 0),
        recommended_level: v.recommended_level || null }, "评议结果已记录。"), { name: "evaluate" }));
    }
    if (role === "school") schoolActions(c, forms, base, openObjections);
    if ((role === "bureau" || role === "auditor") && !params.get("reason")) {
      forms.push(F.form("查看完整个人信息", [F.input("reason", "查阅理由（将记入查阅记录）", { required: true, minlength: 4 })],
        "说明理由并查看", v => {
          if ((v.reason || "").length < 4) return Promise.resolve({ ok: false, status: 422, data: { title: "理由过短", detail: "请至少填写4个字" } });
          location.search = "?reason=" + encodeURIComponent(v.reason);
          return Promise.resolve({ ok: true });
        }, { name: "disclose" }));
    }
    if (role === "auditor") forms.push(el("p", {}, el("a", { class: "button", href: `/audit/cases/${caseId}` }, "查看全过程时间线与历史版本")));
    Z.fill(box, forms.length ? forms : el("p", {}, "当前状态下您无需办理事项。"));
  }

  function schoolActions(c, forms, base, openObjections) {
    const claimed = (c.application || {}).claimed_categories || [];
    if (["applied", "verified"].includes(c.status)) {
      forms.push(F.form("身份核验", [
        F.select("method", "核验方式", F.options("verify_method", ["document", "manual", "data_match"])),
        F.checks("confirmed", "经核实的特殊群体（未勾选的申报类别将记为差异）",
          F.options("category", claimed.length ? claimed : []).map(([v, t]) => [v, t, true])),
        F.area("notes", "核验说明"),
      ], "记录核验结果", v => command(`${base}/verify`, v.method === "data_match" ? { method: "data_match" }
        : { method: v.method, confirmed_categories: v.confirmed || [], notes: v.notes }, "核验结果已记录。"), { name: "verify" }));
    }
    if (["verified", "assessed"].includes(c.status)) {
      forms.push(F.form(c.status === "assessed" ? "重新定量评价" : "定量评价", [el("p", {}, "按本地区政策配置的评分模型计算得分与建议等级。")],
        "计算得分", () => command(`${base}/assess`, {}, "定量评价已完成。"), { name: "assess" }));
    }
    const dataMatched = c.verification && c.verification.method === "data_match" && (c.verification.confirmed || []).length > 0;
    if (c.status === "assessed" && !dataMatched) {
      forms.push(el("p", {}, "等待班级认定评议小组民主评议后再作出认定（仅经部门数据比对确认的特殊群体，按本地区政策可免于评议）。"));
    }
    if (["evaluated", "rated"].includes(c.status) || (c.status === "assessed" && dataMatched)) {
      const suggested = c.assessment ? c.assessment.suggested_level : null;
      forms.push(F.form(c.status === "rated" ? "修改认定" : "学校认定", [
        el("p", {}, `评分模型建议：${label("level", suggested || "not_identified")}。与建议不同时须填写理由（定性评价修正定量结果）。`),
        F.select("level", "认定等级", levelOptions(null, true).map(([v, t]) => [v, t, v === (c.level || suggested)])),
        F.area("reason", "认定理由"),
      ], "作出认定", v => command(`${base}/rate`, { level: v.level, reason: v.reason || null }, "认定已记录。"), { name: "rate" }));
    }
    if (c.status === "rated") {
      forms.push(F.form("开启结果公示", [F.input("starts_on", "公示开始日期（留空为今天）", { type: "date" })], "开启公示",
        async v => {
          const r = await Z.api("POST", `/v1/schools/${c.school_id}/publicity`, { body: { case_ids: [caseId], ...(v.starts_on ? { starts_on: v.starts_on } : {}) } });
          if (r.ok) { Z.flash(`公示已开启：${r.data.starts_on} 至 ${r.data.ends_on}。`); await load(); }
          return r;
        }, { name: "publicize" }));
      // Only where the region's profile allows it (the Jiangsu pilot's special channel); elsewhere the API says no.
      forms.push(F.form("免于公示（仅限政策允许的地区）", [F.select("ground", "免于公示的理由", F.options("exemption_ground"))],
        "免于公示并确认", v => command(`${base}/exempt-publicity`, { ground: v.ground }, "已免于公示，认定已确认。"),
      { name: "exempt-publicity" }));
    }
    openObjections.forEach(o => {
      forms.push(F.form(`处理异议（${Z.time(o.raised_at)}）`, [
        el("blockquote", {}, o.grounds),
        F.select("outcome", "处理结果", F.options("objection_outcome", ["dismissed", "upheld"])),
        F.area("reason", "处理理由", { required: true }),
        F.select("new_level", "异议成立时的新认定等级", levelOptions("（异议不成立时不填）", true)),
      ], "提交处理结果", v => command(`${base}/resolve-objection`, { objection_id: o.objection_id, outcome: v.outcome,
        reason: v.reason, ...(v.outcome === "upheld" ? { new_level: v.new_level || null } : {}) }, "异议处理结果已记录。"),
      { name: "resolve-objection" }));
    });
    if (["confirmed", "archived"].includes(c.status)) {
      forms.push(F.form("发放资助", [
        F.select("programme", "资助项目", F.options("programme")),
        F.input("amount", "金额（元）", { inputmode: "decimal", required: true, placeholder: "如 2000.00" }),
        F.area("override_reason", "超出年度资助标准的理由（如有）"),
      ], "记录资助", v => command(`${base}/grant-aid`, { programme: v.programme, amount: v.amount,
        ...(v.override_reason ? { override_reason: v.override_reason } : {}) }, "资助已记录。"), { name: "grant-aid" }));
    }
  }

  function renderApplication(f) {
    const s = f.student || {}, h = f.household || {}, o = f.other || {};
    const members = Array.isArray(h.members) ? h.members.map(m => [label("relation", m.relation), m.age ?? "—",
      label("occupation", m.occupation), label("health", m.health), Z.money(m.annual_income)]) : null;
    Z.fill(document.getElementById("application"),
      Z.dl([["学生姓名", s.name], ["身份证号", s.id_number], ["学校", s.school_id], ["年级班级", s.class_id],
        ["学段", label("stage", s.stage)], ["申请人", label("applicant", f.applicant)],
        ["户籍地区划代码", h.region_code], ["家庭人口", h.size ? `${h.size} 人` : "—"],
        ["家庭年收入", Z.money(h.annual_income)], ["家庭负债", Z.money(h.debts)],
        ["申报特殊群体", Array.isArray(f.claimed_categories) ? (f.claimed_categories.map(x => label("category", x)).join("、") || "无") : String(f.claimed_categories ?? "—")],
        ["在读兄弟姐妹", o.siblings_in_school ?? "—"], ["医疗支出", Z.money(o.medical_costs)],
        ["个人承诺", f.attestation ? "已签署" : "未签署"]]),
      el("h3", {}, "家庭成员"),
      members ? Z.table(["关系", "年龄", "职业", "健康状况", "年收入"], members) : el("p", {}, "（按您的角色不显示家庭成员信息）"),
      el("h3", {}, "突发状况"),
      Z.table(["类型", "日期", "损失"], (f.sudden_events || []).map(e => [label("sudden_event", e.kind), Z.date(e.occurred_on), Z.money(e.loss)])));
  }

  function renderVerification(v) {
    const box = document.getElementById("verification");
    if (!v) { Z.fill(box, el("p", {}, "尚未核验")); return; }
    const cat = x => (typeof x === "string" ? label("category", x) : `${label("category", x.category)}${x.source ? "（" + label("source", x.source) + "）" : ""}`);
    const list = xs => (Array.isArray(xs) ? (xs.map(cat).join("、") || "无") : String(xs));
    Z.fill(box, Z.dl([["核验方式", label("verify_method", v.method)], ["核实的特殊群体", list(v.confirmed)],
      ["差异（申报但未核实）", el("span", { class: (v.discrepancies || []).length ? "warn" : "" }, list(v.discrepancies))],
      ["数据比对发现但未申报", list(v.unclaimed_confirmed)], ["说明", v.notes || "—"]]));
  }

  function renderAssessment(a) {
    const box = document.getElementById("assessment");
    if (!a) { Z.fill(box, el("p", {}, "尚未评价")); return; }
    Z.fill(box, Z.dl([["总分", a.score], ["建议等级", label("level", a.suggested_level || "not_identified")],
      ["评分模型", `${a.model_version}（${a.profile_version}）`]]),
    Z.table(["评分项", "依据", "得分"], (a.breakdown || []).map(b => [b.label || b.item, detailText(b.detail), b.points]), "各评分项得分"));
  }

  /* An item's detail is a code (serious_illness) or name=value (ratio=0.43): codes are shown by their names. */
  function detailText(detail) {
    if (detail === null || detail === undefined) return "—";
    const text = String(detail);
    for (const kind of ["level", "category", "sudden_event", "health", "occupation", "family_type"]) {
      if ((Z.labels[kind] || {})[text]) return Z.labels[kind][text];
    }
    return text;
  }

  function renderEvaluation(e) {
    const box = document.getElementById("evaluation");
    if (!e) { Z.fill(box, el("p", {}, "尚未评议（数据比对确认的特殊群体可免于班级评议）")); return; }
    const total = Number(e.votes_for || 0) + Number(e.votes_against || 0);
    Z.fill(box, Z.dl([["同意", `${e.votes_for} 票`], ["反对", `${e.votes_against} 票`], ["参评", `${total} 人`],
      ["建议等级", label("level", e.recommended_level || "not_identified")]]),
    total ? Z.bars("评议票数", [{ label: "同意", value: e.votes_for }, { label: "反对", value: e.votes_against, tone: "alt" }], { labelWidth: 60 }) : null);
  }

  function renderRating(r) {
    const box = document.getElementById("rating");
    if (!r) { Z.fill(box, el("p", {}, "尚未认定")); return; }
    Z.fill(box, Z.dl([["认定等级", label("level", r.level || "not_identified")],
      ["评分模型建议", label("level", r.suggested_level || "not_identified")],
      ["是否修正建议", r.departs_from_suggestion ? "是" : "否"], ["理由", r.reason || "—"], ["认定时间", Z.time(r.rated_at)]]));
  }

  function renderPublicity(c) {
    const p = c.publicity;
    const rows = (c.objections || []).map(o => [Z.time(o.raised_at), o.grounds, label("objection_status", o.status),
      o.resolution ? `${label("objection_outcome", o.resolution.outcome)}：${o.resolution.reason || ""}` : "—"]);
    Z.fill(document.getElementById("publicity"),
      p ? Z.dl([["公示期", `${Z.date(p.starts_on)} 至 ${Z.date(p.ends_on)}`], ["工作日", `${p.working_days} 天`]])
        : c.exemption ? el("p", {}, `免于公示：${label("exemption_ground", c.exemption.ground)}`) : el("p", {}, "尚未公示"),
      c.confirmed_on ? el("p", {}, `认定确认日期：${Z.date(c.confirmed_on)}`) : null,
      el("h3", {}, "异议"), Z.table(["提出时间", "理由", "状态", "处理结果"], rows));
  }

  function renderAid(a) {
    const box = document.getElementById("aid");
    if (!a) { Z.fill(box, el("p", {}, "—")); return; }
    Z.fill(box, Z.dl([["已决定资助", Z.money(a.granted)], ["已发放", Z.money(a.disbursed)],
      ["责令追回", Z.money(a.recovery_ordered)], ["已追回", Z.money(a.recovered)]]),
    Array.isArray(a.grants) && a.grants.length ? Z.table(["项目", "金额"], a.grants.map(g => [label("programme", g.programme), Z.money(g.amount)])) : null);
  }

  async function renderPlan(c) {
    const box = document.getElementById("plan");
    if (who.role === "evaluator") { document.getElementById("plan").closest("section").hidden = true; return; }
    if (!["confirmed", "archived"].includes(c.status)) { Z.fill(box, el("p", {}, "认定确认后制定帮扶计划。")); return; }
    const result = await Z.api("GET", `/v1/cases/${caseId}/plan`);
    if (result.status === 404) {
      Z.fill(box, el("p", {}, "尚未制定帮扶计划。"), who.role === "school" ? F.form(null, [], "制定帮扶计划", async () => {
        const r = await Z.api("POST", `/v1/cases/${caseId}/plan`);
        if (r.ok) { Z.flash("帮扶计划已建立。"); renderPlan(c); }
        return r;
      }, { name: "create-plan" }) : null);
      return;
    }
    if (!result.ok) { Z.showProblem(result, box); return; }
    const plan = result.data;
    const aid = plan.aid || {};
    const items = plan.items || [];
    Z.fill(box,
      Z.dl([["年度资助标准", Z.money(aid.target)], ["已资助", Z.money(aid.granted)], ["缺口", Z.money(aid.shortfall)],
        ["应急资助", Z.money(aid.emergency)]]),
      Z.table(["资助项目", "计划", "已资助"], (aid.lines || []).map(l => [label("programme", l.programme), Z.money(l.planned), Z.money(l.granted)]), "资助清单"),
      el("h3", {}, "帮扶项目"),
      items.length ? el("ul", { class: "items" }, items.map(item => el("li", {},
        el("strong", {}, `${label("plan_item", item.kind)} · ${item.owner_name || label("owner", item.owner)}`), "：", item.description,
        item.due_on ? `（完成期限 ${item.due_on}）` : "",
        el("ul", {}, (item.actions || []).map(a => el("li", {}, `${Z.date(a.acted_on)} ${a.description}${a.outcome ? " → " + a.outcome : ""}`))),
        who.role === "school" ? F.form(null, [F.input("description", `${label("plan_item", item.kind)}：本次措施`, { required: true }),
          F.input("outcome", "效果")], "记录措施", async v => {
          const r = await Z.api("POST", `/v1/plans/${plan.id}/items/${item.item_id}/actions`, { body: v, ifMatch: plan.version });
          if (r.ok) { Z.flash("措施已记录。"); renderPlan(c); }
          return r;
        }, { name: "plan-action" }) : null))) : el("p", {}, "暂无帮扶项目"),
      who.role === "school" ? F.form("添加帮扶项目", [F.select("kind", "类型", F.options("plan_item")),
        F.select("owner", "负责部门", F.options("owner", null, "（按类型默认）")), F.input("description", "内容", { required: true })],
      "添加", async v => {
        const r = await Z.api("POST", `/v1/plans/${plan.id}/items`, { body: { kind: v.kind, description: v.description, ...(v.owner ? { owner: v.owner } : {}) }, ifMatch: plan.version });
        if (r.ok) { Z.flash("帮扶项目已添加。"); renderPlan(c); }
        return r;
      }, { name: "plan-item" }) : null);
  }

  async function renderMessages() {
    const section = document.getElementById("messages-section");
    if (who.role === "auditor") { section.hidden = true; return; }
    const result = await Z.api("GET", "/v1/notifications?limit=50");
    if (!result.ok) { section.hidden = true; return; }
    const mine = result.data.items.filter(n => n.data && n.data.case_id === caseId);
    Z.fill(document.getElementById("messages"), mine.length
      ? el("ul", { class: "inbox" }, mine.map(n => el("li", {}, el("span", { class: "when" }, Z.time(n.occurred_at)), " ", n.title)))
      : el("p", {}, "暂无消息"));
  }

  await load();
  document.body.dataset.ready = "true";
})();
