/* The applicant's home: their cases (found by the API from their token), their messages, the school's round. */
"use strict";

(async () => {
  const who = await Z.session(["applicant"]);
  if (!who) return;
  const { el } = Z;
  const cases = await Z.api("GET", "/v1/cases");
  const box = document.getElementById("my-cases");
  box.removeAttribute("aria-busy");
  if (!cases.ok) { Z.showProblem(cases, box); return; }
  Z.fill(box, Z.table(["学年", "学生", "状态", "认定等级", ""], cases.data.items.map(c => [
    c.academic_year, c.student_name, Z.label("status", c.status), Z.label("level", c.level),
    el("a", { href: `/cases/${c.id}` }, "查看进度")])));
  const inbox = await Z.api("GET", "/v1/notifications?limit=20");
  if (inbox.ok) {
    Z.fill(document.getElementById("inbox"), inbox.data.items.length
      ? el("ul", { class: "inbox" }, inbox.data.items.map(n => el("li", {},
          el("span", { class: "when" }, Z.time(n.occurred_at)), " ", n.title,
          n.data && n.data.case_id ? [" ", el("a", { href: `/cases/${n.data.case_id}` }, "查看")] : null)))
      : el("p", {}, "暂无消息"));
  }
  const first = cases.data.items[0];
  if (first) {
    const round = await Z.api("GET", `/v1/schools/${first.school_id}/rounds/current`);
    if (round.ok) Z.fill(document.getElementById("round"), roundSummary(round.data));
  }
  document.body.dataset.ready = "true";
})();

function roundSummary(r) {
  const a = r.announcement || {};
  return Z.dl([["学年", r.academic_year], ["时间", `${Z.date(r.opens_on)} 至 ${Z.date(r.closes_on)}`],
    ["谁可以申请", a.who_may_apply || "—"], ["如何申请", a.how_to_apply || "—"], ["异议渠道", a.where_to_object || "—"]]);
}
