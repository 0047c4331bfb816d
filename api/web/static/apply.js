/* The guided application form (phone first): one step at a time, each field checked as it is left (the resident
   ID check digit of GB 11643, amounts in yuan with at most two decimals), a review of everything with the
   attestation, then POST /v1/cases (or /amend with If-Match when changing an application before rating). */
"use strict";

(async () => {
  const who = await Z.session(["applicant", "school"]);
  if (!who) return;
  const form = document.getElementById("apply-form");
  const steps = [...document.querySelectorAll("section.step")];
  const amendId = new URLSearchParams(location.search).get("amend");
  let amendVersion = null;
  let current = 1;
  let rows = 0;

  function errorBoxFor(input) {
    if (input.dataset.errorBox) return document.getElementById(input.dataset.errorBox);
    return document.getElementById(input.id + "-error");
  }
  function setError(input, message) {
    const box = errorBoxFor(input);
    if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    if (box) { box.hidden = !message; Z.fill(box, message || ""); }
  }
  function check(input) {
    const value = input.value || "";
    let message = "";
    if (input.required && !value.trim()) message = "此项必填";
    else if (value.trim() && input.dataset.check) message = Check.RULES[input.dataset.check](value);
    setError(input, message);
    return !message;
  }
  form.addEventListener("focusout", e => { if (e.target.matches("input, select, textarea")) check(e.target); });
  form.addEventListener("input", e => {
    if (e.target.getAttribute("aria-invalid") === "true") check(e.target);
  });

  function addRow(templateId, containerId, values) {
    rows += 1;
    const fragment = document.getElementById(templateId).content.cloneNode(true);
    const row = fragment.querySelector("fieldset");
    row.querySelectorAll("[data-name]").forEach(input => {
      const id = `${containerId}-${rows}-${input.dataset.name}`;
      input.id = id;
      row.querySelector(`label[data-for="${input.dataset.name}"]`).setAttribute("for", id);
      const box = row.querySelector(`[data-error="${input.dataset.name}"]`);
      if (box) { box.id = id + "-error"; input.setAttribute("aria-describedby", box.id); }
      if (values && values[input.dataset.name] !== undefined) input.value = values[input.dataset.name];
    });
    row.querySelector("legend").append(` ${document.getElementById(containerId).children.length + 1}`);
    row.querySelector(".remove").addEventListener("click", () => row.remove());
    document.getElementById(containerId).append(row);
    return row;
  }
  document.getElementById("add-member").addEventListener("click", () => addRow("member-row", "members"));
  document.getElementById("add-event").addEventListener("click", () => addRow("event-row", "events"));

  function show(step) {
    current = step;
    steps.forEach(s => { s.hidden = Number(s.dataset.step) !== step; });
    document.querySelectorAll("#stepper li").forEach(li => {
      const n = Number(li.dataset.step);
      li.className = n === step ? "current" : n < step ? "done" : "";
      if (n === step) li.setAttribute("aria-current", "step"); else li.removeAttribute("aria-current");
    });
    document.getElementById("prev").hidden = step === 1;
    document.getElementById("next").hidden = step === steps.length;
    document.getElementById("submit").hidden = step !== steps.length;
    if (step === steps.length) renderReview();
    steps[step - 1].querySelector("h2").focus({ preventScroll: false });
  }
  steps.forEach(s => s.querySelector("h2").setAttribute("tabindex", "-1"));

  function validStep(step) {
    const inputs = [...steps[step - 1].querySelectorAll("input, select, textarea")].filter(i => i.type !== "checkbox" && i.type !== "radio");
    const bad = inputs.filter(i => !check(i));
    if (bad.length) { bad[0].focus(); return false; }
    return true;
  }
  document.getElementById("next").addEventListener("click", () => { if (validStep(current)) show(current + 1); });
  document.getElementById("prev").addEventListener("click", () => show(current - 1));

  const value = name => (form.elements[name] ? form.elements[name].value.trim() : "");
  const optional = (target, key, raw, convert) => { if (raw !== "") target[key] = convert ? convert(raw) : raw; };

  function rowValues(containerId) {
    return [...document.getElementById(containerId).querySelectorAll("fieldset")].map(row => {
      const out = {};
      row.querySelectorAll("[data-name]").forEach(i => { out[i.dataset.name] = i.value.trim(); });
      return out;
    });
  }

  /* The body of API.md's POST /v1/cases: money as decimal strings, counts as integers. */
  function body() {
    const student = { id_number: value("student.id_number").toUpperCase(), name: value("student.name"),
      school_id: value("student.school_id"), class_id: value("student.class_id"), stage: value("student.stage") };
    optional(student, "phone", value("student.phone"));
    const household = { region_code: value("household.region_code"), size: Number(value("household.size")),
      annual_income: value("household.annual_income"), debts: value("household.debts") || "0",
      members: rowValues("members").map(m => {
        const member = { relation: m.relation };
        optional(member, "age", m.age, Number);
        optional(member, "occupation", m.occupation);
        optional(member, "health", m.health);
        optional(member, "annual_income", m.annual_income);
        return member;
      }) };
    optional(household, "property", value("household.property"));
    optional(household, "guardian_name", value("household.guardian_name"));
    optional(household, "guardian_phone", value("household.guardian_phone"));
    const other = {};
    optional(other, "siblings_in_school", value("other.siblings_in_school"), Number);
    optional(other, "children_in_noncompulsory_schooling", value("other.children_in_noncompulsory_schooling"), Number);
    optional(other, "medical_costs", value("other.medical_costs"));
    optional(other, "family_type", value("other.family_type"));
    optional(other, "monthly_consumption", value("other.monthly_consumption"));
    optional(other, "notes", value("other.notes"));
    return {
      academic_year: value("academic_year"),
      applicant: form.querySelector("input[name=applicant]:checked").value,
      student, household,
      claimed_categories: [...form.querySelectorAll("input[name=claimed_categories]:checked")].map(c => c.value),
      sudden_events: rowValues("events").map(e => {
        const item = { kind: e.kind, loss: e.loss || "0" };
        optional(item, "occurred_on", e.occurred_on);
        return item;
      }),
      other,
      attestation: document.getElementById("f-attestation").checked,
    };
  }

  function renderReview() {
    const b = body();
    const members = b.household.members.map(m =>
      `${Z.label("relation", m.relation)}，${m.age ?? "—"}岁，${Z.label("occupation", m.occupation)}，${Z.label("health", m.health)}，年收入 ${Z.money(m.annual_income)}`);
    const events = b.sudden_events.map(e => `${Z.label("sudden_event", e.kind)}（${e.occurred_on || "日期未填"}），损失 ${Z.money(e.loss)}`);
    Z.fill(document.getElementById("review"),
      el3("学生"), Z.dl([["申请学年", b.academic_year], ["申请人", Z.label("applicant", b.applicant)],
        ["姓名", b.student.name], ["身份证号", b.student.id_number], ["学校代码", b.student.school_id],
        ["年级班级", b.student.class_id], ["学段", Z.label("stage", b.student.stage)]]),
      el3("家庭经济"), Z.dl([["户籍地区划代码", b.household.region_code], ["家庭人口", `${b.household.size} 人`],
        ["家庭年收入", Z.money(b.household.annual_income)], ["家庭负债", Z.money(b.household.debts)],
        ["家庭成员", members.length ? Z.el("ul", {}, members.map(m => Z.el("li", {}, m))) : "未填写"]]),
      el3("特殊群体与突发状况"), Z.dl([["特殊群体", b.claimed_categories.map(c => Z.label("category", c)).join("、") || "无"],
        ["突发状况", events.length ? Z.el("ul", {}, events.map(e => Z.el("li", {}, e))) : "无"]]),
      el3("其他情况"), Z.dl([["在读兄弟姐妹", b.other.siblings_in_school ?? "—"], ["医疗支出", Z.money(b.other.medical_costs)],
        ["家庭结构", Z.label("family_type", b.other.family_type || "")]]),
      Z.el("p", {}, Z.el("button", { type: "button", class: "link", onclick: () => show(1) }, "返回修改")));
  }
  function el3(text) { return Z.el("h3", {}, text); }

  form.addEventListener("submit", async event => {
    event.preventDefault();
    for (let step = 1; step < steps.length; step++) if (!validStep(step)) { show(step); validStep(step); return; }
    const attest = document.getElementById("f-attestation");
    if (!attest.checked) { setError(attest, "请阅读并勾选个人承诺后再提交"); attest.focus(); return; }
    setError(attest, "");
    const button = document.getElementById("submit");
    button.disabled = true;
    const result = amendId
      ? await Z.api("POST", `/v1/cases/${amendId}/amend`, { body: body(), ifMatch: amendVersion })
      : await Z.api("POST", "/v1/cases", { body: body() });
    button.disabled = false;
    if (!result.ok) {
      Z.showProblem(result, document.getElementById("submit-result"));
      const field = result.data && result.data.field;
      const input = field && document.getElementById("f-" + field.replace(/\./g, "-"));
      if (input) { setError(input, result.data.detail); }
      return;
    }
    location.href = `/cases/${result.data.id}?${amendId ? "amended" : "applied"}=1`;
  });

  /* Amending: the form starts from the case as it stands, and the change applies only to that version. */
  async function loadForAmend() {
    const result = await Z.api("GET", `/v1/cases/${amendId}`);
    if (!result.ok) { Z.showProblem(result); return; }
    const c = result.data, f = c.application;
    amendVersion = c.version;
    Z.fill(document.querySelector("h1"), "修改认定申请");
    const set = (name, v) => { if (form.elements[name] && v !== undefined && v !== null) form.elements[name].value = v; };
    set("academic_year", f.academic_year);
    ["name", "id_number", "school_id", "class_id", "stage", "phone"].forEach(k => set("student." + k, f.student[k]));
    ["region_code", "size", "annual_income", "debts", "property", "guardian_name", "guardian_phone"].forEach(k => set("household." + k, f.household[k]));
    ["siblings_in_school", "children_in_noncompulsory_schooling", "medical_costs", "family_type", "monthly_consumption", "notes"].forEach(k => set("other." + k, (f.other || {})[k]));
    form.querySelectorAll("input[name=applicant]").forEach(r => { r.checked = r.value === f.applicant; });
    form.querySelectorAll("input[name=claimed_categories]").forEach(c2 => { c2.checked = (f.claimed_categories || []).includes(c2.value); });
    (f.household.members || []).forEach(m => addRow("member-row", "members", m));
    (f.sudden_events || []).forEach(e => addRow("event-row", "events", e));
    // The case is one student's for one year: those two cannot change by amendment.
    form.elements["student.id_number"].readOnly = true;
    form.elements["academic_year"].disabled = true;
  }

  if (amendId) await loadForAmend();
  else if (who.role === "applicant" && who.student) form.elements["student.id_number"].value = who.student;
  show(1);
  document.body.dataset.ready = "true";
})();
