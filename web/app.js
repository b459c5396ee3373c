/* Bureau's dashboard: plain JavaScript over the JSON API (docs/http.md).
 * The session cookie authenticates; every request that changes anything
 * carries the session's CSRF token. Text from the ledger is only ever set
 * as text (never as HTML). */
'use strict';

const S = { csrf: null, mode: null, status: null, view: null, sel: 0, items: [], stream: null,
  refreshTimer: null, events: [] };

/* ---- helpers ---- */

function h(tag, props, ...kids) {
  const el = document.createElementNS(
    ['svg', 'rect', 'line', 'text', 'g', 'title', 'polyline'].includes(tag) ? 'http://www.w3.org/2000/svg'
      : 'http://www.w3.org/1999/xhtml', tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k === 'cls' ? 'class' : k, v === true ? '' : String(v));
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

const $ = (sel) => document.querySelector(sel);
const main = () => $('#main');
/* The page's content; null, undefined and false (a part left out) are skipped. */
const show = (...kids) => main().replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
const fmtUsd = (x) => '$' + (Number(x) || 0).toFixed((Number(x) || 0) < 1 ? 4 : 2);
const fmtTime = (t) => t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '';
const enc = encodeURIComponent;

function fmtValue(v) {
  if (v === null || v === undefined) return '';
  if (typeof v !== 'object') return String(v);
  if (Array.isArray(v)) return v.map(fmtValue).join(', ');
  return Object.entries(v).map(([k, x]) => `${k}: ${typeof x === 'object' ? JSON.stringify(x) : x}`).join(' · ');
}

function fmtAge(t) {
  if (!t) return '';
  const d = (Date.now() - Date.parse(t)) / 1000;
  if (d < 0) return 'in ' + fmtDur(-d);
  return fmtDur(d) + ' ago';
}
function fmtDur(s) {
  if (s < 60) return Math.round(s) + ' s';
  if (s < 3600) return Math.round(s / 60) + ' min';
  if (s < 86400) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') {
    headers['X-CSRF-Token'] = S.csrf || '';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(path, { method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  const ct = res.headers.get('Content-Type') || '';
  if (ct.includes('json')) data = await res.json();
  if (res.status === 401) { showLogin(); throw new ApiError(401, 'log in again'); }
  if (!res.ok) throw new ApiError(res.status, (data && (data.detail || data.error || data.title)) || res.statusText);
  return data;
}

function toast(msg, action) {
  const t = $('#toast');
  t.replaceChildren(h('span', { text: msg }), action || '');
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, action ? 12000 : 4000);
}

function fail(e) { toast('Failed: ' + e.message); }

function badge(s) { return h('span', { cls: 'badge ' + s, text: s }); }

function customerLink(subject, label) {
  if (!subject || !subject.startsWith('contact:')) return null;
  const id = subject.slice(8);
  return h('a', { href: '#/customers/' + enc(id), text: label || subject });
}

function eventLink(seq, label) {
  return h('a', { href: '#/events?seq=' + seq, text: label || ('event #' + seq) });
}

/* ---- session, mode, live updates ---- */

function showLogin() {
  $('#top').hidden = true;
  $('#main').hidden = true;
  $('#banner').hidden = true;
  $('#login').hidden = false;
  $('#login-error').hidden = !location.search.includes('login=failed');
  if (S.stream) { S.stream.close(); S.stream = null; }
  $('#token').focus();
}

async function start() {
  let sess;
  try {
    const res = await fetch('/v1/session', { credentials: 'same-origin' });
    if (res.status !== 200) { showLogin(); return; }
    sess = await res.json();
  } catch (e) { showLogin(); return; }
  S.csrf = sess.csrf;
  if (location.search) history.replaceState(null, '', '/' + location.hash);
  $('#login').hidden = true;
  $('#top').hidden = false;
  $('#main').hidden = false;
  $('#logout').addEventListener('click', logout);
  document.addEventListener('keydown', onKey);
  window.addEventListener('hashchange', route);
  await refreshStatus();
  openStream();
  route();
}

async function logout() {
  try {
    await fetch('/logout', { method: 'POST', credentials: 'same-origin',
      headers: { 'X-CSRF-Token': S.csrf || '' } });
  } catch (e) { /* the page reloads to the login form either way */ }
  location.href = '/';
}

async function refreshStatus() {
  try {
    S.status = await api('GET', '/v1/status');
  } catch (e) { return; }
  const mode = S.status.mode;
  S.mode = mode;
  $('#mode').textContent = mode;
  const b = $('#banner');
  b.hidden = false;
  b.className = 'banner' + (mode === 'production' ? ' production' : '');
  b.textContent = mode === 'sandbox'
    ? 'Sandbox: every effect is captured; nothing leaves.'
    : 'Production: approved effects are sent.';
  b.id = 'banner';
  b.setAttribute('data-mode', mode);
  if (S.view !== 'inbox') { // the inbox page counts its own cards
    const n = (S.status.approvals_pending || 0) + ((S.status.tasks || {}).inbox || 0) +
      ((S.status.effects || {}).uncertain || 0);
    $('#inbox-count').textContent = n ? String(n) : '';
  }
}

function openStream() {
  if (!window.EventSource) return;
  const es = new EventSource('/v1/stream');
  S.stream = es;
  es.onopen = () => $('#live').classList.add('on');
  es.onerror = () => $('#live').classList.remove('on');
  es.addEventListener('ledger', (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    onLedgerEvent(ev);
  });
}

/* A new event: the events page shows it at once; other pages refresh once
 * the burst is over. */
function onLedgerEvent(ev) {
  if (S.view === 'events') addLiveEvent(ev);
  const t = ev.type;
  const relevant = /^(task|step|approval|effect|operator|model|memory|content)\./.test(t);
  if (!relevant) return;
  clearTimeout(S.refreshTimer);
  S.refreshTimer = setTimeout(async () => {
    await refreshStatus();
    if (S.view === 'inbox' && !editing()) renderInbox(true);
    else if (S.view === 'tasks') renderTasks(true);
    else if (S.view === 'task') renderTask(S.param, true);
    else if (S.view === 'content') renderContent();
    else if (S.view === 'piece') renderPiece(S.param);
    else if (S.view === 'models' && /^(approval|model)\./.test(t)) renderModels(true);
  }, 300);
}

function editing() {
  const a = document.activeElement;
  return a && (a.tagName === 'INPUT' || a.tagName === 'TEXTAREA' || a.tagName === 'SELECT');
}

/* ---- routing ---- */

function route() {
  const hash = location.hash || '#/inbox';
  const [path, query] = hash.slice(1).split('?');
  const parts = path.split('/').filter(Boolean);
  const params = new URLSearchParams(query || '');
  for (const a of document.querySelectorAll('.top nav a')) {
    const on = a.dataset.nav === (parts[0] || 'inbox');
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (!$('#toast').querySelector('button')) $('#toast').hidden = true;
  S.param = parts[1] ? decodeURIComponent(parts[1]) : null;
  S.params = params;
  const views = {
    inbox: () => renderInbox(),
    tasks: () => (S.param ? renderTask(S.param) : renderTasks()),
    events: () => renderEvents(),
    customers: () => (S.param ? renderCustomer(S.param) : renderCustomers()),
    content: () => (S.param ? renderPiece(S.param) : renderContent()),
    spend: () => renderSpend(),
    models: () => renderModels(),
  };
  const v = views[parts[0]] ? parts[0] : 'inbox';
  S.view = v === 'tasks' && S.param ? 'task' : v === 'customers' && S.param ? 'customer'
    : v === 'content' && S.param ? 'piece' : v;
  show(h('p', { cls: 'muted', text: 'Loading…' }));
  views[v]().catch((e) => {
    if (e.status !== 401) show(h('p', { cls: 'error', role: 'alert', text: e.message }));
  });
}

/* ---- the inbox ---- */

function isEmail(item) {
  const p = item.preview;
  return p && typeof p === 'object' && (item.effect_kind === 'email.send' || ('to' in p && ('subject' in p || 'text' in p)));
}

function addrList(v) {
  if (!v) return '';
  if (Array.isArray(v)) return v.map(addrList).join(', ');
  if (typeof v === 'object') return v.name ? `${v.name} <${v.email}>` : (v.email || '');
  return String(v);
}

function emailView(p) {
  const row = (k, v) => v ? h('div', {}, h('span', { text: k }), h('span', { text: v })) : null;
  return h('div', { cls: 'email', 'aria-label': 'Outgoing email' },
    h('div', { cls: 'hdrs' },
      row('From', addrList(p.from)), row('To', addrList(p.to)), row('Cc', addrList(p.cc)),
      row('Bcc', addrList(p.bcc)), row('Reply-To', addrList(p.reply_to)),
      h('div', {}, h('span', { text: 'Subject' }), h('span', { cls: 'subject', text: p.subject || '(no subject)' }))),
    h('div', { cls: 'body', text: p.text || p.body || (p.html ? '[HTML only]' : '') }));
}

function emailEditor(p, id) {
  const field = (name, label, value) => h('div', {},
    h('label', { for: `${name}-${id}`, text: label }),
    h('input', { id: `${name}-${id}`, name, value: value || '', maxlength: 2000 }));
  return h('form', { cls: 'email editor', 'aria-label': 'Edit the draft', onsubmit: (e) => e.preventDefault() },
    h('div', { cls: 'hdrs' }, field('to', 'To', addrList(p.to)), field('subject', 'Subject', p.subject)),
    h('div', { cls: 'body' },
      h('label', { for: `text-${id}`, text: 'Text' }),
      h('textarea', { id: `text-${id}`, name: 'text', maxlength: 100000, rows: 10 }, p.text || '')));
}

function sourcesView(srcs) {
  if (!srcs || !srcs.length) return h('p', { cls: 'muted', text: 'No sources.' });
  return h('ul', { cls: 'sources', 'aria-label': 'Sources' }, srcs.map((s) => {
    const links = [];
    if (s.seq) links.push(eventLink(s.seq));
    const cl = customerLink(s.subject, 'customer');
    if (cl) links.push(' · ', cl);
    return h('li', { cls: 'source' },
      h('span', { cls: 'snippet', text: '“' + (s.snippet || s.text || s.value || s.key || '') + '”' }),
      ' ', h('span', { cls: 'muted' }, s.kind ? s.kind + ' · ' : '', links));
  }));
}

/* A goal's proposal: the goal, and the workflow it would start or the
 * graph it would run. */
function goalView(p) {
  const graph = p.kind === 'composed';
  const steps = (p.steps || []).map((s) => typeof s === 'string' ? s
    : `${s.id}: ${s.do}` + (s.needs && s.needs.length ? ` (after ${[].concat(s.needs).join(', ')})` : ''));
  return h('div', { cls: 'goal-view', 'aria-label': 'Proposal' },
    h('p', { cls: 'goal-text' }, h('b', { text: 'Goal: ' }), p.text || ''),
    h('p', {}, graph ? 'Run a new task graph ' : 'Start the workflow ', h('b', { cls: 'goal-workflow', text: p.workflow || '' }),
      p.trigger ? h('span', { cls: 'muted', text: ` (${p.trigger})` }) : null),
    p.description ? h('p', { cls: 'muted', text: p.description }) : null,
    p.warning ? h('p', { cls: 'error goal-warning', text: p.warning }) : null,
    h('ol', { cls: 'goal-steps', 'aria-label': 'Steps' }, steps.map((s) => h('li', { text: s }))),
    graph ? h('details', {}, h('summary', { text: 'The graph (JSON)' }), h('pre', { text: JSON.stringify(p.steps, null, 2) }))
      : h('details', {}, h('summary', { text: 'Its trigger data' }), h('pre', { text: JSON.stringify(p.input || {}, null, 2) })));
}

function payloadView(item, p) {
  if (item.effect_kind === 'goal') return goalView(p);
  return isEmail(item) ? emailView(p) : h('pre', { text: JSON.stringify(p, null, 2) });
}

function approvalCard(item, i) {
  const p = item.preview || {};
  const card = h('article', { cls: 'card approval', 'data-id': item.id, 'data-kind': 'approval', tabindex: -1,
    'data-goal': item.goal || null, 'aria-label': `Approval: ${item.workflow || ''} ${item.effect_kind || ''}` });
  const body = h('div', { cls: 'payload' }, payloadView(item, p));
  const conf = item.confidence === null || item.confidence === undefined ? 'unknown'
    : (item.confidence * 100).toFixed(0) + '%';
  const meta = h('div', { cls: 'meta' },
    h('span', {}, 'Confidence ', h('b', { cls: 'confidence', text: conf }),
      item.confidence_source ? ` (from ${item.confidence_source})` : ''),
    h('span', {}, 'Model ', h('b', { text: item.model || '—' })),
    h('span', {}, 'Cost ', h('b', { text: item.cost === null || item.cost === undefined ? '—' : fmtUsd(item.cost) })),
    item.deadline ? h('span', {}, 'Deadline ', h('b', { text: fmtTime(item.deadline) }), ` (${fmtAge(item.deadline)})`) : null,
    item.task ? h('span', {}, 'Task ', h('a', { href: '#/tasks/' + enc(item.task), text: item.task.slice(-8) }))
      : h('span', {}, 'Goal ', h('b', { text: (item.goal || '').slice(-8) }), ' (no task before you approve)'));
  const actions = h('div', { cls: 'actions' });
  const setActions = (...b) => actions.replaceChildren(...b);
  const decide = async (decision, extra) => {
    try {
      const res = await api('POST', `/v1/approvals/${enc(item.id)}/decision`, Object.assign({ decision }, extra || {}));
      card.remove();
      // a canary the decision settled (docs/models.md, "Quality") is news too
      const canary = ((res && res.canary) || []).map((c) => ` Canary ${c.candidate} on ${c.route} ${c.type === 'model.canary.promoted' ? 'promoted' : 'rolled back'}: ${c.reason}.`).join('');
      toast((decision === 'reject' ? 'Rejected.' : decision === 'edit' ? 'Edited and approved.' : 'Approved.') + canary,
        canary ? h('a', { href: '#/models', text: 'Models' }) : undefined);
      S.items = S.items.filter((x) => x.id !== item.id);
      select(Math.min(S.sel, S.items.length - 1));
      setTimeout(() => renderInbox(true), 200);
    } catch (e) { fail(e); }
  };
  const approveBtn = h('button', { cls: 'primary', type: 'button', 'data-action': 'approve', onclick: () => decide('approve') }, 'Approve ', h('kbd', { text: 'a' }));
  const editBtn = h('button', { type: 'button', 'data-action': 'edit', onclick: () => startEdit() }, 'Edit ', h('kbd', { text: 'e' }));
  const rejectBtn = h('button', { cls: 'danger', type: 'button', 'data-action': 'reject', onclick: () => startReject() }, 'Reject ', h('kbd', { text: 'r' }));
  const normal = () => { setActions(approveBtn, editBtn, rejectBtn); };
  function startEdit() {
    let form;
    if (isEmail(item)) form = emailEditor(p, item.id);
    else form = h('div', {}, h('label', { for: 'json-' + item.id, text: 'Payload (JSON)' }),
      h('textarea', { id: 'json-' + item.id, name: 'json', rows: 12 }, JSON.stringify(p, null, 2)));
    body.replaceChildren(form);
    const save = async () => {
      let payload;
      if (isEmail(item)) {
        payload = Object.assign({}, p, {
          to: form.querySelector('[name=to]').value.trim(),
          subject: form.querySelector('[name=subject]').value,
          text: form.querySelector('[name=text]').value,
        });
      } else {
        try { payload = JSON.parse(form.querySelector('textarea').value); } catch (e) { toast('The payload is not JSON: ' + e.message); return; }
      }
      await decide('edit', { payload });
    };
    setActions(h('button', { cls: 'primary', type: 'button', 'data-action': 'save', onclick: save }, 'Approve edited'),
      h('button', { type: 'button', onclick: () => { body.replaceChildren(payloadView(item, p)); normal(); } }, 'Cancel'));
    form.querySelector('input, textarea').focus();
  }
  function startReject() {
    const input = h('input', { id: 'reason-' + item.id, name: 'reason', maxlength: 2000, placeholder: 'Why?', required: true });
    const go = () => {
      if (!input.value.trim()) { input.focus(); toast('A rejection needs a reason.'); return; }
      decide('reject', { reason: input.value.trim() });
    };
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); go(); } if (e.key === 'Escape') normal(); });
    setActions(h('div', { cls: 'reject-box' },
      h('label', { for: 'reason-' + item.id, cls: 'sr', text: 'Reason' }), input,
      h('button', { cls: 'danger', type: 'button', 'data-action': 'confirm-reject', onclick: go }, 'Reject'),
      h('button', { type: 'button', onclick: normal }, 'Cancel')));
    input.focus();
  }
  card._approve = () => decide('approve');
  card._edit = startEdit;
  card._reject = startReject;
  normal();
  card.append(
    h('header', {}, badge(item.goal ? 'goal' : 'approval'), h('span', { cls: 'title', text: item.workflow || '' }),
      h('span', { cls: 'muted', text: (item.effect_kind || '') + (item.compensates ? ' (compensation)' : '') }),
      item.escalated ? badge('escalated') : null,
      h('span', { cls: 'muted', text: fmtAge(item.created_at) })),
    body, meta, ...(item.goal ? [] : [h('h3', { text: 'Sources' }), sourcesView(item.sources)]), actions);
  card.addEventListener('click', () => select(i, false));
  return card;
}

/* The goal box: a goal in words, planned by the server (the plan route)
 * into a proposal that lands in the inbox; and the latest goals. */
function goalBox() {
  const input = h('input', { id: 'goal-text', name: 'goal', maxlength: 2000, autocomplete: 'off',
    placeholder: 'e.g. send renewal reminders to customers whose retainer ends soon' });
  const btn = h('button', { id: 'goal-submit', cls: 'primary', type: 'submit' }, 'Plan');
  const out = h('p', { id: 'goal-result', cls: 'muted', role: 'status' });
  const form = h('form', { id: 'goal-form', cls: 'panel goal-box', 'aria-label': 'State a goal',
    onsubmit: async (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) { input.focus(); return; }
      btn.disabled = true;
      out.className = 'muted';
      out.textContent = 'Planning…';
      try {
        const g = await api('POST', '/v1/goals', { text });
        out.textContent = g.kind === 'composed' ? `Proposed a new task graph (${g.workflow}): approve it below.`
          : `Proposed: start ${g.workflow}. Approve it below.`;
        input.value = '';
        await renderInbox(true);
      } catch (x) {
        out.textContent = 'Not planned: ' + x.message;
        out.className = 'error';
      } finally { btn.disabled = false; }
    } },
    h('label', { for: 'goal-text', text: 'What do you want done?' }),
    h('div', { cls: 'row' }, input, btn), out);
  return form;
}

function goalsTable(goals) {
  if (!goals.length) return null;
  return h('div', { cls: 'table-wrap' }, h('table', { id: 'goals' },
    h('thead', {}, h('tr', {}, h('th', { text: 'Goal' }), h('th', { text: 'Status' }), h('th', { text: 'Plan' }), h('th', { text: 'Task' }))),
    h('tbody', {}, goals.map((g) => h('tr', { cls: 'goal', 'data-id': g.id, 'data-status': g.status },
      h('td', { cls: 'what', text: g.text }),
      h('td', {}, badge(g.status), g.error ? h('span', { cls: 'muted', text: ' ' + g.error.slice(0, 120) }) : null),
      h('td', { text: g.workflow || '—' }),
      h('td', {}, g.task ? h('a', { href: '#/tasks/' + enc(g.task), text: g.task_status || 'task' }) : '—'))))));
}

function failureCard(item, i) {
  const card = h('article', { cls: 'card failure', 'data-id': item.id, 'data-task': item.task, 'data-kind': 'failure', tabindex: -1,
    'aria-label': `Failure: ${item.workflow || ''} step ${item.step}` });
  const act = async (path, label) => {
    try {
      await api('POST', path);
      toast(label);
      card.remove();
      setTimeout(() => renderInbox(true), 200);
    } catch (e) { fail(e); }
  };
  const t = enc(item.task);
  const buttons = item.effect
    ? [h('button', { cls: 'primary', type: 'button', 'data-action': 'resend', onclick: () => act(`/v1/effects/${enc(item.effect)}/resend`, 'Resending.') }, 'Resend'),
      item.effect_status === 'uncertain' ? h('button', { type: 'button', 'data-action': 'sent', onclick: () => act(`/v1/effects/${enc(item.effect)}/sent`, 'Marked as sent.') }, 'It was sent') : null,
      h('button', { cls: 'danger', type: 'button', 'data-action': 'cancel', onclick: () => act(`/v1/effects/${enc(item.effect)}/cancel`, 'Canceled.') }, 'Cancel')]
    : [h('button', { cls: 'primary', type: 'button', 'data-action': 'retry', onclick: () => act(`/v1/tasks/${t}/retry`, 'Retrying the step.') }, 'Retry'),
      h('button', { type: 'button', 'data-action': 'skip', onclick: () => act(`/v1/tasks/${t}/skip`, 'Step skipped; the task goes on.') }, 'Skip step'),
      h('button', { cls: 'danger', type: 'button', 'data-action': 'cancel', onclick: () => act(`/v1/tasks/${t}/cancel`, 'Task canceled.') }, 'Cancel task')];
  card._approve = () => buttons[0].click();
  card.append(
    h('header', {}, badge('failure'), h('span', { cls: 'title', text: item.workflow || '' }),
      h('span', { cls: 'muted', text: 'step ' + item.step }), h('span', { cls: 'muted', text: fmtAge(item.created_at) })),
    h('p', { cls: 'error', text: item.error || 'failed' }),
    item.preview ? h('details', {}, h('summary', { text: item.effect ? 'Payload' : 'Inputs of the failed attempt' }),
      isEmail(item) ? emailView(item.preview) : h('pre', { text: JSON.stringify(item.preview, null, 2) })) : null,
    h('div', { cls: 'meta' }, h('span', {}, 'Task ', h('a', { href: '#/tasks/' + t, text: item.task.slice(-8) }))),
    h('div', { cls: 'actions' }, buttons));
  card.addEventListener('click', () => select(i, false));
  return card;
}

function effectRow(e) {
  const p = e.payload || {};
  const what = p.subject ? `“${p.subject}” to ${addrList(p.to)}` : (p.url || e.kind);
  const undo = e.status === 'held' ? h('button', { cls: 'danger', type: 'button', 'data-action': 'undo',
    onclick: async () => {
      try { await api('POST', `/v1/effects/${enc(e.id)}/cancel`, { reason: 'undone from the dashboard' }); toast('Undone: it will not be sent.'); renderInbox(true); } catch (x) { fail(x); }
    } }, 'Undo') : null;
  return h('tr', { cls: 'effect', 'data-status': e.status, 'data-id': e.id },
    h('td', {}, badge(e.status)), h('td', { text: e.kind }), h('td', { cls: 'what', text: what }),
    h('td', { cls: 'hide-sm', text: e.status === 'held' && e.hold_until ? 'undo until ' + fmtTime(e.hold_until) : fmtAge(e.updated_at) }),
    h('td', {}, h('a', { href: '#/tasks/' + enc(e.task), text: 'task' }), ' ', undo));
}

async function renderInbox(quiet) {
  const [inbox, effects, goals] = await Promise.all([api('GET', '/v1/inbox'), api('GET', '/v1/effects?limit=10'),
    api('GET', '/v1/goals?limit=5')]);
  if (S.view !== 'inbox') return;
  // the goal box keeps what is being typed across live refreshes
  const box = $('#goal-form') || goalBox();
  S.items = inbox.items;
  $('#inbox-count').textContent = inbox.items.length ? String(inbox.items.length) : '';
  // a long inbox shows its first cards; the rest on demand
  const shown = S.showAll ? inbox.items : inbox.items.slice(0, 50);
  const list = h('div', { id: 'inbox-list' }, shown.map((it, i) =>
    it.kind === 'approval' ? approvalCard(it, i) : failureCard(it, i)));
  if (shown.length < inbox.items.length)
    list.append(h('button', { type: 'button', cls: 'link', onclick: () => { S.showAll = true; renderInbox(); } },
      `Show all ${inbox.items.length}`));
  show(
    h('div', { cls: 'row' }, h('h1', { text: `Inbox (${inbox.items.length})` }),
      h('span', { cls: 'keys hide-sm' }, h('kbd', { text: 'j' }), '/', h('kbd', { text: 'k' }), ' move · ',
        h('kbd', { text: 'a' }), ' approve · ', h('kbd', { text: 'e' }), ' edit · ', h('kbd', { text: 'r' }), ' reject')),
    box, goalsTable(goals.items),
    inbox.items.length ? list : h('p', { cls: 'muted empty', text: 'Nothing waits for you.' }),
    h('h2', { text: 'Recent effects' }),
    effects.effects.length ? h('div', { cls: 'table-wrap' }, h('table', { id: 'effects' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Status' }), h('th', { text: 'Kind' }), h('th', { text: 'What' }),
        h('th', { cls: 'hide-sm', text: 'When' }), h('th', { text: '' }))),
      h('tbody', {}, effects.effects.map(effectRow)))) : h('p', { cls: 'muted', text: 'No effects yet.' }));
  select(Math.min(S.sel, inbox.items.length - 1), !quiet);
}

function select(i, focus) {
  const cards = [...document.querySelectorAll('#inbox-list .card')];
  if (!cards.length) return;
  S.sel = Math.max(0, Math.min(i, cards.length - 1));
  cards.forEach((c, k) => c.classList.toggle('selected', k === S.sel));
  if (focus !== false) {
    cards[S.sel].focus({ preventScroll: true });
    cards[S.sel].scrollIntoView({ block: 'nearest' });
  }
}

function onKey(e) {
  if (S.view !== 'inbox' || editing() || e.ctrlKey || e.metaKey || e.altKey) return;
  const cards = [...document.querySelectorAll('#inbox-list .card')];
  const card = cards[S.sel];
  if (e.key === 'j') select(S.sel + 1);
  else if (e.key === 'k') select(S.sel - 1);
  else if (e.key === 'a' && card && card._approve) card._approve();
  else if (e.key === 'e' && card && card._edit) card._edit();
  else if (e.key === 'r' && card && card._reject) card._reject();
  else return;
  e.preventDefault();
}

/* ---- tasks ---- */

const TASK_STATES = ['queued', 'running', 'inbox', 'succeeded', 'failed', 'canceled'];

async function renderTasks(quiet) {
  const state = S.params.get('status') || '';
  const [st, list] = await Promise.all([api('GET', '/v1/status'),
    api('GET', '/v1/tasks?limit=200' + (state ? '&status=' + enc(state) : ''))]);
  if (S.view !== 'tasks') return;
  const counts = st.tasks || {};
  const steps = st.steps || {};
  show(h('h1', { text: 'Tasks' }),
    h('nav', { cls: 'grid', 'aria-label': 'Queues by state' },
      h('a', { cls: 'stat' + (state ? '' : ' active'), href: '#/tasks' }, h('div', { cls: 'n', text: Object.values(counts).reduce((a, b) => a + b, 0) }), h('div', { cls: 'l', text: 'all' })),
      TASK_STATES.map((s) => h('a', { cls: 'stat' + (state === s ? ' active' : ''), href: '#/tasks?status=' + s, 'data-state': s },
        h('div', { cls: 'n', text: counts[s] || 0 }), h('div', { cls: 'l', text: s })))),
    h('p', { cls: 'muted' }, 'Steps of unfinished tasks: ', Object.entries(steps).map(([k, v]) => `${k} ${v}`).join(' · ') || 'none'),
    list.tasks.length ? h('div', { cls: 'table-wrap' }, h('table', { id: 'tasks' },
      h('thead', {}, h('tr', {}, ['Task', 'Workflow', 'Status', 'Created', 'Updated', 'Error'].map((x, i) => h('th', { cls: i > 3 ? 'hide-sm' : null, text: x })))),
      h('tbody', {}, list.tasks.map((t) => h('tr', { 'data-id': t.id },
        h('td', {}, h('a', { href: '#/tasks/' + enc(t.id), cls: 'mono', text: t.id })),
        h('td', { text: t.workflow }), h('td', {}, badge(t.status)),
        h('td', { text: fmtAge(t.created_at) }), h('td', { cls: 'hide-sm', text: fmtAge(t.updated_at) }),
        h('td', { cls: 'hide-sm error', text: t.error || '' })))))) : h('p', { cls: 'muted', text: 'No tasks.' }));
}

/* The steps as a graph: a column per depth (a step stands right of what
 * it needs), lines from each need, boxes coloured by state. */
function stepGraph(steps) {
  const byId = new Map(steps.map((x) => [x.id, x]));
  const depth = new Map();
  const d = (id, seen) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id) || !byId.has(id)) return 0;
    seen.add(id);
    const n = byId.get(id).needs || [];
    const v = n.length ? 1 + Math.max(...n.map((x) => d(x, seen))) : 0;
    depth.set(id, v);
    return v;
  };
  steps.forEach((x) => d(x.id, new Set()));
  const cols = [];
  for (const x of steps) (cols[depth.get(x.id)] = cols[depth.get(x.id)] || []).push(x);
  const BW = 150, BH = 40, GX = 50, GY = 14;
  const pos = new Map();
  cols.forEach((c, i) => c.forEach((x, j) => pos.set(x.id, { x: 6 + i * (BW + GX), y: 6 + j * (BH + GY) })));
  const W = 12 + cols.length * (BW + GX) - GX, H = 12 + Math.max(...cols.map((c) => c.length)) * (BH + GY) - GY;
  const colour = { succeeded: '#18794e', failed: '#b42318', waiting: '#9a6200', running: '#2453c7', ready: '#2453c7',
    skipped: '#8a93a3', canceled: '#8a93a3', pending: '#8a93a3' };
  const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Step graph', width: W, height: H, cls: 'graph' });
  for (const x of steps) for (const n of x.needs || []) {
    const a = pos.get(n), b = pos.get(x.id);
    if (a && b) svg.append(h('line', { x1: a.x + BW, y1: a.y + BH / 2, x2: b.x, y2: b.y + BH / 2, stroke: '#8a93a3', 'stroke-width': 1.5 }));
  }
  for (const x of steps) {
    const p = pos.get(x.id), c = colour[x.status] || '#5d6677';
    svg.append(h('g', { 'data-step': x.id },
      h('title', { text: `${x.id}: ${x.kind}, ${x.status}, ${x.attempts} attempt(s)` }),
      h('rect', { x: p.x, y: p.y, width: BW, height: BH, rx: 6, fill: '#fff', stroke: c, 'stroke-width': 2 }),
      h('text', { x: p.x + 8, y: p.y + 16, fill: '#1d2330', 'font-size': 12, 'font-weight': 600, text: x.id.length > 20 ? x.id.slice(0, 19) + '…' : x.id }),
      h('text', { x: p.x + 8, y: p.y + 32, fill: c, 'font-size': 11, text: `${x.status} · ${x.attempts}×` })));
  }
  return h('div', { cls: 'graph-wrap' }, svg);
}

function dur(a, b) {
  if (!a || !b) return '';
  const ms = Date.parse(b) - Date.parse(a);
  return ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s';
}

async function renderTask(id, quiet) {
  const [t, tr] = await Promise.all([api('GET', '/v1/tasks/' + enc(id)), api('GET', '/v1/tasks/' + enc(id) + '/trace')]);
  if (S.view !== 'task' || S.param !== id) return;
  const act = async (a) => { try { await api('POST', `/v1/tasks/${enc(id)}/${a}`); toast(`${a}: requested`); renderTask(id, true); } catch (e) { fail(e); } };
  const live = ['queued', 'running', 'inbox'].includes(t.status);
  show(
    h('p', {}, h('a', { href: '#/tasks', text: '← Tasks' })),
    h('h1', {}, `${t.workflow} `, badge(t.status)),
    h('div', { cls: 'meta' }, h('span', {}, 'Task ', h('b', { cls: 'mono', text: t.id })),
      h('span', {}, 'Trigger ', eventLink(t.trigger_seq)), h('span', { text: 'Created ' + fmtTime(t.created_at) }),
      t.finished_at ? h('span', { text: 'Finished ' + fmtTime(t.finished_at) }) : null),
    t.error ? h('p', { cls: 'error', text: t.error }) : null,
    live ? h('div', { cls: 'actions' },
      t.status === 'inbox' ? h('button', { type: 'button', cls: 'primary', 'data-action': 'retry', onclick: () => act('retry') }, 'Retry') : null,
      t.status === 'inbox' ? h('button', { type: 'button', 'data-action': 'skip', onclick: () => act('skip') }, 'Skip step') : null,
      h('button', { type: 'button', cls: 'danger', 'data-action': 'cancel', onclick: () => act('cancel') }, 'Cancel')) : null,
    h('h2', { text: 'Steps' }),
    (t.steps || []).length ? stepGraph(t.steps) : null,
    h('div', { cls: 'table-wrap' }, h('table', { id: 'steps' },
      h('thead', {}, h('tr', {}, ['Step', 'Kind', 'Needs', 'Status', 'Attempts', 'Started', 'Took', 'Error'].map((x) => h('th', { text: x })))),
      h('tbody', {}, (t.steps || []).map((s) => h('tr', { 'data-step': s.id },
        h('td', { cls: 'mono', text: s.id }), h('td', { text: s.kind }),
        h('td', { cls: 'mono', text: Array.isArray(s.needs) ? s.needs.join(', ') : (s.needs || '') }),
        h('td', {}, badge(s.status), s.wait ? h('span', { cls: 'muted', text: ' ' + (typeof s.wait === 'string' ? s.wait : (s.wait.kind || '')) }) : null),
        h('td', { text: s.attempts }), h('td', { text: fmtTime(s.started_at) }),
        h('td', { text: dur(s.started_at, s.finished_at) }), h('td', { cls: 'error', text: s.error || '' })))))),
    h('h2', { text: 'Trace' }),
    h('ol', { id: 'trace', cls: 'mono' }, (tr.events || []).map((e) => h('li', {},
      eventLink(e.seq, '#' + e.seq), ' ', h('b', { text: e.type }), ' ', h('span', { cls: 'muted', text: fmtTime(e.received_at) }))))
  );
}

/* ---- events ---- */

function eventRow(e, fresh) {
  return h('tr', { cls: fresh ? 'ev-new' : null, 'data-seq': e.seq },
    h('td', { cls: 'mono' }, h('a', { href: '#/events?seq=' + e.seq, text: e.seq })), h('td', { text: e.type }), h('td', { text: e.source }),
    h('td', {}, customerLink(e.subject) || h('span', { cls: 'muted', text: e.subject || '' })),
    h('td', { cls: 'hide-sm', text: fmtTime(e.received_at || e.at) }));
}

function matches(e) {
  const p = S.params;
  return (!p.get('type') || e.type === p.get('type')) && (!p.get('source') || e.source === p.get('source')) &&
    (!p.get('customer') || e.subject === 'contact:' + p.get('customer'));
}

function olderQuery(before) {
  const n = new URLSearchParams(S.params);
  n.set('before', before);
  return n.toString();
}

function addLiveEvent(ev) {
  const tb = $('#events tbody');
  if (!tb || S.params.get('seq') || S.params.get('before') || !matches(ev)) return;
  if (tb.querySelector(`tr[data-seq="${ev.seq}"]`)) return;
  tb.prepend(eventRow(ev, true));
  while (tb.children.length > 300) tb.lastChild.remove();
}

async function renderEvents() {
  const p = S.params;
  const seq = p.get('seq');
  const q = new URLSearchParams();
  for (const k of ['type', 'source']) if (p.get(k)) q.set(k, p.get(k));
  if (p.get('customer')) q.set('subject', 'contact:' + p.get('customer'));
  if (seq) { q.set('since', String(Math.max(0, Number(seq) - 1))); q.set('limit', '1'); }
  else {
    q.set('order', 'desc');
    q.set('limit', '200');
    if (p.get('before')) q.set('before', p.get('before'));
  }
  const [list, audit] = await Promise.all([api('GET', '/v1/events?' + q), api('GET', '/v1/audit').catch((e) => ({ error: e.message }))]);
  if (S.view !== 'events') return;
  const input = (name, label, ph) => h('div', {}, h('label', { for: 'f-' + name, text: label }),
    h('input', { id: 'f-' + name, name, value: p.get(name) || '', placeholder: ph, maxlength: 200 }));
  const form = h('form', { cls: 'filters', role: 'search', 'aria-label': 'Filter events', onsubmit: (e) => {
    e.preventDefault();
    const n = new URLSearchParams();
    for (const el of form.querySelectorAll('input')) if (el.value.trim()) n.set(el.name, el.value.trim());
    location.hash = '#/events' + (n.toString() ? '?' + n : '');
  } }, input('type', 'Type', 'email.received'), input('source', 'Source', 'imap'), input('customer', 'Customer id', 'contact id'),
  h('button', { type: 'submit', text: 'Filter' }));
  const chain = audit.error ? h('span', { cls: 'error', text: 'cannot verify: ' + audit.error })
    : audit.ok ? h('span', { cls: 'ok', id: 'chain', 'data-ok': 'true', text: `✔ hash chain verified: events 1 to ${audit.events}, checked ${fmtTime(audit.checked_at)}` })
      : h('span', { cls: 'error', id: 'chain', 'data-ok': 'false', text: `✘ the chain breaks at seq ${audit.bad_seq}: ${audit.detail}` });
  const evs = list.events; // newest first
  const detail = seq && evs[0] ? h('div', { cls: 'panel' }, h('h2', { text: `Event #${evs[0].seq}: ${evs[0].type}` }),
    h('pre', { id: 'event-data', text: JSON.stringify(evs[0], null, 2) })) : null;
  show(h('h1', { text: 'Events' }), h('p', {}, chain), form, detail,
    h('div', { cls: 'table-wrap' }, h('table', { id: 'events' },
      h('thead', {}, h('tr', {}, ['Seq', 'Type', 'Source', 'Customer', 'Received'].map((x, i) => h('th', { cls: i === 4 ? 'hide-sm' : null, text: x })))),
      h('tbody', {}, evs.map((e) => eventRow(e, false))))),
    list.next_cursor && !seq ? h('p', {}, h('a', { id: 'older', href: '#/events?' + olderQuery(list.next_cursor), text: 'Older events →' })) : null);
}

/* ---- customers ---- */

async function renderCustomers() {
  const q = S.params.get('q') || '';
  const list = await api('GET', '/v1/contacts?limit=100' + (q ? '&q=' + enc(q) : ''));
  if (S.view !== 'customers') return;
  const input = h('input', { id: 'q', name: 'q', type: 'search', value: q, placeholder: 'name, email, company', maxlength: 200 });
  show(h('h1', { text: 'Customers' }),
    h('form', { cls: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); location.hash = '#/customers' + (input.value.trim() ? '?q=' + enc(input.value.trim()) : ''); } },
      h('div', {}, h('label', { for: 'q', text: 'Search' }), input), h('button', { type: 'submit', text: 'Search' })),
    list.contacts.length ? h('div', { cls: 'table-wrap' }, h('table', { id: 'contacts' },
      h('thead', {}, h('tr', {}, ['Name', 'Email', 'Company', 'Events'].map((x) => h('th', { text: x })))),
      h('tbody', {}, list.contacts.map((c) => h('tr', { 'data-id': c.id },
        h('td', {}, h('a', { href: '#/customers/' + enc(c.id), text: c.name || c.email || c.id })),
        h('td', { text: c.email || '' }), h('td', { text: (c.org && (c.org.name || c.org.domain)) || '' }),
        h('td', { text: c.events ?? '' })))))) : h('p', { cls: 'muted', text: 'No customers found.' }));
}

async function renderCustomer(id) {
  const [c, spend] = await Promise.all([api('GET', '/v1/contacts/' + enc(id) + '?history=1'), api('GET', '/v1/spend?by=customer')]);
  if (S.view !== 'customer') return;
  const mine = (spend.rows || []).filter((r) => r.key === 'contact:' + c.id || r.key === c.id);
  const cost = mine.reduce((a, r) => a + (r.cost_usd || 0), 0);
  const calls = mine.reduce((a, r) => a + (r.calls || 0), 0);
  const facts = c.facts || [];
  const byKey = new Map();
  for (const f of facts) { if (!byKey.has(f.key)) byKey.set(f.key, []); byKey.get(f.key).push(f); }
  const factRows = [];
  for (const [key, fs] of byKey) {
    fs.forEach((f, i) => factRows.push(h('tr', { cls: 'fact' + (f.current ? ' current' : ' old'), 'data-key': key },
      h('td', { text: i === 0 ? key : '' }),
      h('td', {}, h('span', { cls: f.current ? '' : 'muted', text: fmtValue(f.value) }),
        f.conflict ? h('span', { cls: 'badge bad', text: 'conflict' }) : null, f.current ? null : h('span', { cls: 'muted', text: ' (superseded)' })),
      h('td', { text: f.confidence === null || f.confidence === undefined ? '' : (f.confidence * 100).toFixed(0) + '%' }),
      h('td', { cls: 'source' }, f.source || '', ' ', f.seq ? eventLink(f.seq) : null),
      h('td', { cls: 'hide-sm', text: fmtTime(f.observed_at) }))));
  }
  const idents = (c.identities || []).map((x) => `${x.kind}: ${x.value}`).join(' · ');
  show(
    h('p', {}, h('a', { href: '#/customers', text: '← Customers' })),
    h('h1', { id: 'customer-name', text: c.name || c.email || c.id }),
    h('div', { cls: 'meta' }, c.email ? h('span', { text: c.email }) : null, c.phone ? h('span', { text: c.phone }) : null,
      c.org ? h('span', { text: c.org.name || c.org.domain }) : null, h('span', { text: `${c.events || 0} events` }),
      h('span', {}, 'Model spend ', h('b', { id: 'customer-spend', text: fmtUsd(cost) }), ` (${calls} calls)`),
      h('a', { href: '#/events?customer=' + enc(c.id), text: 'all events' })),
    idents ? h('p', { cls: 'muted', text: idents }) : null,
    h('h2', { text: 'Facts' }),
    factRows.length ? h('div', { cls: 'table-wrap' }, h('table', { id: 'facts' },
      h('thead', {}, h('tr', {}, ['Fact', 'Value', 'Confidence', 'Source', 'Observed'].map((x, i) => h('th', { cls: i === 4 ? 'hide-sm' : null, text: x })))),
      h('tbody', {}, factRows))) : h('p', { cls: 'muted', text: 'No facts yet.' }),
    h('h2', { text: 'Summaries' }),
    (c.summaries || []).length ? h('div', {}, c.summaries.map((s) => h('div', { cls: 'panel summary' },
      h('div', { cls: 'meta' }, h('b', { text: s.period || '' }), h('span', { text: 'v' + (s.version || 1) }), eventLink(s.seq)),
      h('p', { text: s.text })))) : h('p', { cls: 'muted', text: 'No summaries yet.' }),
    h('h2', { text: 'Timeline' }),
    h('ol', { id: 'timeline', cls: 'mono' }, (c.timeline || []).map((e) => h('li', {},
      eventLink(e.seq, '#' + e.seq), ' ', h('b', { text: e.type }), ' ', h('span', { cls: 'muted', text: `${e.source} · ${fmtTime(e.at)}` })))));
}

/* ---- published content ---- */

function engagementText(eng) {
  const parts = Object.entries(eng || {}).map(([k, v]) => `${k} ${v}`);
  return parts.length ? parts.join(' · ') : '—';
}

async function renderContent() {
  const list = await api('GET', '/v1/content?limit=100');
  if (S.view !== 'content') return;
  show(h('h1', { text: 'Content' }),
    h('p', { cls: 'muted', text: 'What the content pipeline published, with the engagement reported since (docs/builtin-workflows.md).' }),
    list.pieces.length ? h('div', { cls: 'table-wrap' }, h('table', { id: 'pieces' },
      h('thead', {}, h('tr', {}, ['Title', 'Published', 'Engagement', 'Task'].map((x) => h('th', { text: x })))),
      h('tbody', {}, list.pieces.map((p) => h('tr', { 'data-piece': p.piece },
        h('td', {}, h('a', { href: '#/content/' + enc(p.piece), text: p.title || p.piece })),
        h('td', { text: fmtTime(p.published_at) }), h('td', { cls: 'engagement', text: engagementText(p.engagement) }),
        h('td', {}, h('a', { href: '#/tasks/' + enc(p.piece), cls: 'mono', text: p.piece.slice(-8) })))))))
      : h('p', { cls: 'muted', text: 'Nothing published yet.' }));
}

async function renderPiece(piece) {
  const p = await api('GET', '/v1/content/' + enc(piece));
  if (S.view !== 'piece') return;
  show(h('p', {}, h('a', { href: '#/content', text: '← Content' })),
    h('h1', { id: 'piece-title', text: p.title || p.piece }),
    h('div', { cls: 'meta' }, h('span', { text: 'Published ' + fmtTime(p.published_at) }), eventLink(p.seq),
      p.idea_seq ? eventLink(p.idea_seq, 'the idea') : null, h('a', { href: '#/tasks/' + enc(p.piece), text: 'task' })),
    h('h2', { text: 'Engagement' }),
    Object.keys(p.engagement || {}).length ? h('div', { cls: 'grid', id: 'piece-engagement' },
      Object.entries(p.engagement).map(([k, v]) => h('div', { cls: 'stat', 'data-metric': k },
        h('div', { cls: 'n', text: String(v) }), h('div', { cls: 'l', text: k }))))
      : h('p', { cls: 'muted', text: 'No engagement reported yet.' }),
    (p.recent || []).length ? h('div', { cls: 'table-wrap' }, h('table', { id: 'piece-recent' },
      h('thead', {}, h('tr', {}, ['Event', 'When', 'Metric', 'Value'].map((x) => h('th', { text: x })))),
      h('tbody', {}, p.recent.map((e) => h('tr', {},
        h('td', {}, eventLink(e.seq, '#' + e.seq)), h('td', { text: fmtTime(e.occurred_at) }),
        h('td', { text: e.metric }), h('td', { text: String(e.value) })))))) : null);
}

/* ---- spend and health ---- */

function barChart(title, rows, opts) {
  const W = 420, H = 200, L = 58, B = 30, T = 14;
  const max = Math.max(opts.budget || 0, ...rows.map((r) => r.value), 1e-9);
  const bw = rows.length ? (W - L - 8) / rows.length : 0;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = h('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
  svg.append(h('title', { text: title }));
  for (const f of [0, 0.5, 1]) {
    svg.append(h('line', { x1: L, x2: W, y1: y(max * f), y2: y(max * f), stroke: '#e3e6ec' }),
      h('text', { x: L - 4, y: y(max * f) + 4, 'text-anchor': 'end', text: opts.fmt(max * f) }));
  }
  rows.forEach((r, i) => {
    const x = L + i * bw + 2, top = y(r.value);
    const over = opts.budget && r.value > opts.budget;
    const g = h('g', { cls: 'bar-g' });
    g.append(h('rect', { cls: 'bar' + (over ? ' over' : ''), x, y: top, width: Math.max(1, bw - 4), height: Math.max(0, H - B - top) },
      h('title', { text: `${r.label}: ${opts.fmt(r.value)}` })));
    const room = Math.max(3, Math.floor(bw / 7));
    const lbl = r.label.length > room ? r.label.slice(0, room - 1) + '…' : r.label;
    if (rows.length <= 8 || i % Math.ceil(rows.length / 8) === 0)
      g.append(h('text', { x: x + (bw - 4) / 2, y: H - B + 14, 'text-anchor': 'middle', text: lbl }));
    svg.append(g);
  });
  if (opts.budget) {
    svg.append(h('line', { cls: 'budget', x1: L, x2: W, y1: y(opts.budget), y2: y(opts.budget) }),
      h('text', { x: W - 4, y: y(opts.budget) - 4, 'text-anchor': 'end', text: 'budget ' + opts.fmt(opts.budget) }));
  }
  if (!rows.length) svg.append(h('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', text: 'no spend yet' }));
  return h('figure', { cls: 'chart', 'data-chart': opts.id }, h('figcaption', {}, h('b', { text: title })), svg);
}

async function renderSpend() {
  const by = ['day', 'route', 'workflow', 'customer'];
  const day = (ms) => new Date(ms).toISOString().slice(0, 10);
  const since = { day: day(Date.now() - 29 * 86400000), customer: day(Date.now()) };
  const [st, contacts, ...sp] = await Promise.all([api('GET', '/v1/status'), api('GET', '/v1/contacts?limit=500'),
    ...by.map((b) => api('GET', '/v1/spend?by=' + b + (since[b] ? '&since=' + since[b] : '')))]);
  const names = new Map(contacts.contacts.map((c) => ['contact:' + c.id, c.name || c.email || c.id]));
  if (S.view !== 'spend') return;
  const budgets = st.budgets || {};
  const charts = sp.map((s, i) => {
    let rows = (s.rows || []).map((r) => ({ label: names.get(r.key) || r.key || (by[i] === 'customer' ? '(no customer)' : '(none)'), value: r.cost_usd || 0, calls: r.calls }));
    if (by[i] === 'day') rows.sort((a, b) => a.label.localeCompare(b.label)), rows = rows.slice(-30);
    else rows.sort((a, b) => b.value - a.value), rows = rows.slice(0, 12);
    const title = { day: 'by day, last 30 days', route: 'by route', workflow: 'by workflow',
      customer: 'by customer today' }[by[i]];
    // all on the free local tier: the calls tell more than a row of zeros
    if (rows.length && rows.every((r) => !r.value)) {
      rows.forEach((r) => { r.value = r.calls || 0; });
      return barChart('Model calls ' + title + ' (no spend)', rows, { id: by[i], budget: 0, fmt: (x) => String(Math.round(x)) });
    }
    const budget = by[i] === 'day' ? budgets.daily_usd : by[i] === 'customer' ? (budgets.per_customer || {}).daily_usd : 0;
    return barChart('Spend ' + title + (budget ? ' (budget dashed)' : ''), rows, { id: by[i], budget, fmt: fmtUsd });
  });
  const recent = st.last_day || {};
  const rate = (bad, good) => { const n = (recent[bad] || 0) + (recent[good] || 0); return n ? ((recent[bad] || 0) / n * 100).toFixed(1) + '%' : '—'; };
  const failures = sp[1].rows.reduce((a, r) => a + (r.failures || 0), 0), calls = sp[1].rows.reduce((a, r) => a + (r.calls || 0), 0);
  const stat = (n, l, cls) => h('div', { cls: 'stat' + (cls ? ' ' + cls : '') }, h('div', { cls: 'n', text: n }), h('div', { cls: 'l', text: l }));
  show(
    h('h1', { text: 'Spend and health' }),
    h('div', { cls: 'grid', id: 'health' },
      stat(st.mode, 'mode'), stat(fmtUsd(sp[0].total_usd), 'model spend, 30 days'),
      stat(budgets.daily_usd ? fmtUsd(budgets.daily_usd) : 'none', 'daily budget'),
      stat(st.approvals_pending, 'approvals waiting'), stat((st.tasks || {}).inbox || 0, 'tasks in the inbox'),
      stat((st.steps || {}).ready || 0, 'steps ready to run'),
      stat((st.steps || {}).waiting || 0, 'steps waiting (approvals, timers)'),
      stat(rate('step.failed', 'step.completed'), 'step error rate, 24 h'),
      stat(rate('effect.failed', 'effect.delivered'), 'effect failure rate, 24 h'),
      stat(calls ? (failures / calls * 100).toFixed(1) + '%' : '—', 'model call failures'),
      stat(st.head, 'ledger events')),
    h('h2', { text: 'Spend' }), h('div', { cls: 'charts' }, charts),
    h('h2', { text: 'Model providers (circuit breakers)' }),
    h('div', { cls: 'table-wrap' }, h('table', { id: 'models' },
      h('thead', {}, h('tr', {}, ['Provider', 'Kind', 'Model', 'Breaker', 'Failures in a row', 'Calls', 'Latency (EWMA)'].map((x) => h('th', { text: x })))),
      h('tbody', {}, (st.models || []).map((m) => h('tr', {}, h('td', { text: m.name }), h('td', { text: m.kind }), h('td', { text: m.model || '' }),
        h('td', {}, badge(m.breaker)), h('td', { text: m.failures }), h('td', { text: m.calls }),
        h('td', { text: m.latency_ewma_ms === null || m.latency_ewma_ms === undefined ? '—' : Math.round(m.latency_ewma_ms) + ' ms' })))))),
    h('h2', { text: 'Push connectors (since the server started)' }),
    (st.connectors || []).length ? h('div', { cls: 'table-wrap' }, h('table', { id: 'connectors' },
      h('thead', {}, h('tr', {}, ['Connector', 'Kind', 'Accepted', 'Refused'].map((x) => h('th', { text: x })))),
      h('tbody', {}, st.connectors.map((c) => h('tr', {}, h('td', { text: c.name }), h('td', { text: c.kind }),
        h('td', { text: c.accepted }), h('td', { cls: c.rejected ? 'warn' : '', text: c.rejected })))))) : h('p', { cls: 'muted', text: 'No webhook or form connectors.' }),
    h('h2', { text: 'Pull connectors' }),
    (st.pull || []).length ? h('div', { cls: 'table-wrap' }, h('table', { id: 'pull' },
      h('thead', {}, h('tr', {}, ['Connector', 'Kind', 'State', 'Last success', 'Events today', 'Next poll', 'Last error'].map((x) => h('th', { text: x })))),
      h('tbody', {}, st.pull.map((c) => h('tr', {}, h('td', { text: c.name }), h('td', { text: c.kind }),
        h('td', {}, badge(c.failing ? 'failing' : c.last_success ? 'ok' : 'waiting')),
        h('td', { text: c.last_success ? fmtAge(c.last_success) : 'never' }), h('td', { text: c.events_today ?? 0 }),
        h('td', { text: c.next_poll ? fmtAge(c.next_poll) : '' }), h('td', { cls: 'error', text: c.last_error || '' })))))) : h('p', { cls: 'muted', text: 'No IMAP or calendar connectors.' }),
    h('h2', { text: 'Queues' }),
    h('div', { cls: 'grid' }, Object.entries(st.workflows || {}).map(([k, v]) => stat(v, k)),
      Object.entries(st.effects || {}).filter(([, v]) => v).map(([k, v]) => stat(v, 'effects ' + k))));
}

/* ---- model quality ---- */

const pct = (x) => (Number(x) * 100).toFixed(1) + '%';

/* A rate with its 95% interval: the figure and a bar from low to high. */
function rateCell(r, cls) {
  const W = 80, x = (v) => 1 + v * (W - 2);
  const svg = h('svg', { cls: 'ci', viewBox: `0 0 ${W} 10`, width: W, height: 10, 'aria-hidden': 'true' },
    h('line', { cls: 'axis', x1: 1, x2: W - 1, y1: 5, y2: 5 }),
    h('rect', { cls: 'ci-' + cls, x: x(r.low), y: 2, width: Math.max(1, x(r.high) - x(r.low)), height: 6 }),
    h('line', { cls: 'mark', x1: x(r.rate), x2: x(r.rate), y1: 0, y2: 10 }));
  return h('td', { cls: 'rate', title: `${r.count} · 95% interval ${pct(r.low)}–${pct(r.high)}` },
    h('span', { text: `${pct(r.rate)} ` }), h('small', { cls: 'muted', text: `(${pct(r.low)}–${pct(r.high)})` }), h('br'), svg);
}

const num = (v, f) => (v === null || v === undefined ? '—' : f(v));

async function canaryAct(route, action) {
  try {
    await api('POST', '/v1/models/canary/' + enc(route), { action });
    toast(`Canary on ${route}: ${action === 'promote' ? 'promoted' : 'rolled back'}`);
  } catch (e) {
    toast(e.message);
  }
  renderModels(true);
}

function canaryView(r) {
  const c = r.canary;
  if (!c) return null;
  const d = c.decision;
  return h('div', { cls: 'canary', 'data-canary': r.route },
    h('span', {}, 'Canary ', h('b', { text: c.candidate }), ' ', badge(c.state)),
    c.state === 'active' ? h('span', { cls: 'muted', text: ` ${c.percent}% of the calls; decided after ${c.min_sample} outcomes each (edit rate +${pct(c.max_edit_rate_delta)}, reject rate +${pct(c.max_reject_rate_delta)} at most${c.max_cost_usd ? ', ' + fmtUsd(c.max_cost_usd) + ' a draft' : ''})` }) : null,
    d ? h('span', { cls: 'muted', text: ` — by ${d.by}, ${fmtAge(d.at)}: ${d.reason}` }) : null,
    c.state === 'active' ? h('span', { cls: 'actions' },
      h('button', { type: 'button', onclick: () => canaryAct(r.route, 'promote'), text: 'Promote' }),
      h('button', { type: 'button', cls: 'secondary', onclick: () => canaryAct(r.route, 'rollback'), text: 'Roll back' })) : null);
}

async function renderModels(quiet) {
  const st = await api('GET', '/v1/models/stats');
  if (S.view !== 'models') return;
  if (quiet && editing()) return;
  const routes = st.routes || [];
  const section = (r) => h('section', { cls: 'quality', id: 'quality-' + r.route },
    h('h2', {}, 'Route ', h('b', { text: r.route }), h('span', { cls: 'muted', text: ' — ' + (r.candidates || []).join(' › ') }),
      r.shadow ? h('span', { cls: 'muted', text: ` · shadow ${r.shadow.candidate}` }) : null),
    canaryView(r),
    r.models.length ? h('div', { cls: 'table-wrap' }, h('table', { cls: 'quality-table' },
      h('thead', {}, h('tr', {}, ['Provider', 'Model', 'Role', 'Drafts', 'Approved as is', 'Edited', 'Rejected', 'Edit distance', 'Cost / draft', 'Cost / approved', 'Latency p50', 'Latency mean'].map((x) => h('th', { text: x })))),
      h('tbody', {}, r.models.map((m) => h('tr', { 'data-provider': m.provider, 'data-role': m.role },
        h('td', { text: m.provider }), h('td', { text: m.model }), h('td', {}, badge(m.role)), h('td', { cls: 'n', text: m.n }),
        rateCell(m.approved, 'ok'), rateCell(m.edited, 'warn'), rateCell(m.rejected, 'bad'),
        h('td', { text: num(m.mean_edit_distance, (x) => x.toFixed(3)) }),
        h('td', { text: num(m.cost_per_draft_usd, fmtUsd) }), h('td', { text: num(m.cost_per_approved_usd, fmtUsd) }),
        h('td', { text: num(m.latency_ms_p50, (x) => Math.round(x) + ' ms') }), h('td', { text: num(m.latency_ms_mean, (x) => Math.round(x) + ' ms') })))))) :
      h('p', { cls: 'muted', text: 'No decided drafts on this route yet.' }),
    r.shadows.length ? h('div', { cls: 'table-wrap' }, h('table', { cls: 'shadow-table' },
      h('caption', { text: 'Shadow runs (answers never used): how far they are from what you approved' }),
      h('thead', {}, h('tr', {}, ['Shadow', 'Model', 'Runs', 'Answered', 'Compared', 'Disagreement', 'Cost'].map((x) => h('th', { text: x })))),
      h('tbody', {}, r.shadows.map((s) => h('tr', {}, h('td', { text: s.provider }), h('td', { text: s.model }), h('td', { text: s.n }),
        h('td', { text: s.ok }), h('td', { text: s.compared }), h('td', { text: num(s.mean_disagreement, (x) => x.toFixed(3)) }),
        h('td', { text: fmtUsd(s.cost_usd) })))))) : null,
    r.marginal.length ? h('ul', { cls: 'marginal' }, r.marginal.map((m) => h('li', {},
      h('b', { text: `${m.from} → ${m.to}` }),
      `: ${m.delta_cost_per_draft_usd >= 0 ? '+' : '−'}${fmtUsd(Math.abs(m.delta_cost_per_draft_usd))} a draft, approved as is ${m.delta_approve_rate >= 0 ? '+' : ''}${(m.delta_approve_rate * 100).toFixed(1)} pts, sent ${m.delta_accept_rate >= 0 ? '+' : ''}${(m.delta_accept_rate * 100).toFixed(1)} pts`,
      m.approve_rate_per_usd === null ? '' : ` (${m.approve_rate_per_usd >= 0 ? '+' : ''}${m.approve_rate_per_usd.toFixed(1)} pts approved per extra cent a draft)`))) : null);
  show(h('h1', { text: 'Model quality' }),
    h('p', { cls: 'muted', text: 'From your own decisions on drafts: approved as is, edited (with the share of the text you changed) or rejected. Intervals are 95% (Wilson).' }),
    routes.length ? routes.map(section) : h('p', { cls: 'empty', text: 'No decided drafts yet.' }));
}

document.addEventListener('DOMContentLoaded', start);
