// Browser end-to-end journeys for Quire: Playwright (playwright-core) driving the
// system Chromium, each journey once with JavaScript on (htmx) and once with it off
// (plain HTML forms), axe-core on every page the JavaScript-on pass visits.
//
//   E2E_BASE_URL=http://127.0.0.1:8000 node run.mjs
//
// Usually started by ./run, which builds and starts a private web + worker first.
// Environment: E2E_BASE_URL (default http://127.0.0.1:8000), CHROMIUM (default
// /usr/bin/chromium), E2E_MODES (default "js,nojs"), E2E_JOURNEYS (default all, e.g.
// "admin-jobs"), E2E_HEADED=1 to watch.
// Prints one summary line at the end and exits 1 when anything failed.

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { coverPng } from './png.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const BASE = (process.env.E2E_BASE_URL || 'http://127.0.0.1:8000').replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MODES = (process.env.E2E_MODES || 'js,nojs').split(',').map((m) => m.trim()).filter(Boolean);
const ARTIFACTS = join(HERE, 'artifacts');
const PASSWORD = 'e2e-password-0123';
const IMAGE_TIMEOUT = 90_000; // the worker decodes and resizes the cover
const MAIL_TIMEOUT = 60_000;  // the worker writes the verification mail
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const RUN_ID = `${Date.now().toString(36)}${process.pid.toString(36)}`.slice(-8);

// --- output -------------------------------------------------------------------------

const T0 = Date.now();
const secs = (ms) => `${(ms / 1000).toFixed(1)}s`;
const log = (msg) => console.log(msg);
const rel = (p) => relative(process.cwd(), p) || p;

class StepError extends Error {}

// --- the step runner ----------------------------------------------------------------

/** One run of one journey (in one mode): steps, artifacts on failure, a11y findings. */
class Run {
  constructor(name, mode) {
    this.name = name;
    this.mode = mode;
    this.js = mode === 'js';
    this.page = null;      // the page artifacts are taken from
    this.a11y = [];        // serious/critical axe violations found during this run
    this.pageErrors = [];  // uncaught exceptions in the page (JS mode)
  }

  get label() { return `${this.name} [${this.js ? 'JS on' : 'JS off'}]`; }

  /** Runs one step; on failure saves a screenshot and the HTML, then rethrows. */
  async step(title, fn) {
    const t = Date.now();
    try {
      const out = await fn();
      log(`    ok   ${title} (${secs(Date.now() - t)})`);
      return out;
    } catch (e) {
      log(`    FAIL ${title} (${secs(Date.now() - t)})`);
      const saved = await this.artifacts(title);
      const err = new StepError(`${title}: ${firstLines(e)}`);
      err.saved = saved;
      throw err;
    }
  }

  /** Screenshot + HTML of the current page into e2e/artifacts/; returns the paths. */
  async artifacts(title, page = this.page) {
    if (!page || page.isClosed()) return [];
    mkdirSync(ARTIFACTS, { recursive: true });
    const base = join(ARTIFACTS, `${this.mode}-${this.name}-${title}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 90));
    const saved = [];
    try { await page.screenshot({ path: `${base}.png`, fullPage: true, timeout: 10_000 }); saved.push(`${base}.png`); } catch (e) { log(`         (no screenshot: ${e.message.split('\n')[0]})`); }
    try { writeFileSync(`${base}.html`, `<!-- ${page.url()} -->\n${await page.content()}`); saved.push(`${base}.html`); } catch (e) { log(`         (no HTML: ${e.message.split('\n')[0]})`); }
    for (const p of saved) log(`         saved ${rel(p)}`);
    return saved;
  }

  /**
   * axe-core on the page as it is now; records serious and critical violations. Only
   * in the JavaScript-on pass: with scripts disabled axe's timers never fire. The no-JS
   * pages are the same templates (the JS pass visits each of them).
   */
  async axe(page, what) {
    if (!this.js) return;
    const results = await withTimeout(30_000, `axe on ${what}`, async () => {
      await page.evaluate(AXE_SOURCE); // CDP evaluation: not subject to the page's CSP
      return page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    });
    const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    if (bad.length === 0) return;
    const where = `${what} (${new URL(page.url()).pathname})`;
    log(`    A11Y ${bad.length} serious/critical violation(s) on ${where}:`);
    for (const v of bad) {
      log(`         [${v.impact}] ${v.id}: ${v.help} — ${v.helpUrl}`);
      for (const n of v.nodes.slice(0, 5)) log(`           ${n.target.join(' ')}: ${n.failureSummary.replace(/\s*\n\s*/g, ' | ')}`);
      if (v.nodes.length > 5) log(`           … and ${v.nodes.length - 5} more`);
    }
    this.a11y.push({ where, violations: bad });
    await this.artifacts(`a11y ${what}`, page);
  }
}

// --- helpers the journeys use ----------------------------------------------------------

async function withTimeout(ms, what, fn) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms / 1000}s`)), ms); });
  try { return await Promise.race([fn(), timeout]); } finally { clearTimeout(timer); }
}

const firstLines = (e, n = 6) => `${e?.message ?? e}`.split('\n').slice(0, n).join('\n');

function expect(cond, message) {
  if (!cond) throw new Error(message);
}

async function expectText(locator, re, what) {
  await locator.first().waitFor({ state: 'visible', timeout: 10_000 }).catch(() => {});
  const text = (await locator.count()) ? (await locator.first().innerText()).trim() : '(missing)';
  expect(re.test(text), `${what}: expected ${re}, got ${JSON.stringify(text.slice(0, 200))}`);
}

/** Waits until the page is at `path` (a string or a RegExp on the pathname). */
async function expectPath(page, path, timeout = 15_000) {
  const ok = (u) => (typeof path === 'string' ? u.pathname === path : path.test(u.pathname));
  await page.waitForURL((u) => ok(u), { timeout, waitUntil: 'load' }).catch(() => {});
  const now = new URL(page.url());
  expect(ok(now), `expected to be at ${path}, but the page is ${now.pathname}${now.search}`);
  return now;
}

/** The image really loaded: complete, with natural width and height > 0. */
async function expectImageLoaded(img, what, timeout = 20_000) {
  await img.scrollIntoViewIfNeeded({ timeout }); // covers on cards are loading="lazy"
  const handle = await img.elementHandle({ timeout });
  const page = img.page();
  try {
    await page.waitForFunction((el) => el.complete && el.naturalWidth > 0 && el.naturalHeight > 0, handle, { timeout, polling: 200 });
  } catch {
    const s = await img.evaluate((el) => ({ src: el.currentSrc || el.src, complete: el.complete, w: el.naturalWidth, h: el.naturalHeight }));
    throw new Error(`${what} did not load: ${JSON.stringify(s)}`);
  }
  return img.evaluate((el) => ({ src: el.currentSrc || el.src, w: el.naturalWidth, h: el.naturalHeight }));
}

/** The logged-in header: the user's name and a "Log out" button. */
async function expectLoggedIn(page, username) {
  const nav = page.getByRole('navigation', { name: 'Main' });
  await expectText(nav.getByRole('link', { name: username, exact: true }), new RegExp(`^${username}$`), 'user link in the header');
  expect(await nav.getByRole('button', { name: 'Log out' }).isVisible(), 'no "Log out" button in the header');
}

async function expectLoggedOut(page) {
  const nav = page.getByRole('navigation', { name: 'Main' });
  expect(await nav.getByRole('link', { name: 'Log in' }).isVisible(), 'no "Log in" link in the header');
  expect(!(await nav.getByRole('button', { name: 'Log out' }).count()), 'still a "Log out" button in the header');
}

async function expectFlash(page, re) {
  await expectText(page.locator('.flash').filter({ hasText: re }), re, 'flash message');
}

/** Signs up through the form; returns { username, email }. */
async function signUp(run, page, prefix) {
  const username = `${prefix}_${run.mode}_${RUN_ID}`.slice(0, 30);
  const email = `${username}@example.test`;
  await run.step(`open the signup page`, async () => {
    await page.goto(`${BASE}/signup`);
    await expectText(page.locator('h1'), /Create your account/, 'signup heading');
    await run.axe(page, 'signup form');
  });
  await run.step(`sign up as ${username}`, async () => {
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await expectPath(page, '/');
    await expectFlash(page, new RegExp(`Welcome to Quire, ${username}!`));
    await expectLoggedIn(page, username);
    await expectText(page.locator('.flash.info'), /Please confirm your email address/, 'verification banner');
    await run.axe(page, 'home, just signed up');
  });
  return { username, email };
}

// --- the journeys ----------------------------------------------------------------------

/** a. sign up → verification mail at /dev/mail → verify link → log out → log in. */
async function journeyAccount(run, browser, shared) {
  const context = await newContext(browser, run);
  const page = (run.page = await context.newPage());
  try {
    const user = await signUp(run, page, 'writer');

    let mailUrl;
    await run.step('find the verification mail at /dev/mail', async () => {
      const deadline = Date.now() + MAIL_TIMEOUT;
      const row = page.locator('tbody tr').filter({ hasText: user.email });
      for (;;) {
        await page.goto(`${BASE}/dev/mail`);
        if (await row.count()) break;
        expect(Date.now() < deadline, `no mail to ${user.email} after ${MAIL_TIMEOUT / 1000}s (is the worker running?)`);
        await page.waitForTimeout(500);
      }
      await run.axe(page, 'dev mail list');
      await row.first().getByRole('link').click();
      await expectPath(page, /^\/dev\/mail\/[\w-]+$/);
      await expectText(page.locator('h1'), /confirm/i, 'mail subject');
      await expectText(page.locator('pre'), /\/verify-email\//, 'mail text with the link');
      await run.axe(page, 'dev mail message');
      mailUrl = page.url();
    });

    await run.step('follow the link in the mail', async () => {
      // The HTML part, as a mail client shows it; click its "Confirm my email" link.
      await page.getByRole('link', { name: 'View the HTML part' }).click();
      await expectPath(page, /^\/dev\/mail\/[\w-]+\/html$/);
      const link = page.getByRole('link', { name: 'Confirm my email' });
      const href = await link.getAttribute('href');
      expect(href && href.startsWith(`${BASE}/verify-email/`), `verify link ${href} does not point at ${BASE}/verify-email/…`);
      await link.click();
      await expectPath(page, /^\/verify-email\/[^/]+$/);
      await expectText(page.locator('h1'), /Your email address is confirmed/, 'confirmation heading');
      await expectLoggedIn(page, user.username);
      expect(
        (await page.locator('.flash.info', { hasText: 'Please confirm your email' }).count()) === 0,
        'the confirmation page still asks to confirm the email address',
      );
      await run.axe(page, 'email confirmed');
      await page.getByRole('link', { name: 'Go to Quire' }).click();
      await expectPath(page, '/');
      expect(!(await page.locator('.flash.info', { hasText: 'Please confirm your email' }).count()), 'the "confirm your email" banner is still shown after confirming');
      expect(mailUrl, 'no mail');
    });

    await run.step('log out', async () => {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Log out' }).click();
      await expectPath(page, '/');
      await expectFlash(page, /You are logged out/);
      await expectLoggedOut(page);
      await run.axe(page, 'home, logged out');
    });

    await run.step('log in again', async () => {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Log in' }).click();
      await expectPath(page, '/login');
      await run.axe(page, 'login form');
      await page.getByLabel('Username or email').fill(user.email);
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Log in' }).click();
      await expectPath(page, '/');
      await expectLoggedIn(page, user.username);
      expect(!(await page.locator('.flash.info', { hasText: 'Please confirm your email' }).count()), 'the "confirm your email" banner is back after logging in');
      await run.axe(page, 'home, logged in');
    });

    shared.writer = { ...user, context };
  } catch (e) {
    await context.close();
    throw e;
  }
}

/** b. story with a cover → two chapters → publish → read chapter 1, next, previous. */
async function journeyStory(run, browser, shared) {
  const { writer } = shared;
  const page = (run.page = await writer.context.newPage());
  const title = `The Lighthouse Keeper ${run.mode} ${RUN_ID}`;
  const chapters = [
    { title: 'The storm', body: 'The wind rose before dawn.\n\nBy noon the *lamp* was the only light on the coast.', shows: /By noon the lamp was the only light on the coast\./ },
    { title: 'The visitor', body: 'A boat came in on the morning tide.\n\nShe carried a letter with **no name** on it.', shows: /She carried a letter with no name on it\./ },
  ];
  const cover = join(shared.tmp, 'cover.png');
  writeFileSync(cover, coverPng(900, 600));
  let storyPath;

  await run.step('open the new story form', async () => {
    await page.goto(`${BASE}/`);
    await page.getByRole('link', { name: 'Start a new story' }).click();
    await expectPath(page, '/stories/new');
    await run.axe(page, 'new story form');
  });

  await run.step('create a draft with a cover image', async () => {
    await page.getByLabel('Title').fill(title);
    await page.getByLabel('Summary').fill('A keeper, a storm, and a letter nobody sent.');
    await page.getByLabel('Tags').fill('e2e, sea');
    await page.getByLabel('Cover image').setInputFiles(cover);
    const submitted = waitForSubmit(page, run, 'POST', '/stories');
    await page.getByRole('button', { name: 'Create draft' }).click();
    await submitted;
    storyPath = (await expectPath(page, /^\/s\/\d+$/)).pathname;
    await expectText(page.locator('h1'), new RegExp(`^${title}$`), 'story title');
    await expectFlash(page, /Your draft is saved/);
    await expectText(page.locator('.flash.info'), /This is a draft/, 'draft notice');
    await run.axe(page, 'draft story page');
  });

  await run.step('the cover appears once the worker has processed it', async () => {
    const img = page.locator('.story .figure picture img');
    const pending = await page.locator('.figure-pending').count();
    if (run.js) {
      // htmx polls the placeholder and swaps the picture in, without a reload.
      if (pending) await run.axe(page, 'draft story page with the cover placeholder');
      await page.evaluate(() => { window.e2eSamePage = true; });
      await img.waitFor({ state: 'attached', timeout: IMAGE_TIMEOUT });
      expect(await page.evaluate(() => window.e2eSamePage === true), 'the page reloaded instead of htmx swapping the picture in');
      if (pending) {
        expect(page.context().hxRequests.some((r) => /^GET \/m\/[0-9a-f-]{32,36}\/figure(\?|$)/.test(r)), 'no htmx request polled /m/{public_id}/figure');
        // The swapped-in cover keeps the text the full page gave it.
        const alt = await img.getAttribute('alt');
        expect(alt === `Cover of ${title}`, `the swapped-in cover has alt=${JSON.stringify(alt)}, the full page says "Cover of ${title}"`);
      }
    } else {
      const deadline = Date.now() + IMAGE_TIMEOUT;
      while (!(await img.count())) {
        const failed = page.locator('.figure-failed');
        if (await failed.count()) throw new Error(`the cover could not be processed: ${(await failed.innerText()).trim()}`);
        await expectText(page.locator('.figure-pending'), /Preparing the image/, 'the placeholder');
        expect(Date.now() < deadline, `no cover image after ${IMAGE_TIMEOUT / 1000}s (is the worker running?)`);
        await page.waitForTimeout(1000);
        await page.reload();
      }
    }
    log(pending ? `         (a placeholder first, then the picture${run.js ? ', swapped in by htmx' : ' after reloading'})` : '         (the cover was ready at the first render)');
    const loaded = await expectImageLoaded(img, 'the cover image', IMAGE_TIMEOUT);
    expect(/\/media\/variants\//.test(loaded.src), `the cover is not a processed variant: ${loaded.src}`);
    expect(Math.abs(loaded.w / loaded.h - 1.5) < 0.02, `the cover has the wrong shape: ${loaded.w}×${loaded.h} (uploaded 900×600)`);
    expect(!(await page.locator('.figure-pending').count()), 'the "Preparing the image" placeholder is still shown');
    await run.axe(page, 'draft story page with its cover');
  });

  for (const [i, ch] of chapters.entries()) {
    const n = i + 1;
    await run.step(`add chapter ${n}`, async () => {
      if (new URL(page.url()).pathname !== storyPath) {
        await page.getByRole('navigation', { name: 'Chapters' }).getByRole('link', { name: 'Contents' }).click();
        await expectPath(page, storyPath);
      }
      await expectText(page.locator('#add-chapter'), new RegExp(`Add chapter ${n}`), 'chapter form heading');
      await page.getByLabel('Chapter title').fill(ch.title);
      await page.getByLabel('Text', { exact: true }).fill(ch.body);
      const submitted = waitForSubmit(page, run, 'POST', `${storyPath}/chapters`);
      await page.getByRole('button', { name: 'Save chapter' }).click();
      await submitted;
      await expectPath(page, `${storyPath}/c/${n}`);
      await expectFlash(page, new RegExp(`Chapter ${n} is saved`));
      await expectText(page.locator('h1'), new RegExp(`Chapter ${n}:\\s*${ch.title}`), 'chapter heading');
      await expectText(page.locator('.story-body'), ch.shows, 'chapter text');
      await run.axe(page, `chapter ${n} just saved`);
    });
  }

  await run.step('publish', async () => {
    await page.getByRole('navigation', { name: 'Chapters' }).getByRole('link', { name: 'Contents' }).click();
    await expectPath(page, storyPath);
    await expectText(page.locator('.chapter-list'), /The storm[\s\S]*The visitor/, 'chapter list');
    await page.getByRole('button', { name: 'Publish' }).click();
    await expectPath(page, storyPath);
    expect(!(await page.locator('.flash.info', { hasText: 'This is a draft' }).count()), 'still marked as a draft after publishing');
    await expectText(page.locator('.story .meta').first(), /published/, 'published date');
    expect(!(await page.getByRole('button', { name: 'Publish' }).count()), 'the Publish button is still there');
    await run.axe(page, 'published story page');
  });

  await run.step('the published story shows its cover', async () => {
    const loaded = await expectImageLoaded(page.locator('.story .figure picture img'), 'the cover image');
    expect(/\/media\/variants\//.test(loaded.src), `the cover is not a processed variant: ${loaded.src}`);
  });

  await run.step('read chapter 1, then "next" to chapter 2', async () => {
    await page.getByRole('link', { name: 'Start reading' }).click();
    await expectPath(page, `${storyPath}/c/1`);
    await expectText(page.locator('h1'), /Chapter 1:\s*The storm/, 'chapter 1 heading');
    expect(!(await page.getByRole('link', { name: /Previous chapter/ }).count()), 'chapter 1 has a "previous" link');
    await run.axe(page, 'chapter 1');
    await page.getByRole('link', { name: /Next chapter/ }).click();
    await expectPath(page, `${storyPath}/c/2`);
    await expectText(page.locator('h1'), /Chapter 2:\s*The visitor/, 'chapter 2 heading');
    await expectText(page.locator('.story-body'), chapters[1].shows, 'chapter 2 text');
    await expectText(page.locator('.story-body strong'), /^no name$/, 'Markdown bold in chapter 2');
    expect(!(await page.getByRole('link', { name: /Next chapter/ }).count()), 'the last chapter has a "next" link');
    await expectText(page.getByRole('navigation', { name: 'Chapters' }), /The latest chapter/, 'end of the story');
    await run.axe(page, 'chapter 2');
  });

  await run.step('"previous" goes back to chapter 1', async () => {
    await page.getByRole('link', { name: /Previous chapter/ }).click();
    await expectPath(page, `${storyPath}/c/1`);
    await expectText(page.locator('h1'), /Chapter 1:\s*The storm/, 'chapter 1 heading');
    await expectText(page.locator('.story-body'), chapters[0].shows, 'chapter 1 text');
  });

  shared.story = { title, path: storyPath, author: writer.username };
  await page.close();
}

/** b2. an anonymous reader (a browser context of their own, keeping our cookie) reads
 *  both chapters; after the web process's flush (every STATS_FLUSH_SECS, 1 s here) the
 *  author opens the statistics page from the story page and sees the chart and its text
 *  alternative with the views. */
async function journeyStats(run, browser, shared) {
  const { story, writer } = shared;
  const context = await newContext(browser, run);
  const readerPage = await context.newPage();
  const page = (run.page = await writer.context.newPage());
  try {
    await run.step('an anonymous reader reads both chapters', async () => {
      run.page = readerPage;
      await readerPage.goto(`${BASE}/`); // the first page sets the anonymous cookie
      for (const n of [1, 2]) {
        await readerPage.goto(`${BASE}${story.path}/c/${n}`);
        await expectText(readerPage.locator('h1'), new RegExp(`Chapter ${n}:`), `chapter ${n} heading`);
      }
      run.page = page;
    });

    let views = 0;
    let readers = 0;
    await run.step('the author opens the statistics from the story page', async () => {
      await page.goto(`${BASE}${story.path}`);
      await page.getByRole('link', { name: 'Statistics' }).click();
      await expectPath(page, `${story.path}/stats`);
      await expectText(page.locator('h1'), /Reading statistics/, 'stats heading');
      // The flush runs every second: reload until the reads are in (a few seconds at most).
      const deadline = Date.now() + 15_000;
      for (;;) {
        const summary = (await page.locator('#reads-summary').innerText()).trim();
        const m = summary.match(/(\d+) views? by (\d+) unique readers?/);
        // Both reads: the two views may land in two flushes a second apart.
        if (m) { views = +m[1]; readers = +m[2]; if (views >= 2) break; }
        expect(Date.now() < deadline, `not both views on the statistics page after 15 s: "${summary}"`);
        await page.waitForTimeout(500);
        await page.reload();
      }
      expect(views >= 2 && readers >= 1, `the page counts ${views} views by ${readers} readers; the reader made 2 views`);
      log(`         (${views} views by ${readers} unique readers)`);
    });

    await run.step('the chart is drawn, with a text alternative', async () => {
      const chart = page.locator('svg#reads-chart');
      await chart.waitFor({ state: 'visible', timeout: 5_000 });
      const box = await chart.boundingBox();
      expect(box && box.width > 200 && box.height > 50, `the chart is not visible at a useful size: ${JSON.stringify(box)}`);
      expect((await chart.getAttribute('role')) === 'img', 'the chart has no role="img"');
      expect(await chart.locator('polyline').count() >= 2, 'the chart has no lines for views and readers');
      const desc = (await chart.locator('desc').textContent()).trim();
      expect(new RegExp(`^${views} views? by ${readers} unique readers?`).test(desc), `the chart's description says "${desc}"`);
      // The table alternative: collapsed in a <details>, opened like a reader would.
      await page.getByText('Views and readers by day, as a table').click();
      const today = new Date().toISOString().slice(0, 10);
      const row = page.locator('.stats-table table tbody tr').filter({ hasText: today });
      await expectText(row, new RegExp(`${today}\\s+${views}\\s+${readers}`), "today's row of the table");
      await expectText(page.locator('.stats-chapters'), /1\. The storm\s+\d+\s+\d+[\s\S]*2\. The visitor/, 'the per-chapter table');
      await run.axe(page, 'statistics page');
    });
  } finally {
    await context.close();
    await page.close();
  }
}

/** c. a second user, in a browser context of their own, finds the story on the home page. */
async function journeyReader(run, browser, shared) {
  const { story } = shared;
  const context = await newContext(browser, run);
  const page = (run.page = await context.newPage());
  try {
    const reader = await signUp(run, page, 'reader');

    let card;
    await run.step('find the story on the home page', async () => {
      await page.goto(`${BASE}/`);
      await expectText(page.getByRole('heading', { level: 2, name: 'Latest stories' }), /Latest stories/, 'home listing heading');
      card = page.locator('article.story-card').filter({ has: page.getByRole('link', { name: story.title, exact: true }) });
      expect(await card.count() === 1, `the story "${story.title}" is not on the home page`);
      await expectText(card.locator('.meta'), new RegExp(`by ${story.author}\\b[\\s\\S]*2 chapters`), 'card byline');
      await expectImageLoaded(card.locator('.card-cover img'), 'the cover on the home page card');
      await run.axe(page, 'home with the story');
    });

    await run.step('open the story', async () => {
      await card.getByRole('link', { name: story.title, exact: true }).click();
      await expectPath(page, story.path);
      await expectText(page.locator('h1'), new RegExp(`^${story.title}$`), 'story title');
      await expectText(page.locator('.story .meta').first(), new RegExp(`by ${story.author}`), 'byline');
      expect(await page.locator('.chapter-list li').count() === 2, 'the story does not list 2 chapters');
      expect(!(await page.getByRole('link', { name: 'Edit story' }).count()), 'a reader sees "Edit story"');
      expect(!(await page.getByLabel('Chapter title').count()), 'a reader sees the chapter form');
      const cover = page.locator('.story .figure picture img');
      await expectImageLoaded(cover, 'the cover on the story page');
      expect((await cover.getAttribute('alt')) === `Cover of ${story.title}`, `cover alt text is ${JSON.stringify(await cover.getAttribute('alt'))}`);
      await run.axe(page, 'story page as a reader');
    });

    await run.step('start reading', async () => {
      await page.getByRole('link', { name: 'Start reading' }).click();
      await expectPath(page, `${story.path}/c/1`);
      await expectText(page.locator('h1'), /Chapter 1:\s*The storm/, 'chapter 1 heading');
      await expectLoggedIn(page, reader.username);
    });
  } finally {
    await context.close();
  }
}

/** d. a second reader follows the author, likes and comments; the author, with the story
 *  page open, sees the like count and the comment arrive live (JS on) and finds the
 *  notifications (with the count in the navigation). */
async function journeyCommunity(run, browser, shared) {
  const { story, writer } = shared;
  const authorPage = await writer.context.newPage();
  const context = await newContext(browser, run);
  const page = (run.page = await context.newPage());
  const comment = `What a storm, ${run.mode} ${RUN_ID}!`;
  try {
    await run.step('the author keeps the story page open', async () => {
      const streamed = run.js ? authorPage.waitForRequest((r) => new URL(r.url()).pathname === `${story.path}/live`, { timeout: 15_000 }) : null;
      await authorPage.goto(`${BASE}${story.path}`);
      await expectText(authorPage.locator('#like-count'), /^0 likes$/, 'like count before');
      if (run.js) await streamed; // the SSE stream is open
    });

    const fan = await signUp(run, page, 'fan');

    await run.step(`follow ${writer.username} from their profile`, async () => {
      await page.goto(`${BASE}/u/${writer.username}`);
      await expectText(page.locator('#follower-count'), /^0 followers$/, 'follower count before');
      const submitted = waitForSubmit(page, run, 'POST', `/u/${writer.username}/follow`);
      await page.getByRole('button', { name: 'Follow', exact: true }).click();
      await submitted;
      await expectText(page.getByRole('button', { name: /Following/ }), /Following · unfollow/, 'the button after following');
      await expectText(page.locator('#follower-count'), /^1 follower$/, 'follower count after');
      await run.axe(page, 'profile, following');
    });

    await run.step('like the story', async () => {
      await page.goto(`${BASE}${story.path}`);
      const submitted = waitForSubmit(page, run, 'POST', `${story.path}/like`);
      await page.getByRole('button', { name: /Like/ }).click();
      await submitted;
      await expectText(page.getByRole('button', { name: /Liked/ }), /Liked · undo/, 'the button after liking');
      await expectText(page.locator('#like-count'), /^1 like$/, 'like count after');
    });

    await run.step('comment on the story', async () => {
      await page.getByLabel('Add a comment').fill(comment);
      const submitted = waitForSubmit(page, run, 'POST', `${story.path}/comments`);
      await page.getByRole('button', { name: 'Post comment' }).click();
      await submitted;
      await expectText(page.locator('#comments .comment').filter({ hasText: comment }), new RegExp(comment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'the new comment');
      expect(await page.locator('#comments .comment').filter({ hasText: comment }).count() === 1, 'the comment is shown more than once');
      if (run.js) expect((await page.getByLabel('Add a comment').inputValue()) === '', 'the comment form was not cleared');
      await run.axe(page, 'story page with a comment');
    });

    await run.step('save the story to the reading list', async () => {
      const submitted = waitForSubmit(page, run, 'POST', `${story.path}/save`);
      await page.getByRole('button', { name: 'Save to reading list' }).click();
      await submitted;
      await expectText(page.getByRole('button', { name: /In your reading list/ }), /In your reading list · remove/, 'the button after saving');
      await page.goto(`${BASE}/reading-list`);
      await expectText(page.locator('h1'), /Your reading list/, 'reading list heading');
      expect(await page.getByRole('link', { name: story.title, exact: true }).count() === 1, 'the saved story is not in the reading list');
      await run.axe(page, 'reading list');
      await page.goto(`${BASE}/u/${writer.username}/followers`);
      expect(await page.locator('.people').getByRole('link', { name: fan.username, exact: true }).count() === 1, `${fan.username} is not among the followers`);
      await run.axe(page, 'followers list');
    });

    await run.step(run.js ? 'the author sees the like and the comment arrive live' : 'the author reloads and sees the like and the comment', async () => {
      if (!run.js) await authorPage.reload();
      // No reload with JS on: the SSE stream brings both.
      await authorPage.locator('#like-count', { hasText: /^1 like$/ }).waitFor({ timeout: 10_000 });
      await authorPage.locator('#comments .comment', { hasText: comment }).waitFor({ timeout: 10_000 });
      expect(await authorPage.locator('#comments .comment').filter({ hasText: comment }).count() === 1, 'the author sees the comment more than once');
    });

    await run.step('the author is notified', async () => {
      // The worker creates the notifications from the jobs the actions queued. With JS on
      // the count in the navigation updates live; without it, on the next page view.
      const badge = authorPage.locator('#nav-notifications .badge');
      const deadline = Date.now() + MAIL_TIMEOUT;
      for (;;) {
        if (!run.js) await authorPage.reload();
        if (await badge.count() && /^[3-9]|^\d\d/.test((await badge.innerText()).trim())) break;
        expect(Date.now() < deadline, `the navigation shows no notifications for the follow, like and comment after ${MAIL_TIMEOUT / 1000}s (is the worker running?)`);
        await authorPage.waitForTimeout(run.js ? 250 : 1000);
      }
      await authorPage.locator('#nav-notifications').click();
      await expectPath(authorPage, '/notifications');
      const list = authorPage.locator('.notifications');
      await expectText(list.locator('.notification', { hasText: 'started following you' }), new RegExp(`${fan.username}[\\s\\S]*started following you`), 'follow notification');
      await expectText(list.locator('.notification', { hasText: 'liked' }), new RegExp(`${fan.username}[\\s\\S]*liked`), 'like notification');
      await expectText(list.locator('.notification', { hasText: 'commented on' }), /commented on/, 'comment notification');
      await expectText(list.locator('.notification', { hasText: 'commented on' }).locator('.excerpt'), /What a storm/, 'comment excerpt');
      await run.axe(authorPage, 'notifications');
      await authorPage.getByRole('button', { name: 'Mark all as read' }).click();
      await authorPage.locator('.notification.unread').first().waitFor({ state: 'detached', timeout: 10_000 });
      if (!run.js) await authorPage.reload();
      await authorPage.locator('#nav-notifications .badge').waitFor({ state: 'detached', timeout: 10_000 });
    });

    await run.step('the author turns on like emails', async () => {
      await authorPage.getByRole('link', { name: 'Email preferences' }).click();
      await expectPath(authorPage, '/settings/notifications');
      await run.axe(authorPage, 'email preferences');
      await authorPage.locator('input[name="like"][value="instant"]').check();
      const submitted = waitForSubmit(authorPage, run, 'POST', '/settings/notifications');
      await authorPage.getByRole('button', { name: 'Save preferences' }).click();
      await submitted;
      await expectText(authorPage.locator('.flash.success'), /Your email preferences are saved/, 'saved message');
      await authorPage.reload();
      expect(await authorPage.locator('input[name="like"][value="instant"]').isChecked(), 'the like preference did not stick');
    });

    await run.step('unsubscribe from comment emails with the link in the mail', async () => {
      // The comment mail (instant by default) carries a signed one-click unsubscribe link.
      const deadline = Date.now() + MAIL_TIMEOUT;
      const row = authorPage.locator('tbody tr').filter({ hasText: writer.email }).filter({ hasText: 'commented on' });
      for (;;) {
        await authorPage.goto(`${BASE}/dev/mail`);
        if (await row.count()) break;
        expect(Date.now() < deadline, `no comment mail to ${writer.email} after ${MAIL_TIMEOUT / 1000}s`);
        await authorPage.waitForTimeout(500);
      }
      await row.first().getByRole('link').click();
      const text = await authorPage.locator('pre').first().innerText();
      const link = /https?:\/\/\S+\/unsubscribe\/\S+/.exec(text);
      expect(link, 'the comment mail has no unsubscribe link');
      await authorPage.goto(link[0].replace(/^https?:\/\/[^/]+/, BASE));
      await expectText(authorPage.locator('h1'), /^Unsubscribe$/, 'unsubscribe confirmation');
      await run.axe(authorPage, 'unsubscribe confirmation');
      await authorPage.getByRole('button', { name: 'Unsubscribe' }).click();
      await expectText(authorPage.locator('h1'), /You are unsubscribed/, 'unsubscribed page');
      await run.axe(authorPage, 'unsubscribed');
      await authorPage.goto(`${BASE}/settings/notifications`);
      expect(await authorPage.locator('input[name="comment"][value="off"]').isChecked(), 'comment emails are not off after unsubscribing');
    });
  } finally {
    await authorPage.close().catch(() => {});
    await context.close();
  }
}

/** e. search: the writer publishes a story whose chapter 2 alone has a made-up word; a
 *  reader (no account) searches for it: with JS by typing (results swap in, no submit),
 *  without JS by submitting the plain GET form. */
async function journeySearch(run, browser, shared) {
  const { writer } = shared;
  const authorPage = await writer.context.newPage();
  const context = await newContext(browser, run);
  const page = (run.page = await context.newPage());
  // Letters only, so the word is one token; unique to this run and mode.
  const word = `quillomarsh${RUN_ID.replace(/[^a-z]/g, '')}${run.js ? 'js' : 'nojs'}`;
  const title = `The Salt Archive ${run.mode} ${RUN_ID}`;
  let storyPath;
  try {
    await run.step('the writer publishes a story whose chapter 2 has the word', async () => {
      run.page = authorPage;
      await authorPage.goto(`${BASE}/stories/new`);
      await authorPage.getByLabel('Title').fill(title);
      await authorPage.getByLabel('Summary').fill('An archive of letters that nobody answered.');
      await authorPage.getByLabel('Tags').fill('e2e');
      await authorPage.getByRole('button', { name: 'Create draft' }).click();
      storyPath = (await expectPath(authorPage, /^\/s\/\d+$/)).pathname;
      for (const [n, body] of [[1, 'The first letter was about the weather.'], [2, `The second letter named the ${word} by the pier.`]]) {
        await authorPage.getByLabel('Chapter title').fill(`Letter ${n}`);
        await authorPage.getByLabel('Text', { exact: true }).fill(body);
        await authorPage.getByRole('button', { name: 'Save chapter' }).click();
        await expectPath(authorPage, `${storyPath}/c/${n}`);
        await authorPage.goto(`${BASE}${storyPath}`);
      }
      await authorPage.getByRole('button', { name: 'Publish' }).click();
      await expectPath(authorPage, storyPath);
      expect(!(await authorPage.getByRole('button', { name: 'Publish' }).count()), 'the story did not publish');
      run.page = page;
    });

    await run.step('the search page: the form and popular tags', async () => {
      await page.goto(`${BASE}/`);
      const header = page.locator('header').getByRole('search');
      expect(await header.count() === 1, 'no search form in the header');
      await header.getByLabel('Search stories').fill(word);
      await header.getByRole('button', { name: 'Search' }).click();
      await expectPath(page, '/search');
      await expectText(page.locator('h1'), /Search stories/, 'search heading');
      await run.axe(page, 'search results from the header form');
      await page.goto(`${BASE}/search`);
      await expectText(page.locator('#search-results'), /Popular tags/, 'popular tags');
      await run.axe(page, 'search page, empty query');
    });

    await run.step(run.js ? 'typing the word shows the story, without submitting' : 'submitting the form shows the story', async () => {
      const results = page.locator('#search-results');
      const card = results.locator('article.story-card').filter({ has: page.getByRole('link', { name: title, exact: true }) });
      const input = page.getByLabel('Words to look for');
      if (run.js) {
        await page.evaluate(() => { window.e2eSamePage = true; });
        await input.pressSequentially(word, { delay: 20 });
        await card.waitFor({ state: 'visible', timeout: 15_000 });
        expect(await page.evaluate(() => window.e2eSamePage === true), 'the page reloaded instead of htmx swapping the results in');
        expect(context.hxRequests.some((r) => r === 'GET /search'), 'no htmx request to /search');
        // hx-push-url: the address bar follows the query.
        await page.waitForURL((u) => u.searchParams.get('q') === word, { timeout: 5_000 });
      } else {
        await input.fill(word);
        await page.getByRole('main').getByRole('button', { name: 'Search' }).click();
        await page.waitForURL((u) => u.pathname === '/search' && u.searchParams.get('q') === word);
        await card.waitFor({ state: 'visible' });
      }
      expect(await card.count() === 1, `the story "${title}" is not in the results once`);
      await expectText(results.locator('.snippet mark'), new RegExp(`^${word}$`, 'i'), 'the highlighted word');
      await expectText(results.locator('.snippet').first(), /Chapter 2/, 'the snippet comes from chapter 2');
      await run.axe(page, 'search results');
    });

    await run.step('the result leads to chapter 2', async () => {
      await page.locator('#search-results .snippet a', { hasText: 'Chapter 2' }).first().click();
      await expectPath(page, `${storyPath}/c/2`);
      await expectText(page.locator('.story-body'), new RegExp(word), 'the word in chapter 2');
    });

    await run.step('a word in no story: the no-results state', async () => {
      await page.goto(`${BASE}/search?q=${word}zz`);
      await expectText(page.locator('#search-results'), /No stories match/, 'no results');
      await run.axe(page, 'search, no results');
    });
  } finally {
    await authorPage.close().catch(() => {});
    await context.close();
  }
}

/** d. live updates: a logged-in page holds one event stream (JS on; none with JS off), and
 *  events raised in the database (as a transaction would: row + NOTIFY) change the page. */
async function journeyLive(run, browser) {
  const context = await newContext(browser, run);
  const page = (run.page = await context.newPage());
  const streams = [];
  context.on('request', (r) => {
    if (new URL(r.url()).pathname === '/live') streams.push(r);
  });
  try {
    const user = await signUp(run, page, 'live');
    if (!run.js) {
      await run.step('no event stream without JavaScript', async () => {
        await page.goto(`${BASE}/`);
        await page.waitForTimeout(500);
        expect(streams.length === 0, `${streams.length} request(s) to /live with JavaScript off`);
      });
      return;
    }
    await run.step('the page opens its event stream', async () => {
      for (let i = 0; i < 200 && !streams.length; i++) await page.waitForTimeout(50);
      expect(streams.length, 'no request to /live within 10 s');
      expect(streams[0].resourceType() === 'eventsource', `/live was a ${streams[0].resourceType()} request`);
      const resp = await streams[0].response();
      expect(resp && resp.status() === 200, `/live answered ${resp && resp.status()}`);
      expect((resp.headers()['content-type'] || '').startsWith('text/event-stream'), 'not an event stream');
    });
    const raise = (event, data) => {
      const uid = `(SELECT id FROM users WHERE username = '${user.username}')`;
      sql(`WITH e AS (INSERT INTO live_events (channel, event, data) VALUES ('user:' || ${uid}, '${event}', '${data}') RETURNING id)
           SELECT pg_notify('quire_live', id::text) FROM e`);
    };
    await run.step('a comment_deleted event removes the comment', async () => {
      await page.evaluate(() => {
        const list = document.createElement('ol');
        list.id = 'comments';
        list.innerHTML = '<li id="comment-999">gone soon</li><li id="comment-998">stays</li>';
        document.querySelector('main').appendChild(list);
      });
      raise('comment_deleted', '999');
      await page.locator('#comment-999').waitFor({ state: 'detached', timeout: 5_000 });
      expect(await page.locator('#comment-998').count() === 1, 'the other comment went too');
    });
    await run.step('a comment event is swapped in once, even when the page has it already', async () => {
      // The story page's markup (social area): <ol id="comments" sse-swap="comment" hx-swap="afterbegin">.
      await page.evaluate(() => {
        const list = document.getElementById('comments');
        list.setAttribute('sse-swap', 'comment');
        list.setAttribute('hx-swap', 'afterbegin');
        window.htmx.process(list);
      });
      raise('comment', '<li id="comment-1000">new</li>');
      await expectText(page.locator('#comment-1000'), /new/, 'the new comment');
      raise('comment', '<li id="comment-998">stays (again)</li>');
      raise('comment', '<li id="comment-1001">newer</li>');
      await expectText(page.locator('#comment-1001'), /newer/, 'the newer comment');
      expect(await page.locator('#comments > li').count() === 3, `${await page.locator('#comments > li').count()} comments, not 3`);
      const ids = await page.locator('#comments > li').evaluateAll((lis) => lis.map((li) => `${li.id}:${li.textContent}`));
      expect(ids.join(',') === 'comment-1001:newer,comment-1000:new,comment-998:stays', `comments are ${ids.join(', ')}`);
    });
    await run.step('a reload event offers a reload', async () => {
      raise('reload', '');
      await expectText(page.locator('#live-reload'), /missed some updates/, 'the missed-updates note');
      await run.axe(page, 'home with the missed-updates note');
    });
  } finally {
    await context.close();
  }
}

/** h. an admin opens /admin/jobs, sees a failed job with its error, retries it; the
 *  job leaves the failed list and the worker runs it to the end. The user is made an
 *  admin, and the job failed, with SQL (the e2e database has no demo data). */
async function journeyAdminJobs(run, browser) {
  const context = await newContext(browser, run);
  const page = (run.page = await context.newPage());
  try {
    const user = await signUp(run, page, 'admin');
    const error = `e2e: connection refused (${run.mode} ${RUN_ID})`;
    let jobId;
    await run.step('make the user an admin and a job fail (SQL)', async () => {
      sql(`UPDATE users SET role = 'admin' WHERE username = '${user.username}'`);
      // A real ULID: the worker cannot decode any other id (its queue stops on one).
      jobId = sql(`INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, done_at, last_result)
           VALUES (apalis.generate_ulid(), 'default', convert_to('{"name":"noop","args":{},"request_id":null}', 'UTF8'), 'Failed', 5, 5,
                   now() - interval '10 minutes', 0, now() - interval '5 minutes', jsonb_build_object('Err', '${error}'))
           RETURNING id`);
      expect(/^[0-9A-Z]{26}$/.test(jobId), `the inserted job's id is ${jobId}`);
    });

    const row = page.locator(`[id="job-${jobId}"]`);
    await run.step('open /admin/jobs and see the failed job with its error', async () => {
      // The role change reaches the session within the session cache's few seconds.
      const deadline = Date.now() + 15_000;
      for (;;) {
        await page.goto(`${BASE}/admin/jobs`);
        if (await page.locator('h1', { hasText: /^Jobs$/ }).count()) break;
        expect(Date.now() < deadline, `/admin/jobs still refuses the new admin after 15 s: ${(await page.locator('h1').first().innerText()).trim()}`);
        await page.waitForTimeout(1000);
      }
      await expectText(page.locator('#queue-default'), /default/, 'the default queue row');
      await expectText(row, new RegExp(error.replace(/[()]/g, '\\$&')), 'the failed job row with its error');
      await expectText(row, /5 of 5/, 'its attempts');
      const chart = page.locator('svg#jobs-chart');
      await chart.waitFor({ state: 'visible', timeout: 5_000 });
      expect((await chart.getAttribute('role')) === 'img', 'the chart has no role="img"');
      await run.axe(page, 'jobs dashboard');
    });

    await run.step('retry it; it leaves the failed list', async () => {
      await row.getByRole('button', { name: `Retry job noop ${jobId}` }).click();
      await expectPath(page, '/admin/jobs');
      await expectFlash(page, new RegExp(`${jobId}\\) is queued again`));
      expect((await page.locator(`[id="job-${jobId}"]`).count()) === 0, 'the retried job is still in the failed list');
      await run.axe(page, 'jobs dashboard after a retry');
    });

    await run.step('the worker runs the retried job to the end', async () => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const status = sql(`SELECT status FROM apalis.jobs WHERE id = '${jobId}'`);
        if (status === 'Done') break;
        expect(Date.now() < deadline, `the retried job is ${status} after 30 s (is the worker running?)`);
        await page.waitForTimeout(500);
      }
      const audit = sql(`SELECT count(*) FROM audit_log WHERE action = 'job.retried' AND object_id = '${jobId}'`);
      expect(audit === '1', `${audit} audit rows for the retry`);
    });
  } finally {
    await context.close();
  }
}

/** A reader reports a comment; a moderator hides it from /mod/reports; the reader no longer sees it. */
async function journeyModeration(run, browser, shared) {
  const { story } = shared;
  const contexts = [];
  const open = async () => { const c = await newContext(browser, run); contexts.push(c); return c.newPage(); };
  const text = `Rude words ${run.mode} ${RUN_ID}`;
  try {
    const trollPage = await open();
    run.page = trollPage;
    await signUp(run, trollPage, 'troll');
    await run.step('the troll comments on the story', async () => {
      await trollPage.goto(`${BASE}${story.path}`);
      await trollPage.getByLabel('Add a comment').fill(text);
      await trollPage.getByRole('button', { name: 'Post comment' }).click();
      await expectText(trollPage.locator('#comments .comment').filter({ hasText: text }), new RegExp(text), 'the comment');
    });

    const page = (run.page = await open());
    await signUp(run, page, 'reporter');
    const item = page.locator('#comments .comment').filter({ hasText: text });
    await run.step('the reader reports the comment', async () => {
      await page.goto(`${BASE}${story.path}`);
      await item.locator('summary', { hasText: 'Report' }).click();
      await item.getByLabel('What is wrong with this comment?').fill('Insulting other readers');
      await item.getByRole('button', { name: 'Send report' }).click();
      if (run.js) await expectText(item.locator('.flash.info'), /a moderator will look/, 'the thanks in place');
      else await expectFlash(page, /a moderator will look/);
      await run.axe(page, 'story page after a report');
    });

    const modPage = (run.page = await open());
    const mod = await signUp(run, modPage, 'mod');
    await run.step('a moderator hides it from /mod/reports', async () => {
      sql(`UPDATE users SET role = 'moderator' WHERE username = '${mod.username}'`);
      const deadline = Date.now() + 15_000;
      for (;;) {
        await modPage.goto(`${BASE}/mod/reports`);
        if (await modPage.locator('h1', { hasText: /^Reports$/ }).count()) break;
        expect(Date.now() < deadline, '/mod/reports still refuses the new moderator after 15 s');
        await modPage.waitForTimeout(1000);
      }
      const entry = modPage.locator('.report-item').filter({ hasText: 'Insulting other readers' });
      await expectText(entry, /1 report/, 'the report in the queue');
      await run.axe(modPage, 'moderation queue');
      await entry.getByLabel(/Note/).fill('Personal attacks');
      await entry.getByRole('button', { name: 'Hide' }).click();
      await expectPath(modPage, '/mod/reports');
      await expectFlash(modPage, /Hidden/);
    });

    await run.step('the reader no longer sees it; its author sees why', async () => {
      run.page = page;
      await page.goto(`${BASE}${story.path}`);
      expect((await page.locator('#comments .comment').filter({ hasText: text }).count()) === 0, 'the hidden comment is still shown to the reader');
      await trollPage.goto(`${BASE}${story.path}`);
      await expectText(trollPage.locator('#comments .comment').filter({ hasText: text }), /Hidden by the moderators[\s\S]*Personal attacks/, 'the notice to its author');
    });
  } finally {
    for (const c of contexts) await c.close();
  }
}

/** Runs one SQL statement on the e2e database (DATABASE_URL, exported by ./run). */
function sql(query) {
  return execFileSync('psql', [process.env.DATABASE_URL, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', query], { encoding: 'utf8' }).trim();
}

// --- browser plumbing ------------------------------------------------------------------

async function newContext(browser, run) {
  const context = await browser.newContext({
    javaScriptEnabled: run.js,
    viewport: { width: 1280, height: 900 },
    locale: 'en-GB',
  });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(30_000);
  // Only our server: nothing else should be fetched.
  await context.route((url) => !url.href.startsWith(BASE) && !/^(data|blob|about):/.test(url.protocol), (route) => {
    log(`         (blocked a request to ${route.request().url()})`);
    return route.abort();
  });
  context.on('page', (page) => watchPage(page, run));
  context.hxRequests = [];
  context.on('request', (req) => {
    if (req.headers()['hx-request']) context.hxRequests.push(`${req.method()} ${new URL(req.url()).pathname}`);
  });
  return context;
}

function watchPage(page, run) {
  page.on('pageerror', (e) => {
    log(`         page error on ${page.url()}: ${e.message}`);
    run.pageErrors.push(`${page.url()}: ${e.message}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error') log(`         console error on ${page.url()}: ${m.text()}`);
  });
}

/** Resolves when the form's POST has gone out; checks htmx sent it (JS) or did not (no JS). */
function waitForSubmit(page, run, method, path) {
  return page.waitForRequest((r) => r.method() === method && new URL(r.url()).pathname === path, { timeout: 15_000 })
    .then((r) => {
      const hx = r.headers()['hx-request'] === 'true';
      if (run.js) {
        expect(hx, `${method} ${path} was a plain form post, not an htmx request (is htmx loaded?)`);
        expect(r.headers()['x-csrf-token'], `htmx ${method} ${path} had no X-CSRF-Token header`);
      } else {
        expect(!hx, `${method} ${path} was an htmx request with JavaScript off`);
      }
    });
}

// --- main ------------------------------------------------------------------------------

const JOURNEYS = [
  { name: 'account', title: 'sign up, verify the email, log out, log in', fn: journeyAccount, needs: [] },
  { name: 'story', title: 'a story with a cover and two chapters, published and read', fn: journeyStory, needs: ['account'] },
  { name: 'stats', title: 'a reader reads; the author sees the views on the statistics chart', fn: journeyStats, needs: ['story'] },
  { name: 'reader', title: 'a second user finds the story on the home page', fn: journeyReader, needs: ['story'] },
  { name: 'community', title: 'a reader follows, likes and comments; the author sees it live and is notified', fn: journeyCommunity, needs: ['story'] },
  { name: 'search', title: 'a reader finds a story by a word only in its chapter 2', fn: journeySearch, needs: ['account'] },
  { name: 'live', title: 'a page keeps its event stream and live events change it', fn: journeyLive, needs: [] },
  { name: 'moderation', title: 'a reader reports a comment, a moderator hides it, the reader no longer sees it', fn: journeyModeration, needs: ['story'] },
  { name: 'admin-jobs', title: 'an admin retries a failed job from /admin/jobs', fn: journeyAdminJobs, needs: [] },
];
// E2E_JOURNEYS=name,name runs only those journeys (their `needs` must be listed too).
const ONLY = (process.env.E2E_JOURNEYS || '').split(',').map((j) => j.trim()).filter(Boolean);

async function main() {
  log(`e2e: ${BASE}, Chromium ${CHROMIUM}, modes ${MODES.join(', ')}`);
  for (const m of MODES) expect(m === 'js' || m === 'nojs', `E2E_MODES: unknown mode ${m}`);
  // Reachable at all? A clear message beats six timeouts.
  try {
    const r = await fetch(`${BASE}/health`);
    expect(r.ok, `GET /health answered ${r.status}`);
  } catch (e) {
    console.error(`e2e: the server at ${BASE} is not answering /health: ${e.message}`);
    process.exit(2);
  }
  rmSync(ARTIFACTS, { recursive: true, force: true });
  const tmp = mkdtempSync(join(tmpdir(), 'quire-e2e-'));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: !process.env.E2E_HEADED,
    // launch() gives the browser a fresh temporary profile (user-data dir) of its own.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
  });
  log(`e2e: Chromium ${browser.version()}`);

  const results = [];
  try {
    for (const mode of MODES) {
      const shared = { tmp };
      const passed = new Set();
      for (const j of JOURNEYS) {
        if (ONLY.length && !ONLY.includes(j.name)) continue;
        const run = new Run(j.name, mode);
        log(`\n--- ${run.label}: ${j.title}`);
        const t = Date.now();
        const missing = j.needs.filter((n) => !passed.has(n));
        let error = null;
        if (missing.length) {
          error = `not run: needs ${missing.join(', ')}, which failed`;
        } else {
          try {
            await j.fn(run, browser, shared);
            if (run.a11y.length) {
              const n = run.a11y.reduce((s, a) => s + a.violations.length, 0);
              error = `accessibility: ${n} serious/critical violation(s) on ${run.a11y.map((a) => a.where).join('; ')}`;
            } else if (run.pageErrors.length) {
              error = `JavaScript errors in the page: ${run.pageErrors.join('; ')}`;
            }
          } catch (e) {
            error = e instanceof StepError ? e.message : firstLines(e);
            if (!(e instanceof StepError) && run.page) await run.artifacts('error');
          }
        }
        const ms = Date.now() - t;
        if (!error) passed.add(j.name);
        results.push({ label: run.label, error, ms });
        log(error ? `--- FAILED ${run.label} (${secs(ms)}): ${error}` : `--- passed ${run.label} (${secs(ms)})`);
      }
      await shared.writer?.context.close().catch(() => {});
      shared.writer = null;
    }
  } finally {
    await browser.close().catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  }

  const failed = results.filter((r) => r.error);
  if (failed.length) {
    log('\nFailures:');
    for (const f of failed) log(`  ${f.label}: ${f.error}`);
    log(`Screenshots and HTML of failing steps: ${rel(ARTIFACTS)}/`);
  }
  log(`\ne2e: ${results.length} journeys, ${results.length - failed.length} passed, ${failed.length} failed (${secs(Date.now() - T0)})`);
  process.exitCode = failed.length ? 1 : 0;
}

main().catch((e) => {
  console.error(`e2e: ${e.stack || e}`);
  process.exitCode = 1;
});
