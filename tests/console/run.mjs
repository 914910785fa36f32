// The console in a real browser (Debian's Chromium through playwright-core) against a real
// `visage serve` on port 0 with a fresh data directory. The camera is Chromium's fake device,
// fed an MJPEG file made here from fixture photos. Every page gets an accessibility check
// (axe-core: no serious or critical violation) and a screenshot.
//
//   VISAGE_BIN=target/debug/visage node tests/console/run.mjs
//
// Environment: VISAGE_BIN (the binary under test), CHROMIUM (default /usr/bin/chromium),
// CONSOLE_SCREENSHOTS (where screenshots go; default target/console-screenshots).

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const fixtures = path.join(root, 'tests/fixtures');
const bin = path.resolve(process.env.VISAGE_BIN ?? path.join(root, 'target/debug/visage'));
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const shots = path.resolve(process.env.CONSOLE_SCREENSHOTS ?? path.join(root, 'target/console-screenshots'));
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const work = mkdtempSync(path.join(tmpdir(), 'visage-console-'));
const lfw = (person, n) => path.join(fixtures, 'lfw', person, `${person}_${n}.jpg`);

let server;
const browsers = [];
const pages = [];
const failures = [];
let passed = 0;

function log(...args) {
  console.log('console-test:', ...args);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed += 1;
    log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    failures.push(name);
    log(`FAIL ${name}: ${err.stack ?? err}`);
    for (const [i, page] of pages.entries()) {
      if (!page.isClosed()) await page.screenshot({ path: path.join(shots, `FAILED-${i}.png`), fullPage: true }).catch(() => {});
    }
    throw err;
  }
}

/** Starts `visage serve` on port 0 and returns its base URL, read from its "ready" log line. */
async function startServer(dataDir) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('VISAGE_')));
  env.RUST_LOG = 'info';
  // Probe images kept for review, so that the review queue can show them.
  env.VISAGE_REVIEW__KEEP_PROBE_IMAGES_HOURS = '1';
  server = spawn(bin, ['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0'], { env, cwd: root });
  const logFile = path.join(shots, 'visage.log');
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`visage did not get ready in 120 s:\n${output}`)), 120_000);
    const read = (chunk) => {
      output += chunk;
      writeFileSync(logFile, output);
      const ready = output.match(/visage is ready.*?address[=":\s]+"?([\d.]+:\d+)/);
      if (ready) {
        clearTimeout(timer);
        resolve(`http://${ready[1]}`);
      }
    };
    server.stdout.on('data', read);
    server.stderr.on('data', read);
    server.on('exit', (code) => reject(new Error(`visage exited with ${code}:\n${output}`)));
  });
}

/** An MJPEG file of one photo repeated: Chromium's fake camera plays it in a loop. */
function fakeCamera(photo) {
  const file = path.join(work, `${path.basename(photo, '.jpg')}.mjpeg`);
  const frame = readFileSync(photo);
  writeFileSync(file, Buffer.concat(Array.from({ length: 30 }, () => frame)));
  return file;
}

async function launch(camera, options = {}) {
  const browser = await chromium.launch({
    executablePath,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      ...(camera ? [`--use-file-for-fake-video-capture=${fakeCamera(camera)}`] : []),
    ],
  });
  browsers.push(browser);
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB', ...options });
  await context.grantPermissions(['camera']);
  const page = await context.newPage();
  pages.push(page);
  page.problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !/status of 4\d\d/.test(msg.text())) page.problems.push(msg.text());
  });
  page.on('pageerror', (err) => page.problems.push(err.message));
  page.on('dialog', (dialog) => dialog.accept());
  return page;
}

async function signIn(page, base, key) {
  await page.goto(`${base}/console/`);
  await page.fill('#api-key', key);
  await page.press('#api-key', 'Enter');
  await page.waitForSelector('#who');
}

/** axe-core on the page as it is; serious and critical violations fail. */
async function accessible(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(`${axeSource}\n;0`);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  assert(result.testEngine?.name === 'axe-core' && result.passes.length > 0, `${name}: axe did not run`);
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert(bad.length === 0, `${name}: ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`).join('; ')}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function visit(page, base, hash, ready) {
  await page.goto(`${base}/console/${hash}`);
  await page.waitForSelector(ready);
}

/** Several fixture photos side by side, as one JPEG made by the browser's canvas. */
async function groupPhoto(page, photos) {
  const data = photos.map((p) => `data:image/jpeg;base64,${readFileSync(p).toString('base64')}`);
  const b64 = await page.evaluate(async (urls) => {
    const images = await Promise.all(urls.map((url) => new Promise((resolve) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.src = url;
    })));
    const canvas = document.createElement('canvas');
    canvas.width = images.reduce((w, img) => w + img.width, 0);
    canvas.height = Math.max(...images.map((img) => img.height));
    let x = 0;
    const ctx = canvas.getContext('2d');
    for (const img of images) {
      ctx.drawImage(img, x, 0);
      x += img.width;
    }
    return canvas.toDataURL('image/jpeg', 0.95).split(',')[1];
  }, data);
  return { name: 'group.jpg', mimeType: 'image/jpeg', buffer: Buffer.from(b64, 'base64') };
}

/** A grey photo with no face in it, made by the browser's canvas. */
async function blankPhoto(page) {
  const b64 = await page.evaluate(() => {
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 240;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#8a8f96';
    ctx.fillRect(0, 0, 320, 240);
    return canvas.toDataURL('image/jpeg', 0.9).split(',')[1];
  });
  return Buffer.from(b64, 'base64');
}

async function text(page, selector) {
  return (await page.textContent(selector))?.trim() ?? '';
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const dataDir = path.join(work, 'data');
  const created = execFileSync(bin, ['keys', 'create', '--data-dir', dataDir, '--name', 'console-admin', '--role', 'admin'], { encoding: 'utf8' });
  const adminKey = created.match(/vsg_\S+/)?.[0];
  assert(adminKey, `no key in: ${created}`);
  const base = await startServer(dataDir);
  log(`visage at ${base}, data in ${dataDir}`);

  // Bob Graham enrols from the camera (photo 0001) and verifies from it (photo 0005).
  const page = await launch(lfw('Bob_Graham', '0001'));

  await step('the console is served with a strict Content-Security-Policy', async () => {
    const response = await page.goto(`${base}/console/`);
    const csp = response.headers()['content-security-policy'];
    assert(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), `CSP: ${csp}`);
    assert(!(await page.content()).includes('<script>'), 'an inline script');
    const root = await page.goto(`${base}/`);
    assert(root.url().endsWith('/console/'), `/ leads to ${root.url()}`);
  });

  await step('sign-in page: a wrong key is refused, keyboard only', async () => {
    await page.waitForSelector('#api-key');
    await accessible(page, 'sign-in');
    await shot(page, '01-sign-in');
    const first = await page.evaluate(() => document.querySelector('a[href], button, input, select')?.id);
    assert(first === 'skip', `the first focusable element is ${first}, not the skip link`);
    await page.focus('#skip');
    await page.keyboard.press('Enter');
    assert(await page.evaluate(() => document.activeElement.id === 'main'), 'the skip link does not reach the content');
    await page.focus('#api-key');
    await page.fill('#api-key', 'vsg_nope_nope');
    await page.press('#api-key', 'Enter');
    await page.waitForSelector('#signin-message.error');
    assert((await text(page, '#signin-message')).includes('not accepted'), 'no refusal message');
    const stored = await page.evaluate(() => [document.cookie, JSON.stringify(sessionStorage), window.location.href]);
    assert(!stored.join(' ').includes('vsg_nope'), 'a refused key was kept');
  });

  await step('sign in: the key stays in the tab, never in a cookie or the URL; the menu follows the role', async () => {
    await signIn(page, base, adminKey);
    await page.waitForSelector('#readiness');
    const [cookie, url] = await page.evaluate(() => [document.cookie, window.location.href]);
    assert(!cookie.includes('vsg_') && !url.includes('vsg_'), 'the key leaked into a cookie or the URL');
    const menu = await page.$$eval('#menu a', (links) => links.map((a) => a.getAttribute('href')));
    for (const hash of ['#/overview', '#/subjects', '#/enrol', '#/verify', '#/identify', '#/review', '#/keys', '#/audit']) {
      assert(menu.includes(hash), `the admin menu lacks ${hash}: ${menu}`);
    }
    assert((await text(page, '#readiness')).includes('Ready'), 'not ready');
    await accessible(page, 'overview');
    await shot(page, '02-overview');
  });

  await step('create a subject with its consent', async () => {
    await visit(page, base, '#/subjects', '#new-subject');
    await page.fill('#new-external-id', 'bob-graham');
    await page.fill('#consent-given-by', 'the subject');
    await page.fill('#consent-purpose', 'building access');
    await page.fill('#consent-reference', 'form 7/2026');
    await page.click('#new-subject button[type=submit]');
    await page.waitForSelector('#subject-title');
    assert((await text(page, '#subject-title')) === 'bob-graham', 'not on the subject page');
    assert((await page.textContent('main')).includes('building access'), 'the consent purpose is not shown');
    await accessible(page, 'subject');
    await shot(page, '03-subject-new');
  });

  await step('enrol from the camera: guidance, then capture once the quality gate passes', async () => {
    await page.click('#enrol-link');
    await page.waitForSelector('#camera-start');
    assert(await page.isDisabled('#capture'), 'capture is possible before any check');
    await page.click('#camera-start');
    await page.waitForSelector('.guidance.ok', { timeout: 30_000 });
    assert(await page.isEnabled('#capture'), 'the gate passed but capture is disabled');
    await accessible(page, 'enrol');
    await shot(page, '04-enrol-camera');
    await page.click('#capture');
    await page.waitForSelector('#enrol-results li.ok', { timeout: 30_000 });
    assert((await text(page, '#enrol-advice')).includes('Another frontal photo'), 'one face enrolled and no advice');
    await page.click('#camera-stop');
  });

  await step('batch upload: several files, each answered', async () => {
    await page.click('#tab-file');
    const photo = { name: 'Bob_Graham_0005.jpg', mimeType: 'image/jpeg', buffer: readFileSync(lfw('Bob_Graham', '0005')) };
    const wall = { name: 'wall.jpg', mimeType: 'image/jpeg', buffer: await blankPhoto(page) };
    const broken = { name: 'not-an-image.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('this is not a JPEG') };
    await page.setInputFiles('#image-files', [photo, wall, broken]);
    await page.waitForFunction(() => document.querySelectorAll('#enrol-results li').length === 4, null, { timeout: 60_000 });
    const items = await page.$$eval('#enrol-results li', (lis) => lis.map((li) => [li.className, li.textContent]));
    assert(items[1][0] === 'ok', `the second photo was not enrolled: ${items[1][1]}`);
    assert(items[2][0] === 'error' && items[2][1].includes('No face found'), `the photo without a face: ${items[2]}`);
    assert(items[3][0] === 'error' && /not supported|not an image/.test(items[3][1]), `the broken file: ${items[3]}`);
    assert((await text(page, '#enrol-progress')).includes('1 face(s) enrolled from 3'), await text(page, '#enrol-progress'));
    await shot(page, '05-enrol-files');
    await visit(page, base, `#/subjects`, '#subject-list a');
    await page.click('#subject-list a');
    await page.waitForSelector('#subject-title');
    const faces = await page.$$('main table tbody tr');
    assert(faces.length >= 2, `the subject has ${faces.length} faces`);
    await shot(page, '06-subject-faces');
  });

  await step('delete a face', async () => {
    const before = (await page.$$('main table tbody tr')).length;
    await page.click('main table tbody tr:last-child button.danger');
    await page.waitForFunction((n) => document.querySelectorAll('main table tbody tr').length === n - 1, before);
  });

  const verifyFromCamera = async (photo, expected, shotName) => {
    const camPage = await launch(photo);
    await signIn(camPage, base, adminKey);
    await visit(camPage, base, '#/verify', '#verify-external-id');
    await camPage.fill('#verify-external-id', 'bob-graham');
    await camPage.click('#camera-start');
    await camPage.waitForFunction(() => !document.querySelector('#capture').disabled, null, { timeout: 30_000 });
    await camPage.click('#capture');
    await camPage.waitForSelector('#decision');
    const decision = await text(camPage, '#decision');
    assert(decision === expected, `verify said "${decision}", expected "${expected}"`);
    assert((await text(camPage, '#result')).includes('false-accept rate'), 'the FAR of the threshold is not shown');
    await accessible(camPage, 'verify');
    await shot(camPage, shotName);
    await camPage.context().browser().close();
  };

  await step('verify the same person from the camera: match', () => verifyFromCamera(lfw('Bob_Graham', '0005'), 'Match', '07-verify-match'));
  await step('verify a stranger from the camera: no match', () => verifyFromCamera(lfw('Elton_John', '0001'), 'No match', '08-verify-stranger'));

  await step('identify a photo with several faces: every face boxed, the enrolled one named', async () => {
    await visit(page, base, '#/identify', '#all-faces');
    await page.click('#tab-file');
    const photo = await groupPhoto(page, [lfw('Elton_John', '0007'), lfw('Bob_Graham', '0005'), lfw('Bill_Nelson', '0001')]);
    await page.setInputFiles('#image-files', photo);
    await page.waitForSelector('#face-list');
    const faces = await page.$$eval('#face-list > li > strong', (els) => els.map((el) => el.textContent));
    assert(faces.length === 3, `faces found: ${faces}`);
    assert(faces.filter((name) => name === 'bob-graham').length === 1, `names: ${faces}`);
    assert(await page.$('#result canvas.overlay'), 'no boxes drawn');
    await accessible(page, 'identify');
    await shot(page, '09-identify-group');
    if (process.env.CONSOLE_UPDATE_DOCS === '1') {
      await page.screenshot({ path: path.join(root, 'docs/console.png') });
    }
  });

  await step('a printed photo is refused under liveness "require"', async () => {
    await visit(page, base, '#/verify', '#verify-external-id');
    await page.fill('#verify-external-id', 'bob-graham');
    await page.selectOption('#liveness-mode', 'require');
    await page.click('#tab-file');
    await page.setInputFiles('#image-files', path.join(fixtures, 'nuaa/print/0005_00_00_01_10.jpg'));
    await page.waitForSelector('#match-error');
    assert((await text(page, '#decision')) === 'Presentation attack refused', `decision: ${await text(page, '#decision')}`);
    await shot(page, '10-verify-spoof');
  });

  await step('review: label a decision and see the labelled counts move', async () => {
    await visit(page, base, '#/review', '#queue tbody tr');
    const before = await text(page, '#far');
    const rows = await page.$$('#queue tbody tr');
    assert(rows.length >= 2, `${rows.length} decisions in the queue`);
    assert((await text(page, '#probe-note')).includes('kept for 1 h'), await text(page, '#probe-note'));
    await page.click('#queue tbody tr:first-child button:has-text("Show photo")');
    await page.waitForSelector('#queue tbody tr:first-child img.probe');
    assert(await page.$eval('#queue tbody tr:first-child img.probe', (img) => img.complete && img.naturalWidth > 0), 'the probe did not load');
    await accessible(page, 'review');
    await shot(page, '11-review');
    await page.click('#queue tbody tr:first-child button:has-text("Impostor")');
    await page.waitForFunction((b) => document.querySelector('#far')?.textContent.trim() !== b, before);
    const after = await text(page, '#far');
    assert(/impostor attempts labelled: 1\b/.test(after), `FAR card says: ${after}`);
    assert((await text(page, '#queue tbody tr:first-child .label-cell')).startsWith('impostor'), 'the row does not show its label');
  });

  await step('keys: create one (secret shown once), sign in with it, revoke it: its tab is signed out', async () => {
    await visit(page, base, '#/keys', '#new-key');
    await page.fill('#key-name', 'gate-1');
    await page.selectOption('#key-role', 'verify');
    await page.click('#new-key button[type=submit]');
    const token = await text(page, '#new-token');
    assert(token.startsWith('vsg_'), `token: ${token}`);
    await accessible(page, 'keys');
    await shot(page, '12-keys');
    const gate = await page.context().newPage();
    await signIn(gate, base, token);
    const menu = await gate.$$eval('#menu a', (links) => links.map((a) => a.getAttribute('href')));
    assert(menu.includes('#/verify') && !menu.includes('#/keys') && !menu.includes('#/enrol'), `verify key menu: ${menu}`);
    await page.click('button[aria-label="Revoke key gate-1"]');
    await page.waitForSelector('text=revoked');
    await gate.click('#menu a[href="#/identify"]');
    await gate.waitForSelector('#signin-message.error');
    assert((await text(gate, '#signin-message')).includes('revoked'), 'no revoked message');
    await gate.close();
  });

  await step('audit log with filters', async () => {
    await visit(page, base, '#/audit', '#audit-list table');
    await page.selectOption('#audit-action', 'key.revoke');
    await page.click('#audit-filters button[type=submit]');
    await page.waitForFunction(() => document.querySelectorAll('#audit-list tbody tr').length === 1);
    await accessible(page, 'audit');
    await shot(page, '13-audit');
  });

  await step('withdraw consent: the subject is erased and a destruction record is kept', async () => {
    const response = await fetch(`${base}/v1/subjects`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${adminKey}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ external_id: 'carol', consent: { given_by: 'Carol', purpose: 'console test' } }),
    });
    assert(response.status === 201, `creating carol: ${response.status}`);
    const carol = await response.json();
    await visit(page, base, `#/subject/${carol.id}`, '#withdraw');
    await accessible(page, 'subject with withdrawal');
    await page.click('#withdraw');
    await page.waitForSelector('#subject-list');
    const listed = await page.$$eval('#subject-list a', (links) => links.map((a) => a.textContent));
    assert(!listed.includes('carol'), `carol is still listed: ${listed}`);
    const records = await (await fetch(`${base}/v1/destruction-records`, {
      headers: { Authorization: `Bearer ${adminKey}` },
    })).json();
    assert(records.items.some((r) => r.subject_id === carol.id && r.ground === 'consent_withdrawn'),
      `no destruction record: ${JSON.stringify(records)}`);
  });

  await step('erase the subject: gone from the list and from identification', async () => {
    await visit(page, base, '#/subjects', '#subject-list a');
    await page.click('#subject-list a');
    await page.waitForSelector('#erase');
    assert(await page.isDisabled('#erase'), 'erasure without confirmation');
    await page.fill('#erase-confirm', 'bob-graham');
    await shot(page, '14-erase');
    await page.click('#erase');
    await page.waitForSelector('#subject-list');
    assert(!(await page.$('#subject-list a')), 'the erased subject is still listed');
    await visit(page, base, '#/identify', '#all-faces');
    await page.click('#tab-file');
    await page.setInputFiles('#image-files', lfw('Bob_Graham', '0005'));
    await page.waitForSelector('#face-list');
    const names = await page.$$eval('#face-list > li > strong', (els) => els.map((el) => el.textContent));
    assert(!names.includes('bob-graham'), `still identified: ${names}`);
  });

  await step('every page in Russian, with nothing left untranslated', async () => {
    const ru = await launch(null, { locale: 'ru-RU' });
    await ru.goto(`${base}/console/`);
    await ru.waitForSelector('#api-key');
    assert((await text(ru, 'h1')) === 'Вход', `the sign-in title is ${await text(ru, 'h1')}`);
    assert((await ru.getAttribute('html', 'lang')) === 'ru', 'html lang is not ru');
    await signIn(ru, base, adminKey);
    for (const hash of ['#/overview', '#/subjects', '#/enrol', '#/verify', '#/identify', '#/review', '#/keys', '#/audit']) {
      await visit(ru, base, hash, 'main h1');
      await ru.waitForFunction(() => !document.querySelector('main .loading'));
      const body = await ru.textContent('body');
      assert(!body.includes('⟦'), `${hash}: untranslated ${body.match(/⟦[^⟧]+⟧/g)}`);
      await accessible(ru, `ru ${hash}`);
    }
    const missing = await ru.evaluate(async () => (await import('./js/i18n.js')).untranslated());
    assert(missing.length === 0, `keys in one language only: ${missing}`);
    await visit(ru, base, '#/overview', '#readiness');
    await shot(ru, '15-overview-ru');
    assert(ru.problems.length === 0, `browser errors: ${ru.problems}`);
  });

  await step('360 px wide, dark theme: no page scrolls sideways', async () => {
    const phone = await launch(null, { viewport: { width: 360, height: 740 }, colorScheme: 'dark' });
    await signIn(phone, base, adminKey);
    assert(await phone.evaluate(() => document.documentElement.dataset.theme === 'dark'), 'the system\'s dark theme is not applied');
    for (const hash of ['#/overview', '#/subjects', '#/enrol', '#/verify', '#/identify', '#/review', '#/keys', '#/audit']) {
      await visit(phone, base, hash, 'main h1');
      await phone.waitForFunction(() => !document.querySelector('main .loading'));
      const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert(overflow <= 1, `${hash} is ${overflow} px wider than the screen`);
      await accessible(phone, `dark 360px ${hash}`);
    }
    await visit(phone, base, '#/identify', '#all-faces');
    await shot(phone, '16-identify-360-dark');
  });

  assert(page.problems.length === 0, `browser errors: ${page.problems}`);
}

try {
  await main();
  log(`${passed} steps passed; screenshots in ${shots}`);
} catch {
  log(`${failures.length} step failed after ${passed} passed; screenshots in ${shots}; server log in ${path.join(shots, 'visage.log')}`);
  process.exitCode = 1;
} finally {
  for (const browser of browsers) await browser.close().catch(() => {});
  if (server) {
    server.stdout.removeAllListeners('data');
    server.stderr.removeAllListeners('data');
    server.kill('SIGTERM');
  }
  rmSync(work, { recursive: true, force: true });
}
