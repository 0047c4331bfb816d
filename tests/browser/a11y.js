/* An automated accessibility check run inside the page (tests/browser): returns the problems found, [] when none.
   - the document says it is Chinese: <html lang="zh-CN">;
   - every form control a person can reach has a label (<label for>, a wrapping <label>, aria-label or
     aria-labelledby);
   - exactly one h1, it comes first, and headings never skip a level going down (h2 → h4);
   - every image has alt text; every SVG chart has an accessible name (or is hidden from assistive technology);
   - buttons and links have text. */
() => {
  const problems = [];
  const lang = document.documentElement.getAttribute("lang");
  if (lang !== "zh-CN") problems.push(`html lang is ${lang}`);
  const text = node => (node.textContent || "").trim();
  for (const control of document.querySelectorAll("input, select, textarea")) {
    if (control.type === "hidden") continue;
    const labelled = (control.id && document.querySelector(`label[for="${CSS.escape(control.id)}"]`) && text(document.querySelector(`label[for="${CSS.escape(control.id)}"]`)))
      || (control.closest("label") && text(control.closest("label")))
      || control.getAttribute("aria-label") || control.getAttribute("aria-labelledby");
    if (!labelled) problems.push(`control without a label: ${control.outerHTML.slice(0, 120)}`);
  }
  const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")];
  const h1s = headings.filter(h => h.tagName === "H1");
  if (h1s.length !== 1) problems.push(`${h1s.length} h1 headings`);
  if (headings.length && headings[0].tagName !== "H1") problems.push(`first heading is ${headings[0].tagName}`);
  let previous = 0;
  for (const h of headings) {
    const level = Number(h.tagName[1]);
    if (level > previous + 1) problems.push(`heading skips from h${previous} to h${level}: ${text(h).slice(0, 40)}`);
    if (!text(h)) problems.push(`empty ${h.tagName}`);
    previous = level;
  }
  for (const img of document.querySelectorAll("img")) {
    if (!img.hasAttribute("alt")) problems.push(`image without alt: ${img.src}`);
  }
  for (const svg of document.querySelectorAll("svg")) {
    if (svg.getAttribute("aria-hidden") === "true") continue;
    if (!svg.getAttribute("aria-label") && !svg.querySelector("title")) problems.push("svg without an accessible name");
  }
  for (const b of document.querySelectorAll("button, a[href]")) {
    if (!text(b) && !b.getAttribute("aria-label")) problems.push(`${b.tagName.toLowerCase()} without text: ${b.outerHTML.slice(0, 80)}`);
  }
  return problems;
}
