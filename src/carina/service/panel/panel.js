// Carina's control panel: cluster cards over the service's /panel/api, refreshed every few seconds.
// No framework and no build step; every text goes in with textContent, never as HTML.
"use strict";

const TOKEN = "carina.token";
const ACCOUNT = "carina.account";
const POLL_MS = 2500;
let form = null;      // the create form's choices (GET /panel/api/form)
let loginNeeded = false;
let timer = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers["X-Auth-Token"] = token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch("/panel/api/" + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit",
  });
  if (answer.status === 401 && loginNeeded && path !== "login") {
    logout("Your session ended: log in again.");
    throw new Error("unauthenticated");
  }
  return answer;
}

async function problemsOf(answer) {
  try {
    const data = await answer.json();
    return data.problems || [data.message || answer.statusText];
  } catch (_) {
    return [`${answer.status} ${answer.statusText}`];
  }
}

function showProblems(list, problems) {
  list.replaceChildren(...problems.map((p) => el("li", { text: p })));
}

// -- views ---------------------------------------------------------------------------------------
function show(view) {
  $("login-view").hidden = view !== "login";
  $("clusters-view").hidden = view !== "clusters";
  const account = sessionStorage.getItem(ACCOUNT);
  $("account").hidden = !(loginNeeded && account && view === "clusters");
  $("account-name").textContent = account || "";
}

function logout(message) {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(ACCOUNT);
  clearInterval(timer);
  timer = null;
  show("login");
  showProblems($("login-problems"), message ? [message] : []);
}

async function start() {
  const session = await (await fetch("/panel/api/session", { credentials: "omit" })).json();
  loginNeeded = session.login;
  if (loginNeeded && !sessionStorage.getItem(TOKEN)) {
    show("login");
    return;
  }
  await enter();
}

async function enter() {
  show("clusters");
  const answer = await api("GET", "form");
  if (answer.ok) {
    form = await answer.json();
    buildForm();
  }
  await refresh();
  clearInterval(timer);
  timer = setInterval(refresh, POLL_MS);
}

// -- cards ---------------------------------------------------------------------------------------
function badgeClass(status) {
  if (status.endsWith("_FAILED")) return "failed";
  if (status.endsWith("_IN_PROGRESS")) return "busy";
  if (status.endsWith("_COMPLETE")) return "ok";
  return "";
}

function card(cluster) {
  const words = (form && form.coes.find((c) => c.name === cluster.coe) || {}).words || {};
  const bar = el("span", { class: "segments", title: `${cluster.segments} nodes` });
  for (let i = 0; i < cluster.segments; i += 1) bar.append(el("i", { class: i < cluster.masters ? "master" : "" }));
  const count = (n, role) => `${n} ${(words[role] || [role, `${role}s`])[n === 1 ? 0 : 1]}`;
  bar.append(el("small", { text: `${count(cluster.masters, "master")} · ${count(cluster.nodes, "worker")}` }));
  const status = el("span", { class: `badge ${badgeClass(cluster.status)}`, text: cluster.status });
  const facts = el("dl", {},
    el("dt", { text: "Segments" }), el("dd", {}, bar),
    el("dt", { text: "Autoscale" }), el("dd", { text: cluster.autoscale ? "ON" : "OFF" }),
    el("dt", { text: "Status" }), el("dd", { class: "status" }, status));
  if (cluster.health_status) facts.append(el("dt", { text: "Health" }), el("dd", { text: cluster.health_status }));
  const node = el("article", { class: "card cluster", "data-cluster": cluster.name, "data-status": cluster.status },
    el("div", { class: "type", text: cluster.type }), el("h2", { text: cluster.name }), facts);
  if (cluster.status_reason && !cluster.status.endsWith("_COMPLETE")) {
    node.append(el("p", { class: "reason", text: cluster.status_reason }));
  }
  const access = el("button", { type: "button", class: "primary access", text: "Get Access" });
  access.disabled = !cluster.bundle;
  access.addEventListener("click", () => getAccess(cluster, access));
  const remove = el("button", { type: "button", class: "delete", text: "Delete" });
  remove.disabled = cluster.status === "DELETE_IN_PROGRESS";  // a create or update under way is stopped first
  remove.addEventListener("click", () => confirmDelete(cluster));
  node.append(el("div", { class: "actions" }, remove, access));
  return node;
}

async function refresh() {
  let answer;
  try {
    answer = await api("GET", "clusters");
  } catch (_) {
    return;
  }
  if (!answer.ok) {
    notice((await problemsOf(answer)).join("; "));
    return;
  }
  notice("");
  const { clusters } = await answer.json();
  clusters.sort((a, b) => a.name.localeCompare(b.name));
  $("cards").replaceChildren(...clusters.map(card), $("add-cluster"));
}

function notice(text) {
  $("notice").hidden = !text;
  $("notice").textContent = text;
}

async function getAccess(cluster, button) {
  button.disabled = true;
  try {
    const answer = await api("GET", `clusters/${encodeURIComponent(cluster.uuid)}/bundle`);
    if (!answer.ok) {
      notice((await problemsOf(answer)).join("; "));
      return;
    }
    const url = URL.createObjectURL(await answer.blob());
    const link = el("a", { href: url, download: `${cluster.name}.zip` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } finally {
    button.disabled = false;
  }
}

// -- delete --------------------------------------------------------------------------------------
let deleting = null;

function confirmDelete(cluster) {
  deleting = cluster;
  $("confirm-name").textContent = cluster.name;
  $("confirm-form").typed.value = "";
  $("confirm-delete").disabled = true;
  showProblems($("confirm-problems"), []);
  $("confirm").showModal();
}

async function doDelete(event) {
  event.preventDefault();
  if (!deleting || $("confirm-form").typed.value !== deleting.name) return;
  const answer = await api("DELETE", `clusters/${encodeURIComponent(deleting.uuid)}`);
  if (!answer.ok) {
    showProblems($("confirm-problems"), await problemsOf(answer));
    return;
  }
  $("confirm").close();
  deleting = null;
  await refresh();
}

// -- create --------------------------------------------------------------------------------------
function buildForm() {
  const select = $("coe");
  select.replaceChildren(...form.coes.map((c) => el("option", { value: c.name, text: c.title })));
  const chosen = form.coes.find((c) => c.default) || form.coes[0];
  if (chosen) select.value = chosen.name;
  $("name-rule").textContent = `Name: ${form.name_rule}.`;
  $("openstack").hidden = form.provider.name !== "openstack";
  for (const [key, value] of Object.entries(form.provider.defaults || {})) {
    const input = $("create-form").elements.namedItem(key);
    if (input && input.type !== "checkbox") input.placeholder = value;
  }
  coeChanged();
}

function coeChanged() {
  const coe = form.coes.find((c) => c.name === $("coe").value);
  if (!coe) return;
  const f = $("create-form");
  $("masters-word").textContent = capital(coe.words.master[1]);
  $("workers-word").textContent = capital(coe.words.worker[1]);
  for (const [input, rule] of [[f.masters, coe.masters], [f.nodes, coe.workers]]) {
    input.min = rule.min ?? 0;
    if (rule.max !== undefined) input.max = rule.max;
    input.step = rule.odd ? 2 : 1;
    input.value = rule.default ?? input.min;
  }
  const options = Object.entries(coe.options).map(([name, rule]) => {
    const input = el("input", { name: `option:${name}`, "data-type": rule.type, placeholder: String(rule.default ?? "") });
    return el("label", { title: rule.description }, `${name} (${rule.type})`, input);
  });
  $("options").replaceChildren(...options);
  $("options-box").hidden = options.length === 0;
}

function capital(word) {
  return word ? word[0].toUpperCase() + word.slice(1) : word;
}

function openCreate() {
  const f = $("create-form");
  f.name.value = "";
  for (const input of f.querySelectorAll("input")) input.removeAttribute("aria-invalid");
  showProblems($("create-problems"), []);
  $("create-submit").disabled = false;
  $("create").showModal();
  f.name.focus();
}

async function submitCreate(event) {
  event.preventDefault();
  const f = $("create-form");
  const body = { name: f.name.value.trim(), coe: f.coe.value };
  for (const key of ["masters", "nodes"]) {
    if (f[key].value !== "") body[key] = Number(f[key].value);
  }
  const options = {};
  for (const input of f.querySelectorAll("input[name^='option:']")) {
    if (input.value !== "") options[input.name.slice(7)] = input.value;
  }
  if (Object.keys(options).length) body.options = options;
  if (form.provider.name === "openstack") {
    const openstack = {};
    for (const key of ["image", "flavor", "master_flavor", "server_type"]) {
      if (f[key].value) openstack[key] = f[key].value;
    }
    if (f.floating_ip_enabled.checked) openstack.floating_ip_enabled = true;
    body.openstack = openstack;
  }
  $("create-submit").disabled = true;
  try {
    const answer = await api("POST", "clusters", body);
    if (!answer.ok) {
      const problems = await problemsOf(answer);
      showProblems($("create-problems"), problems);
      markFields(f, problems);
      return;
    }
    $("create").close();
    await refresh();
  } finally {
    $("create-submit").disabled = false;
  }
}

// A problem names its field first ("name 'X': ...", "masters 2: ..."): that field is marked.
function markFields(f, problems) {
  for (const input of f.querySelectorAll("input")) input.removeAttribute("aria-invalid");
  for (const problem of problems) {
    const words = problem.split(/[\s:=]/);
    const field = words[0] === "option" ? `option:${words[1]}` : words[0];
    const input = f.elements.namedItem(field);
    if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
  }
}

// -- login ---------------------------------------------------------------------------------------
async function submitLogin(event) {
  event.preventDefault();
  const f = $("login");
  const body = { username: f.username.value, password: f.password.value, project: f.project.value,
    domain: f.domain.value };
  const answer = await api("POST", "login", body);
  if (!answer.ok) {
    showProblems($("login-problems"), await problemsOf(answer));
    return;
  }
  const session = await answer.json();
  f.password.value = "";
  sessionStorage.setItem(TOKEN, session.token);
  sessionStorage.setItem(ACCOUNT, `${session.user} @ ${session.project}`);
  showProblems($("login-problems"), []);
  await enter();
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", submitLogin);
  $("logout").addEventListener("click", () => logout(""));
  $("add-cluster").addEventListener("click", openCreate);
  $("coe").addEventListener("change", coeChanged);
  $("create-form").addEventListener("submit", submitCreate);
  $("create-cancel").addEventListener("click", () => $("create").close());
  $("confirm-form").addEventListener("submit", doDelete);
  $("confirm-form").typed.addEventListener("input", (e) => {
    $("confirm-delete").disabled = !deleting || e.target.value !== deleting.name;
  });
  $("confirm-cancel").addEventListener("click", () => $("confirm").close());
  $("help-open").addEventListener("click", () => $("help").showModal());
  $("help-close").addEventListener("click", () => $("help").close());
  start().catch((error) => notice(String(error)));
});
