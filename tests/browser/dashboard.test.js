/* Browser test of the otfused dashboard: Debian's chromium, headless, driven
 * by playwright-core, against a real otfused (started by
 * tests/integration/browser.sh with a token, --workers 1 and
 * --file-root tests/data). Every step is named; on the first failure the
 * page is saved as SHOT_DIR/<step>.png and the test exits 1.
 *
 * Environment: BASE_URL, TOKEN, DATA_ROOT (absolute tests/data), SHOT_DIR,
 * FINAL_SHOT (where the closing screenshot goes), CHROMIUM. */
"use strict";
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { chromium } = require("playwright-core");

const BASE = process.env.BASE_URL;
const TOKEN = process.env.TOKEN;
const ROOT = process.env.DATA_ROOT;
const SHOT_DIR = process.env.SHOT_DIR || "build/browser";
const FINAL_SHOT = process.env.FINAL_SHOT || "build/dashboard.png";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT = 60000;

const uri = (rel) => "file://" + path.join(ROOT, rel) + (rel.endsWith(".safetensors") ? "" : "/");
const VIT_SPEC = {
  models: [{ uri: uri("models/vit_s0") }, { uri: uri("models/vit_s1") }],
  method: "ot",
  ot: { align: "weights", solver: "sinkhorn" },
  metadata: { test: "browser" },
};
/* The job submitted from the form: Sinkhorn maps, so sharpness varies. */
const FORM_SPEC = {
  models: [{ uri: uri("models/bert_cls_s0") }, { uri: uri("models/bert_cls_s1") }],
  method: "ot",
  ot: { align: "activations", solver: "sinkhorn" },
  calibration: { uri: uri("eval/text_cls_train.safetensors"), samples: 1000, seed: 0 },
  metadata: { test: "browser" },
};
/* ~1.7 s each on the fixtures (8 candidate fusions): keeps the one worker
 * busy so a later job stays queued and one is running when cancelled. */
const SLOW_SPEC = {
  models: FORM_SPEC.models,
  method: "ot",
  ot: { align: "activations", anchor: "auto", reg: "auto" },
  calibration: { uri: uri("eval/text_cls_train.safetensors"), samples: 1000, seed: 0 },
};

/* The API straight from node, to compare the page with the server. */
async function api(method, p, body) {
  const headers = { Authorization: "Bearer " + TOKEN, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(BASE + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  return { status: res.status, json, text, headers: res.headers };
}
const sha256 = (buf) => crypto.createHash("sha256").update(buf).digest("hex");
const fmt4 = (x) => Number(x.toPrecision(4));

let page, browser;
let passed = 0;
let currentStep = "start";
const pageErrors = [];

async function step(name, fn) {
  currentStep = name;
  const t0 = Date.now();
  await fn();
  passed++;
  console.log(`ok ${passed} - ${name} (${Date.now() - t0} ms)`);
}

async function main() {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("dialog", (d) => d.accept());
  page.setDefaultTimeout(15000);

  await step("GET / serves the dashboard without a token and asks for one", async () => {
    const res = await page.goto(BASE + "/");
    assert.equal(res.status(), 200);
    assert.match(res.headers()["content-type"], /^text\/html/);
    const alert = page.getByRole("alert");
    await alert.filter({ hasText: "needs an API token" }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.id), "token");
  });

  await step("every form control has a label", async () => {
    const unlabeled = await page.evaluate(() => Array.from(document.querySelectorAll("input, select, textarea, button"))
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
      .map((el) => el.outerHTML.slice(0, 80)));
    assert.deepEqual(unlabeled, []);
  });

  await step("token typed with the keyboard is kept in sessionStorage and used", async () => {
    await page.getByLabel("API token").fill(TOKEN);
    await page.keyboard.press("Enter");
    await page.getByText("token set for this tab").waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem("otfused.token")), TOKEN);
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    await page.locator("#jobs-h").waitFor();
    await page.waitForFunction(() => document.getElementById("alert").hidden);
  });

  const spec = page.getByLabel("Job spec (JSON)");

  await step("client-side JSON error is shown and nothing is sent", async () => {
    await spec.fill('{"models": [');
    await page.getByRole("button", { name: "Validate" }).click();
    await page.locator("#spec-result .invalid").filter({ hasText: "not valid JSON" }).waitFor();
    assert.equal(await spec.getAttribute("aria-invalid"), "true");
  });

  await step("validation messages from POST /v1/jobs:validate are shown with their pointers", async () => {
    const badSpecs = [
      { models: [{ uri: uri("models/vit_s0") }] },
      { models: VIT_SPEC.models, ot: { solver: "no-such-solver" } },
      { models: [{ uri: "file:///etc/" }, { uri: uri("models/vit_s1") }] },
    ];
    for (const b of badSpecs) {
      const direct = await api("POST", "/v1/jobs:validate", b);
      assert.ok(direct.status >= 400 && direct.status < 500, "server accepted a bad spec: " + JSON.stringify(b));
      const p = direct.json || {};
      const want = Array.isArray(p.errors) && p.errors.length ? p.errors : [{ pointer: p.pointer, detail: p.detail }];
      await spec.fill(JSON.stringify(b));
      await page.getByRole("button", { name: "Validate" }).click();
      const box = page.locator("#spec-result .invalid");
      await box.filter({ hasText: "HTTP " + direct.status }).waitFor();
      const shown = await box.innerText();
      for (const e of want) {
        if (e.pointer) assert.ok(shown.includes(e.pointer), `pointer ${e.pointer} not shown in: ${shown}`);
        if (e.detail) assert.ok(shown.includes(e.detail), `detail "${e.detail}" not shown in: ${shown}`);
      }
    }
  });

  let jobId;
  await step("a valid spec validates (models, estimate) and is submitted from the form", async () => {
    const direct = await api("POST", "/v1/jobs:validate", FORM_SPEC);
    assert.equal(direct.status, 200, direct.text);
    await spec.fill(JSON.stringify(FORM_SPEC, null, 2));
    await page.getByRole("button", { name: "Validate" }).click();
    const valid = page.locator("#spec-result .valid");
    await valid.waitFor();
    const rows = valid.locator("tbody tr");
    assert.equal(await rows.count(), 2);
    for (let i = 0; i < 2; i++)
      assert.ok((await rows.nth(i).innerText()).includes(direct.json.models[i].architecture));
    await page.getByRole("button", { name: "Submit job" }).click();
    const created = page.locator("#spec-result .created");
    await created.waitFor();
    jobId = await created.locator("code").innerText();
    const j = await api("GET", "/v1/jobs/" + jobId);
    assert.equal(j.status, 200);
    assert.deepEqual(j.json.metadata, FORM_SPEC.metadata);
  });

  await step("the job list follows the job to succeeded without a reload", async () => {
    const row = page.locator(`#jobs-table tr[data-job-id="${jobId}"]`);
    await row.waitFor();
    /* Sample what the row shows until it says succeeded (no reload). */
    const seen = [];
    for (const t0 = Date.now(); Date.now() - t0 < WAIT;) {
      const s = await row.evaluate((tr) => ({ status: tr.querySelector(".badge").textContent,
        value: tr.querySelector("progress").hasAttribute("value") ? tr.querySelector("progress").value : null }));
      if (s.value !== null) assert.ok(s.value >= 0 && s.value <= 1, "progress " + s.value);
      const last = seen[seen.length - 1];
      if (!last || last.status !== s.status || last.value !== s.value) seen.push(s);
      if (s.status === "succeeded") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    console.log("# list showed: " + seen.map((s) => s.status + (s.value === null ? "" : " " + s.value.toFixed(2))).join(" -> "));
    await row.locator(".badge-succeeded").waitFor({ timeout: 1000 });
    assert.equal(await row.locator("progress").evaluate((el) => el.value), 1);
    assert.equal((await api("GET", "/v1/jobs/" + jobId)).json.status, "succeeded");
  });

  let report, artifacts;
  await step("the job page shows status, timeline and map events", async () => {
    await page.locator(`#jobs-table tr[data-job-id="${jobId}"] a`).click();
    await page.waitForURL("**/#/jobs/" + jobId);
    await page.getByRole("heading", { name: "Job " + jobId, exact: true }).waitFor();
    await page.locator("#main .summary .badge-succeeded").waitFor();
    await page.locator(".timeline li").filter({ hasText: "succeeded" }).waitFor();
    const states = await page.locator(".timeline li").allInnerTexts();
    assert.ok(states.length >= 2 && /queued/.test(states[0]) && /succeeded/.test(states[states.length - 1]), "timeline: " + states);
    artifacts = (await api("GET", `/v1/jobs/${jobId}/artifacts`)).json.items;
    const rep = await api("GET", `/v1/jobs/${jobId}/artifacts/fusion_report.json`);
    assert.equal(rep.status, 200);
    report = rep.json;
    assert.ok(Array.isArray(report.maps) && report.maps.length > 0);
    const mapRows = page.locator('#events-table tr[data-type="map"]');
    await page.waitForFunction((n) => document.querySelectorAll('#events-table tr[data-type="map"]').length >= n, report.maps.length);
    assert.equal(await mapRows.count(), report.maps.length);
  });

  await step("the chart draws per-layer cost and sharpness from fusion_report.json", async () => {
    await page.getByText("From fusion_report.json").waitFor();
    for (const field of ["cost", "sharpness"]) {
      const want = new Map();
      for (const m of report.maps) {
        const k = m.space + "|" + m.layer;
        const e = want.get(k) || { sum: 0, n: 0 };
        e.sum += m[field]; e.n++;
        want.set(k, e);
      }
      const svg = page.locator(`#chart svg.panel[data-field="${field}"]`);
      await svg.waitFor();
      const pts = await svg.locator("g[data-series]").evaluateAll((gs) => gs.flatMap((g) =>
        Array.from(g.querySelectorAll(".point")).map((p) => ({ space: g.dataset.series, title: p.querySelector("title").textContent }))));
      assert.equal(pts.length, want.size, `${field}: ${pts.length} points for ${want.size} (space, layer) pairs`);
      for (const p of pts) {
        const m = p.title.match(/layer (emb|-?\d+): ([-+\d.e]+)/);
        assert.ok(m, "point title: " + p.title);
        const layer = m[1] === "emb" ? -1 : parseInt(m[1], 10);
        const e = want.get(p.space + "|" + layer);
        assert.ok(e, "point for a pair not in the report: " + p.space + " " + layer);
        assert.equal(parseFloat(m[2]), fmt4(e.sum / e.n), `${field} ${p.space} layer ${layer}`);
      }
    }
  });

  await step("artifacts are listed with size and SHA-256, and a download matches its hash", async () => {
    const table = page.locator("#artifacts-table");
    await table.waitFor();
    assert.equal(await table.locator("tbody tr").count(), artifacts.length);
    for (const a of artifacts) {
      const row = table.locator(`tr[data-artifact="${a.name}"]`);
      assert.ok((await row.innerText()).includes(a.sha256), "sha256 of " + a.name);
      assert.equal(await row.locator("td").nth(1).getAttribute("title"), a.size + " bytes");
    }
    for (const name of ["config.json", "model.safetensors"]) {
      const a = artifacts.find((x) => x.name === name);
      assert.ok(a, name + " not among the artifacts");
      const [dl] = await Promise.all([page.waitForEvent("download"),
        page.getByRole("link", { name: "Download " + name, exact: true }).click()]);
      assert.equal(dl.suggestedFilename(), name);
      const buf = fs.readFileSync(await dl.path());
      assert.equal(buf.length, a.size);
      assert.equal(sha256(buf), a.sha256);
    }
  });

  await step("closing screenshot of the finished job with its chart", async () => {
    await page.evaluate(() => window.scrollTo(0, 0));
    fs.mkdirSync(path.dirname(FINAL_SHOT), { recursive: true });
    await page.screenshot({ path: FINAL_SHOT, fullPage: true });
  });

  let target;
  await step("a queued job is cancelled from the list", async () => {
    /* Keep the single worker busy, then submit the target from the form. */
    for (let i = 0; i < 10; i++) assert.equal((await api("POST", "/v1/jobs", SLOW_SPEC)).status, 201);
    await page.getByRole("link", { name: "← All jobs" }).click();
    await page.locator("#jobs-h").waitFor();
    await spec.fill(JSON.stringify(VIT_SPEC));
    await page.getByRole("button", { name: "Submit job" }).click();
    await page.locator("#spec-result .created").waitFor();
    target = await page.locator("#spec-result .created code").innerText();
    const row = page.locator(`#jobs-table tr[data-job-id="${target}"]`);
    await row.locator(".badge-queued").waitFor();
    await page.getByRole("button", { name: "Cancel job " + target, exact: true }).click();
    await row.locator(".badge-cancelled").waitFor({ timeout: WAIT });
    const j = (await api("GET", "/v1/jobs/" + target)).json;
    assert.equal(j.status, "cancelled");
    assert.equal(j.started_at, null, "the cancelled job never ran");
  });

  await step("polling backs off while the tab is hidden and resumes at once when shown", async () => {
    const polls = [];
    const onReq = (r) => { if (r.method() === "GET" && /\/v1\/jobs\?/.test(r.url())) polls.push(Date.now()); };
    page.on("request", onReq);
    const count = async (ms) => { const n0 = polls.length; await page.waitForTimeout(ms); return polls.length - n0; };
    const visible = await count(3000);
    await page.evaluate(() => {
      Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    /* Visible: one poll a second while jobs are queued. Hidden: the delay
     * doubles from 2 s (2, 4, 8 s...), so at most ~3 polls in 8 s. */
    const hidden = await count(8000);
    /* Counted from before the event: the poll it starts is a request the
     * page makes before evaluate() returns. */
    const n0 = polls.length;
    await page.evaluate(() => {
      Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await page.waitForTimeout(400);
    const shown = polls.length - n0;
    page.off("request", onReq);
    console.log(`# list polls: ${visible} in 3 s visible, ${hidden} in 8 s hidden, ${shown} within 0.4 s of showing`);
    assert.ok(visible >= 2, "visible polling with jobs queued: " + visible + " in 3 s");
    assert.ok(hidden <= 3 && hidden / 8 < visible / 3, "hidden polling did not back off: " + hidden + " in 8 s");
    assert.ok(shown >= 1, "no poll right after the tab was shown");
  });

  await step("a running job is cancelled from its page", async () => {
    /* Clear the queue, then run one slow job and wait until it runs. */
    for (const j of (await api("GET", "/v1/jobs?status=queued")).json.items || [])
      await api("POST", `/v1/jobs/${j.id}/cancel`);
    const created = await api("POST", "/v1/jobs", SLOW_SPEC);
    assert.equal(created.status, 201);
    const id = created.json.id;
    for (const t0 = Date.now(); Date.now() - t0 < WAIT;) {
      if ((await api("GET", "/v1/jobs/" + id)).json.status !== "queued") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.goto(BASE + "/#/jobs/" + id);
    await page.getByRole("heading", { name: "Job " + id, exact: true }).waitFor();
    const btn = page.getByRole("button", { name: "Cancel job", exact: true });
    await btn.waitFor();
    await btn.click();
    await page.locator("#main .summary").locator(".badge-cancelled, .badge-succeeded").waitFor({ timeout: WAIT });
    const j = (await api("GET", "/v1/jobs/" + id)).json;
    /* A job that reached its last layer before the cancel may finish; the
     * page must show whatever the server says. */
    assert.ok(j.status === "cancelled" || j.status === "succeeded", j.status);
    await page.locator(`#main .summary .badge-${j.status}`).waitFor();
    console.log(`# job ${id} ended ${j.status} (` + (j.status === "cancelled" ? "cancelled while running" : "finished before the cancel") + ")");
  });

  await step("a terminal job is deleted from its page", async () => {
    await page.goto(BASE + "/#/jobs/" + target);
    await page.getByRole("button", { name: "Delete job" }).click();
    await page.waitForURL((u) => u.hash === "#/");
    assert.equal((await api("GET", "/v1/jobs/" + target)).status, 404);
  });

  await step("a failed job's page shows its problem detail", async () => {
    /* BAD_MODEL: a ViT config with a truncated model.safetensors (made by
     * browser.sh), found broken only when the job loads it. */
    const spec = { models: [{ uri: "file://" + process.env.BAD_MODEL + "/" }, VIT_SPEC.models[1]], method: "average" };
    const created = await api("POST", "/v1/jobs", spec);
    assert.equal(created.status, 201, created.text);
    const id = created.json.id;
    await page.goto(BASE + "/#/jobs/" + id);
    await page.locator("#main .summary .badge-failed").waitFor({ timeout: WAIT });
    const j = (await api("GET", "/v1/jobs/" + id)).json;
    assert.equal(j.status, "failed");
    assert.ok(j.error && j.error.detail, "failed job without a problem detail");
    await page.locator("#main .invalid").filter({ hasText: j.error.detail }).waitFor();
  });

  await step("the status filter lists only matching jobs", async () => {
    await page.goto(BASE + "/#/");
    await page.locator("#jobs-table tbody tr").first().waitFor();
    await page.getByLabel("Show").selectOption("cancelled");
    const want = ((await api("GET", "/v1/jobs?status=cancelled&limit=50")).json.items || []).map((j) => j.id);
    assert.ok(want.length >= 1);
    await page.waitForFunction((n) => document.querySelectorAll("#jobs-table tbody tr").length === n, want.length);
    const ids = await page.locator("#jobs-table tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.jobId));
    assert.deepEqual(ids, want);
    assert.equal(await page.locator("#jobs-table tbody .badge:not(.badge-cancelled)").count(), 0);
  });

  await step("text keeps WCAG AA contrast (4.5:1) on the list and job pages", async () => {
    const low = [];
    for (const where of ["/#/", "/#/jobs/" + jobId]) {
      await page.goto(BASE + where);
      await page.waitForTimeout(where === "/#/" ? 500 : 1500);
      low.push(...await page.evaluate(() => {
        const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
          .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
        const bg = (el) => {
          for (; el; el = el.parentElement) {
            const c = rgb(getComputedStyle(el).backgroundColor);
            if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
          }
          return [255, 255, 255];
        };
        const out = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
          const el = n.parentElement;
          if (!n.textContent.trim() || !el || el.closest("[hidden], .visually-hidden, svg, noscript, script")) continue;
          if (el.closest("button:disabled")) continue; /* WCAG exempts inactive controls */
          const fg = rgb(getComputedStyle(el).color).slice(0, 3);
          const a = lum(fg), b = lum(bg(el));
          const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
          if (ratio < 4.5) out.push(`${ratio.toFixed(2)} "${n.textContent.trim().slice(0, 30)}" in <${el.tagName.toLowerCase()} class="${el.className}">`);
        }
        return out;
      }));
    }
    assert.deepEqual(low, []);
  });

  await step("older jobs load page by page past the first 50", async () => {
    /* Enough plain-averaging jobs (milliseconds each) for a second page. */
    const avg = { models: VIT_SPEC.models, method: "average" };
    for (let i = 0; i < 50; i++) assert.equal((await api("POST", "/v1/jobs", avg)).status, 201);
    const all = [];
    for (let after = null, pages = 0; pages < 20; pages++) {
      const q = "/v1/jobs?limit=50" + (after ? "&after=" + encodeURIComponent(after) : "");
      const b = (await api("GET", q)).json;
      all.push(...b.items.map((j) => j.id));
      if (!b.next) break;
      after = b.next;
    }
    assert.ok(all.length > 50, "only " + all.length + " jobs");
    await page.goto(BASE + "/#/");
    await page.getByLabel("Show").selectOption("");
    await page.waitForFunction(() => document.querySelectorAll("#jobs-table tbody tr").length === 50);
    const more = page.getByRole("button", { name: "Load older jobs" });
    while (await more.isVisible()) {
      const n = await page.locator("#jobs-table tbody tr").count();
      await more.click();
      await page.waitForFunction((k) => document.querySelectorAll("#jobs-table tbody tr").length > k, n);
    }
    const ids = await page.locator("#jobs-table tbody tr").evaluateAll((trs) => trs.map((tr) => tr.dataset.jobId));
    /* Jobs made while paging would shift the pages; none are made here. */
    assert.deepEqual(ids, all);
  });

  await step("the dashboard runs under a strict Content-Security-Policy", async () => {
    /* No inline script or style and no external origin: a server may send
     * this policy for / and /ui/*. Added here by interception. */
    const csp = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
    const p2 = await page.context().newPage();
    const violations = [];
    p2.on("console", (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text()); });
    p2.on("pageerror", (e) => violations.push(e.message));
    await p2.route(BASE + "/", async (route) => {
      const res = await route.fetch();
      await route.fulfill({ response: res, headers: Object.assign({}, res.headers(), { "content-security-policy": csp }) });
    });
    await p2.goto(BASE + "/");
    await p2.getByRole("alert").filter({ hasText: "API token" }).waitFor();
    await p2.getByLabel("API token").fill(TOKEN);
    await p2.keyboard.press("Enter");
    await p2.locator("#jobs-table tbody tr").first().waitFor();
    await p2.goto(BASE + "/#/jobs/" + jobId);
    await p2.locator("#chart svg.panel").first().waitFor();
    await p2.close();
    assert.deepEqual(violations, []);
  });

  await step("no uncaught errors in the page", async () => {
    assert.deepEqual(pageErrors, []);
  });

  /* Leave nothing running for the server's drain. */
  const left = (await api("GET", "/v1/jobs?status=queued,running")).json.items || [];
  for (const j of left) await api("POST", `/v1/jobs/${j.id}/cancel`);
}

main().then(async () => {
  await browser.close();
  console.log(`dashboard: ${passed} passed, 0 failed`);
}).catch(async (e) => {
  console.log(`FAIL: ${currentStep}: ${e && e.stack ? e.stack : e}`);
  if (pageErrors.length) console.log("page errors: " + pageErrors.join(" | "));
  try {
    fs.mkdirSync(SHOT_DIR, { recursive: true });
    const file = path.join(SHOT_DIR, currentStep.replace(/[^a-z0-9]+/gi, "_").slice(0, 60) + ".png");
    if (page) { await page.screenshot({ path: file, fullPage: true }); console.log("screenshot: " + file); }
  } catch (e2) { console.log("no screenshot: " + e2.message); }
  if (browser) await browser.close();
  console.log(`dashboard: ${passed} passed, 1 failed`);
  process.exit(1);
});
