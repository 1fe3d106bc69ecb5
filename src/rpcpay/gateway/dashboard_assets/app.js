// rpcpay dashboard: polls data.json and draws tables and SVG charts. No dependencies.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function speed(hs) {
  if (hs >= 1e6) return (hs / 1e6).toFixed(2) + " MH/s";
  if (hs >= 1e3) return (hs / 1e3).toFixed(2) + " kH/s";
  return hs.toFixed(1) + " H/s";
}

function rows(tbody, items, cells) {
  tbody.replaceChildren(...items.map((item) => {
    const tr = document.createElement("tr");
    for (const value of cells(item)) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    }
    return tr;
  }));
}

// A line chart of [time, value] points, scaled to the box, with the last value as a label.
function chart(id, points) {
  const svg = document.getElementById(id);
  const w = 600, h = 160, pad = 14;
  svg.replaceChildren();
  if (points.length === 0) return;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const top = Math.max(...points.map((p) => p[1]), 1e-9);
  const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * (w - 2 * pad) + pad : w / 2);
  const y = (v) => h - pad - (v / top) * (h - 2 * pad);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "));
  svg.appendChild(line);
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", pad);
  label.setAttribute("y", 12);
  label.textContent = "max " + top.toLocaleString();
  svg.appendChild(label);
}

function render(data) {
  text("hashrate", speed(data.hashrate));
  text("earned", data.credits_earned.toLocaleString());
  text("client-count", data.client_count.toLocaleString());
  text("balance-total", data.balance_total.toLocaleString());
  text("blocks-found", data.blocks_found.toLocaleString());
  rows(document.querySelector("#clients tbody"), data.clients, (c) => [
    c.client, c.balance, c.credits_total, c.credits_used, c.good, c.bad,
  ]);
  rows(document.querySelector("#blocks tbody"), data.blocks.slice().reverse(), (b) => [
    b.height, new Date(b.ts * 1000).toISOString().replace("T", " ").slice(0, 19),
  ]);
  chart("chart-hashrate", data.history.map((s) => [s[0], s[1]]));
  chart("chart-earned", data.history.map((s) => [s[0], s[2]]));
  const lottery = document.getElementById("lottery");
  lottery.hidden = data.lottery === null;
  if (data.lottery !== null) {
    text("lottery-open", data.lottery.open_lotteries);
    text("lottery-claims", data.lottery.claims);
    text("lottery-proofs", data.lottery.fraud_proofs);
    text("lottery-recipient", data.lottery.recipient);
  }
  const status = document.getElementById("status");
  status.className = "";
  status.textContent = data.mode + " upstream · updated " + new Date(data.now * 1000).toLocaleTimeString();
}

async function poll() {
  try {
    const response = await fetch("/dashboard/data.json", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
  } catch (error) {
    const status = document.getElementById("status");
    status.className = "error";
    status.textContent = "cannot load data: " + error.message;
  }
}

poll();
setInterval(poll, 2000);
