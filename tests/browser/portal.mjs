// Drives Debian's chromium (headless, through playwright-core; no browser download) against the
// daemon's portal in the namespace testbed of tests/it/portal.rs, one phase per run; prints JSON.
//
// Names are resolved by the daemon's DNS (the client namespace's resolv.conf points at it).
// Environment: SG_PHASE (client1 | reach | client2 | expired), SG_PORTAL_IP, SG_SERVER_IP (the
// internet test server), SG_ARTIFACTS (screenshot directory), SG_BAD_LEAF_DIR (leaf.pem/leaf.key
// for names inside and outside the CA's constraints), SG_JUSTIFICATION, HOME (holds .pki/nssdb
// trusting the test portal CA).

import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const phase = env('SG_PHASE');
const portal = env('SG_PORTAL_IP');
const artifacts = env('SG_ARTIFACTS');

const STEERED = 'claude.ai';
const COACHED = 'chatgpt.com';
const OUTSIDE = 'outside.example';
const INSIDE = 'control.claude.ai';
const APPROVED = 'https://ai.clinic.example/';

// navigations: page loads served by the portal (each one portal_view event).
// network_changed_retries: navigations Chromium aborted with ERR_NETWORK_CHANGED (its network
// change notifier firing on a loaded machine) and that were tried again; such an aborted load may
// or may not have reached the portal.
const out = { phase, checks: [], navigations: 0, network_changed_retries: 0 };
function check(name, ok, detail) {
  out.checks.push({ name, ok: !!ok, detail: detail ?? null });
  if (!ok) {
    console.log(JSON.stringify(out));
    throw new Error(`check failed: ${name}: ${JSON.stringify(detail)}`);
  }
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  timeout: 120000,
  env: process.env,
  args: [
    '--no-sandbox',
    // Every other name goes to the daemon's DNS. Only the two synthetic names of the constraints
    // check go to a local test server (never to the portal).
    `--host-resolver-rules=MAP ${OUTSIDE} 127.0.0.1, MAP ${INSIDE} 127.0.0.1, EXCLUDE localhost`,
    // Keep plain-HTTP navigations plain (the HTTP portal is tested on its own).
    '--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,HttpsFirstModeV2ForEngagedSites',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});

// bypassCSP lets the test inject axe-core and its probes into pages whose CSP forbids scripts.
const desktop = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
const phone = await browser.newContext({
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  bypassCSP: true,
});

// A loaded 2-core machine: wait long on conditions rather than fail early.
for (const c of [desktop, phone]) {
  c.setDefaultTimeout(60000);
  c.setDefaultNavigationTimeout(60000);
}

async function go(page, url) {
  out.navigations += 1;
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.goto(url, { waitUntil: 'load' });
    } catch (e) {
      if (attempt >= 3 || !/ERR_NETWORK_CHANGED/.test(String(e))) throw e;
      out.network_changed_retries += 1;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

async function axe(page, label) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] }),
  );
  const v = r.violations.map((x) => ({ id: x.id, impact: x.impact, nodes: x.nodes.map((n) => n.target) }));
  check(`axe: no violations on ${label}`, v.length === 0, v);
  return r.passes.length;
}

// null when the page loads, else the browser's network error (net::ERR_...).
async function failsToLoad(page, url) {
  let failure = null;
  const onFail = (r) => {
    if (r.url().startsWith(url)) failure = r.failure()?.errorText ?? 'failed';
  };
  page.on('requestfailed', onFail);
  try {
    await page.goto(url, { waitUntil: 'load', timeout: 30000 });
    return failure;
  } catch (e) {
    return failure ?? String(e.message).split('\n')[0];
  } finally {
    page.off('requestfailed', onFail);
  }
}

const text = (page, sel) => page.locator(sel).innerText();

async function phaseClient1() {
  const page = await desktop.newPage();

  // Steered name over plain HTTP: service, reason, approved route.
  let r = await go(page, `http://${STEERED}/some/path?q=private`);
  check('http steer page status 403', r.status() === 403, r.status());
  const h1 = await text(page, 'h1');
  check('steer page names the service', /Claude/.test(h1) && /not available/.test(h1), h1);
  const body = await text(page, 'body');
  check('steer page says why (no BAA, no patient information)', /Business Associate Agreement|BAA/.test(await page.content()) && /Patient information must/.test(body), null);
  check('steer page links the approved route', (await page.locator('#approved-route').getAttribute('href')) === APPROVED, null);
  check('steer page gives the instruction', /clinic's AI assistant/.test(body), null);
  out.axe_passes_steer_http = await axe(page, 'steer page (http)');

  // The same over HTTPS: the browser trusts the leaf the portal minted from the test CA.
  r = await go(page, `https://${STEERED}/`);
  const sec = await r.securityDetails();
  check('https steer page served with a portal CA leaf', r.status() === 403 && sec && /shadowgate portal CA/.test(sec.issuer) && sec.subjectName === STEERED, sec);
  check('https steer page names the service and route', /Claude/.test(await text(page, 'h1')) && (await page.locator('#approved-route').getAttribute('href')) === APPROVED, null);
  out.axe_passes_steer_https = await axe(page, 'steer page (https)');
  out.leaf_valid_to = sec.validTo;
  out.leaf_valid_from = sec.validFrom;
  await page.screenshot({ path: `${artifacts}/steer-desktop.png`, fullPage: true });
  const pp = await phone.newPage();
  await go(pp, `https://${STEERED}/`);
  const overflow = await pp.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  check('steer page fits a phone (no horizontal scroll)', !overflow, null);
  await pp.screenshot({ path: `${artifacts}/steer-phone.png`, fullPage: true });

  // A name outside the CA's constraints, even with a leaf the CA signed: the browser refuses it.
  // Control: the same kind of leaf, signed the same way, for a name inside loads.
  const serveLeaf = async (sub) => {
    const s = https
      .createServer(
        {
          cert: readFileSync(`${env('SG_BAD_LEAF_DIR')}/${sub}/leaf.pem`),
          key: readFileSync(`${env('SG_BAD_LEAF_DIR')}/${sub}/leaf.key`),
        },
        (_q, res) => res.end('<!doctype html><title>leaf</title><h1>served by the test server</h1>'),
      )
      .listen(8443, '127.0.0.1');
    await new Promise((ok) => s.once('listening', ok));
    return s;
  };
  const fresh = await desktop.newPage();
  let srv = await serveLeaf('inside');
  let err = await failsToLoad(fresh, `https://${INSIDE}:8443/`);
  srv.close();
  check('control: a leaf for a name inside the constraints is accepted', err === null, err);
  srv = await serveLeaf('outside');
  err = await failsToLoad(fresh, `https://${OUTSIDE}:8443/`);
  srv.close();
  await fresh.close();
  check('name outside the constraints: browser refuses the certificate', err !== null && /CERT/.test(err), err);
  out.outside_constraints_error = err;

  // Coach: warning, route, form.
  r = await go(page, `https://${COACHED}/`);
  check('coach page names the service', /ChatGPT/.test(await text(page, 'h1')), null);
  check('coach page offers the approved route', (await page.locator('#approved-route').getAttribute('href')) === APPROVED, null);
  check('coach page has the acknowledgement', /I will not enter patient information/.test(await text(page, 'label[for=ack]')), null);
  check('coach page asks for no patient details', /Do not type patient/.test(await text(page, '#why-hint')), null);
  check('justification is length-limited', (await page.locator('#why').getAttribute('maxlength')) === '200', null);
  out.axe_passes_coach = await axe(page, 'coach page');
  await page.screenshot({ path: `${artifacts}/coach-desktop.png`, fullPage: true });
  await go(pp, `https://${COACHED}/`);
  await pp.screenshot({ path: `${artifacts}/coach-phone.png`, fullPage: true });

  // A cross-site page cannot acknowledge for the client: post the form's own token from another
  // site (the claude.ai page, no-cors form post); the portal refuses it, so no grant appears.
  const token = await page.locator('input[name=token]').getAttribute('value');
  const side = await desktop.newPage();
  await go(side, `http://${STEERED}/`);
  await side.evaluate(async ([u, t]) => {
    await fetch(u, {
      method: 'POST',
      mode: 'no-cors',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${t}&ack=yes&justification=forged`,
    }).catch(() => {});
  }, [`https://${COACHED}/.shadowgate/continue`, token]);
  r = await go(side, `https://${COACHED}/`);
  check('cross-site post granted nothing: still coached', /Think before/.test(await text(side, 'h1')), null);
  await side.close();

  // The acknowledgement, through the real form.
  const just = env('SG_JUSTIFICATION');
  await page.locator('#ack').check();
  await page.locator('#why').fill(just);
  out.navigations += 1; // the form post (a 303 to the page)
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.locator('#continue').click()]);
  const landed = await text(page, 'body');
  check('after acknowledging: granted status line', /Access granted/.test(landed), landed);
  const status = await text(page, '#grant-status');
  out.grant_status = status;
  out.axe_passes_granted = await axe(page, 'granted page');
  await page.screenshot({ path: `${artifacts}/granted-desktop.png`, fullPage: true });
  // This browser still has chatgpt.com cached at the portal address (portal TTL): the portal
  // says the service is allowed now. (A fresh browser reaches the service: phase `reach`.)
  r = await go(page, `https://${COACHED}/`);
  check('the next request is not coached', r.status() === 200 && /allowed on this device/.test(await text(page, 'h1')), r.status());

  // Replaying the spent token is refused.
  const replay = await page.evaluate(async (t) => {
    const x = await fetch('/.shadowgate/continue', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${t}&ack=yes&justification=again`,
    });
    return { status: x.status, body: await x.text() };
  }, token);
  // (The cross-site post was refused before its token was looked at; the real form spent it.)
  check('replayed token refused', replay.status === 403 && /already sent once/.test(replay.body), replay.status);
  await pp.close();
}

// A new browser process (empty DNS cache) on the granted client: chatgpt.com now resolves to the
// internet test server and the page comes from it (its self-signed certificate is accepted in
// this context only); claude.ai, not granted, is still the portal's steer page.
async function phaseReach() {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, ignoreHTTPSErrors: true });
  ctx.setDefaultTimeout(60000);
  const page = await ctx.newPage();
  const r = await page.goto(`https://${COACHED}/`, { waitUntil: 'load', timeout: 60000 });
  const sec = await r.securityDetails();
  const body = await page.locator('body').innerText();
  out.reach = { status: r.status(), server: r.request().url(), issuer: sec?.issuer ?? null, body, remote: await r.serverAddr() };
  check('granted client reaches the real service', r.status() === 200 && body.trim() === 'ok', out.reach);
  check('... at the internet test server, not the portal', out.reach.remote?.ipAddress === env('SG_SERVER_IP') && !/shadowgate/.test(sec?.issuer ?? ''), out.reach);
  const p2 = await desktop.newPage();
  const r2 = await go(p2, `https://${STEERED}/`);
  check('the grant is for chatgpt only: claude.ai still steered', r2.status() === 403 && /not available/.test(await text(p2, 'h1')), r2.status());
  out.steer_remote = await r2.serverAddr();
  check('... by the portal', out.steer_remote?.ipAddress === portal, out.steer_remote);
  await ctx.close();
}

async function phaseClient2() {
  const page = await desktop.newPage();
  const r = await go(page, `https://${COACHED}/`);
  out.remote = await r.serverAddr();
  check('second client is still coached', r.status() === 403 && /Think before/.test(await text(page, 'h1')), r.status());
  check('... by the portal', out.remote?.ipAddress === portal, out.remote);
  await go(page, `http://${STEERED}/`);
  check('second client is still steered', /not available/.test(await text(page, 'h1')), null);
}

async function phaseExpired() {
  const page = await desktop.newPage();
  const r = await go(page, `https://${COACHED}/`);
  out.remote = await r.serverAddr();
  check('after expiry the first client is coached again', r.status() === 403 && /Think before/.test(await text(page, 'h1')), r.status());
  check('... by the portal', out.remote?.ipAddress === portal, out.remote);
  await page.screenshot({ path: `${artifacts}/expired-desktop.png`, fullPage: true });
}

try {
  if (phase === 'client1') await phaseClient1();
  else if (phase === 'reach') await phaseReach();
  else if (phase === 'client2') await phaseClient2();
  else if (phase === 'expired') await phaseExpired();
  else throw new Error(`unknown SG_PHASE ${phase}`);
  out.ok = true;
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
