// videomem serve: search as you type, and a player that seeks to a slot.
// Plain DOM code, no inline handlers (the page's CSP is default-src 'self').
"use strict";

function clock(s) {
  const m = Math.floor(s / 60);
  const sec = (s - 60 * m).toFixed(1).padStart(4, "0");
  return m + ":" + sec;
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawResults(box, data) {
  box.replaceChildren();
  for (const note of data.notes || []) box.append(el("p", { class: "note" }, note));
  if (!data.moments.length) box.append(el("p", {}, "no matching moments"));
  const list = el("ol", { class: "moments" });
  for (const m of data.moments) {
    const link = el("a", { href: "/video/" + m.video_id + "?t=" + m.start_s });
    if (m.thumb_slot !== null) {
      link.append(el("img", { src: "/thumb/" + m.video_id + "/" + m.thumb_slot + ".jpg", alt: "" }));
    }
    link.append(el("span", { class: "span" }, clock(m.start_s) + "–" + clock(m.end_s)));
    link.append(el("span", { class: "uri" }, m.uri.split("/").pop()));
    link.append(el("span", { class: "why" }, m.source + (m.text ? ": " + m.text : "")));
    const item = el("li", { class: "moment" });
    item.append(link);
    list.append(item);
  }
  box.append(list);
}

function searchAsYouType() {
  const q = document.getElementById("q");
  const box = document.getElementById("results");
  if (!q || !box) return;
  const source = document.getElementById("source");
  let timer = null;
  let seq = 0;
  const run = async () => {
    const text = q.value.trim();
    const mine = ++seq;
    if (!text) { box.replaceChildren(); return; }
    const params = new URLSearchParams({ q: text, source: source ? source.value : "all", format: "json" });
    box.setAttribute("aria-busy", "true");
    try {
      const resp = await fetch("/search?" + params.toString(), { headers: { Accept: "application/json" } });
      const data = await resp.json();
      if (mine !== seq) return; // a newer query was typed meanwhile
      if (resp.ok) drawResults(box, data);
      else box.replaceChildren(el("p", { class: "error" }, data.error));
      params.delete("format");
      if (location.pathname === "/search") history.replaceState(null, "", "/search?" + params.toString());
    } finally {
      if (mine === seq) box.setAttribute("aria-busy", "false");
    }
  };
  q.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 250); });
  if (source) source.addEventListener("change", run);
}

function seekingPlayer() {
  const player = document.getElementById("player");
  if (!player) return;
  const start = player.dataset.start;
  if (start !== undefined) {
    const seek = () => { player.currentTime = parseFloat(start); };
    if (player.readyState >= 1) seek(); else player.addEventListener("loadedmetadata", seek, { once: true });
  }
  for (const slot of document.querySelectorAll(".slot[data-start]")) {
    slot.addEventListener("click", () => {
      player.currentTime = parseFloat(slot.dataset.start);
      player.scrollIntoView({ block: "nearest" });
    });
  }
}

document.addEventListener("DOMContentLoaded", () => { searchAsYouType(); seekingPlayer(); });
