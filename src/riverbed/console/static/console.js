// riverbed console: the little JavaScript it needs. Text only goes into the page through
// textContent (never innerHTML), so record contents cannot run as script.
"use strict";

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function startTail(table) {
  const body = table.querySelector("tbody");
  const status = document.getElementById("tail-status");
  const pause = document.getElementById("tail-pause");
  let paused = false;
  pause.addEventListener("click", () => { paused = !paused; pause.textContent = paused ? "Resume" : "Pause"; });
  const source = new EventSource(table.dataset.src);
  source.addEventListener("ready", () => { status.textContent = "live: waiting for new records"; status.className = "ok"; });
  source.onerror = () => { status.textContent = "disconnected: retrying"; status.className = "error"; };
  source.onmessage = (event) => {
    if (paused) return;
    const r = JSON.parse(event.data);
    const row = document.createElement("tr");
    row.className = "record";
    cell(row, String(r.partition), "n");
    cell(row, String(r.offset), "n");
    cell(row, r.time);
    cell(row, r.key);
    const value = cell(row, "", "value");
    const pre = document.createElement("pre");
    pre.textContent = r.value;
    value.appendChild(pre);
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
  };
}

// Saved filters: the browser's query string, kept per topic in localStorage.
function savedFilters(topic) {
  try { return JSON.parse(localStorage.getItem("riverbed.filters." + topic) || "[]"); } catch (e) { return []; }
}

function showSaved(span, topic) {
  span.textContent = "";
  for (const f of savedFilters(topic)) {
    const a = document.createElement("a");
    a.href = "?" + f.query;
    a.textContent = f.name;
    a.className = "pill";
    span.appendChild(a);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const tail = document.getElementById("tail");
  if (tail) startTail(tail);
  const save = document.getElementById("save-filter");
  const span = document.getElementById("saved-filters");
  if (save && span) {
    const topic = save.dataset.topic;
    showSaved(span, topic);
    save.addEventListener("click", () => {
      const form = document.getElementById("browse");
      const query = new URLSearchParams(new FormData(form)).toString();
      const name = window.prompt("Name of this filter", "filter " + (savedFilters(topic).length + 1));
      if (!name) return;
      const list = savedFilters(topic).filter((f) => f.name !== name);
      list.push({ name: name, query: query });
      localStorage.setItem("riverbed.filters." + topic, JSON.stringify(list));
      showSaved(span, topic);
    });
  }
});
