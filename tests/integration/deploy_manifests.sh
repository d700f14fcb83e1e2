#!/bin/sh
# deploy/ and docker/ agree with each other and with the real otfused:
#  - every manifest (kustomization resources and the Secret template) parses
#    with a strict YAML-subset reader (node, no npm package; anything outside
#    the subset is an error, not a guess) and has the fields Kubernetes needs;
#  - Deployment: probes on /livez, /readyz (+ startup), named port = the port
#    of OTFUSED_LISTEN, non-root, read-only root fs with a writable /tmp,
#    resources, terminationGracePeriodSeconds = OTFUSED_GRACE_SECONDS + 5..60,
#    envFrom/volumes/Service selector all pointing at objects that exist;
#  - every environment name in the ConfigMap, Secret, Dockerfile and systemd
#    unit is one `otfused --help` lists (AWS_* also accepted when storage/
#    reads it); ConfigMap/Secret values are strings;
#  - the real otfused, configured only through those environment variables,
#    listens where OTFUSED_LISTEN says, uses OTFUSED_DATA_DIR, answers the
#    probe paths with 200 without a token while /v1/jobs needs one, 404s an
#    unknown path, and exits cleanly on SIGTERM.
. tests/cli/lib.sh
OTFUSED=${OTFUSED:-build/otfused}
command -v node >/dev/null 2>&1 || { echo "deploy_manifests: node is required"; exit 1; }

if "$OTFUSED" --help >"$T/help.txt" 2>&1; then ok; else bad "otfused --help failed"; cat "$T/help.txt"; fi

# ---- static checks (node) ------------------------------------------------
HELP="$T/help.txt" node - >"$T/static.out" 2>&1 <<'EOF'
"use strict";
const fs = require("fs");
const help = fs.readFileSync(process.env.HELP, "utf8");
let pass = 0, fails = 0;
const ok = () => pass++;
const bad = (m) => { fails++; console.log("FAIL: " + m); };
const check = (c, m) => (c ? ok() : bad(m));

/* A strict reader for the YAML the manifests use: block maps and sequences,
 * plain/single/double-quoted scalars, flow [] and {} of scalars, comments,
 * "---". Anchors, tags, block scalars, complex keys and tabs are errors. */
function parseYaml(text, file) {
  const docs = [[]];
  text.split("\n").forEach((raw, i) => {
    if (/^---\s*$/.test(raw)) docs.push([]);
    else docs[docs.length - 1].push({ raw, no: i + 1 });
  });
  return docs.map((d) => parseDoc(d, file)).filter((d) => d !== undefined);
}
function stripComment(s) {
  let q = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (q) { if (c === q && !(q === '"' && s[i - 1] === "\\")) q = null; continue; }
    if (c === '"' || c === "'") { if (i === 0 || /[\s:\-[{,]/.test(s[i - 1])) q = c; continue; }
    if (c === "#" && (i === 0 || /\s/.test(s[i - 1]))) return s.slice(0, i);
  }
  if (q) throw new Error("unterminated quote");
  return s;
}
function parseDoc(raw, file) {
  const lines = [];
  for (const { raw: r, no } of raw) {
    const where = file + ":" + no;
    let s;
    try { s = stripComment(r).replace(/\s+$/, ""); } catch (e) { throw new Error(where + ": " + e.message); }
    if (s.trim() === "") continue;
    const lead = s.match(/^[ \t]*/)[0];
    if (lead.includes("\t")) throw new Error(where + ": tab in indentation");
    lines.push({ ind: lead.length, text: s.trim(), where });
  }
  if (!lines.length) return undefined;
  let pos = 0;
  const fail = (m) => { throw new Error((lines[Math.min(pos, lines.length - 1)].where) + ": " + m); };
  const isSeq = (t) => t === "-" || t.startsWith("- ");
  const keyRe = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'\-?:,[\]{}#&*!|>%@`][^:]*?|-[^\s:][^:]*?)\s*:(?:\s+(.*))?$/;
  function splitKey(t) {
    const m = t.match(keyRe);
    if (!m) return null;
    let k = m[1];
    if (k[0] === '"') k = JSON.parse(k);
    else if (k[0] === "'") k = k.slice(1, -1).replace(/''/g, "'");
    return { key: k, value: m[2] === undefined ? "" : m[2] };
  }
  function flow(v) {
    let i = 0;
    const ws = () => { while (v[i] === " ") i++; };
    function item() {
      ws();
      if (v[i] === "[") {
        i++; const out = []; ws();
        if (v[i] === "]") { i++; return out; }
        for (;;) { out.push(item()); ws(); if (v[i] === ",") { i++; continue; } if (v[i] === "]") { i++; return out; } fail("bad flow sequence: " + v); }
      }
      if (v[i] === "{") {
        i++; const out = {}; ws();
        if (v[i] === "}") { i++; return out; }
        for (;;) {
          const k = atom(":"); if (v[i] !== ":") fail("bad flow map: " + v); i++;
          out[k] = item(); ws();
          if (v[i] === ",") { i++; continue; } if (v[i] === "}") { i++; return out; } fail("bad flow map: " + v);
        }
      }
      return scalar(atom(",]}"), true);
    }
    function atom(stops) {
      ws();
      if (v[i] === '"' || v[i] === "'") {
        const q = v[i]; let j = i + 1;
        while (j < v.length && !(v[j] === q && v[j - 1] !== "\\")) j++;
        const tok = v.slice(i, j + 1); i = j + 1; return stops === ":" ? scalar(tok) : tok;
      }
      let j = i; while (j < v.length && !stops.includes(v[j])) j++;
      const tok = v.slice(i, j).trim(); i = j; return tok;
    }
    const out = item(); ws();
    if (i !== v.length) fail("trailing text after flow value: " + v);
    return out;
  }
  function scalar(v, raw) {
    if (v === "") return raw ? "" : null;
    if (v[0] === '"') { if (!/^"(?:[^"\\]|\\.)*"$/.test(v)) fail("bad double-quoted scalar: " + v); return JSON.parse(v); }
    if (v[0] === "'") { if (!/^'(?:[^']|'')*'$/.test(v)) fail("bad single-quoted scalar: " + v); return v.slice(1, -1).replace(/''/g, "'"); }
    if (!raw && (v[0] === "[" || v[0] === "{")) return flow(v);
    if (/^[|>&*!%@`?]/.test(v)) fail("unsupported YAML: " + v);
    if (/^(null|~|Null|NULL)$/.test(v)) return null;
    if (/^(true|True|TRUE)$/.test(v)) return true;
    if (/^(false|False|FALSE)$/.test(v)) return false;
    if (/^[-+]?\d+$/.test(v)) return parseInt(v, 10);
    if (/^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(v)) return parseFloat(v);
    if (/: |\s#/.test(v)) fail("ambiguous plain scalar: " + v);
    return v;
  }
  function block(ind) { return isSeq(lines[pos].text) ? seq(ind) : map(ind); }
  function nested(ind, sameIndentSeqOk) {
    if (pos < lines.length && (lines[pos].ind > ind || (sameIndentSeqOk && lines[pos].ind === ind && isSeq(lines[pos].text))))
      return block(lines[pos].ind);
    return null;
  }
  function seq(ind) {
    const out = [];
    while (pos < lines.length && lines[pos].ind === ind && isSeq(lines[pos].text)) {
      const l = lines[pos];
      const rest = l.text === "-" ? "" : l.text.slice(1).replace(/^ +/, "");
      const col = ind + (l.text.length - rest.length);
      if (rest === "") { pos++; out.push(nested(ind, false)); }
      else if (isSeq(rest) || splitKey(rest)) { lines[pos] = { ind: col, text: rest, where: l.where }; out.push(block(col)); }
      else { pos++; out.push(scalar(rest)); }
    }
    if (pos < lines.length && lines[pos].ind > ind) fail("bad indentation");
    return out;
  }
  function map(ind) {
    const out = {};
    while (pos < lines.length && lines[pos].ind === ind && !isSeq(lines[pos].text)) {
      const kv = splitKey(lines[pos].text);
      if (!kv) fail('expected "key: value", got: ' + lines[pos].text);
      if (Object.prototype.hasOwnProperty.call(out, kv.key)) fail("duplicate key " + kv.key);
      pos++;
      out[kv.key] = kv.value === "" ? nested(ind, true) : scalar(kv.value);
    }
    if (pos < lines.length && lines[pos].ind > ind) fail("bad indentation");
    return out;
  }
  const doc = block(lines[0].ind);
  if (pos !== lines.length) fail("unexpected text");
  return doc;
}

/* The reader itself must reject what it does not understand. */
for (const [src, what] of [["a: |\n  x\n", "block scalar"], ["a: &x 1\n", "anchor"], ["a: 1\na: 2\n", "duplicate key"],
  ["a:\n\tb: 1\n", "tab"], ["a: 1\n   b: 2\n", "bad indentation"], ["a: \"x\n", "unterminated quote"], ["- a\nb: 1\n", "mixed"]]) {
  let threw = false;
  try { parseYaml(src, "selftest"); } catch (e) { threw = true; }
  check(threw, "YAML reader accepted " + what);
}
{
  const d = parseYaml('a: 1\nb: "x: y" # c\nc:\n- k: v\n  n: [1, "two", {z: 3}]\n-   plain text\nd: {}\n', "selftest")[0];
  check(JSON.stringify(d) === JSON.stringify({ a: 1, b: "x: y", c: [{ k: "v", n: [1, "two", { z: 3 }] }, "plain text"], d: {} }),
    "YAML reader result: " + JSON.stringify(d));
}

const load = (f) => {
  try { return parseYaml(fs.readFileSync(f, "utf8"), f); }
  catch (e) { bad("parse " + f + ": " + e.message); return []; }
};
const kust = load("deploy/kustomization.yaml")[0] || {};
check(kust.kind === "Kustomization", "kustomization kind");
const objs = [];
for (const r of kust.resources || []) {
  if (!fs.existsSync("deploy/" + r)) { bad("kustomization resource missing: " + r); continue; }
  for (const d of load("deploy/" + r)) objs.push(Object.assign({ __file: r }, d));
}
const secretDocs = load("deploy/secret.example.yaml");
for (const o of objs.concat(secretDocs)) {
  check(typeof o.apiVersion === "string" && typeof o.kind === "string", (o.__file || "secret") + ": apiVersion/kind");
  check(o.metadata && typeof o.metadata.name === "string" && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(o.metadata.name),
    (o.__file || "secret") + ": metadata.name");
}
const one = (kind) => { const l = objs.filter((o) => o.kind === kind); check(l.length === 1, "exactly one " + kind + " (got " + l.length + ")"); return l[0] || {}; };
const dep = one("Deployment"), svc = one("Service"), cm = one("ConfigMap"), pvc = one("PersistentVolumeClaim");
const secret = secretDocs[0] || {};
check(secret.kind === "Secret", "secret.example.yaml is a Secret");
check(!objs.some((o) => o.kind === "Secret"), "the Secret template is not applied by kustomization (placeholders)");

/* Environment names against otfused --help (AWS_* also against storage/). */
let storageSrc = "";
for (const f of fs.existsSync("storage") ? fs.readdirSync("storage") : [])
  if (f.endsWith(".c")) storageSrc += fs.readFileSync("storage/" + f, "utf8");
function knownEnv(name, where) {
  const inHelp = new RegExp("\\b" + name + "\\b").test(help);
  const inStorage = name.startsWith("AWS_") && storageSrc.includes('"' + name + '"');
  check(inHelp || inStorage, where + ": " + name + " is not an otfused setting (not in otfused --help" +
    (name.startsWith("AWS_") ? " nor read by storage/" : "") + ")");
}
const cmData = cm.data || {};
for (const [k, v] of Object.entries(cmData)) { knownEnv(k, "configmap"); check(typeof v === "string", "configmap " + k + " must be a string, got " + JSON.stringify(v)); }
const sData = secret.stringData || {};
for (const [k, v] of Object.entries(sData)) { knownEnv(k, "secret"); check(typeof v === "string", "secret " + k + " must be a string"); }
check("OTFUSED_TOKENS" in sData, "secret carries OTFUSED_TOKENS");
check("AWS_ACCESS_KEY_ID" in sData && "AWS_SECRET_ACCESS_KEY" in sData, "secret carries the S3 keys");
for (const k of ["OTFUSED_LISTEN", "OTFUSED_DATA_DIR", "OTFUSED_GRACE_SECONDS"]) check(k in cmData, "configmap sets " + k);
const listenPort = parseInt(String(cmData.OTFUSED_LISTEN || "").split(":").pop(), 10);
const grace = parseInt(cmData.OTFUSED_GRACE_SECONDS, 10);
check(listenPort > 0, "OTFUSED_LISTEN has a port");
check(grace > 0, "OTFUSED_GRACE_SECONDS is a number");

/* Deployment. */
const spec = (dep.spec || {}), pod = ((spec.template || {}).spec || {});
const podLabels = ((spec.template || {}).metadata || {}).labels || {};
const c = (pod.containers || [])[0] || {};
check((pod.containers || []).length === 1, "one container");
check(spec.replicas === 1, "replicas: 1 (one pod owns the SQLite data dir)");
check((spec.strategy || {}).type === "Recreate", "strategy Recreate (never two pods on one job store)");
const sel = (spec.selector || {}).matchLabels || {};
check(Object.keys(sel).length > 0 && Object.entries(sel).every(([k, v]) => podLabels[k] === v), "selector matches pod labels");
const tgp = pod.terminationGracePeriodSeconds;
check(Number.isInteger(tgp) && tgp >= grace + 5 && tgp <= grace + 60,
  "terminationGracePeriodSeconds " + tgp + " should be OTFUSED_GRACE_SECONDS (" + grace + ") + 5..60");
const ports = c.ports || [];
const http = ports.find((p) => p.name === "http");
check(http && http.containerPort === listenPort, "container port http = OTFUSED_LISTEN port " + listenPort);
function probe(name, path) {
  const p = c[name] || {};
  const g = p.httpGet || {};
  check(g.path === path, name + " path " + g.path + " (want " + path + ")");
  check(g.port === "http" || g.port === listenPort, name + " port " + g.port);
}
probe("livenessProbe", "/livez");
probe("readinessProbe", "/readyz");
probe("startupProbe", "/livez");
const psc = pod.securityContext || {}, csc = c.securityContext || {};
check(psc.runAsNonRoot === true, "pod runAsNonRoot");
check(Number.isInteger(psc.runAsUser) && psc.runAsUser > 0, "pod runAsUser non-zero");
check(csc.readOnlyRootFilesystem === true, "readOnlyRootFilesystem");
check(csc.allowPrivilegeEscalation === false, "allowPrivilegeEscalation false");
check(((csc.capabilities || {}).drop || []).includes("ALL"), "capabilities drop ALL");
const res = c.resources || {};
check(res.requests && res.requests.cpu && res.requests.memory && res.limits && res.limits.memory, "resources requests cpu/memory and memory limit");
const env = c.envFrom || [];
check(env.some((e) => e.configMapRef && e.configMapRef.name === cm.metadata.name), "envFrom the ConfigMap");
check(env.some((e) => e.secretRef && e.secretRef.name === (secret.metadata || {}).name), "envFrom the Secret");
for (const e of c.env || []) knownEnv(e.name, "deployment env");
const vols = pod.volumes || [], mounts = c.volumeMounts || [];
const dataVol = vols.find((v) => v.persistentVolumeClaim);
check(dataVol && dataVol.persistentVolumeClaim.claimName === pvc.metadata.name, "data volume is the PVC");
const dataMount = dataVol && mounts.find((m) => m.name === dataVol.name);
check(dataMount && dataMount.mountPath === cmData.OTFUSED_DATA_DIR, "PVC mounted at OTFUSED_DATA_DIR");
const tmpMount = mounts.find((m) => m.mountPath === "/tmp");
check(tmpMount && vols.some((v) => v.name === tmpMount.name && v.emptyDir !== undefined), "writable /tmp (emptyDir) beside the read-only root");
for (const m of mounts) check(vols.some((v) => v.name === m.name), "volumeMount " + m.name + " has a volume");
check(((pvc.spec || {}).accessModes || []).includes("ReadWriteOnce"), "PVC ReadWriteOnce");
/* otfused refuses a file root that does not exist: a root on the (fresh)
 * data volume must be made by an init container mounting that volume. */
const roots = String(cmData.OTFUSED_FILE_ROOTS || "").split(":").filter(Boolean);
for (const root of roots.filter((r) => r.startsWith(cmData.OTFUSED_DATA_DIR + "/"))) {
  const makers = (pod.initContainers || []).filter((ic) =>
    (ic.volumeMounts || []).some((m) => dataVol && m.name === dataVol.name && m.mountPath === cmData.OTFUSED_DATA_DIR) &&
    /mkdir -p/.test((ic.command || []).concat(ic.args || []).join(" ")) &&
    (ic.command || []).concat(ic.args || []).join(" ").split(/\s+/).includes(root));
  check(makers.length === 1, "an init container creates file root " + root + " on the data volume");
}
for (const ic of pod.initContainers || []) {
  const sc = ic.securityContext || {};
  check(sc.readOnlyRootFilesystem === true && sc.allowPrivilegeEscalation === false, "init container " + ic.name + " locked down");
  check(ic.image === c.image, "init container " + ic.name + " uses the otfused image");
}

/* Service. */
const ss = svc.spec || {};
check(Object.entries(ss.selector || {}).every(([k, v]) => podLabels[k] === v) && Object.keys(ss.selector || {}).length > 0, "Service selector matches pods");
for (const p of ss.ports || []) check(p.targetPort === "http" || p.targetPort === listenPort, "Service targetPort " + p.targetPort);

/* Dockerfile. */
const df = fs.readFileSync("docker/Dockerfile", "utf8").replace(/\\\n/g, " ");
const froms = df.match(/^FROM\s+\S+/gm) || [];
check(froms.length >= 2 && froms.every((f) => /debian:12-slim/.test(f)), "multi-stage on debian:12-slim");
const envLine = (df.match(/^ENV\s+(.*)$/m) || [])[1] || "";
const dEnv = {};
for (const m of envLine.matchAll(/(\w+)=(\S+)/g)) dEnv[m[1]] = m[2];
for (const k of Object.keys(dEnv)) knownEnv(k, "Dockerfile ENV");
check(dEnv.OTFUSED_DATA_DIR === cmData.OTFUSED_DATA_DIR, "Dockerfile data dir = ConfigMap data dir");
check(new RegExp("^VOLUME\\s+\\[\"" + dEnv.OTFUSED_DATA_DIR + "\"\\]", "m").test(df), "VOLUME is the data dir");
check(new RegExp("^EXPOSE\\s+" + String(dEnv.OTFUSED_LISTEN || "").split(":").pop() + "\\b", "m").test(df), "EXPOSE = listen port");
const user = (df.match(/^USER\s+(\d+)/m) || [])[1];
check(user && parseInt(user, 10) === psc.runAsUser, "Dockerfile USER " + user + " = runAsUser " + psc.runAsUser);
check(/^HEALTHCHECK .*healthcheck\.sh/m.test(df) && /\/livez/.test(fs.readFileSync("docker/healthcheck.sh", "utf8")), "HEALTHCHECK on /livez");
check(/docker\/install\.sh/.test(df), "Dockerfile runs docker/install.sh");
for (const root of String(dEnv.OTFUSED_FILE_ROOTS || "").split(":").filter(Boolean))
  check(new RegExp("install -d [^\\n]*" + root.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(\\s|$)", "m").test(df),
    "the image creates file root " + root);

/* systemd unit. */
const unit = fs.readFileSync("deploy/otfused.service", "utf8");
for (const m of unit.matchAll(/^Environment=(\w+)=/gm)) knownEnv(m[1], "otfused.service");
const stop = parseInt((unit.match(/^TimeoutStopSec=(\d+)/m) || [])[1], 10);
const ugrace = parseInt((unit.match(/^Environment=OTFUSED_GRACE_SECONDS=(\d+)/m) || [])[1], 10);
check(stop >= ugrace + 5, "TimeoutStopSec " + stop + " >= grace " + ugrace + " + 5");
check(/^ExecStart=\/usr\/local\/bin\/otfused\b/m.test(unit), "ExecStart is the installed otfused");
const stateDirs = ((unit.match(/^StateDirectory=(.*)$/m) || [])[1] || "").split(/\s+/).filter(Boolean).map((d) => "/var/lib/" + d);
const unitRoots = ((unit.match(/^Environment=OTFUSED_FILE_ROOTS=(.*)$/m) || [])[1] || "").split(":").filter(Boolean);
for (const root of unitRoots) check(stateDirs.includes(root), "systemd creates file root " + root + " (StateDirectory=)");

console.log("static: " + pass + " passed, " + fails + " failed");
console.log("PORT_PATHS " + ["/livez", "/readyz"].join(" "));
console.log("CM_ENV " + Object.keys(cmData).join(" "));
process.exit(fails ? 1 : 0);
EOF
rc=$?
sed -n '/^FAIL/p' "$T/static.out"
grep '^static:' "$T/static.out" || { cat "$T/static.out"; }
[ $rc -eq 0 ] && ok || bad "static manifest checks"

# kubectl, when present, must build the same kustomization.
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize deploy >"$T/k.yaml" 2>"$T/k.err"; then ok; else bad "kubectl kustomize deploy: $(cat "$T/k.err")"; fi
fi

# systemd, when present, must accept the unit (the binary is not installed
# here, so only that complaint is allowed).
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify deploy/otfused.service >"$T/sd.out" 2>&1
  if grep -v "/usr/local/bin/otfused is not executable" "$T/sd.out" | grep -q .; then
    bad "systemd-analyze verify deploy/otfused.service:"; sed 's/^/  /' "$T/sd.out"
  else ok; fi
fi

# ---- the real server, configured through the ConfigMap's names -----------
cm_val() { sed -n "s/^  $1: \"\(.*\)\"$/\1/p" deploy/configmap.yaml; }
grace=$(cm_val OTFUSED_GRACE_SECONDS)
workers=$(cm_val OTFUSED_WORKERS)
[ -n "$grace" ] && [ -n "$workers" ] && ok || bad "could not read grace/workers from configmap.yaml"
mkdir -p "$T/data" "$T/models"
started=0
for try in 1 2 3 4 5; do
  port=$((20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 40000))
  OTFUSED_LISTEN="127.0.0.1:$port" OTFUSED_DATA_DIR="$T/data" OTFUSED_FILE_ROOTS="$T/models" \
  OTFUSED_WORKERS="$workers" OTFUSED_GRACE_SECONDS="$grace" OTFUSED_TOKENS="tok-deploy-test" \
    "$OTFUSED" 2>"$T/server.log" &
  pid=$!
  i=0
  while [ $i -lt 100 ] && kill -0 $pid 2>/dev/null; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/livez")" = 200 ] && { started=1; break; }
    sleep 0.1; i=$((i + 1))
  done
  [ $started -eq 1 ] && break
  kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
done
if [ $started -eq 1 ]; then
  ok
  for p in /livez /readyz; do
    code=$(curl -s -o "$T/body" -w '%{http_code}' "http://127.0.0.1:$port$p")
    [ "$code" = 200 ] && ok || bad "GET $p without token: $code (probes send no token)"
  done
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer tok-deploy-test" \
    "http://127.0.0.1:$port/no-such-path-$$")
  [ "$code" = 404 ] && ok || bad "unknown path answered $code (want 404: probes must not hit a catch-all)"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/jobs")
  [ "$code" = 401 ] && ok || bad "GET /v1/jobs without token: $code (OTFUSED_TOKENS not honoured?)"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer tok-deploy-test" "http://127.0.0.1:$port/v1/jobs")
  [ "$code" = 200 ] && ok || bad "GET /v1/jobs with the token: $code"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")
  [ "$code" = 200 ] && ok || bad "GET / (dashboard) without token: $code"
  [ -n "$(ls -A "$T/data")" ] && ok || bad "nothing written to OTFUSED_DATA_DIR"
  kill -TERM $pid
  rc=0; wait $pid || rc=$?
  [ $rc -eq 0 ] && ok || { bad "otfused exited $rc on SIGTERM"; tail -n 5 "$T/server.log"; }
else
  bad "otfused configured by environment never answered /livez"; tail -n 20 "$T/server.log"
fi
finish deploy_manifests 12
