// The dashboard in headless Debian chromium, driven by playwright-core.
// Run by tests/integration/test_web.sh against a seeded `bureau serve`:
//   BUREAU_URL, BUREAU_TOKEN, BUREAU_CUSTOMER (a contact id), SHOTS (a
//   directory for screenshots), PROFILE (a fresh chromium profile directory).
// Prints TAP lines ("ok - NAME" / "not ok - NAME: why"); waits only for
// selectors and conditions, each bounded.
'use strict';
const path = require('path');
const { chromium } = require(path.join(__dirname, 'node_modules', 'playwright-core'));

const URL = process.env.BUREAU_URL;
const TOKEN = process.env.BUREAU_TOKEN;
const CUSTOMER = process.env.BUREAU_CUSTOMER;
const SHOTS = process.env.SHOTS;
const WAIT = 30000;

let failures = 0;
function ok(name) { console.log(`ok - ${name}`); }
function notOk(name, why) {
  failures++;
  console.log(`not ok - ${name}: ${String(why).split('\n')[0].slice(0, 300)}`);
}
async function step(name, fn) {
  try {
    await fn();
    ok(name);
    return true;
  } catch (e) {
    notOk(name, e && e.message ? e.message : e);
    return false;
  }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }

// Saves a screenshot of the page, after checking that no value was left
// out as the text "null" or "undefined".
async function shot(page, name) {
  const stray = await page.evaluate(() => {
    const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = w.nextNode(); n; n = w.nextNode())
      if (/^(null|undefined|NaN)$/.test(n.textContent.trim())) return n.parentElement.outerHTML.slice(0, 120);
    return null;
  });
  await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
  if (stray) throw new Error(`${name}: a stray value: ${stray}`);
}

// Restarted with smtp.undo_window_s: an approved mail is held, and Undo
// cancels it before it leaves.
async function undoPhase(page, ctx, problems) {
  await step('logs in again after a restart (sessions live in the server)', async () => {
    await page.goto(URL + '/');
    await page.waitForSelector('#login:not([hidden]) #token');
    await page.fill('#token', TOKEN);
    await Promise.all([page.waitForNavigation(), page.click('#login button[type=submit]')]);
    await page.waitForSelector('#inbox-list .card');
  });
  await step('a mail approved with the a key is held in its undo window; Undo cancels it', async () => {
    const id = await page.locator('#inbox-list .card.approval:has-text("cid@example.com")').getAttribute('data-id');
    const card = `#inbox-list .card[data-id="${id}"]`;
    await page.locator(card).click({ position: { x: 5, y: 5 } });
    await page.keyboard.press('a');
    await page.waitForSelector(card, { state: 'detached' });
    const held = '#effects tr.effect[data-status=held]:has-text("cid@example.com")';
    await page.waitForSelector(held);
    assert((await page.locator(held).innerText()).includes('undo until'), 'no undo deadline shown');
    await shot(page, 'inbox-held');
    await page.locator(held + ' [data-action=undo]').click();
    await page.waitForSelector('#effects tr.effect[data-status=canceled]:has-text("cid@example.com")');
  });
  await step('no console errors, CSP violations or outside requests (undo run)', async () => {
    const real = problems.filter((p) => !/status of 401/.test(p));
    assert(real.length === 0, real.join(' | '));
  });
}

(async () => {
  const ctx = await chromium.launchPersistentContext(process.env.PROFILE, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic'],
    viewport: { width: 1280, height: 900 },
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  // Nothing but the server under test: any other request is a failure.
  await ctx.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith(URL + '/')) return route.continue();
    problems.push('outside request: ' + u);
    return route.abort();
  });

  try {
    if (process.env.PHASE === 'undo') {
      await undoPhase(page, ctx, problems);
      return;
    }
    await step('the login form shows without a session', async () => {
      await page.goto(URL + '/');
      await page.waitForSelector('#login:not([hidden]) #token');
      assert(await page.isHidden('#top'), 'the navigation shows before login');
      await shot(page, 'login');
    });

    await step('a wrong token is refused with a message', async () => {
      await page.fill('#token', 'bur_wrong');
      await Promise.all([page.waitForNavigation(), page.click('#login button[type=submit]')]);
      await page.waitForSelector('#login-error:not([hidden])');
    });

    await step('logs in with the API token and lands on the inbox', async () => {
      await page.fill('#token', TOKEN);
      await Promise.all([page.waitForNavigation(), page.click('#login button[type=submit]')]);
      await page.waitForSelector('#inbox-list .card');
      const c = (await ctx.cookies()).find((x) => x.name === 'bureau_session');
      assert(c, 'no session cookie');
      assert(c.httpOnly && c.sameSite === 'Strict', `cookie flags: httpOnly=${c.httpOnly} sameSite=${c.sameSite}`);
      assert(await page.evaluate(() => !document.cookie.includes('bureau_session')), 'the page can read the cookie');
    });

    await step('the first load is under 150 KB', async () => {
      const bytes = await page.evaluate(() => {
        const all = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
        return all.filter((e) => !e.name.includes('/v1/')).reduce((a, e) => a + (e.transferSize || e.encodedBodySize || 0), 0);
      });
      assert(bytes > 0 && bytes < 150 * 1024, `${bytes} bytes`);
    });

    await step('the sandbox banner is visible', async () => {
      await page.waitForSelector('#banner[data-mode=sandbox]', { state: 'visible' });
    });

    const ann = '#inbox-list .card.approval:has-text("ann@acme.example")';
    const bob = '#inbox-list .card.approval:has-text("bob@example.com")';
    await step('a pending approval shows the email, its sources, confidence, model, cost and deadline', async () => {
      await page.waitForSelector(ann);
      const card = page.locator(ann);
      const text = await card.innerText();
      for (const want of ['Re: a workshop', 'To', 'Subject', 'Ann Archer, Acme Ltd', '82%', 'local classifier', 'local', '$0.0012', 'Deadline'])
        assert(text.includes(want), `'${want}' not on the card`);
      const href = await card.locator('.source a[href^="#/customers/"]').getAttribute('href');
      assert(href === '#/customers/' + CUSTOMER, 'the source links to ' + href);
      assert(await card.locator('.source a[href^="#/events?seq="]').count() === 1, 'no link to the source event');
      await shot(page, 'inbox');
    });

    await step('a source links to its event, which opens with its data', async () => {
      await page.locator(ann + ' .source a[href^="#/events?seq="]').click();
      await page.waitForSelector('#event-data');
      assert((await page.locator('#event-data').innerText()).includes('contact.imported'), 'not the imported contact');
      await page.goBack();
      await page.waitForSelector(ann);
    });

    await step('j/k move the selection between cards', async () => {
      await page.click('h1');
      const sel = () => page.evaluate(() => [...document.querySelectorAll('#inbox-list .card')].findIndex((c) => c.classList.contains('selected')));
      const a = await sel();
      await page.keyboard.press('j');
      const b = await sel();
      await page.keyboard.press('k');
      const c = await sel();
      assert(b === a + 1 && c === a, `selection ${a} -> ${b} -> ${c}`);
    });

    await step('edits a draft (e) and approves it; the captured effect shows the edit', async () => {
      const id = await page.locator(ann).getAttribute('data-id');
      const card = `#inbox-list .card[data-id="${id}"]`;
      await page.locator(card).click({ position: { x: 5, y: 5 } });
      await page.keyboard.press('e');
      const subject = page.locator(card + ' input[name=subject]');
      await subject.waitFor();
      await subject.fill('Re: a workshop (edited)');
      await page.locator(card + ' [data-action=save]').click();
      await page.waitForSelector(card, { state: 'detached' });
      // the server's runner sends it on; the stream refreshes the page
      await page.waitForSelector('#effects tr.effect[data-status=captured]:has-text("(edited)")');
      await shot(page, 'inbox-after-approve');
    });

    await step('rejects a draft (r) with a reason', async () => {
      const id = await page.locator(bob).getAttribute('data-id');
      const card = `#inbox-list .card[data-id="${id}"]`;
      await page.locator(card).click({ position: { x: 5, y: 5 } });
      await page.keyboard.press('r');
      const reason = page.locator(card + ' input[name=reason]');
      await reason.waitFor();
      await reason.fill('not a fit');
      await reason.press('Enter');
      await page.waitForSelector(card, { state: 'detached' });
    });

    await step('states a goal in the goal box; the proposal waits in the inbox; approving it runs the workflow', async () => {
      await page.fill('#goal-text', 'send renewal reminders to customers whose retainer ends soon');
      await page.click('#goal-submit');
      const card = '#inbox-list .card.approval[data-goal]';
      await page.waitForSelector(card);
      const text = await page.locator(card).innerText();
      for (const want of ['Goal: send renewal reminders', 'renewal-watch', 'due: memory.renewals', 'no task before you approve', 'similarity'])
        assert(text.includes(want), `'${want}' not on the goal's card`);
      assert((await page.locator('#goal-result').innerText()).includes('renewal-watch'), 'no proposal shown under the box');
      assert(await page.locator('#goals tr.goal[data-status=proposed]').count() === 1, 'the goal is not listed as proposed');
      await shot(page, 'goal-proposed');
      await page.locator(card + ' [data-action=approve]').click();
      await page.waitForSelector(card, { state: 'detached' });
      // the server's engine starts and runs the task: asked of the API, bounded
      await page.waitForFunction(async () => {
        const r = await fetch('/v1/goals?limit=1', { credentials: 'same-origin' });
        const j = await r.json();
        return j.items.length > 0 && j.items[0].task_status === 'succeeded';
      }, null, { timeout: WAIT, polling: 200 });
      await page.evaluate(() => renderInbox(true));
      await page.waitForSelector('#goals tr.goal[data-status=started]:has-text("succeeded")');
    });

    await step('a goal that matches nothing is refused under the box, and nothing is proposed', async () => {
      const before = await page.locator('#inbox-list .card').count();
      await page.fill('#goal-text', 'bake a chocolate cake');
      await page.click('#goal-submit');
      await page.waitForSelector('#goal-result.error:has-text("no workflow matches")');
      await page.waitForSelector('#goals tr.goal[data-status=refused]');
      assert(await page.locator('#inbox-list .card').count() === before, 'the inbox changed');
    });

    let taskId = null;
    await step('a failed task shows its error; retry runs the step again; the task shows its step graph and trace', async () => {
      const card = page.locator('#inbox-list .card.failure:has-text("the invoice service is down")');
      await card.waitFor();
      taskId = await card.getAttribute('data-task');
      await card.locator('[data-action=retry]').click();
      await page.goto(URL + '/#/tasks/' + taskId);
      // the step fails again (the script always fails): its second attempt
      await page.waitForFunction(() => {
        const td = document.querySelector('#steps tr[data-step=create] td:nth-child(5)');
        return td && td.textContent === '2';
      });
      await page.waitForSelector('#trace li');
      assert(await page.locator('svg.graph g[data-step]').count() === 3, 'the step graph');
      assert(await page.locator('svg.graph line').count() === 2, 'the graph\'s edges');
      await shot(page, 'task');
    });

    await step('the tasks page shows queues by state with counts', async () => {
      await page.goto(URL + '/#/tasks');
      await page.waitForSelector('#tasks tbody tr');
      const n = await page.locator('a.stat[data-state=succeeded] .n').innerText();
      assert(Number(n) >= 1, 'succeeded: ' + n);
      await shot(page, 'tasks');
    });

    await step('a customer page shows facts with their sources, the timeline and the spend', async () => {
      await page.goto(URL + '/#/customers');
      await page.waitForSelector('#contacts a:has-text("Ann Archer")');
      await page.click('#contacts a:has-text("Ann Archer")');
      await page.waitForSelector('#facts tr.fact[data-key=company]:has-text("Acme Ltd")');
      const src = page.locator('#facts tr.fact[data-key=company] td.source');
      assert((await src.innerText()).includes('event #'), 'no source event on the company fact');
      assert(await page.locator('#timeline li').count() >= 1, 'an empty timeline');
      const spend = await page.locator('#customer-spend').innerText();
      assert(spend === '$0.0370', 'spend on the customer: ' + spend);
      await shot(page, 'customer');
    });

    await step('the content page lists a published piece with its engagement, and the piece its reports', async () => {
      await page.goto(URL + '/#/content');
      await page.waitForSelector('#pieces tr[data-piece="01JPIECE00000000000000WEB1"]');
      const eng = await page.locator('#pieces tr[data-piece="01JPIECE00000000000000WEB1"] td.engagement').innerText();
      assert(eng === 'views 150', 'engagement: ' + eng);
      await page.click('#pieces a:has-text("Skip the app")');
      await page.waitForSelector('#piece-engagement .stat[data-metric=views] .n');
      const n = await page.locator('#piece-engagement .stat[data-metric=views] .n').innerText();
      assert(n === '150', 'views: ' + n);
      assert(await page.locator('#piece-recent tbody tr').count() === 2, 'two reports');
      await shot(page, 'content');
    });

    await step('the events page lists the ledger with the chain verified', async () => {
      await page.goto(URL + '/#/events');
      await page.waitForSelector('#chain[data-ok=true]');
      assert(await page.locator('#events tbody tr').count() > 5, 'few events');
      const seqs = await page.$$eval('#events tbody tr', (rows) => rows.map((r) => Number(r.dataset.seq)));
      assert(seqs.every((x, i) => i === 0 || seqs[i - 1] > x), 'not newest first');
      await page.fill('#f-type', 'lead.created');
      await page.press('#f-type', 'Enter');
      await page.waitForFunction(() => {
        const rows = [...document.querySelectorAll('#events tbody tr')];
        return rows.length === 3 && rows.every((r) => r.children[1].textContent === 'lead.created');
      });
      // live: an event appended now shows up without a reload
      const seq = await page.evaluate(async () => {
        const s = await (await fetch('/v1/session')).json();
        const r = await fetch('/v1/events', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf },
          body: JSON.stringify({ type: 'lead.created', source: 'browser-test', data: { email: 'dee@example.com', topic: 'live' } }) });
        return (await r.json()).seq;
      });
      assert(seq > 0, 'the append failed');
      await page.waitForSelector(`#events tbody tr.ev-new[data-seq="${seq}"]`);
      await shot(page, 'events');
    });

    await step('spend charts render as SVG with the daily budget', async () => {
      await page.goto(URL + '/#/spend');
      await page.waitForSelector('figure[data-chart=route] svg rect.bar');
      // the two seeded routes, and plan (the goals above, on the local tier)
      assert(await page.locator('figure[data-chart=route] rect.bar').count() === 3, 'route bars');
      assert(await page.locator('figure[data-chart=day] rect.bar').count() >= 1, 'day bars');
      assert(await page.locator('figure[data-chart=day] line.budget').count() === 1, 'no budget line');
      assert(await page.locator('figure[data-chart=customer] text:has-text("Ann")').count() === 1, 'the customer is not named');
      assert(await page.locator('#models td:has-text("closed")').count() >= 1, 'no breaker states');
      const cal = page.locator('#pull tr:has-text("cal")');
      assert(await cal.count() === 1 && (await cal.innerText()).includes('ics'), 'no calendar connector');
      assert(await cal.locator('.badge.failing').count() === 0, 'the calendar connector is failing');
      await shot(page, 'spend');
    });

    await step('model quality: rates with intervals per model, the canary rolled back by hand', async () => {
      await page.goto(URL + '/#/models');
      await page.waitForSelector('#quality-draft table.quality-table tbody tr');
      assert(await page.locator('#quality-draft tbody tr').count() === 2, 'two models');
      const canary = await page.locator('#quality-draft tr[data-role=canary]').innerText();
      assert(canary.includes('big') && canary.includes('33.3%'), 'canary row: ' + canary);
      const inc = await page.locator('#quality-draft tr[data-role=incumbent]').innerText();
      assert(inc.includes('66.7%') && inc.includes('(20.8%–93.9%)'), 'incumbent row: ' + inc);
      assert(await page.locator('#quality-draft svg.ci').count() === 6, 'interval bars');
      assert(await page.locator('#quality-draft .marginal li').count() === 1, 'marginal value');
      await page.click('[data-canary=draft] button:has-text("Roll back")');
      await page.waitForSelector('[data-canary=draft] .badge.rolled_back');
      await shot(page, 'models');
    });

    await step('a cookie-only POST without the CSRF token is refused (403)', async () => {
      const r = await page.evaluate(async () => {
        const a = await fetch('/v1/mode', { method: 'POST', credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' }, body: '{"mode":"production"}' });
        const b = await fetch('/v1/mode', { credentials: 'same-origin' });
        return [a.status, a.headers.get('Content-Type'), (await b.json()).mode];
      });
      assert(r[0] === 403 && r[1] === 'application/problem+json' && r[2] === 'sandbox', JSON.stringify(r));
    });

    await step('works on a phone: no sideways scrolling, the inbox reads', async () => {
      await page.setViewportSize({ width: 390, height: 844 });
      await page.goto(URL + '/#/inbox');
      await page.waitForSelector('#inbox-list .card, .empty');
      const w = await page.evaluate(() => document.documentElement.scrollWidth);
      assert(w <= 391, 'page width ' + w);
      await shot(page, 'inbox-phone');
      await page.goto(URL + '/#/spend');
      await page.waitForSelector('figure[data-chart=day] svg');
      await shot(page, 'spend-phone');
      await page.setViewportSize({ width: 1280, height: 900 });
    });

    await step('every control has an accessible name', async () => {
      await page.goto(URL + '/#/inbox');
      await page.waitForSelector('#main h1');
      const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, input, textarea, select, a')]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => !(el.getAttribute('aria-label') || el.textContent.trim() ||
          (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.title))
        .map((el) => el.outerHTML.slice(0, 80)));
      assert(unnamed.length === 0, unnamed.join(' | '));
    });

    await step('logs out: the login form is back and the session is gone', async () => {
      await Promise.all([page.waitForNavigation(), page.click('#logout')]);
      await page.waitForSelector('#login:not([hidden]) #token');
      const st = await page.evaluate(async () => (await fetch('/v1/inbox')).status);
      assert(st === 401, 'after logout /v1/inbox answered ' + st);
    });

    await step('no console errors, CSP violations or outside requests', async () => {
      // expected: the 401s of the login form's session probe and the wrong
      // token, the 403 of the CSRF check above, the 422 of the refused goal
      const real = problems.filter((p) => !/status of (40[13]|422)/.test(p));
      assert(real.length === 0, real.join(' | '));
    });
  } catch (e) {
    notOk('the browser run', e.stack || e);
  } finally {
    await ctx.close();
    process.exit(failures ? 1 : 0);
  }
})().catch((e) => {
  notOk('the browser starts', e.stack || e);
  process.exit(1);
});
