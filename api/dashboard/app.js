/* otfused dashboard: the job list with live progress, a job page (timeline,
 * events, per-layer cost/sharpness chart, artifacts), a job-spec form that
 * shows POST /v1/jobs:validate's messages, cancel and delete. Plain DOM, no
 * framework, no network beyond the server that served it. Data from the API
 * only ever reaches the page as text (textContent / attributes), never as
 * markup. */
"use strict";

(function () {
  const TOKEN_KEY = "otfused.token";
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const ACTIVE_FILTER = "queued,running,cancelling";
  const POLL_ACTIVE_MS = 1000;   /* something is queued or running */
  const POLL_IDLE_MS = 5000;     /* nothing moving */
  const POLL_MAX_MS = 60000;     /* ceiling of the hidden-tab / error backoff */
  const EVENTS_PAGE = 500;
  const EXAMPLE_SPEC = {
    models: [{ uri: "file:///data/models/model_a/" }, { uri: "file:///data/models/model_b/" }],
    method: "ot",
    ot: { align: "weights", solver: "sinkhorn", reg: 0.02 },
    metadata: { submitted_from: "dashboard" },
  };

  /* ---------- small DOM helpers ---------- */

  /* h("tag", {attr: value, onclick: fn}, child, ...): children are nodes or
   * strings (inserted as text); null/false children are skipped. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const SVG_NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") el.textContent = v;
      else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }
  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  /* ---------- formatting ---------- */

  function fmtBytes(n) {
    if (typeof n !== "number" || !isFinite(n)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
  }
  function fmtSeconds(sec) {
    if (typeof sec !== "number" || !isFinite(sec) || sec < 0) return "—";
    if (sec < 1) return (sec * 1000).toFixed(0) + " ms";
    if (sec < 60) return sec.toFixed(sec < 10 ? 1 : 0) + " s";
    const m = Math.floor(sec / 60), r = Math.round(sec % 60);
    if (m < 60) return m + " min " + r + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function fmtNum(x) {
    if (typeof x !== "number" || !isFinite(x)) return "—";
    if (Number.isInteger(x) && Math.abs(x) < 1e15) return x.toLocaleString("en");
    if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e6)) return x.toExponential(3);
    return String(Number(x.toPrecision(4)));
  }
  function timeEl(iso) {
    if (!iso) return h("span", { class: "muted" }, "—");
    const d = new Date(iso);
    const label = isNaN(d) ? iso : d.toLocaleString();
    return h("time", { datetime: iso, title: iso }, label);
  }
  function progressText(job) {
    const p = job.progress || {};
    const parts = [];
    if (typeof p.fraction === "number") parts.push(Math.round(p.fraction * 100) + " %");
    if (!TERMINAL.has(job.status) && typeof p.layer === "number" && p.layers) parts.push("layer " + (p.layer + 1) + " of " + p.layers);
    if (typeof p.eta_seconds === "number" && !TERMINAL.has(job.status)) parts.push("ETA " + fmtSeconds(p.eta_seconds));
    if (job.status === "succeeded" && job.started_at && job.finished_at)
      parts.push("took " + fmtSeconds((Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000));
    return parts.join(" · ") || (job.status === "queued" ? "waiting" : "");
  }
  function progressBar(job, label) {
    const bar = h("progress", { max: "1", "aria-label": label });
    updateProgressBar(bar, job);
    return bar;
  }
  function updateProgressBar(bar, job) {
    const p = job.progress || {};
    let f = typeof p.fraction === "number" ? p.fraction : null;
    if (job.status === "succeeded") f = 1;
    if (f === null) bar.removeAttribute("value");
    else if (bar.getAttribute("value") !== String(f)) bar.value = Math.min(1, Math.max(0, f));
  }
  function badge(status) {
    return h("span", { class: "badge badge-" + (status || "unknown") }, status || "unknown");
  }

  /* ---------- alerts ---------- */

  const alertBox = document.getElementById("alert");
  /* fromPoll: the alert came from background polling and goes away by
   * itself once a poll succeeds; others stay until the view changes. */
  function showAlert(text, fromPoll) {
    alertBox.textContent = text;
    alertBox.dataset.poll = fromPoll ? "1" : "0";
    alertBox.hidden = false;
  }
  function clearAlert() {
    alertBox.hidden = true;
    alertBox.textContent = "";
  }

  /* ---------- the API ---------- */

  class ApiError extends Error {
    constructor(status, problem, fallback) {
      const p = problem && typeof problem === "object" ? problem : null;
      super((p && (p.detail || p.title)) || fallback || "HTTP " + status);
      this.status = status;
      this.problem = p;
    }
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  function authHeaders() {
    const t = token();
    return t ? { Authorization: "Bearer " + t } : {};
  }

  /* One request; resolves to the parsed JSON body (null for 204), rejects
   * with ApiError carrying the problem+json body. A 401 also prompts for a
   * token. */
  async function api(method, path, body, extraHeaders) {
    const headers = Object.assign({ Accept: "application/json" }, authHeaders(), extraHeaders || {});
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, null, "cannot reach the server (" + e.message + ")");
    }
    if (res.status === 204) return null;
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!res.ok) {
      if (res.status === 401) needToken();
      throw new ApiError(res.status, data, res.status + " " + res.statusText);
    }
    return data;
  }

  /* ---------- token ---------- */

  const tokenForm = document.getElementById("token-form");
  const tokenInput = document.getElementById("token");
  const tokenState = document.getElementById("token-state");
  function showTokenState() {
    tokenState.textContent = token() ? "token set for this tab" : "no token";
  }
  let tokenPrompted = false;
  /* Asks for a token once per failed token (not on every poll). */
  function needToken() {
    showAlert(token() ? "The server refused the API token: enter a valid one above."
      : "This server needs an API token: enter it above (it is kept for this browser tab only).", true);
    tokenInput.setAttribute("aria-invalid", "true");
    if (!tokenPrompted) tokenInput.focus();
    tokenPrompted = true;
  }
  tokenForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = tokenInput.value.trim();
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: nothing to keep */ }
    tokenInput.value = "";
    tokenPrompted = false;
    tokenInput.removeAttribute("aria-invalid");
    clearAlert();
    showTokenState();
    route();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
    showTokenState();
    route();
  });

  /* ---------- polling with backoff ---------- */

  /* Calls fn() now and again after the delay it returns (ms). While the tab
   * is hidden the delay doubles each time up to POLL_MAX_MS; after a failed
   * call too. Becoming visible polls at once. */
  class Poller {
    constructor(fn) {
      this.fn = fn;
      this.timer = null;
      this.stopped = false;
      this.errorDelay = 0;   /* grows while calls fail */
      this.hiddenDelay = 0;  /* grows while the tab stays hidden */
      this.running = false;
      this.again = false;    /* now() was called while a call was in flight */
      this.onVisible = () => { if (!document.hidden) this.now(); };
      document.addEventListener("visibilitychange", this.onVisible);
    }
    async tick() {
      this.timer = null;
      if (this.stopped) return;
      if (this.running) { this.again = true; return; }
      this.running = true;
      let delay;
      try {
        delay = await this.fn();
        this.errorDelay = 0;
      } catch (e) {
        this.errorDelay = Math.min(POLL_MAX_MS, Math.max(2000, this.errorDelay * 2));
        delay = this.errorDelay;
        if (!(e instanceof ApiError && e.status === 401)) showAlert(e.message, true);
      }
      this.running = false;
      if (this.stopped) return;
      if (this.again) { this.again = false; delay = 0; }
      if (delay === null) return;
      if (document.hidden) {
        this.hiddenDelay = Math.min(POLL_MAX_MS, Math.max(delay * 2, this.hiddenDelay * 2));
        delay = this.hiddenDelay;
      } else {
        this.hiddenDelay = 0;
      }
      this.timer = setTimeout(() => this.tick(), delay);
    }
    now() {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.hiddenDelay = 0;
      this.tick();
    }
    stop() {
      this.stopped = true;
      if (this.timer) clearTimeout(this.timer);
      document.removeEventListener("visibilitychange", this.onVisible);
    }
  }

  /* ---------- views ---------- */

  const main = document.getElementById("main");
  let current = null; /* the view on screen: {stop()} */

  function route() {
    if (current) current.stop();
    current = null;
    clearAlert();
    main.replaceChildren();
    const m = location.hash.match(/^#\/jobs\/([^/?#]+)$/);
    current = m ? jobView(decodeURIComponent(m[1])) : listView();
  }
  window.addEventListener("hashchange", () => { route(); main.focus(); });

  /* ----- the job list and the submit form ----- */

  function listView() {
    const filter = h("select", { id: "status-filter" },
      h("option", { value: "" }, "all jobs"),
      h("option", { value: ACTIVE_FILTER }, "queued or running"),
      h("option", { value: "succeeded" }, "succeeded"),
      h("option", { value: "failed" }, "failed"),
      h("option", { value: "cancelled" }, "cancelled"));
    const tbody = h("tbody");
    const empty = h("p", { class: "muted", hidden: true }, "No jobs yet.");
    const more = h("button", { type: "button", hidden: true }, "Load older jobs");
    const table = h("table", { class: "jobs", id: "jobs-table" },
      h("caption", { class: "visually-hidden" }, "Jobs, newest first"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Job"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col" }, "Stage"), h("th", { scope: "col" }, "Progress"),
        h("th", { scope: "col" }, "Created"), h("th", { scope: "col" }, "Actions"))),
      tbody);
    const rows = new Map();   /* id → {tr, job, ...cells} */
    let older = [];           /* jobs from "Load older" pages */
    let next = null;

    const listSection = h("section", { "aria-labelledby": "jobs-h" },
      h("div", { class: "row" },
        h("h2", { id: "jobs-h" }, "Jobs"),
        h("label", { for: "status-filter" }, "Show "), filter),
      table, empty, more);
    main.append(listSection, submitForm(() => poller.now()));

    function rowFor(job) {
      let r = rows.get(job.id);
      if (!r) {
        r = { tr: h("tr", { "data-job-id": job.id }) };
        r.link = h("a", { href: "#/jobs/" + encodeURIComponent(job.id) }, h("code", {}, job.id));
        r.status = h("td", {});
        r.stage = h("td", {});
        r.bar = progressBar(job, "Progress of job " + job.id);
        r.ptext = h("span", { class: "muted small" });
        r.created = h("td", {}, timeEl(job.created_at));
        r.actions = h("td", {});
        append(r.tr, [h("td", {}, r.link), r.status, r.stage, h("td", { class: "progress" }, r.bar, " ", r.ptext), r.created, r.actions]);
        rows.set(job.id, r);
      }
      if (!r.job || r.job.status !== job.status) {
        r.status.replaceChildren(badge(job.status));
        r.actions.replaceChildren(TERMINAL.has(job.status) || job.status === "cancelling" ? "" :
          h("button", { type: "button", class: "danger", "aria-label": "Cancel job " + job.id,
            onclick: (ev) => cancelJob(job.id, ev.currentTarget).then(() => poller.now()) }, "Cancel"));
      }
      setText(r.stage, job.stage || "—");
      updateProgressBar(r.bar, job);
      setText(r.ptext, progressText(job));
      r.job = job;
      return r;
    }

    async function load() {
      const q = new URLSearchParams({ limit: "50" });
      if (filter.value) q.set("status", filter.value);
      const page = await api("GET", "/v1/jobs?" + q);
      const items = Array.isArray(page.items) ? page.items : [];
      if (!older.length) next = page.next || null;
      const seen = new Set();
      const want = [];
      for (const j of items.concat(older)) {
        if (seen.has(j.id)) continue;
        seen.add(j.id);
        want.push(rowFor(j).tr);
      }
      for (const id of Array.from(rows.keys())) if (!seen.has(id)) rows.delete(id);
      const same = want.length === tbody.children.length && want.every((tr, i) => tbody.children[i] === tr);
      if (!same) tbody.replaceChildren(...want);
      empty.hidden = want.length > 0;
      table.hidden = want.length === 0;
      more.hidden = !next;
      clearAlertIfStale();
      const moving = want.some((tr) => { const j = rows.get(tr.dataset.jobId).job; return !TERMINAL.has(j.status); });
      return moving ? POLL_ACTIVE_MS : POLL_IDLE_MS;
    }
    more.addEventListener("click", async () => {
      if (!next) return;
      const q = new URLSearchParams({ limit: "50", after: next });
      if (filter.value) q.set("status", filter.value);
      try {
        const page = await api("GET", "/v1/jobs?" + q);
        older = older.concat(page.items || []);
        next = page.next || null;
        poller.now();
      } catch (e) { showAlert(e.message); }
    });
    filter.addEventListener("change", () => { older = []; next = null; poller.now(); });

    const poller = new Poller(load);
    poller.now();
    return poller;
  }

  /* Hides an alert left by an earlier failed poll once polling works. */
  function clearAlertIfStale() {
    if (!alertBox.hidden && alertBox.dataset.poll === "1") clearAlert();
  }

  async function cancelJob(id, button) {
    if (button) button.disabled = true;
    try {
      await api("POST", "/v1/jobs/" + encodeURIComponent(id) + "/cancel");
      announce("Cancel requested for job " + id + ".");
    } catch (e) {
      showAlert("Cancel failed: " + e.message);
      if (button) button.disabled = false;
    }
  }

  const live = h("div", { class: "visually-hidden", "aria-live": "polite", id: "announce" });
  document.body.append(live);
  function announce(text) { live.textContent = text; }

  /* ----- the submit form ----- */

  function newIdempotencyKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function submitForm(onCreated) {
    const area = h("textarea", { id: "spec", name: "spec", rows: "12", spellcheck: "false",
      "aria-describedby": "spec-help spec-result" });
    area.value = JSON.stringify(EXAMPLE_SPEC, null, 2);
    const result = h("div", { id: "spec-result", class: "spec-result", "aria-live": "polite" });
    const validateBtn = h("button", { type: "button" }, "Validate");
    const submitBtn = h("button", { type: "submit", class: "primary" }, "Submit job");
    const form = h("form", { id: "submit-form", novalidate: true },
      h("label", { for: "spec" }, "Job spec (JSON)"),
      h("p", { id: "spec-help", class: "muted small" },
        "Keys: models (≥ 2, each {\"uri\"}), method (\"ot\" | \"average\"), ot {align, solver, reg, residual, qk, anchor, weights}, calibration {uri, samples, seed}, output {uri, dtype}, metadata. " +
        "Submit validates first with POST /v1/jobs:validate."),
      area, h("div", { class: "row" }, validateBtn, submitBtn), result);
    const section = h("section", { "aria-labelledby": "new-h" }, h("h2", { id: "new-h" }, "New job"), form);

    function parseSpec() {
      try {
        return { spec: JSON.parse(area.value) };
      } catch (e) {
        return { error: "The spec is not valid JSON: " + e.message };
      }
    }
    function showErrors(title, problem, list) {
      area.setAttribute("aria-invalid", "true");
      const items = [];
      if (problem && Array.isArray(problem.errors) && problem.errors.length) {
        for (const e of problem.errors)
          items.push(h("li", {}, e.pointer ? h("code", {}, e.pointer) : null, e.pointer ? ": " : "", e.detail || ""));
      } else if (problem && (problem.pointer || problem.detail)) {
        items.push(h("li", {}, problem.pointer ? h("code", {}, problem.pointer) : null, problem.pointer ? ": " : "",
          problem.detail || problem.title || ""));
      }
      for (const t of list || []) items.push(h("li", {}, t));
      result.replaceChildren(h("div", { class: "invalid", role: "alert" },
        h("strong", {}, title), items.length ? h("ul", { class: "errors" }, items) : null));
    }
    function showValid(v) {
      area.removeAttribute("aria-invalid");
      const models = Array.isArray(v.models) ? v.models : [];
      const est = v.estimate || {};
      const warn = Array.isArray(v.warnings) ? v.warnings : [];
      result.replaceChildren(h("div", { class: "valid" },
        h("strong", {}, "Spec is valid."), " ",
        models.length + " models, " + fmtNum(v.parameters) + " parameters; estimated " +
          fmtSeconds(est.seconds) + ", peak memory " + fmtBytes(est.peak_bytes) + ".",
        models.length ? h("table", { class: "compact" },
          h("caption", { class: "visually-hidden" }, "Models in the spec"),
          h("thead", {}, h("tr", {}, ["URI", "Architecture", "Hidden", "Layers", "Parameters"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, models.map((m) => h("tr", {},
            h("td", {}, h("code", {}, m.uri || "")), h("td", {}, m.architecture || "—"),
            h("td", {}, fmtNum(m.hidden_size)), h("td", {}, fmtNum(m.layers)), h("td", {}, fmtNum(m.parameters)))))) : null,
        warn.length ? h("ul", { class: "warnings", "aria-label": "Warnings" },
          warn.map((w) => h("li", {}, typeof w === "string" ? w : (w.detail || JSON.stringify(w))))) : null));
    }

    /* Validates; returns the parsed spec when valid, null otherwise. */
    async function validate() {
      const p = parseSpec();
      if (p.error) { showErrors("Not submitted.", null, [p.error]); return null; }
      result.replaceChildren(h("p", { class: "muted" }, "Validating…"));
      try {
        const v = await api("POST", "/v1/jobs:validate", p.spec);
        if (v && v.valid === false) { showErrors("The spec is not valid.", v, []); return null; }
        showValid(v || {});
        return p.spec;
      } catch (e) {
        showErrors(e.status ? "The spec is not valid (HTTP " + e.status + ")." : "Validation failed.",
          e.problem, e.problem ? [] : [e.message]);
        return null;
      }
    }
    validateBtn.addEventListener("click", () => { validate(); });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      submitBtn.disabled = true;
      try {
        const spec = await validate();
        if (!spec) { area.focus(); return; }
        const job = await api("POST", "/v1/jobs", spec, { "Idempotency-Key": newIdempotencyKey() });
        const link = h("a", { href: "#/jobs/" + encodeURIComponent(job.id) }, "open job " + job.id);
        result.append(h("p", { class: "created", role: "status" }, "Job ", h("code", {}, job.id), " created (" + job.status + "): ", link));
        onCreated(job);
      } catch (e) {
        showErrors("Submit failed" + (e.status ? " (HTTP " + e.status + ")" : "") + ".", e.problem, e.problem ? [] : [e.message]);
      } finally {
        submitBtn.disabled = false;
      }
    });
    return section;
  }

  /* ----- one job ----- */

  function jobView(id) {
    const base = "/v1/jobs/" + encodeURIComponent(id);
    const heading = h("h2", { id: "job-h" }, "Job ", h("code", {}, id));
    const statusCell = h("span", {});
    const stageCell = h("span", {});
    const bar = h("progress", { max: "1", "aria-label": "Progress of job " + id });
    const ptext = h("span", { class: "muted" });
    const actions = h("div", { class: "row" });
    const errorBox = h("div", {});
    const timeline = h("ol", { class: "timeline", "aria-label": "Status changes" });
    const chartBox = h("div", { class: "chart", id: "chart" }, h("p", { class: "muted" }, "No transport maps yet."));
    const chartNote = h("p", { class: "muted small" });
    const artifactsBox = h("div", {}, h("p", { class: "muted" }, "No artifacts yet."));
    const eventsBody = h("tbody");
    const eventsTable = h("table", { class: "compact events", id: "events-table" },
      h("caption", { class: "visually-hidden" }, "Events, newest first"),
      h("thead", {}, h("tr", {}, ["#", "Time", "Type", "Detail"].map((t) => h("th", { scope: "col" }, t)))),
      eventsBody);
    const details = h("div", {});

    main.append(
      h("nav", { "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "← All jobs")),
      h("section", { "aria-labelledby": "job-h" },
        heading,
        h("p", { class: "summary" }, "Status ", statusCell, " · stage ", stageCell),
        h("p", { class: "progress" }, bar, " ", ptext),
        actions, errorBox),
      h("section", { "aria-labelledby": "chart-h" },
        h("h3", { id: "chart-h" }, "Alignment cost and map sharpness per layer"), chartNote, chartBox),
      h("section", { "aria-labelledby": "art-h" }, h("h3", { id: "art-h" }, "Artifacts"), artifactsBox),
      h("div", { class: "cols" },
        h("section", { "aria-labelledby": "tl-h" }, h("h3", { id: "tl-h" }, "Timeline"), timeline),
        h("section", { "aria-labelledby": "det-h" }, h("h3", { id: "det-h" }, "Details"), details)),
      h("section", { "aria-labelledby": "ev-h" }, h("h3", { id: "ev-h" }, "Events"), eventsTable));

    let job = null;
    let after = null;
    const liveMaps = [];
    let reportLoaded = false;
    let mapsChanged = false;
    let artifactsLoaded = false;
    let lastStatus = null;
    let renderedAt = null;

    function renderJob() {
      document.title = "Job " + id + " · otfused";
      statusCell.replaceChildren(badge(job.status));
      setText(stageCell, job.stage || "—");
      updateProgressBar(bar, job);
      setText(ptext, progressText(job));
      if (lastStatus !== job.status) {
        if (lastStatus !== null) announce("Job " + id + " is now " + job.status + ".");
        const btns = [];
        if (!TERMINAL.has(job.status) && job.status !== "cancelling")
          btns.push(h("button", { type: "button", class: "danger", id: "cancel-job",
            onclick: (ev) => cancelJob(id, ev.currentTarget).then(() => poller.now()) }, "Cancel job"));
        if (TERMINAL.has(job.status))
          btns.push(h("button", { type: "button", id: "delete-job", onclick: deleteJob }, "Delete job"));
        actions.replaceChildren(...btns);
        lastStatus = job.status;
      }
      /* The rest only changes with updated_at; redrawing it every poll would
       * lose scroll positions and text selections. */
      if (renderedAt === job.updated_at + job.status) return;
      renderedAt = job.updated_at + job.status;
      errorBox.replaceChildren();
      if (job.error) {
        const e = job.error;
        errorBox.append(h("div", { class: "invalid" }, h("strong", {}, e.title || "Failed"), ": ", e.detail || "",
          e.pointer ? h("span", {}, " (", h("code", {}, e.pointer), ")") : null));
      }
      const dl = h("dl", { class: "kv" });
      const kv = (k, v) => append(dl, [h("dt", {}, k), h("dd", {}, v)]);
      kv("Created", timeEl(job.created_at));
      kv("Started", timeEl(job.started_at));
      kv("Finished", timeEl(job.finished_at));
      kv("Updated", timeEl(job.updated_at));
      kv("Attempt", String(job.attempt ?? "—"));
      const spec = h("pre", { class: "json" }, JSON.stringify(job.spec ?? {}, null, 2));
      const parts = [dl, h("h4", {}, "Spec"), spec];
      if (job.metadata && Object.keys(job.metadata).length)
        parts.push(h("h4", {}, "Metadata"), h("pre", { class: "json" }, JSON.stringify(job.metadata, null, 2)));
      if (job.summary)
        parts.push(h("h4", {}, "Summary"), h("pre", { class: "json" }, JSON.stringify(job.summary, null, 2)));
      details.replaceChildren(...parts);
    }

    async function deleteJob(ev) {
      if (!window.confirm("Delete job " + id + " and its artifacts?")) return;
      ev.currentTarget.disabled = true;
      try {
        await api("DELETE", base);
        location.hash = "#/";
      } catch (e) {
        showAlert("Delete failed: " + e.message);
        ev.currentTarget.disabled = false;
      }
    }

    function eventDetail(ev) {
      const d = ev.data || {};
      if (ev.type === "state") return d.status + (d.stage ? " · " + d.stage : "");
      if (ev.type === "map")
        return "layer " + d.layer + " " + d.space + " (" + (d.tensor || "") + "): cost " + fmtNum(d.cost) +
          ", sharpness " + fmtNum(d.sharpness) + ", " + (d.method || "") + ", " + fmtSeconds(d.seconds);
      if (typeof d.message === "string") return d.message;
      if (typeof d.detail === "string") return d.detail;
      return JSON.stringify(d);
    }

    async function loadEvents() {
      for (let pages = 0; pages < 20; pages++) {
        const q = new URLSearchParams({ limit: String(EVENTS_PAGE) });
        if (after !== null) q.set("after", String(after));
        const page = await api("GET", base + "/events?" + q);
        const items = Array.isArray(page.items) ? page.items : [];
        if (items.some((ev) => ev.type === "map")) mapsChanged = true;
        for (const ev of items) {
          eventsBody.prepend(h("tr", { "data-type": ev.type },
            h("td", {}, String(ev.seq)), h("td", {}, timeEl(ev.time)),
            h("td", {}, ev.type), h("td", {}, eventDetail(ev))));
          if (ev.type === "state") {
            const d = ev.data || {};
            timeline.append(h("li", {}, timeEl(ev.time), " ", badge(d.status), d.stage ? " " + d.stage : ""));
          } else if (ev.type === "map" && ev.data) {
            liveMaps.push(ev.data);
          }
        }
        if (page.next_after !== undefined && page.next_after !== null) after = page.next_after;
        else if (items.length) after = items[items.length - 1].seq;
        if (items.length < EVENTS_PAGE) break;
      }
      if (!reportLoaded && liveMaps.length && mapsChanged) {
        mapsChanged = false;
        drawChart(chartBox, liveMaps);
        setText(chartNote, "Live, from the job's map events (" + liveMaps.length + " maps).");
      }
    }

    async function loadArtifacts() {
      const list = await api("GET", base + "/artifacts");
      const items = Array.isArray(list.items) ? list.items : [];
      artifactsLoaded = true;
      if (!items.length) { artifactsBox.replaceChildren(h("p", { class: "muted" }, "No artifacts.")); return items; }
      artifactsBox.replaceChildren(h("table", { class: "compact", id: "artifacts-table" },
        h("caption", { class: "visually-hidden" }, "Artifacts of job " + id),
        h("thead", {}, h("tr", {}, ["Name", "Size", "SHA-256", "Download"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, items.map((a) => h("tr", { "data-artifact": a.name },
          h("td", {}, h("code", {}, a.name)),
          h("td", { title: a.size + " bytes" }, fmtBytes(a.size)),
          h("td", {}, h("code", { class: "hash" }, a.sha256 || "—")),
          h("td", {}, downloadLink(a, base)))))));
      return items;
    }

    async function loadReport(items) {
      const rep = items.find((a) => a.name === "fusion_report.json");
      if (!rep) return;
      const href = rep.href || base + "/artifacts/fusion_report.json";
      const res = await fetch(href, { headers: authHeaders(), cache: "no-store" });
      if (!res.ok) throw new ApiError(res.status, null, "fusion_report.json: HTTP " + res.status);
      const report = await res.json();
      const maps = Array.isArray(report.maps) ? report.maps : [];
      reportLoaded = true;
      if (maps.length) {
        drawChart(chartBox, maps);
        setText(chartNote, "From fusion_report.json (" + maps.length + " maps" +
          (typeof report.seconds === "number" ? ", fusion took " + fmtSeconds(report.seconds) : "") + ").");
      } else {
        chartBox.replaceChildren(h("p", { class: "muted" }, "The report holds no transport maps (plain averaging)."));
        setText(chartNote, "");
      }
    }

    async function load() {
      try {
        job = await api("GET", base);
      } catch (e) {
        if (e.status === 404) {
          main.replaceChildren(h("p", {}, "No job " + id + ". ", h("a", { href: "#/" }, "Back to all jobs")));
          return null;
        }
        throw e;
      }
      renderJob();
      await loadEvents();
      if (TERMINAL.has(job.status) && !artifactsLoaded) {
        const items = await loadArtifacts();
        if (job.status === "succeeded") await loadReport(items);
      }
      clearAlertIfStale();
      return TERMINAL.has(job.status) ? null : POLL_ACTIVE_MS;
    }

    const poller = new Poller(load);
    poller.now();
    return poller;
  }

  /* A download link for an artifact. Without a token the browser follows
   * the href; with one, the click fetches the file with the Authorization
   * header and saves it from a blob (a plain link cannot send the header). */
  function downloadLink(a, base) {
    const href = a.href || base + "/artifacts/" + encodeURIComponent(a.name);
    return h("a", { href, download: a.name, "aria-label": "Download " + a.name,
      onclick: async (ev) => {
        if (!token()) return;
        ev.preventDefault();
        try {
          const res = await fetch(href, { headers: authHeaders() });
          if (!res.ok) throw new Error("HTTP " + res.status);
          const url = URL.createObjectURL(await res.blob());
          const tmp = h("a", { href: url, download: a.name, hidden: true });
          document.body.append(tmp);
          tmp.click();
          tmp.remove();
          setTimeout(() => URL.revokeObjectURL(url), 60000);
        } catch (e) {
          showAlert("Download of " + a.name + " failed: " + e.message);
        }
      } }, "Download");
  }

  /* ---------- the chart ---------- */

  /* Series by map space; colours keep ≥ 3:1 contrast on white and each has
   * its own marker shape, so the chart does not rely on colour alone. */
  const SERIES = [
    { key: "resid", label: "residual", color: "#1f5fa8", marker: "circle" },
    { key: "q", label: "query", color: "#b3261e", marker: "square" },
    { key: "k", label: "key", color: "#6a3d9a", marker: "triangle" },
    { key: "v", label: "value", color: "#1b7a3a", marker: "diamond" },
    { key: "ffn", label: "FFN", color: "#a64b00", marker: "cross" },
  ];
  function seriesFor(space) {
    return SERIES.find((x) => x.key === space) ||
      { key: space, label: String(space), color: "#4a4a4a", marker: "circle" };
  }

  /* Averages maps by (space, layer): several tensors (and several parents)
   * share one space in one layer. Layer -1 (embeddings) is drawn as "emb". */
  function aggregate(maps, field) {
    const by = new Map();
    for (const m of maps) {
      const v = m[field];
      if (typeof v !== "number" || !isFinite(v)) continue;
      const layer = typeof m.layer === "number" ? m.layer : -1;
      const key = String(m.space) + "\u0000" + layer;
      const e = by.get(key) || { space: String(m.space), layer, sum: 0, n: 0 };
      e.sum += v; e.n++;
      by.set(key, e);
    }
    const series = new Map();
    for (const e of by.values()) {
      if (!series.has(e.space)) series.set(e.space, []);
      series.get(e.space).push({ layer: e.layer, value: e.sum / e.n, n: e.n });
    }
    for (const pts of series.values()) pts.sort((a, b) => a.layer - b.layer);
    return series;
  }

  function marker(kind, x, y, color) {
    const r = 4;
    if (kind === "square") return s("rect", { x: x - r, y: y - r, width: 2 * r, height: 2 * r, fill: color });
    if (kind === "triangle") return s("path", { d: `M${x} ${y - r - 1}L${x + r + 1} ${y + r}L${x - r - 1} ${y + r}Z`, fill: color });
    if (kind === "diamond") return s("path", { d: `M${x} ${y - r - 1}L${x + r + 1} ${y}L${x} ${y + r + 1}L${x - r - 1} ${y}Z`, fill: color });
    if (kind === "cross") return s("path", { d: `M${x - r} ${y - r}L${x + r} ${y + r}M${x + r} ${y - r}L${x - r} ${y + r}`, stroke: color, "stroke-width": 2.5 });
    return s("circle", { cx: x, cy: y, r, fill: color });
  }

  /* One panel: x = layer, y = field, a line and markers per space. */
  function panel(maps, field, title, layers, spaces) {
    const W = 520, H = 230, L = 56, R = 12, T = 24, B = 34;
    const data = aggregate(maps, field);
    let lo = Infinity, hi = -Infinity;
    for (const pts of data.values()) for (const p of pts) { lo = Math.min(lo, p.value); hi = Math.max(hi, p.value); }
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (lo > 0 && lo / (hi || 1) > 0.5) lo = Math.min(lo, hi * 0.5);
    lo = Math.min(lo, 0);
    if (hi === lo) hi = lo + 1;
    hi += (hi - lo) * 0.05;
    const xOf = (layer) => {
      const i = layers.indexOf(layer);
      return L + (layers.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (layers.length - 1));
    };
    const yOf = (v) => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "panel", "data-field": field,
      "aria-label": title + " per layer for " + spaces.join(", ") + " maps; the table below has the values" });
    svg.append(s("title", { text: title }));
    svg.append(s("text", { x: L, y: 15, class: "ptitle", text: title }));
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4, y = yOf(v);
      svg.append(s("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
      svg.append(s("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "tick", text: fmtNum(v) }));
    }
    const step = Math.max(1, Math.ceil(layers.length / 12));
    layers.forEach((layer, i) => {
      if (i % step) return;
      svg.append(s("text", { x: xOf(layer), y: H - B + 16, "text-anchor": "middle", class: "tick",
        text: layer < 0 ? "emb" : String(layer) }));
    });
    svg.append(s("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "axis", text: "layer" }));
    svg.append(s("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axisline" }));
    svg.append(s("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axisline" }));
    for (const space of spaces) {
      const pts = data.get(space);
      if (!pts) continue;
      const ser = seriesFor(space);
      const g = s("g", { "data-series": space });
      if (pts.length > 1)
        g.append(s("polyline", { points: pts.map((p) => xOf(p.layer) + "," + yOf(p.value)).join(" "),
          fill: "none", stroke: ser.color, "stroke-width": 1.5 }));
      for (const p of pts) {
        const mk = marker(ser.marker, xOf(p.layer), yOf(p.value), ser.color);
        mk.setAttribute("class", "point");
        mk.append(s("title", { text: `${ser.label}, layer ${p.layer < 0 ? "emb" : p.layer}: ${fmtNum(p.value)}` +
          (p.n > 1 ? ` (mean of ${p.n} maps)` : "") }));
        g.append(mk);
      }
      svg.append(g);
    }
    return svg;
  }

  function drawChart(box, maps) {
    const layers = Array.from(new Set(maps.map((m) => (typeof m.layer === "number" ? m.layer : -1)))).sort((a, b) => a - b);
    const order = SERIES.map((x) => x.key);
    const spaces = Array.from(new Set(maps.map((m) => String(m.space))))
      .sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
    const legend = h("ul", { class: "legend", "aria-label": "Series" }, spaces.map((sp) => {
      const ser = seriesFor(sp);
      const icon = s("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true" }, marker(ser.marker, 7, 7, ser.color));
      return h("li", {}, icon, " " + ser.label);
    }));
    const rows = maps.map((m) => h("tr", {},
      h("td", {}, m.layer < 0 ? "emb" : String(m.layer)), h("td", {}, String(m.space)),
      h("td", {}, h("code", {}, m.tensor || "")), h("td", {}, String(m.parent ?? "")),
      h("td", {}, Array.isArray(m.shape) ? m.shape.join("×") : ""), h("td", {}, m.method || ""),
      h("td", {}, fmtNum(m.cost)), h("td", {}, fmtNum(m.sharpness)),
      h("td", {}, fmtNum(m.marginal_error)), h("td", {}, fmtSeconds(m.seconds))));
    const table = h("details", {}, h("summary", {}, "Values (" + maps.length + " maps)"),
      h("table", { class: "compact" },
        h("caption", { class: "visually-hidden" }, "Every transport map"),
        h("thead", {}, h("tr", {}, ["Layer", "Space", "Tensor", "Parent", "Shape", "Method", "Cost", "Sharpness", "Marginal error", "Time"]
          .map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows)));
    box.replaceChildren(legend,
      h("div", { class: "panels" },
        panel(maps, "cost", "Alignment cost", layers, spaces),
        panel(maps, "sharpness", "Map sharpness", layers, spaces)),
      table);
  }

  /* ---------- start ---------- */

  async function version() {
    try {
      const v = await api("GET", "/v1/version");
      if (v && v.version) document.getElementById("server-version").textContent = "v" + v.version;
    } catch (e) { /* shown elsewhere when it matters */ }
  }
  showTokenState();
  route();
  version();
})();
