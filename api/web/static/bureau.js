/* The education bureau's region dashboard: cases per level and school, departures from the scoring model's
   suggestion, overdue follow-ups and spot checks, money granted, disbursed and recovered (inline SVG bars);
   random spot checks with inspector assignment; the integrity-record search. */
"use strict";

(async () => {
  const who = await Z.session(["bureau"]);
  if (!who) return;
  const { el, label } = Z;
  const region = who.region;

  async function overview() {
    const year = document.getElementById("year").value;
    const q = `academic_year=${year}`;
    const [stats, departures, ledger, spots] = await Promise.all([
      Z.api("GET", `/v1/regions/${region}/statistics?${q}`), Z.api("GET", `/v1/regions/${region}/departures?${q}`),
      Z.api("GET", `/v1/regions/${region}/ledger?${q}`), Z.api("GET", `/v1/regions/${region}/spot-checks?${q}`)]);
    if (!stats.ok) { Z.showProblem(stats, document.getElementById("totals")); return; }
    const bySchool = {};
    stats.data.rows.forEach(r => { bySchool[r.school_id] = (bySchool[r.school_id] || 0) + r.count; });
    Z.fill(document.getElementById("totals"), Z.dl([["区域", region], ["学年", year], ["案件总数", String(stats.data.total)]]));
    Z.fill(document.getElementById("chart-levels"), Z.bars("各认定等级案件数",
      ["especially_difficult", "difficult", "generally_difficult", "none"].map(l => ({ label: label("level", l), value: stats.data.by_level[l] || 0 }))));
    Z.fill(document.getElementById("chart-schools"), Z.bars("各学校案件数",
      Object.entries(bySchool).map(([school, n]) => ({ label: school, value: n }))));
    if (departures.ok) {
      Z.fill(document.getElementById("chart-departures"), Z.bars("偏离建议的认定数",
        departures.data.schools.map(s => ({ label: s.school_name || s.school_id, value: s.departed,
          text: `${s.departed}/${s.rated}（更困难 ${s.rated_more_difficult}，较不困难 ${s.rated_less_difficult}）` })), { labelWidth: 190 }));
    }
    // Follow-ups are per school: ask each school of the region that has cases (bureaus may read them).
    const follow = await Promise.all(Object.keys(bySchool).map(async school => {
      const r = await Z.api("GET", `/v1/schools/${school}/follow-ups`);
      const levels = r.ok ? r.data.levels || [] : [];
      const remaining = levels.reduce((sum, l) => sum + (l.remaining || 0), 0);
      return { label: school, value: r.ok && r.data.overdue ? remaining : 0, text: r.ok ? (r.data.overdue ? `${remaining} 件超期` : r.data.drawn ? "未超期" : "未抽样") : "—" };
    }));
    const spotOverdue = spots.ok ? spots.data.overdue : 0;
    Z.fill(document.getElementById("chart-overdue"), Z.bars("超期未完成的跟踪抽查",
      [...follow, { label: "教育局抽查", value: spotOverdue, text: `${spotOverdue} 件超期`, tone: "alt" }]));
    if (ledger.ok) {
      const t = ledger.data.totals;
      Z.fill(document.getElementById("chart-money"), Z.bars("资助资金（元）", [
        { label: "已决定资助", value: Number(t.granted), text: Z.money(t.granted) },
        { label: "已发放", value: Number(t.disbursed), text: Z.money(t.disbursed) },
        { label: "责令追回", value: Number(t.recovery_ordered), text: Z.money(t.recovery_ordered), tone: "alt" },
        { label: "已追回", value: Number(t.recovered), text: Z.money(t.recovered), tone: "alt" },
        { label: "尚待追回", value: Number(t.outstanding), text: Z.money(t.outstanding), tone: "alt" }]));
    }
    renderSpotChecks(spots);
  }

  function renderSpotChecks(spots) {
    const box = document.getElementById("spot-list");
    if (!spots.ok) { Z.showProblem(spots, box); return; }
    Z.fill(box, el("h3", {}, "已抽取的抽查"), Z.table(["抽取时间", "学年", "学校", "案件", "已指派", "已记录", "不符", "截止", ""],
      spots.data.checks.map(c => [Z.time(c.drawn_at), c.academic_year, String(c.schools_drawn), String(c.cases_drawn),
        String(c.assigned), String(c.recorded), String(c.inconsistent), Z.date(c.due_on),
        F.form(null, [F.input("inspector", "指派检查人", { required: true })], "指派全部案件", async v => {
          const r = await Z.api("POST", `/v1/regions/${region}/spot-checks/${c.check_id}/assign`, { body: { inspector: v.inspector } });
          if (r.ok) { Z.flash("已指派检查人。"); overview(); }
          return r;
        }, { name: "assign" })])));
  }

  Z.fill(document.getElementById("spot-form"), F.form("抽取学校与案件", [
    F.input("due_on", "完成期限（留空按政策默认）", { type: "date" }),
    F.input("seed", "随机种子（留空自动生成，可据此复核抽取结果）"),
  ], "随机抽取", async v => {
    const body = { academic_year: document.getElementById("year").value };
    if (v.due_on) body.due_on = v.due_on;
    if (v.seed) body.seed = v.seed;
    const r = await Z.api("POST", `/v1/regions/${region}/spot-checks`, { body });
    if (r.ok) { Z.flash("抽查已抽取。"); overview(); }
    return r;
  }, { name: "draw-spot-check" }));

  document.getElementById("year-form").addEventListener("submit", e => { e.preventDefault(); overview(); });

  document.getElementById("integrity-form").addEventListener("submit", async e => {
    e.preventDefault();
    const input = document.getElementById("integrity-id");
    const error = document.getElementById("integrity-error");
    const problem = Check.residentId(input.value);
    input.setAttribute("aria-invalid", problem ? "true" : "false");
    error.hidden = !problem;
    Z.fill(error, problem);
    if (problem) return;
    const r = await Z.api("GET", `/v1/integrity-records?id_number=${encodeURIComponent(input.value.trim().toUpperCase())}`);
    const box = document.getElementById("integrity-result");
    if (!r.ok) { Z.showProblem(r, box); return; }
    Z.fill(box, el("p", {}, `共 ${r.data.count} 条记录（查询编号 ${r.data.person_ref}）`),
      Z.table(["记录日期", "对象", "学年", "学校", "情况"], r.data.records.map(x => [Z.date(x.recorded_on),
        x.person === "guardian" ? "监护人" : "学生", x.academic_year || "—", x.school_id || "（外地区）", x.description])));
  });

  await overview();
  document.body.dataset.ready = "true";
})();
