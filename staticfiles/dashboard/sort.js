// Sortable tables: click a header of a <table class="sortable"> to sort by that column, click
// again to reverse. A cell's data-value (a number) sorts before its text; empty values go last.
(function () {
  "use strict";
  function key(cell) {
    if (!cell) return null;
    const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    if (raw === "" || raw === "-") return null;
    const num = Number(raw);
    return Number.isFinite(num) ? num : raw.toLowerCase();
  }
  function sortBy(table, th, index) {
    const body = table.tBodies[0];
    const desc = th.getAttribute("aria-sort") !== "descending";
    table.querySelectorAll("th[aria-sort]").forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", desc ? "descending" : "ascending");
    const rows = Array.from(body.rows).filter((r) => !r.classList.contains("total"));
    const totals = Array.from(body.rows).filter((r) => r.classList.contains("total"));
    rows.sort((a, b) => {
      const x = key(a.cells[index]), y = key(b.cells[index]);
      if (x === null || y === null) return (x === null) - (y === null);
      const c = x < y ? -1 : x > y ? 1 : 0;
      return desc ? -c : c;
    });
    rows.concat(totals).forEach((r) => body.appendChild(r));
  }
  document.querySelectorAll("table.sortable").forEach((table) => {
    Array.from(table.tHead.rows[0].cells).forEach((th, index) => {
      if (th.hasAttribute("data-nosort")) return;
      th.classList.add("sort");
      th.tabIndex = 0;
      th.title = "sort by " + th.textContent.trim();
      const go = () => sortBy(table, th, index);
      th.addEventListener("click", go);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
    });
  });
})();
